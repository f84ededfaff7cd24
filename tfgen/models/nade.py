"""NADE: the neural autoregressive distribution estimator.

Factorisation, over the pixels in an ordering o (raster order by default):

  p(x) = ∏_d p(x_{o(d)} | x_{o(<d)}),
  p(x_{o(d)} | x_{o(<d)}) = Bernoulli(σ(b_d + V_d · h_d))    (or a 256-way softmax of V_d · h_d + b_d)
  h_d = σ(a_d),  a_d = c + Σ_{j<d} W_j x_{o(j)}

The hidden layers of all D conditionals share W, so a_{d+1} = a_d + W_d x_{o(d)}: every a_d comes
from one prefix sum, O(DH) work rather than O(D²H). The prefix sum is computed in blocks (a
matrix product per block for the within-block sums plus a short cumulative sum across blocks),
which is several times faster in TensorFlow than a cumulative sum over D. With
`recurrence="sequential"` the conditionals are instead computed as the recurrence itself, one
pixel per iteration of a `tf.while_loop` carrying a_d: O(DH) work with no [B, D, H] tensor of
pre-activations. Run op by op that loop is slow, but compiled by XLA (`train.jit_compile`) it
is the fastest form on a CPU: bench/loop_speed.py measures both. Sampling carries a_d forward
inside one `tf.while_loop` either way, so drawing an image also costs O(DH).

References:
  Larochelle & Murray, "The Neural Autoregressive Distribution Estimator", AISTATS 2011.
  Uria, Côté, Gregor, Murray & Larochelle, "Neural Autoregressive Distribution Estimation",
    JMLR 2016.
"""

import math

import numpy as np
import tensorflow as tf

from tfgen import errors
from tfgen import seeding
from tfgen.models import autoregressive
from tfgen.models import registry


def make_ordering(name: str, size: int, seed: int = 0) -> np.ndarray:
  """A permutation of range(size): "natural" (raster order) or "random" (seeded)."""
  if name == "natural":
    return np.arange(size)
  if name == "random":
    return np.random.RandomState(seed).permutation(size)
  raise errors.ConfigError(f"unknown ordering {name!r}; known: natural, random")


def _block_size(size: int) -> int:
  """The largest divisor of size not above √size (28 for 784)."""
  for block in range(int(math.isqrt(size)), 0, -1):
    if size % block == 0:
      return block
  return 1


@tf.custom_gradient
def _recurrence(inputs, input_weight, hidden_bias, output_weight):
  """NADE's conditionals by the recurrence a_{d+1} = a_d + W_d x_d, with a hand-written gradient.

  Automatic differentiation of the forward loop keeps every a_d ([D, B, H], 157 MB at batch 100)
  and differentiates the per-pixel slices of W and V; the backward loop here instead walks the
  pixels in reverse, recovering a_d = a_{d+1} − W_d x_d by subtraction and carrying
  r_d = Σ_{d' > d} ∂L/∂a_{d'}, from which ∂L/∂W_d = Σ_b x_{bd} r_{bd}. Compiled by XLA on a
  2-core CPU it trains NADE at about 1.5x the automatic gradient (a side-by-side scratch run,
  docs/speed.md). Callers pass float32: the subtraction would drift in a 16-bit format.

  Args:
    inputs: x in the ordering, [B, D].
    input_weight: W, [D, H].
    hidden_bias: c, [H].
    output_weight: V, [D, H, K].

  Returns:
    V_d · σ(a_d) for every d, [B, D, K] (the output bias not added).
  """
  size, hidden_size = input_weight.shape
  inputs_by_pixel = tf.transpose(inputs)  # [D, B]: one row per iteration.
  arrays = lambda: tf.TensorArray(inputs.dtype, size=size)

  def step(d, a, outputs):
    outputs = outputs.write(d, tf.matmul(tf.sigmoid(a), output_weight[d]))
    return d + 1, a + inputs_by_pixel[d][:, None] * input_weight[d][None, :], outputs

  a0 = tf.zeros([tf.shape(inputs)[0], hidden_size], inputs.dtype) + hidden_bias
  _, a_last, outputs = tf.while_loop(lambda d, *_: d < size, step,
                                     (tf.constant(0), a0, arrays()), maximum_iterations=size)

  def gradient(upstream):
    upstream_by_pixel = tf.transpose(upstream, [1, 0, 2])  # [D, B, K]

    def back(d, a, later, d_input_weight, d_output_weight, d_inputs):
      x_d, g_d = inputs_by_pixel[d], upstream_by_pixel[d]
      a = a - x_d[:, None] * input_weight[d][None, :]  # a_d from a_{d+1}.
      # W_d x_d enters every a_{d'} with d' > d, whose gradients sum to `later`.
      d_input_weight = d_input_weight.write(d, tf.linalg.matvec(later, x_d, transpose_a=True))
      d_inputs = d_inputs.write(d, tf.linalg.matvec(later, input_weight[d]))
      hidden = tf.sigmoid(a)
      d_output_weight = d_output_weight.write(d, tf.matmul(hidden, g_d, transpose_a=True))
      d_hidden = tf.matmul(g_d, output_weight[d], transpose_b=True)
      later = later + d_hidden * hidden * (1.0 - hidden)
      return d - 1, a, later, d_input_weight, d_output_weight, d_inputs

    _, _, total, d_input_weight, d_output_weight, d_inputs = tf.while_loop(
        lambda d, *_: d >= 0, back,
        (tf.constant(size - 1), a_last, tf.zeros_like(a_last), arrays(), arrays(), arrays()),
        maximum_iterations=size)
    return (tf.transpose(d_inputs.stack()), d_input_weight.stack(), tf.reduce_sum(total, 0),
            d_output_weight.stack())

  return tf.transpose(outputs.stack(), [1, 0, 2]), gradient


@registry.MODELS.register("nade")
class NADE(autoregressive.AutoregressiveModel):
  """NADE with tied input weights.

  Args:
    image_shape: (H, W, C).
    hidden_size: H, units per hidden layer (500 in the paper).
    ordering: "natural" or "random".
    num_levels: 2 (Bernoulli pixels) or 256 (categorical intensities).
    ordering_seed: seed of a random ordering.
    recurrence: how the conditionals of an image are computed in parallel: "blocked" (a
      blocked prefix sum over all D pre-activations) or "sequential" (a while loop over the
      pixels; use it with XLA). Both give the same numbers.
  """

  RECURRENCES = ("blocked", "sequential")

  def __init__(self, image_shape, hidden_size: int = 500, ordering: str = "natural",
               num_levels: int = 2, ordering_seed: int = 0, recurrence: str = "blocked",
               **kwargs):
    super().__init__(image_shape, num_levels, **kwargs)
    if recurrence not in self.RECURRENCES:
      raise errors.ConfigError(f"unknown NADE recurrence {recurrence!r}; known: "
                               f"{', '.join(self.RECURRENCES)}")
    self.recurrence = recurrence
    d, h, k = self.event_size, hidden_size, self.num_outputs
    self.hidden_size = hidden_size
    self.order = make_ordering(ordering, d, ordering_seed)
    self.inverse_order = np.argsort(self.order)
    self.block = _block_size(d)
    init = lambda shape: self.add_weight(shape=shape, initializer="glorot_uniform")
    self.input_weight = init((d, h))       # W, rows in the ordering.
    self.hidden_bias = self.add_weight(shape=(h,), initializer="zeros")  # c
    self.output_weight = init((d, h, k))   # V
    self.output_bias = self.add_weight(shape=(d, k), initializer="zeros")  # b
    self.mask = tf.constant(np.tril(np.ones((self.block, self.block), np.float32), -1))

  def _inputs(self, x):
    """Images [B, H, W, C] to network inputs in the ordering, [B, D] in [0, 1]."""
    return tf.gather(tf.reshape(x, [-1, self.event_size]), self.order, axis=1)

  def _to_image(self, ordered, extra=()):
    """[B, D, ...] in the ordering back to [B, H, W, C, ...]."""
    pixels = tf.gather(ordered, self.inverse_order, axis=1)
    return tf.reshape(pixels, [-1, *self.image_shape, *extra])

  def hidden_preactivations(self, inputs):
    """a_d = c + Σ_{j<d} W_j x_j for every d, [B, D, H], by a blocked prefix sum."""
    k, s, h = self.event_size // self.block, self.block, self.hidden_size
    x_blocks = tf.reshape(inputs, [-1, k, s])
    w_blocks = tf.reshape(self.input_weight, [k, s, h])
    block_sums = tf.einsum("bkj,kjh->bkh", x_blocks, w_blocks)
    before_block = tf.cumsum(block_sums, axis=1, exclusive=True)
    within_block = tf.einsum("bkij,kjh->bkih", x_blocks[:, :, None, :] * self.mask, w_blocks)
    a = self.hidden_bias + before_block[:, :, None, :] + within_block
    return tf.reshape(a, [-1, self.event_size, h])

  def _sequential_logits(self, inputs):
    """V_d · σ(a_d) for every d, [B, D, K], carrying a_d through a while loop over d."""
    outputs = _recurrence(tf.cast(inputs, tf.float32), tf.cast(self.input_weight, tf.float32),
                          tf.cast(self.hidden_bias, tf.float32),
                          tf.cast(self.output_weight, tf.float32))
    return tf.cast(outputs, inputs.dtype)

  def logits(self, x, training=False):
    del training
    inputs = self._inputs(self.check_images(x))
    if self.recurrence == "sequential":
      logits = self._sequential_logits(inputs) + self.output_bias
    else:
      hidden = tf.sigmoid(self.hidden_preactivations(inputs))
      logits = tf.einsum("bdh,dhk->bdk", hidden, self.output_weight) + self.output_bias
    if self.num_levels == 2:
      return self._to_image(logits[..., 0])
    return self._to_image(logits, [self.num_outputs])

  def _sample_loop(self, num, seed, known, values):
    known_ordered = self._inputs(tf.cast(known, tf.float32)) > 0.5
    values_ordered = self._inputs(values)

    def step(d, a, draws, means):
      logits = tf.einsum("bh,hk->bk", tf.sigmoid(a), self.output_weight[d]) + self.output_bias[d]
      logits = logits[:, 0] if self.num_levels == 2 else logits
      value, mean = self.draw_pixel(logits, seeding.fold_in(seed, d))
      value = tf.where(known_ordered[:, d], values_ordered[:, d], value)
      # a_{d+1} = a_d + W_d x_d: the hidden state is carried, never recomputed.
      a = a + value[:, None] * self.input_weight[d]
      return (d + 1, a, draws.write(d, value), means.write(d, mean))

    a0 = tf.zeros([num, self.hidden_size]) + self.hidden_bias
    arrays = [tf.TensorArray(tf.float32, size=self.event_size) for _ in range(2)]
    _, _, draws, means = tf.while_loop(lambda d, *_: d < self.event_size, step,
                                       (tf.constant(0), a0, *arrays))
    to_image = lambda array: self._to_image(tf.transpose(array.stack()))
    return to_image(draws), to_image(means)
