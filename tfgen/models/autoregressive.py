"""What the fully observed autoregressive models share: exact likelihoods, sampling, inpainting.

Every model here factorises p(x) = ∏_d p(x_{o(d)} | x_{o(<d)}) over the pixels in an ordering o
(raster order unless a model says otherwise). Pixels are Bernoulli for binary data and K-way
categorical otherwise (K = 256 over 8-bit intensities; K = the codebook size when the model is the
prior over a VQ-VAE's code grid, level k stored as k / (K − 1)), so the log-likelihood is exact,
in nats.

Sampling runs pixel by pixel inside one `tf.while_loop` (subclasses implement `_sample_loop`);
`conditioned_on` turns it into inpainting: pixels with a value in [0, 1] are kept, pixels marked
with a negative value are drawn, each given every pixel before it in the ordering.
"""

import abc

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import seeding
from tfgen import viz
from tfgen.models import base
from tfgen.models import capabilities as caps

tfd = tfp.distributions

UNKNOWN = -1.0  # The value that marks a pixel to fill in, in `conditioned_on`.


class AutoregressiveModel(base.GenerativeModel):
  """Base of NADE, MADE and the PixelCNNs.

  Args:
    image_shape: (H, W, C).
    num_levels: 2 for binary pixels (Bernoulli); K > 2 for K-way categorical pixels (256 for
      8-bit intensities), level k stored as k / (K − 1).
  """

  def __init__(self, image_shape, num_levels: int = 2, **kwargs):
    super().__init__(image_shape, **kwargs)
    if int(num_levels) < 2:
      raise errors.ConfigError(f"num_levels must be at least 2, got {num_levels}")
    self.num_levels = int(num_levels)

  @property
  def num_outputs(self) -> int:
    """Logits per pixel: 1 for a Bernoulli, K for a categorical."""
    return 1 if self.num_levels == 2 else self.num_levels

  @abc.abstractmethod
  def logits(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
    """Logits of every conditional given x: [B, H, W, C] (binary) or [B, H, W, C, K]."""

  def distribution(self, logits: tf.Tensor) -> tfd.Distribution:
    """The product of the per-pixel conditionals; event shape [H, W, C]."""
    logits = tf.cast(logits, tf.float32)  # float32 likelihoods under mixed precision.
    if self.num_levels == 2:
      return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), 3)
    return tfd.Independent(tfd.Categorical(logits=logits, dtype=tf.float32), 3)

  def targets(self, x: tf.Tensor) -> tf.Tensor:
    """Pixel values as the distribution sees them: {0, 1}, or levels 0..K − 1."""
    return x if self.num_levels == 2 else tf.round(x * (self.num_levels - 1.0))

  @classmethod
  def data_kwargs(cls, info):
    return {"num_levels": info.num_levels}

  DATA_FIELDS = ("num_levels",)
  # Classes of a class-conditional model, which reads batch["label"]; None: unconditional.
  num_classes = None

  def _logits_of(self, batch, training=False):
    """Logits given the batch's images, and their labels for class-conditional models."""
    x = self.images(batch)
    if self.num_classes is None:
      return x, self.logits(x, training=training)
    return x, self.logits(x, training=training, labels=batch["label"])

  def log_prob(self, batch, seed=None, num_importance_samples=None):
    """Exact log p(x) (log p(x | y) for class-conditional models) in nats, [B]; nothing is drawn."""
    del seed, num_importance_samples
    x, logits = self._logits_of(batch)
    return self.distribution(logits).log_prob(self.targets(x))

  def loss(self, batch, seed, training=False):
    x, logits = self._logits_of(batch, training)
    log_prob = self.distribution(logits).log_prob(self.targets(x))
    return -log_prob, {"log_prob": log_prob, "bits_per_dim": self.bits_per_dim(log_prob)}

  def bounds(self, batch, seed):
    return {"log_prob": self.log_prob(batch)}

  def sample(self, num, seed, mean=False, conditioned_on=None, labels=None):
    """Draws images pixel by pixel, [num, H, W, C] in [0, 1].

    Args:
      num: number of images (ignored when conditioned_on is given: its batch size is used).
      seed: int32 [2].
      mean: return, for every pixel, the mean of its conditional given the pixels drawn before
        it, instead of the draw.
      conditioned_on: optional float [num, H, W, C]; pixels ≥ 0 are kept as they are, pixels
        < 0 (UNKNOWN) are filled in — inpainting.
      labels: int32 [num], the classes of a class-conditional model (default: every class in
        turn).
    """
    if labels is not None and self.num_classes is None:
      raise errors.ConfigError(f"{type(self).__name__} is not class-conditional")
    if conditioned_on is None:
      known = tf.zeros((num,) + self.image_shape, tf.bool)
      values = tf.zeros((num,) + self.image_shape)
    else:
      conditioned_on = self.check_images(conditioned_on)
      known = conditioned_on >= 0.0
      values = tf.where(known, conditioned_on, 0.0)
    extra = {}
    if self.num_classes is not None:
      extra["labels"] = (tf.range(tf.shape(values)[0]) % self.num_classes if labels is None
                         else labels)
    draws, means = self._sample_loop(tf.shape(values)[0], seed, known, values, **extra)
    return means if mean else draws

  # --- Declared capabilities -------------------------------------------------------------------

  def signatures(self):
    """sample, log_prob (exact) and inpaint; class-conditional models take labels in log_prob,
    draw classes uniformly in sample and given ones in sample_labels."""
    out = super().signatures()
    images, seed = caps.Input(caps.IMAGES), caps.Input(caps.SEED)

    def inpaint(images, known, seed):
      # Pixels where `known` is 0 are drawn given the pixels before them.
      conditioned_on = tf.where(tf.cast(known, tf.bool), images, UNKNOWN)
      return {"images": self.sample(tf.shape(images)[0], seed, conditioned_on=conditioned_on)}

    out["inpaint"] = caps.Signature(inpaint, (images, caps.Input(caps.KNOWN), seed),
                                    {"images": (caps.PIXELS, caps.IMAGE)})
    if self.num_classes is None:
      return out
    classes = caps.Input(caps.LABELS, self.num_classes)

    def log_prob(images, labels, seed):
      return self.scores(self.log_prob({"image": images, "label": labels}, seed))

    out.update(self.labelled_sample_signatures(self.num_classes))
    out["log_prob"] = caps.Signature(log_prob, (images, classes), out["log_prob"].outputs)
    return out

  def sample_modes(self):
    modes = super().sample_modes()
    if self.num_classes is not None:
      modes["samples"] = caps.SampleMode(
          self._samples_picture, uses_label=True,
          help="draw from the model: class --label, or every class in turn")
    modes["inpaint"] = caps.SampleMode(
        self._inpaint_picture, needs_test_data=True, uses_label=self.num_classes is not None,
        help="keep the top half of --num test images and draw the bottom half")
    return modes

  def _class_labels(self, request):
    if self.num_classes is None:
      return {}
    labels = (np.full([request.num], request.label) if request.label >= 0
              else np.arange(request.num) % self.num_classes)
    return {"labels": tf.constant(labels, tf.int32)}

  def _samples_picture(self, request):
    images = self.compiled_sample(request.num, seed=seeding.as_seed(request.seed),
                                  mean=request.mean, **self._class_labels(request))
    return viz.image_grid(images.numpy(), request.num_columns)

  def _inpaint_picture(self, request):
    """Rows of originals and completions: the top half of each test image kept."""
    originals = next(iter(request.test.unbatch().batch(request.num)))["image"]
    rows = self.image_shape[0]
    known = tf.range(rows)[None, :, None, None] < rows // 2
    conditioned_on = tf.where(known, originals, UNKNOWN)
    filled = self.compiled_sample(request.num, seed=seeding.as_seed(request.seed),
                                  mean=request.mean, conditioned_on=conditioned_on,
                                  **self._class_labels(request))
    filled = tf.where(known, originals, filled)
    return viz.reconstruction_pairs(originals.numpy(), filled.numpy(),
                                    request.num_columns or 8)

  @abc.abstractmethod
  def _sample_loop(self, num, seed, known, values):
    """Runs the sampler; returns (draws, conditional means), both [num, H, W, C] in [0, 1]."""

  @staticmethod
  def place_pixel(image, means, known, values, r, c, value, mean, channel=0):
    """Writes channel `channel` of pixel (r, c) of every image: its draw (or the known value,
    when inpainting) into `image` and its conditional mean into `means`, both [num, H, W, C];
    returns (value, image, means) with value [num] as written."""
    num = tf.shape(image)[0]
    value = tf.where(known[:, r, c, channel], values[:, r, c, channel], value)
    index = tf.stack([tf.range(num), tf.fill([num], r), tf.fill([num], c),
                      tf.fill([num], channel)], axis=1)
    return (value, tf.tensor_scatter_nd_update(image, index, value),
            tf.tensor_scatter_nd_update(means, index, mean))

  def draw_pixel(self, logits: tf.Tensor, seed: tf.Tensor):
    """One pixel per image from its logits ([num] or [num, K]); returns (value, mean) in [0, 1]."""
    logits = tf.cast(logits, tf.float32)
    if self.num_levels == 2:
      probs = tf.sigmoid(logits)
      value = tf.cast(tf.random.stateless_uniform(tf.shape(probs), seed=seed) < probs, tf.float32)
      return value, probs
    level = tf.random.stateless_categorical(logits, 1, seed=seed, dtype=tf.int32)[:, 0]
    probs = tf.nn.softmax(logits)
    top = self.num_levels - 1.0
    mean = tf.reduce_sum(probs * tf.range(self.num_levels, dtype=tf.float32), axis=-1) / top
    return tf.cast(level, tf.float32) / top, mean
