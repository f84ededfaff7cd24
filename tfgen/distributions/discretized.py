"""Distributions over the 256 levels of 8-bit pixels: a continuous one discretized, or a softmax.

Pixels take the values k/255, k = 0..255 (tfgen scales 8-bit intensities to [0, 1]). The
probability of level k is the mass the continuous distribution puts on its bin
[k/255 − δ, k/255 + δ], δ = 1/510, with the first and last bins stretched to −∞ and +∞ so the
256 probabilities sum to 1 (Salimans et al. 2017). `log_prob` is therefore a proper log
probability of 8-bit data in nats, comparable across models, and bits per dimension follow as
−log_prob / (D·ln 2).

`Categorical8Bit` is a 256-way softmax over the same levels, in the same [0, 1] units.

`DiscretizedLogisticMixture` is PixelCNN++'s distribution of a whole pixel: a mixture of
logistics, the same mixture component for all its channels, channel c's location shifted
linearly by the values of the channels before it (G by R, B by R and G).

References:
  van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
  Salimans, Karpathy, Chen & Kingma, "PixelCNN++: Improving the PixelCNN with Discretized
    Logistic Mixture Likelihood and Other Modifications", ICLR 2017.
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp
# Normal.log_cdf's own log Φ (TFP is pinned to 0.25 in setup.py).
from tensorflow_probability.python.internal import special_math

from tfgen.distributions import parameters as parameters_lib

tfd = tfp.distributions

NUM_LEVELS = 256
HALF_BIN = 0.5 / (NUM_LEVELS - 1)
BASES = {"logistic": tfd.Logistic, "normal": tfd.Normal}


# Below this h·max(1, |u|) (h the half bin and u the bin's centre, both in units of the scale), a
# Normal bin's mass is the midpoint rule with two Taylor corrections to float32 precision (the
# next term is < 2e-8 relative); above it the two log-CDFs differ by enough that their difference
# loses only ~1e-6 of the log mass.
_NORMAL_TAYLOR_LIMIT = 0.1


def _logistic_log_mass(loc, scale, x, half_bin: float) -> tf.Tensor:
  """discretized_log_mass of Logistic(loc, scale); all arguments broadcast, float32."""
  u = (x - loc) / scale
  h = half_bin / scale
  log_cdf_upper = tf.math.log_sigmoid(u + h)  # log F(x + δ)
  log_sf_lower = tf.math.log_sigmoid(h - u)  # log(1 − F(x − δ))
  # σ(b) − σ(a) = σ(b)·σ(−a)·(1 − e^(a−b)) exactly, with b − a = 2h formed without subtracting:
  # three factors none of which cancels, in either tail or at any scale.
  middle = log_cdf_upper + log_sf_lower + tfp.math.log1mexp(2.0 * h)
  return tf.where(x < half_bin, log_cdf_upper,
                  tf.where(x > 1.0 - half_bin, log_sf_lower, middle))


def _normal_log_mass(loc, scale, x, half_bin: float) -> tf.Tensor:
  """discretized_log_mass of Normal(loc, scale); all arguments broadcast, float32."""
  u = (x - loc) / scale
  h = half_bin / scale
  # A bin's mass is symmetric in u: take the left tail, where log Φ has no cancellation. (Not
  # −|u|, whose zero derivative at u = 0 would be wrong for the edge bins.)
  left = u <= 0.0
  t = tf.where(left, u, -u)
  log_cdf_upper = special_math.log_ndtr(t + h)
  log_cdf_lower = special_math.log_ndtr(t - h)  # ≤ log Φ(−h) < log 1/2
  narrow = h * tf.maximum(1.0, tf.abs(u)) < _NORMAL_TAYLOR_LIMIT
  # Where the bin is narrow the gap is tiny or exactly 0, and log1mexp(0) would send an infinite
  # gradient through tf.where; the narrow branch is taken there anyway.
  gap = tf.where(narrow, 1.0, log_cdf_upper - log_cdf_lower)
  wide = log_cdf_upper + tfp.math.log1mexp(gap)
  # ∫_{u−h}^{u+h} φ = 2h·φ(u)·(1 + h²(u² − 1)/6 + h⁴(u⁴ − 6u² + 3)/120 + O(h⁶u⁶)).
  h2, u2 = tf.square(h), tf.square(u)
  correction = h2 * (u2 - 1.0) / 6.0 + tf.square(h2) * (tf.square(u2) - 6.0 * u2 + 3.0) / 120.0
  midpoint = (tf.math.log(2.0 * h) - 0.5 * u2 - 0.5 * math.log(2.0 * math.pi)
              + tf.math.log1p(correction))
  # The edge bins' log Φ(u + h) and log Φ(h − u) from the same two log-CDFs: the one in the left
  # tail, or log(1 − Φ(t − h)) in the right one.
  log_sf_lower = tfp.math.log1mexp(log_cdf_lower)
  first = tf.where(left, log_cdf_upper, log_sf_lower)
  last = tf.where(left, log_sf_lower, log_cdf_upper)
  return tf.where(x < half_bin, first,
                  tf.where(x > 1.0 - half_bin, last, tf.where(narrow, midpoint, wide)))


def discretized_log_mass(base: tfd.Distribution, x, half_bin: float = HALF_BIN) -> tf.Tensor:
  """log of the mass a continuous `base` puts on the bin of level x, in nats.

  The levels are 0, 2δ, …, 1 with δ = half_bin (δ = 1/510 for 8-bit data, 0.5/(K − 1) for K
  levels); level x owns [x − δ, x + δ], the first and last bins stretched to −∞ and +∞ so the
  masses of all levels sum to 1.

  Every bin's log mass is exact to float32 precision (within ~1e-6 of its size, or of 1 nat,
  of the float64 value for the same inputs), at any scale down to far below the bin width and
  at any distance from the location, edge bins included: the edge bins are one log-CDF; a middle
  bin of a Logistic is the exact product σ(b)·σ(−a)·(1 − e^(a−b)) in log space, and of a Normal
  a difference of log-CDFs in the left tail, or the midpoint rule with Taylor corrections where
  the bin is narrow against the scale. (Density × bin width, which this used to take for bins
  below 1e-5, understates a tail bin by log(sinh(h)/h) nats for a Logistic, h = δ/scale, 7 nats
  at the models' smallest scale δ/10; for a Normal by about |u|·h nats, u the bin's distance
  from the location in scales.) Gradients are finite everywhere. The masses sum to 1 up
  to the float32 placement of the levels k/255 (3e-8), which leaves gaps or overlaps between
  neighbouring bins: within 1e-6 + 5e-8/scale.

  Args:
    base: a `tfd.Logistic` or `tfd.Normal`, batch shape broadcastable with x.
    x: float levels in [0, 1], [...].
    half_bin: δ.

  Returns:
    float32 [...] (x broadcast against base's batch shape), log masses ≤ 0.
  """
  x = tf.convert_to_tensor(x, tf.float32)
  if isinstance(base, tfd.Logistic):
    return _logistic_log_mass(base.loc, base.scale, x, half_bin)
  if isinstance(base, tfd.Normal):
    return _normal_log_mass(base.loc, base.scale, x, half_bin)
  raise TypeError(f"discretized_log_mass takes a Logistic or Normal base, got "
                  f"{type(base).__name__}")


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
    return discretized_log_mass(self._base(), x, HALF_BIN)

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


def coefficient_index(channel: int, earlier: int) -> int:
  """Row of the coefficient of channel `earlier` in channel `channel`'s location (earlier <
  channel): (1, 0) → 0, (2, 0) → 1, (2, 1) → 2, …"""
  return channel * (channel - 1) // 2 + earlier


class DiscretizedLogisticMixture(tfd.Distribution):
  """PixelCNN++'s discretized logistic mixture over the C channels of one pixel.

  p(x) = Σ_m π_m ∏_c L(x_c; μ_{c,m} + Σ_{j<c} a_{c,j,m} x_j, s_{c,m}), where L is a logistic
  discretized to `num_levels` levels in [0, 1] (discretized_log_mass) and the mixture component m
  is shared by the channels (Salimans et al. 2017, section 2.2). It is normalised for any
  parameters: summing over x_C, …, x_1 in turn leaves Σ_m π_m = 1.

  Batch shape [...], event shape [C].

  Args:
    logits: [..., M] mixture logits.
    locs: [..., C, M] locations μ before the linear dependence, in [0, 1] units.
    scales: [..., C, M] positive scales.
    coefficients: [..., C(C − 1)/2, M] the a_{c,j,m}, row coefficient_index(c, j).
    num_levels: K; levels k / (K − 1) (256 for 8-bit data).
  """

  def __init__(self, logits, locs, scales, coefficients, num_levels: int = NUM_LEVELS,
               validate_args=False, allow_nan_stats=True, name="DiscretizedLogisticMixture"):
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      self._logits = tf.convert_to_tensor(logits, tf.float32, name="logits")
      self._locs = tf.convert_to_tensor(locs, tf.float32, name="locs")
      self._scales = tf.convert_to_tensor(scales, tf.float32, name="scales")
      self._coefficients = tf.convert_to_tensor(coefficients, tf.float32, name="coefficients")
      self.num_levels = int(num_levels)
      self.half_bin = 0.5 / (self.num_levels - 1)
      self.num_channels = int(self._locs.shape[-2])
      super().__init__(dtype=tf.float32, reparameterization_type=tfd.NOT_REPARAMETERIZED,
                       validate_args=validate_args, allow_nan_stats=allow_nan_stats,
                       parameters=parameters, name=name)

  @classmethod
  def _parameter_properties(cls, dtype, num_classes=None):
    return dict(logits=tfp.util.ParameterProperties(event_ndims=1),
                locs=tfp.util.ParameterProperties(event_ndims=2),
                scales=tfp.util.ParameterProperties(event_ndims=2),
                coefficients=tfp.util.ParameterProperties(event_ndims=2))

  def _event_shape(self):
    return tf.TensorShape([self.num_channels])

  def _event_shape_tensor(self):
    return tf.constant([self.num_channels], tf.int32)

  def channel_locs(self, x: tf.Tensor, channel: int) -> tf.Tensor:
    """Channel `channel`'s component locations given the channels before it in x, [..., M]."""
    loc = self._locs[..., channel, :]
    for j in range(channel):
      loc = loc + self._coefficients[..., coefficient_index(channel, j), :] * x[..., j:j + 1]
    return loc

  def _channel_log_mass(self, x, channel):
    base = tfd.Logistic(self.channel_locs(x, channel), self._scales[..., channel, :])
    return discretized_log_mass(base, x[..., channel:channel + 1], self.half_bin)

  def joint_log_weights(self, x: tf.Tensor, channels: int) -> tf.Tensor:
    """log p(m, x_1 … x_channels) for every component m, [..., M] (channels = 0: log π)."""
    x = tf.convert_to_tensor(x, tf.float32)
    out = tf.nn.log_softmax(self._logits)
    for c in range(channels):
      out = out + self._channel_log_mass(x, c)
    return out

  def _log_prob(self, x):
    return tf.reduce_logsumexp(self.joint_log_weights(x, self.num_channels), axis=-1)

  def channel_mean(self, x: tf.Tensor, channel: int) -> tf.Tensor:
    """E[x_channel | the channels before it], [...]: the components weighted by their posterior,
    each by its clipped location (as Discretized8Bit's mean)."""
    weights = tf.nn.softmax(self.joint_log_weights(x, channel))
    locs = tf.clip_by_value(self.channel_locs(x, channel), 0.0, 1.0)
    return tf.reduce_sum(weights * locs, axis=-1)

  def conditional_means(self, x: tf.Tensor) -> tf.Tensor:
    """channel_mean of every channel given x's earlier channels, [..., C]."""
    return tf.stack([self.channel_mean(x, c) for c in range(self.num_channels)], axis=-1)

  def draw_channel(self, x: tf.Tensor, channel: int, seed: tf.Tensor):
    """Draws channel `channel` given the channels before it in x ([..., C]; later ones are
    ignored): a component from its posterior given those channels, then a level from it.

    Drawn channel by channel this way, whole pixels follow p(x) exactly, and a channel that is
    given (inpainting) conditions the ones after it.

    Returns:
      (value, mean), both [...] in [0, 1]: the level drawn and channel_mean.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    component_seed, value_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    log_weights = self.joint_log_weights(x, channel)
    num = tf.shape(log_weights)[-1]
    flat = tf.reshape(log_weights, [-1, num])
    component = tf.random.stateless_categorical(flat, 1, seed=component_seed, dtype=tf.int32)
    one_hot = tf.reshape(tf.one_hot(component[:, 0], num), tf.shape(log_weights))
    loc = tf.reduce_sum(one_hot * self.channel_locs(x, channel), -1)
    scale = tf.reduce_sum(one_hot * self._scales[..., channel, :], -1)
    # The logistic's inverse CDF; clipping to [0, 1] then rounding gives the end bins their tails.
    u = tf.random.stateless_uniform(tf.shape(loc), seed=value_seed, minval=1e-6,
                                    maxval=1.0 - 1e-6)
    draw = loc + scale * (tf.math.log(u) - tf.math.log1p(-u))
    top = self.num_levels - 1.0
    value = tf.round(tf.clip_by_value(draw, 0.0, 1.0) * top) / top
    return value, self.channel_mean(x, channel)

  def _sample_n(self, n, seed=None):
    seed = tfp.random.sanitize_seed(seed)
    shape = tf.concat([[n], self.batch_shape_tensor(), [self.num_channels]], 0)
    x = tf.zeros(shape)
    for c in range(self.num_channels):
      value, _ = self.draw_channel(x, c, tf.random.experimental.stateless_fold_in(seed, c))
      x = tf.concat([x[..., :c], value[..., None], x[..., c + 1:]], axis=-1)
    return x

  def _mean(self):
    raise NotImplementedError("the mixture's channel means depend on the earlier channels; use "
                              "conditional_means(x)")
