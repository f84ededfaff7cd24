"""What the fully observed autoregressive models share: exact likelihoods, sampling, inpainting.

Every model here factorises p(x) = ∏_d p(x_{o(d)} | x_{o(<d)}) over the pixels in an ordering o
(raster order unless a model says otherwise). Pixels are Bernoulli for binary data and 256-way
categorical over 8-bit intensities otherwise, so the log-likelihood is exact, in nats.

Sampling runs pixel by pixel inside one `tf.while_loop` (subclasses implement `_sample_loop`);
`conditioned_on` turns it into inpainting: pixels with a value in [0, 1] are kept, pixels marked
with a negative value are drawn, each given every pixel before it in the ordering.
"""

import abc
import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen.models import base

tfd = tfp.distributions

UNKNOWN = -1.0  # The value that marks a pixel to fill in, in `conditioned_on`.


class AutoregressiveModel(base.GenerativeModel):
  """Base of NADE, MADE and the PixelCNNs.

  Args:
    image_shape: (H, W, C).
    num_levels: 2 for binary pixels (Bernoulli), 256 for 8-bit intensities (categorical).
  """

  def __init__(self, image_shape, num_levels: int = 2, **kwargs):
    super().__init__(image_shape, **kwargs)
    if num_levels not in (2, 256):
      raise errors.ConfigError(f"num_levels must be 2 or 256, got {num_levels}")
    self.num_levels = num_levels

  @property
  def num_outputs(self) -> int:
    """Logits per pixel: 1 for a Bernoulli, 256 for a categorical."""
    return 1 if self.num_levels == 2 else self.num_levels

  @abc.abstractmethod
  def logits(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
    """Logits of every conditional given x: [B, H, W, C] (binary) or [B, H, W, C, 256]."""

  def distribution(self, logits: tf.Tensor) -> tfd.Distribution:
    """The product of the per-pixel conditionals; event shape [H, W, C]."""
    if self.num_levels == 2:
      return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), 3)
    return tfd.Independent(tfd.Categorical(logits=logits, dtype=tf.float32), 3)

  def targets(self, x: tf.Tensor) -> tf.Tensor:
    """Pixel values as the distribution sees them: {0, 1}, or intensities 0..255."""
    return x if self.num_levels == 2 else tf.round(x * 255.0)

  def _logits_given(self, x, labels, training=False):
    """Logits, passing labels on only to class-conditional models."""
    if labels is None:
      return self.logits(x, training=training)
    return self.logits(x, training=training, labels=labels)

  def log_prob(self, x, seed=None, num_importance_samples=None, chunk_size=None, labels=None):
    """Exact log p(x) (log p(x | y) given labels) in nats, [B]; nothing is drawn."""
    del seed, num_importance_samples, chunk_size
    x = self.check_images(x)
    return self.distribution(self._logits_given(x, labels)).log_prob(self.targets(x))

  def loss(self, batch, seed, training=False):
    x = self.check_images(batch["image"])
    labels = batch.get("label") if self.class_conditional else None
    log_prob = self.distribution(self._logits_given(x, labels, training)).log_prob(
        self.targets(x))
    return -log_prob, {"log_prob": log_prob,
                       "bits_per_dim": -log_prob / (self.event_size * math.log(2.0))}

  def bounds(self, x, seed, labels=None):
    return {"log_prob": self.log_prob(x, labels=labels)}

  @property
  def class_conditional(self) -> bool:
    """Whether the model needs labels (conditional models override this)."""
    return False

  def sample(self, num, seed, mean=False, conditioned_on=None, labels=None):
    """Draws images pixel by pixel, [num, H, W, C] in [0, 1].

    Args:
      num: number of images (ignored when conditioned_on is given: its batch size is used).
      seed: int32 [2].
      mean: return, for every pixel, the mean of its conditional given the pixels drawn before
        it, instead of the draw.
      conditioned_on: optional float [num, H, W, C]; pixels ≥ 0 are kept as they are, pixels
        < 0 (UNKNOWN) are filled in — inpainting.
      labels: int32 [num], the classes of a class-conditional model.
    """
    if labels is not None and not self.class_conditional:
      raise errors.ConfigError(f"{type(self).__name__} is not class-conditional")
    if conditioned_on is None:
      known = tf.zeros((num,) + self.image_shape, tf.bool)
      values = tf.zeros((num,) + self.image_shape)
    else:
      conditioned_on = self.check_images(conditioned_on)
      known = conditioned_on >= 0.0
      values = tf.where(known, conditioned_on, 0.0)
    extra = {"labels": labels} if labels is not None else {}
    draws, means = self._sample_loop(tf.shape(values)[0], seed, known, values, **extra)
    return means if mean else draws

  @abc.abstractmethod
  def _sample_loop(self, num, seed, known, values):
    """Runs the sampler; returns (draws, conditional means), both [num, H, W, C] in [0, 1]."""

  def draw_pixel(self, logits: tf.Tensor, seed: tf.Tensor):
    """One pixel per image from its logits ([num] or [num, 256]); returns (value, mean) in [0, 1]."""
    if self.num_levels == 2:
      probs = tf.sigmoid(logits)
      value = tf.cast(tf.random.stateless_uniform(tf.shape(probs), seed=seed) < probs, tf.float32)
      return value, probs
    level = tf.random.stateless_categorical(logits, 1, seed=seed, dtype=tf.int32)[:, 0]
    probs = tf.nn.softmax(logits)
    mean = tf.reduce_sum(probs * tf.range(256, dtype=tf.float32), axis=-1) / 255.0
    return tf.cast(level, tf.float32) / 255.0, mean
