"""The model contract every tfgen model keeps.

A model is a Keras 3 subclassed model that owns its loss. The training loop, the evaluator, the
samplers and the exporters see only this API:

  * `loss(batch, seed, training)` -> (per-example loss [B], per-example metrics {name: [B]}). The
    loop averages over the global batch itself, so the loss must not be averaged here.
  * `bounds(x, seed)` -> per-example log-likelihood terms or bounds {name: [B]} in nats.
    Class-conditional models (`class_conditional` True) also take `labels` in `bounds` and
    `log_prob`, and read `batch["label"]` in `loss`.
  * `log_prob(x, seed, num_importance_samples)` -> per-example log-likelihood [B] in nats: exact
    for fully observed models, an importance-sampled estimate for latent-variable models.
  * `sample(num, seed, mean=False)` -> images [num, H, W, C]; `mean=True` returns the pixel
    probabilities (or means) of the last conditional instead of a draw.

Latent-variable models add `encode(x)` and `decode(z)`, which return TFP distributions, `prior()`,
`reconstruct(x, seed)` and `posterior_means(x, seed)` (for active units).

Randomness is explicit: every method that draws takes a stateless `seed` (int32 [2]), so results
are reproducible and `tf.function` never depends on hidden random state.
"""

import abc
from typing import Dict, List, Optional, Tuple

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import seeding

tfd = tfp.distributions

Metrics = Dict[str, tf.Tensor]


class GenerativeModel(keras.Model, metaclass=abc.ABCMeta):
  """Base class of every tfgen model.

  Args:
    image_shape: (H, W, C) of the images the model is built for.
  """

  def __init__(self, image_shape, **kwargs):
    super().__init__(**kwargs)
    # Keras' Trainer sets `self.loss = None` for compile(); tfgen models never compile and the
    # contract's `loss` is a method, so drop the attribute that would shadow it.
    del self.loss
    self.image_shape = tuple(int(d) for d in image_shape)

  @property
  def event_size(self) -> int:
    """Number of pixel values per image (H·W·C)."""
    h, w, c = self.image_shape
    return h * w * c

  def check_images(self, x: tf.Tensor) -> tf.Tensor:
    """Returns x as float32, raising DataError when its trailing shape is not the model's."""
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 4 or (tuple(x.shape[1:]) != self.image_shape
                             and x.shape[1:].is_fully_defined()):
      raise errors.DataError(f"{type(self).__name__} expects images of shape "
                             f"[batch, {', '.join(map(str, self.image_shape))}], got {x.shape}")
    return tf.cast(x, tf.float32)

  @property
  def class_conditional(self) -> bool:
    """Whether the model's likelihood is conditioned on a class label."""
    return False

  @property
  def infers_labels(self) -> bool:
    """Whether the model also classifies, q(y | x), and gives log p(x) with y marginalised.

    Such models (the semi-supervised VAE) take `labels` where given but do not need them:
    `log_prob(x)` without labels is log p(x) = log Σ_y p(x, y), the test likelihood, and
    `bounds(x, seed, labels)` reports the classification error of q(y | x).
    """
    return False

  def build_for_images(self) -> None:
    """Creates every weight by running the model once on a dummy batch."""
    x = tf.zeros((2,) + self.image_shape)
    self.loss({"image": x, "label": tf.zeros([2], tf.int32)}, seed=tf.constant([0, 0]),
              training=False)
    self.built = True  # Keras only sets it through __call__, which the contract never uses.

  def update_schedules(self, step: tf.Tensor) -> None:
    """Sets the model's schedule variables (KL warm-up, VSC sharpness, ...) for a train step.

    The training loop calls it with the step number (int64 scalar) in cross-replica context
    before every step. Schedules live in non-trainable `tf.Variable`s, so the compiled step
    reads their values without retracing. Models without schedules keep this no-op.
    """
    del step

  @abc.abstractmethod
  def loss(self, batch: Dict[str, tf.Tensor], seed: tf.Tensor,
           training: bool = False) -> Tuple[tf.Tensor, Metrics]:
    """Per-example training loss and metrics.

    Args:
      batch: dict with `image` float32 [B, H, W, C] (and `label` int32 [B] where present).
      seed: int32 [2] stateless seed.
      training: whether layers such as batch norm use batch statistics.

    Returns:
      loss: float32 [B], what the optimizer minimizes (in nats per example).
      metrics: {name: float32 [B]}, averaged by the loop for logging.
    """

  @abc.abstractmethod
  def bounds(self, x: tf.Tensor, seed: tf.Tensor) -> Metrics:
    """Per-example log-likelihood terms or bounds in nats, {name: float32 [B]}."""

  @abc.abstractmethod
  def log_prob(self, x: tf.Tensor, seed: tf.Tensor,
               num_importance_samples: Optional[int] = None) -> tf.Tensor:
    """Per-example log p(x) in nats, float32 [B] (exact, or an importance-sampled estimate)."""

  @abc.abstractmethod
  def sample(self, num: int, seed: tf.Tensor, mean: bool = False) -> tf.Tensor:
    """Draws `num` images, float32 [num, H, W, C]."""


def chunked_logmeanexp(log_weights_fn, num_samples, chunk_size: int,
                       seed: tf.Tensor) -> tf.Tensor:
  """log (1/K) Σ exp(log wᵢ) over K = num_samples draws, made chunk_size at a time.

  Memory stays that of one chunk whatever K is; the running log-sum-exp keeps it exact. Chunk i
  draws min(chunk_size, K − i·chunk_size) samples with seed fold_in(seed, i).

  Args:
    log_weights_fn: (num, seed) -> log weights [num, B]; num may be a scalar tensor.
    num_samples: K, a Python int or an int32 scalar tensor (e.g. a SavedModel input).
    chunk_size: largest number of draws per call of log_weights_fn.
    seed: int32 [2].

  Returns:
    float32 [B].
  """
  num_samples = tf.convert_to_tensor(num_samples, tf.int32)
  chunk_size = tf.minimum(tf.constant(chunk_size, tf.int32), num_samples)
  num_chunks = (num_samples + chunk_size - 1) // chunk_size

  def chunk(i):
    size = tf.minimum(chunk_size, num_samples - i * chunk_size)
    return tf.reduce_logsumexp(log_weights_fn(size, seeding.fold_in(seed, i)), axis=0)

  def body(i, total):
    return i + 1, tf.reduce_logsumexp(tf.stack([total, chunk(i)]), axis=0)

  _, total = tf.while_loop(lambda i, _: i < num_chunks, body, (tf.constant(1), chunk(0)))
  return total - tf.math.log(tf.cast(num_samples, tf.float32))


class LatentVariableModel(GenerativeModel):
  """A model p(x) = ∫ p(x | z) p(z) dz fitted with an amortized posterior q(z | x)."""

  def log_weights(self, x: tf.Tensor, num_samples, seed: tf.Tensor) -> tf.Tensor:
    """log p(x, z) − log q(z | x) for num_samples draws z ~ q(z | x), float32 [num_samples, B]."""
    raise NotImplementedError(f"{type(self).__name__} defines no log_weights")

  def log_prob(self, x: tf.Tensor, seed: tf.Tensor, num_importance_samples: Optional[int] = None,
               chunk_size: int = 500) -> tf.Tensor:
    """IWAE_K estimate of log p(x), float32 [B] in nats, drawn chunk_size samples at a time.

    K defaults to the model's `num_importance_samples` (its training k).
    """
    x = self.check_images(x)
    # Not `or`: under tf.function a tensor k would turn it into a conditional on an integer.
    k = self.num_importance_samples if num_importance_samples is None else num_importance_samples
    return chunked_logmeanexp(lambda n, s: self.log_weights(x, n, s), k, chunk_size, seed)

  @abc.abstractmethod
  def encode(self, x: tf.Tensor, training: bool = False) -> tfd.Distribution:
    """q(z | x) for images x [B, H, W, C]; batch shape [B], event shape [latent size]."""

  @abc.abstractmethod
  def decode(self, z: tf.Tensor, training: bool = False) -> tfd.Distribution:
    """p(x | z) for latents z [..., latent size]; event shape [H, W, C]."""

  @abc.abstractmethod
  def prior(self) -> tfd.Distribution:
    """p(z) of the top latent layer; event shape [latent size]."""

  @abc.abstractmethod
  def posterior_means(self, x: tf.Tensor, seed: tf.Tensor) -> List[tf.Tensor]:
    """E_q[z_l] for every stochastic layer l, each [B, size_l] (for active units)."""

  def codes(self, x: tf.Tensor) -> tf.Tensor:
    """The deterministic code of each image, E_q[z_1], [B, latent size] (features for probes)."""
    return self.encode(self.check_images(x)).mean()

  def prob_active(self, x: tf.Tensor) -> tf.Tensor:
    """Per image and latent dimension, the probability the code uses it, [B, latent size].

    1 everywhere for dense codes; sparse-code models (VSC) return their posterior's γ.
    """
    codes = self.codes(x)
    return tf.ones_like(codes)

  def num_active_dimensions(self, x: tf.Tensor) -> Optional[tf.Tensor]:
    """Per-example count of latent dimensions the code uses, [B]; None for dense codes."""
    del x
    return None

  def reconstruct(self, x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Pixel means of p(x | z) at one draw z ~ q(z | x), [B, H, W, C]."""
    z = self.encode(self.check_images(x)).sample(seed=seed)
    return self.decode(z).mean()
