"""MADE: masked autoencoder for distribution estimation.

Factorisation p(x) = ∏_d p(x_{o(d)} | x_{o(<d)}) over an ordering o, computed by one masked MLP:
each input pixel gets the degree m(x_i) = its position in o (1..D), each hidden unit a degree
m(k) drawn in [min degree of the layer below, D − 1], and a weight from unit k' to unit k is kept
only when m(k) ≥ m(k') (hidden) or m(x_d) > m(k) (output). Output d then depends only on the
pixels before it in o — the autoregressive property, tested with gradients.

Training resamples the connectivity among `num_masks` fixed sets of hidden degrees (one set
per step); at test time the likelihood can be averaged over several of them,
log (1/M) Σ_m p_m(x) — the paper's ensemble. With `reorder_masks`, each set after the first also
draws its own ordering of the pixels (the authors' "Full" shuffling); the first keeps
`ordering`, which sampling follows. With `direct_connection`, a masked linear map from the
inputs adds to the output logits (output d sees input i when m(x_d) > m(x_i)), as in the
authors' best MNIST model. Sampling carries the first hidden layer's pre-activations forward
pixel by pixel, so with one hidden layer a sample costs O(DH).

References:
  Germain, Gregor, Murray & Larochelle, "MADE: Masked Autoencoder for Distribution Estimation",
    ICML 2015.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from tfgen import errors
from tfgen import layers
from tfgen import seeding
from tfgen.models import autoregressive
from tfgen.models import nade
from tfgen.models import registry


def made_degrees(degrees_in: np.ndarray, hidden_sizes, rng):
  """The hidden units' degrees of one connectivity: a list of [H_l] int arrays.

  Args:
    degrees_in: [D] input degrees 1..D.
    hidden_sizes: units per hidden layer.
    rng: numpy RandomState drawing the degrees, each in [min degree of the layer below, D − 1].
  """
  d = len(degrees_in)
  degrees, hidden = degrees_in, []
  for size in hidden_sizes:
    low = min(int(degrees.min()), d - 1)
    degrees = rng.randint(low, d, size=size)
    hidden.append(degrees)
  return hidden


def made_layer_degrees(degrees_in: np.ndarray, hidden_degrees, num_outputs: int):
  """(fan-in degrees, fan-out thresholds) of each layer: the weight from unit i to unit j is
  kept when threshold_j ≥ degree_i. Hidden units keep m(k) ≥ m(k'); output d keeps
  m(x_d) > m(k), i.e. m(x_d) − 1 ≥ m(k), so output thresholds are the input degrees − 1."""
  fan_in = [degrees_in] + list(hidden_degrees)
  fan_out = list(hidden_degrees) + [np.repeat(degrees_in, num_outputs) - 1]
  return list(zip(fan_in, fan_out))


def made_masks(degrees_in: np.ndarray, hidden_sizes, num_outputs: int, rng):
  """Masks of one connectivity.

  Args:
    degrees_in: [D] input degrees 1..D.
    hidden_sizes: units per hidden layer.
    num_outputs: outputs per pixel (1 or 256).
    rng: numpy RandomState drawing the hidden degrees.

  Returns:
    A list of float32 masks: [D, H1], [H1, H2], ..., [H_L, D·num_outputs].
  """
  hidden = made_degrees(degrees_in, hidden_sizes, rng)
  return [(thresholds[None, :] >= degrees[:, None]).astype(np.float32)
          for degrees, thresholds in made_layer_degrees(degrees_in, hidden, num_outputs)]


def _mask(layer_degrees, mask_index, dtype):
  """[fan_in, fan_out] mask of connectivity `mask_index` from a layer's ([M, fan_in] degrees,
  [M, fan_out] thresholds): unit j keeps the weight from unit i when threshold_j ≥ degree_i."""
  degrees, thresholds = (tf.gather(ends, mask_index) for ends in layer_degrees)
  return tf.cast(thresholds[None, :] >= degrees[:, None], dtype)


@registry.MODELS.register("made")
class MADE(autoregressive.AutoregressiveModel):
  """MADE with resampled connectivity and an ensemble of masks at test time.

  Args:
    image_shape: (H, W, C).
    hidden_sizes: units per hidden layer (two of 8000 in the authors' command for their best
      MNIST result).
    num_masks: connectivities trained (and available to the ensemble).
    num_eval_masks: masks averaged by log_prob (1: the first mask alone).
    ordering: "natural" or "random": the ordering of the first connectivity (the one sampling
      and a single-mask log_prob use).
    num_levels: 2 (Bernoulli) or K > 2 (K-way categorical).
    seed: draws the ordering and the hidden degrees.
    reorder_masks: each connectivity after the first draws its own random ordering.
    direct_connection: add a masked linear map from the inputs to the output logits.
    kernel_initializer: a Keras initializer name for the kernels: "glorot_uniform", or
      "orthogonal" (the authors' command: (semi-)orthogonal kernels, rows or columns orthonormal).
  """

  def __init__(self, image_shape, hidden_sizes=(500,), num_masks: int = 1,
               num_eval_masks: int = 1, ordering: str = "natural", num_levels: int = 2,
               seed: int = 0, reorder_masks: bool = False, direct_connection: bool = False,
               kernel_initializer: str = "glorot_uniform", **kwargs):
    super().__init__(image_shape, num_levels, **kwargs)
    if not 1 <= num_eval_masks <= num_masks:
      raise errors.ConfigError(f"num_eval_masks must lie in [1, num_masks={num_masks}], "
                               f"got {num_eval_masks}")
    d, k = self.event_size, self.num_outputs
    self.order = nade.make_ordering(ordering, d, seed)
    self.num_masks, self.num_eval_masks = num_masks, num_eval_masks
    self.reorder_masks, self.direct_connection = bool(reorder_masks), bool(direct_connection)
    # A separate generator for the orderings, so the hidden degrees are those drawn without them.
    orders = [self.order] + [
        np.random.RandomState(seed + 2 + m).permutation(d) if self.reorder_masks else self.order
        for m in range(1, num_masks)]
    rng = np.random.RandomState(seed + 1)
    sets = []
    for order in orders:
      degrees_in = np.empty(d, np.int64)
      degrees_in[order] = np.arange(1, d + 1)
      sets.append(made_layer_degrees(degrees_in, made_degrees(degrees_in, hidden_sizes, rng), k))
    # Per layer, ([num_masks, fan_in] degrees, [num_masks, fan_out] thresholds): a mask is
    # computed from them where it is used, which XLA fuses into the kernel's product instead
    # of reading a stored [fan_in, fan_out] mask (25 MB per layer at 8,000 hidden units).
    self.layer_degrees = [
        tuple(tf.constant(np.stack([connectivity[layer][end] for connectivity in sets]),
                          tf.int32) for end in (0, 1))
        for layer in range(len(hidden_sizes) + 1)]
    sizes = [d] + list(hidden_sizes) + [d * k]
    try:
      keras.initializers.get(kernel_initializer)
    except ValueError as e:
      raise errors.ConfigError(f"unknown kernel_initializer {kernel_initializer!r}; e.g. "
                               "'glorot_uniform' or 'orthogonal'") from e
    # By name, so that every layer gets its own initializer and so its own draws.
    self.dense = layers.track_list(
        self, "dense", [keras.layers.Dense(n, kernel_initializer=kernel_initializer)
                        for n in sizes[1:]])
    for layer, fan_in in zip(self.dense, sizes[:-1]):
      layer.build((None, fan_in))
    if self.direct_connection:
      self.direct = keras.layers.Dense(d * k, use_bias=False,
                                       kernel_initializer=kernel_initializer)
      self.direct.build((None, d))

  def mask(self, layer: int, mask_index, dtype=tf.float32):
    """The mask of `layer` in connectivity `mask_index`, [fan_in, fan_out]."""
    return _mask(self.layer_degrees[layer], mask_index, dtype)

  def _masked(self, layer: int, mask_index):
    kernel = self.dense[layer].kernel
    return kernel * self.mask(layer, mask_index, kernel.dtype)

  def _masked_direct(self, mask_index):
    """The direct connection's masked kernel of connectivity `mask_index`, [D, D·K]: output d
    sees input i when m(x_d) − 1 ≥ m(x_i), i.e. the input layer's degrees against the output
    layer's thresholds."""
    kernel = self.direct.kernel
    ends = (self.layer_degrees[0][0], self.layer_degrees[-1][1])
    return kernel * _mask(ends, mask_index, kernel.dtype)

  def _logits_with_mask(self, x, mask_index):
    x_flat = tf.reshape(x, [-1, self.event_size])
    h = x_flat
    for i, layer in enumerate(self.dense):
      h = h @ self._masked(i, mask_index) + layer.bias
      if i < len(self.dense) - 1:
        h = tf.nn.relu(h)
    if self.direct_connection:
      h = h + x_flat @ self._masked_direct(mask_index)
    if self.num_levels == 2:
      return tf.reshape(h, (-1,) + self.image_shape)
    return tf.reshape(h, (-1,) + self.image_shape + (self.num_outputs,))

  def logits(self, x, training=False, mask_index=0):
    return self._logits_with_mask(self.check_images(x), mask_index)

  def loss(self, batch, seed, training=False):
    x = self.images(batch)
    # One connectivity per step, drawn from the step's seed among the num_masks sets.
    mask_index = tf.random.stateless_uniform([], seed=seed, maxval=self.num_masks,
                                             dtype=tf.int32) if training else 0
    log_prob = self.distribution(self._logits_with_mask(x, mask_index)).log_prob(
        self.targets(x))
    return -log_prob, {"log_prob": log_prob, "bits_per_dim": self.bits_per_dim(log_prob)}

  def log_prob(self, batch, seed=None, num_importance_samples=None):
    """Exact log p(x) [B]; with num_eval_masks > 1, of the ensemble (1/M) Σ_m p_m(x)."""
    del seed, num_importance_samples
    x = self.images(batch)
    targets = self.targets(x)
    per_mask = tf.stack([self.distribution(self._logits_with_mask(x, m)).log_prob(targets)
                         for m in range(self.num_eval_masks)])
    return tf.reduce_logsumexp(per_mask, axis=0) - math.log(self.num_eval_masks)

  def _sample_loop(self, num, seed, known, values):
    d_total, k = self.event_size, self.num_outputs
    known_flat = tf.reshape(known, [-1, d_total])
    values_flat = tf.reshape(values, [-1, d_total])
    # The masked kernels of the first connectivity, computed once rather than at every pixel.
    kernels = [self._masked(i, 0) for i in range(len(self.dense))]
    first = kernels[0]  # [D, H1]
    direct = self._masked_direct(0) if self.direct_connection else None
    order = tf.constant(self.order, tf.int32)

    def step(position, a, image, means):
      pixel = tf.gather(order, position)
      h = tf.nn.relu(a)
      for i in range(1, len(self.dense) - 1):
        h = tf.nn.relu(h @ kernels[i] + self.dense[i].bias)
      # Only this pixel's outputs: its columns of the masked output layer.
      columns = tf.range(k) + pixel * k
      out_kernel = tf.gather(kernels[-1], columns, axis=1)
      logits = h @ out_kernel + tf.gather(self.dense[-1].bias, columns)
      if direct is not None:  # Pixels not drawn yet are 0 in `image`, and masked anyway.
        logits = logits + image @ tf.gather(direct, columns, axis=1)
      logits = logits[:, 0] if self.num_levels == 2 else logits
      value, mean = self.draw_pixel(logits, seeding.fold_in(seed, position))
      value = tf.where(known_flat[:, pixel], values_flat[:, pixel], value)
      index = tf.stack([tf.range(num), tf.fill([num], pixel)], axis=1)
      image = tf.tensor_scatter_nd_update(image, index, value)
      means = tf.tensor_scatter_nd_update(means, index, mean)
      a = a + value[:, None] * first[pixel]
      return position + 1, a, image, means

    a0 = tf.zeros([num, first.shape[1]]) + self.dense[0].bias
    zeros = tf.zeros([num, d_total])
    _, _, image, means = tf.while_loop(lambda p, *_: p < d_total, step,
                                       (tf.constant(0), a0, zeros, zeros))
    shape = tf.concat([[num], self.image_shape], 0)
    return tf.reshape(image, shape), tf.reshape(means, shape)
