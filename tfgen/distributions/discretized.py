"""Distributions over the 256 levels of 8-bit pixels: a continuous one discretized, or a softmax.

Pixels take the values k/255, k = 0..255 (tfgen scales 8-bit intensities to [0, 1]). The
probability of level k is the mass the continuous distribution puts on its bin
[k/255 − δ, k/255 + δ], δ = 1/510, with the first and last bins stretched to −∞ and +∞ so the
256 probabilities sum to 1 (Salimans et al. 2017). `log_prob` is therefore a proper log
probability of 8-bit data in nats, comparable across models, and bits per dimension follow as
−log_prob / (D·ln 2).

`Categorical8Bit` is a 256-way softmax over the same levels, in the same [0, 1] units.

References:
  van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
  Salimans, Karpathy, Chen & Kingma, "PixelCNN++: Improving the PixelCNN with Discretized
    Logistic Mixture Likelihood and Other Modifications", ICLR 2017.
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfgen.distributions import parameters as parameters_lib

tfd = tfp.distributions

NUM_LEVELS = 256
HALF_BIN = 0.5 / (NUM_LEVELS - 1)
BASES = {"logistic": tfd.Logistic, "normal": tfd.Normal}


class Discretized8Bit(parameters_lib.LocScale, tfd.Distribution):
  """A Logistic or Normal over [0, 1] discretized to the levels k/255.

  Args:
    loc: float tensor, the location of the continuous distribution (in [0, 1] units).
    scale: positive float tensor broadcastable with loc.
    base: "logistic" or "normal".
  """

  def __init__(self, loc, scale, base: str = "logistic", validate_args=False,
               allow_nan_stats=True, name="Discretized8Bit"):
    parameters = dict(locals())
    if base not in BASES:
      raise ValueError(f"unknown base {base!r}; known: {', '.join(BASES)}")
    with tf.name_scope(name) as name:
      self._loc = tf.convert_to_tensor(loc, tf.float32, name="loc")
      self._scale = tf.convert_to_tensor(scale, tf.float32, name="scale")
      self._base_name = base
      super().__init__(dtype=tf.float32, reparameterization_type=tfd.NOT_REPARAMETERIZED,
                       validate_args=validate_args, allow_nan_stats=allow_nan_stats,
                       parameters=parameters, name=name)

  @classmethod
  def _parameter_properties(cls, dtype, num_classes=None):
    return parameters_lib.loc_scale_properties()

  def _base(self):
    return BASES[self._base_name](self._loc, self._scale)

  def _event_shape(self):
    return tf.TensorShape([])

  def _event_shape_tensor(self):
    return tf.constant([], tf.int32)

  def _log_prob(self, x):
    base = self._base()
    x = tf.convert_to_tensor(x, tf.float32)
    lower, upper = x - HALF_BIN, x + HALF_BIN
    # Right of the location the survival functions hold the bin's mass without the cancellation
    # of two CDFs near 1. Both branches stay finite, so tf.where passes finite gradients.
    mass = tf.where(x > self._loc,
                    base.survival_function(lower) - base.survival_function(upper),
                    base.cdf(upper) - base.cdf(lower))
    # Where the mass is too small for float32 differences (a bin far in a tail, or a scale far
    # below the bin width), the density at x times the bin width is the accurate value.
    tiny = mass < 1e-5
    middle = tf.where(tiny, base.log_prob(x) + math.log(2 * HALF_BIN),
                      tf.math.log(tf.maximum(mass, 1e-12)))
    return tf.where(x < HALF_BIN, base.log_cdf(upper),
                    tf.where(x > 1.0 - HALF_BIN, base.log_survival_function(lower), middle))

  def _sample_n(self, n, seed=None):
    draws = self._base().sample(n, seed=seed)
    return tf.round(tf.clip_by_value(draws, 0.0, 1.0) * (NUM_LEVELS - 1)) / (NUM_LEVELS - 1)

  def _mean(self):
    # The clipped location: the exact mean of the levels differs by the tail mass that the end
    # bins absorb, which image grids (the use of `mean`) do not show.
    return tf.clip_by_value(self._loc, 0.0, 1.0) + tf.zeros_like(self._scale)


class Categorical8Bit(tfd.Distribution):
  """A 256-way categorical over the levels k/255 of 8-bit pixels, in [0, 1] units.

  The free-form alternative to the discretized Logistic/Normal (van den Oord et al. 2016):
  any distribution over the 256 levels, at 256 decoder outputs per pixel value.

  Args:
    logits: float tensor [..., 256], unnormalized log probabilities of the levels.
  """

  def __init__(self, logits, validate_args=False, allow_nan_stats=True,
               name="Categorical8Bit"):
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      self._logits = tf.convert_to_tensor(logits, tf.float32, name="logits")
      super().__init__(dtype=tf.float32, reparameterization_type=tfd.NOT_REPARAMETERIZED,
                       validate_args=validate_args, allow_nan_stats=allow_nan_stats,
                       parameters=parameters, name=name)

  @classmethod
  def _parameter_properties(cls, dtype, num_classes=None):
    return dict(logits=tfp.util.ParameterProperties(event_ndims=1))

  @property
  def logits(self):
    return self._logits

  def _event_shape(self):
    return tf.TensorShape([])

  def _event_shape_tensor(self):
    return tf.constant([], tf.int32)

  def _levels(self, x):
    return tf.cast(tf.round(tf.convert_to_tensor(x, tf.float32) * (NUM_LEVELS - 1)), tf.int32)

  def _log_prob(self, x):
    levels = self._levels(x)
    log_probs = tf.nn.log_softmax(self._logits)
    levels = tf.broadcast_to(levels, tf.broadcast_dynamic_shape(tf.shape(levels),
                                                                tf.shape(log_probs)[:-1]))
    log_probs = tf.broadcast_to(log_probs, tf.concat([tf.shape(levels), [NUM_LEVELS]], 0))
    return tf.gather(log_probs, levels, batch_dims=levels.shape.rank)

  def _sample_n(self, n, seed=None):
    flat = tf.reshape(self._logits, [-1, NUM_LEVELS])
    draws = tf.random.stateless_categorical(flat, n, seed=tfp.random.sanitize_seed(seed),
                                            dtype=tf.int32)  # [M, n]
    shape = tf.concat([[n], tf.shape(self._logits)[:-1]], 0)
    return tf.reshape(tf.cast(tf.transpose(draws), tf.float32), shape) / (NUM_LEVELS - 1)

  def _mean(self):
    levels = tf.range(NUM_LEVELS, dtype=tf.float32) / (NUM_LEVELS - 1)
    return tf.reduce_sum(tf.nn.softmax(self._logits) * levels, -1)

  def _mode(self):
    return tf.cast(tf.argmax(self._logits, -1), tf.float32) / (NUM_LEVELS - 1)
