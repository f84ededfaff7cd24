"""Causally masked convolutions for PixelCNNs, computable over a whole image or a single row.

A masked k×k convolution's output at (r, c) sees the input rows above r and, in row r, the columns
left of c (mask "A", the first layer) or up to and including c (mask "B"). Since it never sees the
rows below r, its output row r needs only input rows r − k//2 … r: `call_row` computes one output
row from that window, which is what lets a sampler recompute one row per pixel instead of the
whole image, and `call_pixel` one output pixel from its window (PixelSNAIL's sampler).

Colour images (`colours` = 3) order the sub-pixels of a pixel R | G | B: R is conditioned on the
pixels before, G on those and R, B on those and R, G (van den Oord et al. 2016, section 3.4).
The feature maps of every layer are split into `colours` groups of contiguous channels
(`channel_groups`), group g carrying what the conditional of colour g may see. Away from the
centre pixel every connection is kept; at the centre, output group g sees input group g' only
where g' < g (mask "A", the first layer, whose input groups are the colours themselves) or
g' ≤ g (mask "B", every later layer, 1×1 layers included: `ChannelMaskedDense`). With
`colours` = 1 the masks are those of single-channel data, unchanged.
"""

import keras
import numpy as np
import tensorflow as tf


def channel_groups(num_channels: int, colours: int, parts: int = 1) -> np.ndarray:
  """The colour group of each of num_channels feature maps, int [num_channels].

  The maps are `parts` equal blocks (2 for a gated layer's pre-activations, whose tanh and
  sigmoid halves must pair maps of the same group), each split into `colours` contiguous groups:
  map i of a block of n has group ⌊i·colours / n⌋. An image's own channels (n = colours) are their
  own groups; an output layer of colours·K maps gives colour c the maps c·K … c·K + K − 1.
  """
  size = num_channels // parts
  return (np.arange(num_channels) % size) * colours // size


def _centre_connections(mask_type: str, in_channels: int, out_channels: int, colours: int,
                        out_parts: int) -> np.ndarray:
  """[in, out]: which input maps an output map sees at the centre pixel (see module docstring)."""
  inputs = channel_groups(in_channels, colours)[:, None]
  outputs = channel_groups(out_channels, colours, out_parts)[None, :]
  return (inputs < outputs if mask_type == "A" else inputs <= outputs).astype(np.float32)


def causal_mask(kernel_size: int, mask_type: str, in_channels: int, out_channels: int,
                rows: int = None, columns: int = None, colours: int = 1,
                out_parts: int = 1) -> np.ndarray:
  """A [rows, columns, in, out] mask of a PixelCNN kernel.

  Args:
    kernel_size: k; the kernel is k×k unless rows/columns say otherwise.
    mask_type: "A" excludes the centre pixel, "B" includes it, "V" (vertical stack) keeps every
      column of the rows up to and including the centre row.
    in_channels, out_channels: kernel channels.
    rows, columns: the kernel's actual height and width (default k).
    colours: colour groups of the data (1: single-channel masks; 3: R | G | B at the centre
      pixel, see module docstring). Mask "V" ignores it: a vertical stack reaches the current row
      only through a one-row shift.
    out_parts: blocks of the output maps, each grouped on its own (see channel_groups).
  """
  rows, columns = rows or kernel_size, columns or kernel_size
  centre_row, centre_col = kernel_size // 2, columns // 2
  mask = np.zeros((rows, columns), np.float32)
  if mask_type == "V":
    mask[:centre_row + 1, :] = 1.0
  else:
    mask[:centre_row, :] = 1.0
    mask[centre_row, :centre_col + (1 if mask_type == "B" else 0)] = 1.0
  full = np.broadcast_to(mask[:, :, None, None], (rows, columns, in_channels, out_channels)).copy()
  if colours > 1 and mask_type != "V":
    full[centre_row, centre_col] = _centre_connections(mask_type, in_channels, out_channels,
                                                       colours, out_parts)
  return full


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
    colours: colour groups (1 for single-channel data; see causal_mask).
    out_parts: blocks of the output maps grouped on their own (2 before a gate).
  """

  def __init__(self, filters: int, kernel_size: int, mask_type: str, width: int = None,
               height: int = None, colours: int = 1, out_parts: int = 1, **kwargs):
    super().__init__(**kwargs)
    if kernel_size % 2 == 0 or mask_type not in ("A", "B", "V"):
      raise ValueError(f"kernel_size must be odd and mask_type A, B or V; got {kernel_size}, "
                       f"{mask_type}")
    self.filters, self.kernel_size, self.mask_type = filters, kernel_size, mask_type
    self.width = width or kernel_size
    self.height = height or kernel_size // 2 + 1
    self.colours, self.out_parts = colours, out_parts

  def build(self, input_shape):
    in_channels = int(input_shape[-1])
    full = causal_mask(2 * self.height - 1, self.mask_type, in_channels, self.filters,
                       columns=self.width, colours=self.colours, out_parts=self.out_parts)
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


class ChannelMaskedDense(keras.layers.Layer):
  """A 1×1 convolution with the colour mask "B": output group g sees input groups ≤ g.

  The 1×1 layers between masked convolutions of a colour PixelCNN must keep the colour groups
  apart, or G's and B's features would reach R's conditional within the pixel.

  Args:
    units: output maps.
    colours: colour groups (> 1; single-channel models use a plain Dense).
    out_parts: blocks of the output maps grouped on their own (see channel_groups).
  """

  def __init__(self, units: int, colours: int, out_parts: int = 1, **kwargs):
    super().__init__(**kwargs)
    self.units, self.colours, self.out_parts = units, colours, out_parts

  def build(self, input_shape):
    in_channels = int(input_shape[-1])
    self.mask = tf.constant(_centre_connections("B", in_channels, self.units, self.colours,
                                                self.out_parts))
    self.kernel = self.add_weight(shape=(in_channels, self.units),
                                  initializer="glorot_uniform", name="kernel")
    self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

  def call(self, x):
    """[..., in] -> [..., units]."""
    x = tf.cast(x, self.compute_dtype)
    kernel = tf.cast(self.kernel, x.dtype) * tf.cast(self.mask, x.dtype)
    return tf.tensordot(x, kernel, [[x.shape.rank - 1], [0]]) + tf.cast(self.bias, x.dtype)
