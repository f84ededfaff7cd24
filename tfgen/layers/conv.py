"""Convolutional encoders and decoders that adapt to the image shape they are built for."""

import math
from typing import Sequence, Tuple

import keras
import tensorflow as tf

from tfgen.layers.tracking import track_list


class ConvEncoder(keras.layers.Layer):
  """Stride-2 4x4 convolutions, then a dense layer: images [B, H, W, C] -> [B, output_size].

  Args:
    filters: channels of each convolution; each halves the height and width (rounding up).
    hidden_size: width of the dense layer after the convolutions (0: none).
    output_size: width of the final linear layer.
    activation: Keras activation name.
  """

  def __init__(self, filters: Sequence[int], hidden_size: int, output_size: int,
               activation: str = "relu", **kwargs):
    super().__init__(**kwargs)
    self.convs = track_list(self, "conv", [keras.layers.Conv2D(f, 4, strides=2, padding="same")
                                           for f in filters])
    self.hidden = keras.layers.Dense(hidden_size) if hidden_size else None
    self.out = keras.layers.Dense(output_size)
    self.activation = keras.activations.get(activation)

  def call(self, x, training=False):
    for conv in self.convs:
      x = self.activation(conv(x))
    x = tf.reshape(x, [tf.shape(x)[0], math.prod(x.shape[1:])])
    if self.hidden is not None:
      x = self.activation(self.hidden(x))
    return self.out(x)


class ConvDecoder(keras.layers.Layer):
  """Dense layers to a small feature map, stride-2 transposed convolutions up to the image.

  The map starts at ceil(H / 2^n) x ceil(W / 2^n) for n upsamplings and the result is cropped to
  H x W, so 28x28 (from 2x2 via 32x32) and 64x64 (from 4x4) work alike. Inputs may carry extra
  leading axes ([k, B, latent] -> [k, B, H, W, output_channels]).

  Args:
    image_hw: (H, W) of the output.
    filters: channels of each transposed convolution, coarsest first (mirror of the encoder).
    hidden_size: width of the dense layer before the feature map (0: none).
    output_channels: channels of the output (likelihood parameters per pixel).
    activation: Keras activation name.
  """

  def __init__(self, image_hw: Tuple[int, int], filters: Sequence[int], hidden_size: int,
               output_channels: int, activation: str = "relu", **kwargs):
    super().__init__(**kwargs)
    self.image_hw = tuple(image_hw)
    scale = 2 ** len(filters)
    self.start_hw = tuple(math.ceil(d / scale) for d in image_hw)
    self.start_channels = filters[0]
    self.hidden = keras.layers.Dense(hidden_size) if hidden_size else None
    self.project = keras.layers.Dense(self.start_hw[0] * self.start_hw[1] * filters[0])
    self.deconvs = track_list(self, "deconv", [
        keras.layers.Conv2DTranspose(f, 4, strides=2, padding="same")
        for f in list(filters[1:]) + [filters[-1]]])
    self.out = keras.layers.Conv2D(output_channels, 3, padding="same")
    self.activation = keras.activations.get(activation)

  def call(self, z, training=False):
    leading = tf.shape(z)[:-1]
    x = tf.reshape(z, [-1, z.shape[-1]])
    if self.hidden is not None:
      x = self.activation(self.hidden(x))
    x = self.activation(self.project(x))
    x = tf.reshape(x, [-1, self.start_hw[0], self.start_hw[1], self.start_channels])
    for deconv in self.deconvs:
      x = self.activation(deconv(x))
    x = self.out(x)[:, :self.image_hw[0], :self.image_hw[1]]
    return tf.reshape(x, tf.concat([leading, tf.shape(x)[1:]], 0))
