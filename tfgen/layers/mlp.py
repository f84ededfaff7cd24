"""A multilayer perceptron with optional batch normalization."""

from typing import Sequence

import keras
import tensorflow as tf

from tfgen.layers.tracking import track_list


class MLP(keras.layers.Layer):
  """Dense layers, each followed by optional batch norm and then the activation.

  Works on inputs of any rank [..., features], so k importance samples of a batch,
  [k, B, features], pass through without reshaping (batch norm then pools over k and B).

  Args:
    hidden_sizes: width of each hidden layer.
    output_size: width of the final linear layer, or None for no output layer.
    activation: Keras activation name of the hidden layers.
    batch_norm: insert batch normalization before each hidden activation.
  """

  def __init__(self, hidden_sizes: Sequence[int], output_size=None, activation="tanh",
               batch_norm=False, **kwargs):
    super().__init__(**kwargs)
    self.hidden = track_list(self, "dense", [keras.layers.Dense(h) for h in hidden_sizes])
    self.norms = track_list(self, "norm", [keras.layers.BatchNormalization()
                                           for _ in hidden_sizes] if batch_norm else [])
    self.activation = keras.activations.get(activation)
    self.out = keras.layers.Dense(output_size) if output_size else None

  def call(self, x, training=False):
    for i, dense in enumerate(self.hidden):
      x = dense(x)
      if self.norms:
        # Batch norm fixes its input rank when built; flatten [k, B, h] to [k·B, h] so the
        # same layer serves k samples (training) and plain batches (sampling) alike.
        shape = tf.shape(x)
        flat = self.norms[i](tf.reshape(x, [-1, x.shape[-1]]), training=training)
        x = tf.reshape(flat, shape)
      x = self.activation(x)
    return self.out(x) if self.out is not None else x
