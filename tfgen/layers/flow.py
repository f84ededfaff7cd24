"""Invertible Keras 3 layers for normalizing flows: couplings, actnorm, 1x1 convolutions, MADE.

Every layer here is a bijection between tensors of one fixed shape, used in both directions:

  * `to_latent(x) -> (z, log_det)`: the normalizing direction f of the flow literature, from the
    data side to the latent side, with log_det = log|det ∂z/∂x| per example, [B];
  * `from_latent(z) -> x`: its exact inverse f⁻¹, the generative direction.

TFP calls the generative direction "forward"; these names avoid the clash. The layers return
tensors only: the models in tfgen/models/flow.py compose them and build the TFP bijector and
distributions inside their methods. Every network's last layer starts at zero, so a coupling
starts as the identity (RealNVP, MAF) or as a fixed per-channel contraction (Glow's sigmoid gate).
"""

from typing import Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from tfgen.layers.tracking import track_list

Shape = Tuple[int, int, int]


def squeeze(x: tf.Tensor) -> tf.Tensor:
  """Space-to-depth 2x2: [B, H, W, C] -> [B, H/2, W/2, 4C] (a permutation, log-det 0)."""
  return tf.nn.space_to_depth(x, 2)


def unsqueeze(x: tf.Tensor) -> tf.Tensor:
  """Inverse of `squeeze`: [B, H/2, W/2, 4C] -> [B, H, W, C]."""
  return tf.nn.depth_to_space(x, 2)


def checkerboard(height: int, width: int, parity: int) -> np.ndarray:
  """[1, H, W, 1] float32 mask, 1 where (row + column) % 2 == parity: the pixels kept."""
  rows, columns = np.mgrid[0:height, 0:width]
  return ((rows + columns) % 2 == parity).astype(np.float32)[None, :, :, None]


def _sum_per_example(x: tf.Tensor) -> tf.Tensor:
  return tf.reduce_sum(x, axis=tf.range(1, tf.rank(x)))


class ResidualBlock(keras.layers.Layer):
  """h + conv3x3(ReLU(conv3x3(ReLU(h)))): [B, H, W, channels] -> same."""

  def __init__(self, channels: int, **kwargs):
    super().__init__(**kwargs)
    self.first = keras.layers.Conv2D(channels, 3, padding="same")
    self.second = keras.layers.Conv2D(channels, 3, padding="same")

  def call(self, h):
    return h + self.second(tf.nn.relu(self.first(tf.nn.relu(h))))


class ResNet(keras.layers.Layer):
  """RealNVP's coupling network: conv3x3, residual blocks, ReLU, zero-initialised conv3x3.

  Batch-norm free, so an image's density never depends on the batch it is evaluated in.

  Args:
    hidden_channels: channels of every hidden feature map.
    num_blocks: residual blocks.
    out_channels: output channels.
  """

  def __init__(self, hidden_channels: int, num_blocks: int, out_channels: int, **kwargs):
    super().__init__(**kwargs)
    self.first = keras.layers.Conv2D(hidden_channels, 3, padding="same")
    self.blocks = track_list(self, "block",
                             [ResidualBlock(hidden_channels) for _ in range(num_blocks)])
    self.last = keras.layers.Conv2D(out_channels, 3, padding="same",
                                    kernel_initializer="zeros")

  def call(self, x):
    """[B, H, W, in] -> [B, H, W, out_channels]."""
    h = self.first(x)
    for block in self.blocks:
      h = block(h)
    return self.last(tf.nn.relu(h))


class AffineCoupling(keras.layers.Layer):
  """RealNVP's affine coupling, z = b⊙x + (1 − b)⊙(x·exp(s(b⊙x)) + t(b⊙x)).

  log|det ∂z/∂x| = Σ (1 − b)⊙s. The log-scale is s = scale·tanh(raw) with a learned per-channel
  `scale` (starting at 1), which keeps early steps from blowing up; with the network's last
  convolution at zero, the coupling starts as the identity.

  Args:
    shape: (H, W, C) of the input.
    mask: "checkerboard" (b: pixels with (row + column) % 2 == parity; the network also sees b)
      or "channel" (b: the first C/2 channels for parity 0, the last C/2 for parity 1).
    parity: 0 or 1, which half is kept.
    hidden_channels, num_blocks: of the ResNet computing s and t.
  """

  def __init__(self, shape: Shape, mask: str, parity: int, hidden_channels: int,
               num_blocks: int, **kwargs):
    super().__init__(**kwargs)
    height, width, channels = shape
    if mask not in ("checkerboard", "channel"):
      raise ValueError(f"mask must be checkerboard or channel, got {mask!r}")
    if mask == "channel" and channels % 2:
      raise ValueError(f"a channel coupling needs an even number of channels, got {channels}")
    self.mask_kind, self.parity = mask, parity
    self.half = channels // 2
    out = channels if mask == "checkerboard" else channels - self.half
    if mask == "checkerboard":
      self.mask = tf.constant(checkerboard(height, width, parity))
    self.net = ResNet(hidden_channels, num_blocks, 2 * out)
    self.scale = self.add_weight(shape=(out,), initializer="ones", name="scale")
    self.built = True

  def _log_scale_and_shift(self, kept):
    raw = tf.cast(self.net(kept), tf.float32)  # float32 transforms under mixed precision.
    raw_scale, shift = tf.split(raw, 2, axis=-1)
    return self.scale * tf.tanh(raw_scale), shift

  def _checkerboard_terms(self, x):
    """s and t, zero on the kept pixels, from b⊙x (equal to b⊙z)."""
    b = self.mask * tf.ones_like(x[..., :1])
    log_scale, shift = self._log_scale_and_shift(tf.concat([x * b, b], axis=-1))
    return log_scale * (1.0 - b), shift * (1.0 - b)

  def _split(self, x):
    first, second = x[..., :self.half], x[..., self.half:]
    return (first, second) if self.parity == 0 else (second, first)

  def _join(self, kept, changed):
    return tf.concat([kept, changed] if self.parity == 0 else [changed, kept], axis=-1)

  def to_latent(self, x):
    """x [B, H, W, C] -> (z [B, H, W, C], log|det ∂z/∂x| [B])."""
    if self.mask_kind == "checkerboard":
      log_scale, shift = self._checkerboard_terms(x)
      return x * tf.exp(log_scale) + shift, _sum_per_example(log_scale)
    kept, changed = self._split(x)
    log_scale, shift = self._log_scale_and_shift(kept)
    return (self._join(kept, changed * tf.exp(log_scale) + shift),
            _sum_per_example(log_scale))

  def from_latent(self, z):
    """z [B, H, W, C] -> x [B, H, W, C]."""
    if self.mask_kind == "checkerboard":
      log_scale, shift = self._checkerboard_terms(z)
      return (z - shift) * tf.exp(-log_scale)
    kept, changed = self._split(z)
    log_scale, shift = self._log_scale_and_shift(kept)
    return self._join(kept, (changed - shift) * tf.exp(-log_scale))

  def call(self, x):
    return self.to_latent(x)


class ActNorm(keras.layers.Layer):
  """Glow's per-channel affine map z = (x + bias)·exp(log_scale), started as the identity.

  log|det ∂z/∂x| = H·W·Σ_c log_scale_c. (Glow initialises from the first batch's statistics;
  this layer starts at the identity instead, so the model has no data-dependent state.)

  Args:
    shape: (H, W, C) of the input.
  """

  def __init__(self, shape: Shape, **kwargs):
    super().__init__(**kwargs)
    self.pixels = shape[0] * shape[1]
    self.bias = self.add_weight(shape=(shape[2],), initializer="zeros", name="bias")
    self.log_scale = self.add_weight(shape=(shape[2],), initializer="zeros", name="log_scale")
    self.built = True

  def to_latent(self, x):
    """x [B, H, W, C] -> (z, log-det [B])."""
    log_det = self.pixels * tf.reduce_sum(self.log_scale)
    return (x + self.bias) * tf.exp(self.log_scale), tf.fill(tf.shape(x)[:1], log_det)

  def from_latent(self, z):
    return z * tf.exp(-self.log_scale) - self.bias

  def call(self, x):
    return self.to_latent(x)


class InvertibleConv1x1(keras.layers.Layer):
  """Glow's invertible 1x1 convolution z = x·W per pixel, W in the LU parametrisation.

  W = P·L·(U + diag(sign·exp(log_s))) with P a fixed permutation, L unit lower triangular and U
  strictly upper triangular: log|det W| = Σ log_s costs O(C) instead of a determinant, and W
  stays invertible whatever the optimizer does to L, U and log_s. W starts as a random rotation
  (a QR factor of a Gaussian matrix), so log|det ∂z/∂x| = H·W·Σ log_s starts at 0.

  Args:
    shape: (H, W, C) of the input.
    rng: numpy RandomState drawing the initial rotation.
  """

  def __init__(self, shape: Shape, rng: np.random.RandomState, **kwargs):
    super().__init__(**kwargs)
    channels = shape[2]
    self.pixels = shape[0] * shape[1]
    rotation = np.linalg.qr(rng.normal(size=(channels, channels)))[0]
    # Imported here: only Glow's 1x1 convolutions need scipy.linalg, 0.2 s of every start-up.
    import scipy.linalg  # pylint: disable=g-import-not-at-top
    permutation, lower, upper = scipy.linalg.lu(rotation)
    diagonal = np.diag(upper)
    self.permutation = tf.constant(permutation, tf.float32)
    self.sign = tf.constant(np.sign(diagonal), tf.float32)
    self.lower_mask = tf.constant(np.tril(np.ones((channels, channels)), -1), tf.float32)
    self.lower = self.add_weight(shape=(channels, channels), name="lower",
                                 initializer=keras.initializers.Constant(lower))
    self.upper = self.add_weight(shape=(channels, channels), name="upper",
                                 initializer=keras.initializers.Constant(np.triu(upper, 1)))
    self.log_s = self.add_weight(shape=(channels,), name="log_s",
                                 initializer=keras.initializers.Constant(
                                     np.log(np.abs(diagonal))))
    self.built = True

  def kernel(self) -> tf.Tensor:
    """W, [C, C] (z_j = Σ_i x_i W_ij)."""
    eye = tf.eye(self.lower.shape[0])
    lower = self.lower * self.lower_mask + eye
    upper = (self.upper * tf.transpose(self.lower_mask)
             + tf.linalg.diag(self.sign * tf.exp(self.log_s)))
    return self.permutation @ lower @ upper

  def to_latent(self, x):
    """x [B, H, W, C] -> (z, log-det [B])."""
    log_det = self.pixels * tf.reduce_sum(self.log_s)
    return (tf.einsum("bhwi,ij->bhwj", x, self.kernel()),
            tf.fill(tf.shape(x)[:1], log_det))

  def from_latent(self, z):
    return tf.einsum("bhwi,ij->bhwj", z, tf.linalg.inv(self.kernel()))

  def call(self, x):
    return self.to_latent(x)


class GlowCoupling(keras.layers.Layer):
  """Glow's affine coupling on a channel split: z_b = (x_b + t(x_a))·σ(raw(x_a) + 2).

  log|det ∂z/∂x| = Σ log σ(raw + 2). Network: conv3x3 → ReLU → conv1x1 → ReLU → zero-initialised
  conv3x3, so each coupling starts as z_b = σ(2)·x_b, as in Glow. The sigmoid keeps the scale in
  (0, 1): the coupling can only contract x_b, which Glow found stable; actnorm and the 1x1
  convolutions supply the expansion.

  Args:
    shape: (H, W, C) of the input (C ≥ 2).
    hidden_channels: channels of the two hidden layers.
  """

  def __init__(self, shape: Shape, hidden_channels: int, **kwargs):
    super().__init__(**kwargs)
    channels = shape[2]
    if channels < 2:
      raise ValueError(f"a channel coupling needs at least 2 channels, got {channels}")
    self.half = channels // 2
    self.first = keras.layers.Conv2D(hidden_channels, 3, padding="same")
    self.middle = keras.layers.Conv2D(hidden_channels, 1)
    self.last = keras.layers.Conv2D(2 * (channels - self.half), 3, padding="same",
                                    kernel_initializer="zeros")
    self.built = True

  def _shift_and_log_scale(self, kept):
    h = self.last(tf.nn.relu(self.middle(tf.nn.relu(self.first(kept)))))
    shift, raw = tf.split(tf.cast(h, tf.float32), 2, axis=-1)  # float32 transforms.
    return shift, tf.math.log_sigmoid(raw + 2.0)

  def to_latent(self, x):
    """x [B, H, W, C] -> (z, log-det [B])."""
    kept, changed = x[..., :self.half], x[..., self.half:]
    shift, log_scale = self._shift_and_log_scale(kept)
    return (tf.concat([kept, (changed + shift) * tf.exp(log_scale)], axis=-1),
            _sum_per_example(log_scale))

  def from_latent(self, z):
    kept, changed = z[..., :self.half], z[..., self.half:]
    shift, log_scale = self._shift_and_log_scale(kept)
    return tf.concat([kept, changed * tf.exp(-log_scale) - shift], axis=-1)

  def call(self, x):
    return self.to_latent(x)


class MaskedAutoregressiveAffine(keras.layers.Layer):
  """One MAF transform on vectors: z_i = (x_i − μ_i(x_{<i}))·exp(−α_i(x_{<i})).

  μ and α come from one MADE (masked Dense layers, ReLU), so the density direction is a single
  pass and log|det ∂z/∂x| = −Σ_i α_i. The inverse is sequential: x = z·exp(α(x)) + μ(x) iterated
  D times from x = 0 inside a `tf.while_loop`; after step k the first k dimensions (in the
  MADE's ordering) are exact, since each depends only on earlier ones.

  Args:
    masks: MADE masks [D, H1], ..., [H_L, 2D] (outputs interleaved: μ_i, α_i), e.g. from
      `tfgen.models.made.made_masks(degrees, hidden_sizes, 2, rng)`.
    log_scale_bound: α = bound·tanh(raw / bound), so |α| < bound (the identity near 0).
  """

  def __init__(self, masks: Sequence[np.ndarray], log_scale_bound: float = 5.0, **kwargs):
    super().__init__(**kwargs)
    self.size = masks[0].shape[0]
    self.log_scale_bound = float(log_scale_bound)
    self.masks = [tf.constant(m, tf.float32) for m in masks]
    last = len(masks) - 1
    self.dense = track_list(self, "dense", [
        keras.layers.Dense(m.shape[1], kernel_initializer="zeros" if i == last
                           else "glorot_uniform") for i, m in enumerate(masks)])
    for layer, mask in zip(self.dense, masks):
      layer.build((None, mask.shape[0]))
    self.built = True

  def shift_and_log_scale(self, x):
    """x [B, D] -> μ [B, D], α [B, D]; both depend on x_{<i} only."""
    h = x
    for i, (layer, mask) in enumerate(zip(self.dense, self.masks)):
      h = h @ (layer.kernel * mask) + layer.bias
      if i < len(self.dense) - 1:
        h = tf.nn.relu(h)
    h = tf.reshape(h, [-1, self.size, 2])
    # A soft bound |α| < log_scale_bound: unbounded, one large α made the loss infinite within
    # the first epoch of Fashion-MNIST at learning rate 1e-3.
    bound = self.log_scale_bound
    return h[..., 0], bound * tf.tanh(h[..., 1] / bound)

  def to_latent(self, x):
    """x [B, D] -> (z [B, D], log-det [B])."""
    shift, log_scale = self.shift_and_log_scale(x)
    return (x - shift) * tf.exp(-log_scale), -tf.reduce_sum(log_scale, axis=-1)

  def from_latent(self, z):
    """z [B, D] -> x [B, D], D sequential MADE passes."""

    def step(i, x):
      shift, log_scale = self.shift_and_log_scale(x)
      return i + 1, z * tf.exp(log_scale) + shift

    _, x = tf.while_loop(lambda i, _: i < self.size, step, (tf.constant(0), tf.zeros_like(z)))
    return x

  def call(self, x):
    return self.to_latent(x)
