"""Pixel likelihoods p(x | ·) that decoders choose from the config (`model.likelihood`).

  * "bernoulli": Bernoulli pixels with logits. Exact for binary images; on grey-scale
    intensities in [0, 1] it is the cross-entropy most VAE papers (VSC among them) train with,
    which is not a normalized likelihood of 8-bit data.
  * "logistic" / "normal": a Logistic or Normal discretized onto the 256 levels of 8-bit data
    (`Discretized8Bit`), so log-likelihoods are proper, in nats, and give bits per dimension.
    The scale is learned per pixel (`learned_scale`, from a second decoder output) or fixed.
  * "categorical": a 256-way softmax over the levels of 8-bit data (`Categorical8Bit`), 256
    decoder outputs per pixel value: no shape imposed on the distribution of a pixel.

The decoder outputs `num_params` values per pixel value; `distribution(params)` reshapes them
and returns a `tfd.Independent` with event shape [H, W, C].
"""

from typing import Tuple

import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import registry
from tfgen.distributions import discretized

tfd = tfp.distributions

LIKELIHOODS = registry.Registry("likelihood")

# Floor of learned scales, a tenth of half a bin (a twentieth of a bin width): below it a bin's
# mass is all but 1 and the discretized likelihood stops changing.
MIN_SCALE = 0.1 * discretized.HALF_BIN


class PixelLikelihood:
  """Builds p(x | ·) over images of one shape from a decoder's raw outputs.

  Args:
    image_shape: (H, W, C).
    learned_scale: for continuous kinds, whether the decoder predicts the scale per pixel.
    fixed_scale: the scale when it is not learned (in [0, 1] pixel units).
  """

  binary_only = False
  num_params = 1

  def __init__(self, image_shape: Tuple[int, int, int], learned_scale: bool = True,
               fixed_scale: float = 0.1):
    self.image_shape = tuple(int(d) for d in image_shape)
    self.learned_scale = learned_scale
    self.fixed_scale = fixed_scale

  @property
  def event_size(self) -> int:
    h, w, c = self.image_shape
    return h * w * c

  def _split(self, params: tf.Tensor):
    """[..., num_params·H·W·C] or [..., H, W, num_params·C] to num_params tensors [..., H, W, C]."""
    # Likelihoods are float32 whatever precision the network computed in.
    params = tf.cast(params, tf.float32)
    flat = params.shape.rank is not None and params.shape[-1] == self.num_params * self.event_size
    if flat:
      batch = tf.shape(params)[:-1]
      parts = tf.split(params, self.num_params, axis=-1)
      return [tf.reshape(p, tf.concat([batch, self.image_shape], 0)) for p in parts]
    return tf.split(params, self.num_params, axis=-1)

  def distribution(self, params: tf.Tensor) -> tfd.Distribution:
    raise NotImplementedError


@LIKELIHOODS.register("bernoulli")
class Bernoulli(PixelLikelihood):
  """Bernoulli pixels; params are logits."""

  def distribution(self, params):
    (logits,) = self._split(params)
    return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), 3)


class _Discretized(PixelLikelihood):
  base = ""

  def __init__(self, image_shape, learned_scale=True, fixed_scale=0.1):
    super().__init__(image_shape, learned_scale, fixed_scale)
    if not learned_scale and fixed_scale <= 0:
      raise errors.ConfigError(f"a fixed likelihood scale must be > 0, got {fixed_scale}")
    self.num_params = 2 if learned_scale else 1

  def distribution(self, params):
    parts = self._split(params)
    # The location is predicted unconstrained around mid-grey; no squashing, so the gradient
    # does not vanish at black and white pixels.
    loc = parts[0] + 0.5
    if self.learned_scale:
      scale = tf.nn.softplus(parts[1]) + MIN_SCALE
    else:
      scale = tf.fill(tf.shape(loc), tf.constant(self.fixed_scale, tf.float32))
    return tfd.Independent(discretized.Discretized8Bit(loc, scale, self.base), 3)


@LIKELIHOODS.register("logistic")
class DiscretizedLogistic(_Discretized):
  """Discretized logistic over 8-bit levels; params are (location − 0.5, raw scale)."""

  base = "logistic"


@LIKELIHOODS.register("normal")
class DiscretizedNormal(_Discretized):
  """Discretized Normal over 8-bit levels; params are (location − 0.5, raw scale)."""

  base = "normal"


def build(name: str, image_shape, binary: bool, learned_scale: bool = True,
          fixed_scale: float = 0.1) -> PixelLikelihood:
  """The likelihood `name` for images of `image_shape`.

  Raises:
    ConfigError: unknown name, or a continuous likelihood asked of binary images.
  """
  cls = LIKELIHOODS.get(name)
  if binary and cls is not Bernoulli:
    raise errors.ConfigError(f"likelihood {name!r} models 8-bit intensities, but the data are "
                             "binarized; use 'bernoulli' or --config.data.binarization=none")
  return cls(image_shape, learned_scale, fixed_scale)


@LIKELIHOODS.register("categorical")
class Categorical(PixelLikelihood):
  """A 256-way categorical over the 8-bit levels; params are 256 logits per pixel value."""

  num_params = discretized.NUM_LEVELS

  def distribution(self, params):
    logits = tf.stack(self._split(params), axis=-1)  # [..., H, W, C, 256]
    return tfd.Independent(discretized.Categorical8Bit(logits), 3)
