"""Residual building blocks of Matryoshka Networks, dense or convolutional.

Every block works on states [N, width] ("dense") or [N, h, w, width] ("conv"); the convolutional
kind uses 3×3 kernels with "same" padding, so one block keeps the spatial size. The last layer of
the deterministic residual branches starts at zero, so each is the identity when training begins
and a deep stack of them passes its input (and its gradient) through unchanged.
"""

import math

import keras
import tensorflow as tf

KINDS = ("dense", "conv")
# softplus(x + SOFTPLUS_ONE) = 1 at x = 0: a zero head output means "scale 1" or "scale factor 1".
SOFTPLUS_ONE = math.log(math.e - 1.0)


def linear(kind: str, width: int, zero: bool = False, strides: int = 1,
           transpose: bool = False) -> keras.layers.Layer:
  """A Dense layer, or a 3×3 convolution (strided, or transposed to upsample)."""
  init = "zeros" if zero else "glorot_uniform"
  if kind == "dense":
    return keras.layers.Dense(width, kernel_initializer=init)
  conv = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
  return conv(width, 3, strides=strides, padding="same", kernel_initializer=init)


class ResidualBranch(keras.layers.Layer):
  """main + W₂ σ(W₁ σ([main, extra…])): a residual update of `main` that may read other states.

  Args:
    kind: "dense" or "conv".
    width: width (channels) of `main` and of the hidden layer.
    activation: Keras activation name.
    zero_init: start W₂ at zero, so the block is the identity at initialization.
  """

  def __init__(self, kind: str, width: int, activation: str = "elu", zero_init: bool = True,
               **kwargs):
    super().__init__(**kwargs)
    self.activation = keras.activations.get(activation)
    self.first = linear(kind, width)
    self.second = linear(kind, width, zero=zero_init)

  def call(self, inputs):
    """main [N, …, width], or [main, extra states with the same leading shape] -> like main."""
    if isinstance(inputs, (list, tuple)):
      main, joined = inputs[0], tf.concat(list(inputs), axis=-1)
    else:
      main = joined = inputs
    return main + self.second(self.activation(self.first(self.activation(joined))))


class LatentModule(keras.layers.Layer):
  """One stochastic module of the top-down network (Bachman 2016, section 3).

  It returns raw tensors only; the model turns them into distributions:

    prior(h)              -> loc, scale of p(z | h), the latents' conditional prior
    posterior(h, b, g, …) -> loc, scale of q(z | h, b) and the next inference state g'
    merge(h, z)           -> the top-down state passed to the module below

  The posterior is parameterized relative to the prior (loc_p + Δloc, scale_p · softplus(Δ)), so
  an inference head that outputs zero gives q = p. Neither that head nor the merge starts at zero:
  with either at zero the latents would carry no gradient at the start, and the modules would
  stay switched off (KL = 0) from the first step.

  Args:
    kind: "dense" or "conv".
    width: width of the top-down, bottom-up and inference states.
    latent_width: latents per position (conv) or in all (dense).
    activation: Keras activation name.
    min_scale: floor of every standard deviation.
  """

  def __init__(self, kind: str, width: int, latent_width: int, activation: str = "elu",
               min_scale: float = 1e-3, **kwargs):
    super().__init__(**kwargs)
    self.activation = keras.activations.get(activation)
    self.min_scale = min_scale
    self.prior_head = linear(kind, 2 * latent_width)
    self.inference = ResidualBranch(kind, width, activation, zero_init=False)
    self.posterior_head = linear(kind, 2 * latent_width)
    self.merger = ResidualBranch(kind, width, activation, zero_init=False)

  def prior(self, h):
    """h [N, …, width] -> loc, scale [N, …, latent_width]."""
    # Latent parameters are float32 whatever precision the network computes in.
    loc, raw = tf.split(tf.cast(self.prior_head(self.activation(h)), tf.float32), 2, axis=-1)
    return loc, tf.nn.softplus(raw + SOFTPLUS_ONE) + self.min_scale

  def posterior(self, h, b, g, prior_loc, prior_scale):
    """q's loc, scale [N, …, latent_width] and the next inference state g' [N, …, width].

    Args:
      h: top-down state; b: bottom-up state at this module; g: inference state from above.
      prior_loc, prior_scale: this module's prior(h).
    """
    g = self.inference([g, h, b])
    delta_loc, raw = tf.split(tf.cast(self.posterior_head(self.activation(g)), tf.float32), 2,
                              axis=-1)
    scale = tf.maximum(prior_scale * tf.nn.softplus(raw + SOFTPLUS_ONE), self.min_scale)
    return prior_loc + delta_loc, scale, g

  def merge(self, h, z):
    """The state below: h + W₂ σ(W₁ σ([h, z]))."""
    return self.merger([h, z])
