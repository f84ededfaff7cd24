"""Causally masked convolutions for PixelCNNs, computable over a whole image or a single row.

A masked k×k convolution's output at (r, c) sees the input rows above r and, in row r, the columns
left of c (mask "A", the first layer) or up to and including c (mask "B"). Since it never sees the
rows below r, its output row r needs only input rows r − k//2 … r: `call_row` computes one output
row from that window, which is what lets a sampler recompute one row per pixel instead of the
whole image, and `call_pixel` one output pixel from its window (PixelSNAIL's sampler).
"""

import keras
import numpy as np
import tensorflow as tf


def causal_mask(kernel_size: int, mask_type: str, in_channels: int, out_channels: int,
                rows: int = None, columns: int = None) -> np.ndarray:
  """A [rows, columns, in, out] mask of a single-channel-data PixelCNN kernel.

  Args:
    kernel_size: k; the kernel is k×k unless rows/columns say otherwise.
    mask_type: "A" excludes the centre pixel, "B" includes it, "V" (vertical stack) keeps every
      column of the rows up to and including the centre row.
    in_channels, out_channels: kernel channels.
    rows, columns: the kernel's actual height and width (default k).
  """
  rows, columns = rows or kernel_size, columns or kernel_size
  centre_row, centre_col = kernel_size // 2, columns // 2
  mask = np.zeros((rows, columns), np.float32)
  if mask_type == "V":
    mask[:centre_row + 1, :] = 1.0
  else:
    mask[:centre_row, :] = 1.0
    mask[centre_row, :centre_col + (1 if mask_type == "B" else 0)] = 1.0
  return np.broadcast_to(mask[:, :, None, None], (rows, columns, in_channels, out_channels)).copy()


class MaskedConv2D(keras.layers.Layer):
  """A causally masked convolution (see module docstring).

  Only the kernel rows at or above the centre are stored, since the mask zeroes the others.

  Args:
    filters: output channels.
    kernel_size: k (odd).
    mask_type: "A", "B" or "V".
    width: kernel width (default k); 1×width convolutions make the horizontal stack of a Gated
      PixelCNN.
    height: rows of the kernel counted from the top down to the centre row (default k//2 + 1).
  """

  def __init__(self, filters: int, kernel_size: int, mask_type: str, width: int = None,
               height: int = None, **kwargs):
    super().__init__(**kwargs)
    if kernel_size % 2 == 0 or mask_type not in ("A", "B", "V"):
      raise ValueError(f"kernel_size must be odd and mask_type A, B or V; got {kernel_size}, "
                       f"{mask_type}")
    self.filters, self.kernel_size, self.mask_type = filters, kernel_size, mask_type
    self.width = width or kernel_size
    self.height = height or kernel_size // 2 + 1

  def build(self, input_shape):
    in_channels = int(input_shape[-1])
    full = causal_mask(2 * self.height - 1, self.mask_type, in_channels, self.filters,
                       columns=self.width)
    self.mask = tf.constant(full[:self.height])
    self.kernel = self.add_weight(shape=(self.height, self.width, in_channels, self.filters),
                                  initializer="glorot_uniform", name="kernel")
    self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

  def _masked(self, dtype):
    """kernel ⊙ mask, kernel and bias in `dtype`: the row and pixel paths run outside
    `__call__`, so they cast to the layer's compute dtype themselves (as `call` gets it)."""
    return (tf.cast(self.kernel, dtype) * tf.cast(self.mask, dtype), tf.cast(self.bias, dtype))

  def _conv(self, x, top_padding):
    x = tf.cast(x, self.compute_dtype)
    left = self.width // 2
    padded = tf.pad(x, [[0, 0], [top_padding, 0], [left, self.width - 1 - left], [0, 0]])
    kernel, bias = self._masked(x.dtype)
    return tf.nn.conv2d(padded, kernel, 1, "VALID") + bias

  def call(self, x):
    """[B, H, W, in] -> [B, H, W, filters]."""
    return self._conv(x, self.height - 1)

  def call_row(self, window):
    """Output row r from input rows r − height + 1 … r ([B, height, W, in]) -> [B, 1, W, out]."""
    return self._conv(window, 0)

  def call_pixel(self, patch):
    """Output pixel (r, c) from its input window, rows r − height + 1 … r and columns
    c − width//2 … c + width − 1 − width//2, laid out [height, width, B, in] -> [B, out]."""
    patch = tf.cast(patch, self.compute_dtype)
    kernel, bias = self._masked(patch.dtype)
    return tf.einsum("hwbi,hwio->bo", patch, kernel) + bias
