"""PixelCNN and Gated PixelCNN for single-channel images (binary or 8-bit grey).

Factorisation over pixels in raster order, p(x) = ∏_{r,c} p(x_{r,c} | x_{<(r,c)}), each
conditional computed by masked convolutions (tfgen/layers/masked.py):

* PixelCNN: a 7×7 mask-A convolution, residual blocks ReLU → 1×1 → ReLU → 3×3 mask-B → ReLU →
  1×1 (+ skip), then ReLU → 1×1 → ReLU → 1×1 to Bernoulli or 256-way logits.
* Gated PixelCNN: a vertical stack (k×k over the rows above and the current row) and a
  horizontal stack (1×k over the current row, left of the pixel), joined through a down-shifted
  1×1 link so that the receptive field has no blind spot; gated units tanh(a)·σ(b); an optional
  class embedding added inside every gate (`sample(num, labels=...)` draws chosen classes).

Sampling is one `tf.while_loop` over the pixels. No conditional depends on rows below its own,
so the sampler keeps every layer's activations and, for each pixel, recomputes only the current
row of each layer (its inputs above are final): per image 28 row passes per row instead of
784 full-image passes.

Colour images (CelebA) need channel-wise masks, which these models do not implement yet.

References:
  van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
  van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu, "Conditional Image
    Generation with PixelCNN Decoders", NeurIPS 2016.
"""

import keras
import tensorflow as tf

from tfgen import errors
from tfgen import layers
from tfgen import seeding
from tfgen.layers import masked
from tfgen.models import autoregressive
from tfgen.models import registry


def _check_single_channel(image_shape):
  if image_shape[-1] != 1:
    raise errors.ConfigError("the PixelCNNs model single-channel images; colour images need "
                             f"channel masks, not implemented yet (got shape {image_shape})")


class _RowCache:
  """Per-layer activations kept as [H + pad, B, W, C], rows first so one row updates cheaply."""

  def __init__(self, num, height, width, channels, pad):
    self.pad = pad
    self.value = tf.zeros([height + pad, num, width, channels])

  @staticmethod
  def window(value, row, pad, rows):
    """Rows row − rows + 1 … row as [B, rows, W, C] (zeros above the image)."""
    start = row + pad - rows + 1
    return tf.transpose(value[start:start + rows], [1, 0, 2, 3])

  @staticmethod
  def update(value, row, pad, new_row):
    """value with row `row` set to new_row [B, 1, W, C]."""
    new_row = tf.cast(new_row, value.dtype)  # 16-bit activations under mixed precision.
    return tf.tensor_scatter_nd_update(value, [[row + pad]], tf.transpose(new_row, [1, 0, 2, 3]))


class _PixelModelBase(autoregressive.AutoregressiveModel):
  """Shared sampling loop of the two PixelCNNs, which differ in `_row_logits`."""

  def _conditioning(self, labels):
    return None

  def _sample_loop(self, num, seed, known, values, labels=None):
    h, w, _ = self.image_shape
    caches = self._empty_caches(num)
    conditioning = self._conditioning(labels)

    def finish_row_above(image, r, caches):
      # Row r − 1 was last computed before its last pixel was drawn: bring it up to date once,
      # so that every row above the current one is final in the caches.
      return self._row_logits(image, r - 1, caches, conditioning)[1]

    def step(t, image, means, caches):
      r, c = t // w, t % w
      caches = tf.cond(tf.logical_and(c == 0, r > 0),
                       lambda: finish_row_above(image, r, caches), lambda: caches)
      logits_row, caches = self._row_logits(image, r, caches, conditioning)  # [B, W, out]
      logits = logits_row[:, c, 0] if self.num_levels == 2 else logits_row[:, c]
      value, mean = self.draw_pixel(logits, seeding.fold_in(seed, t))
      _, image, means = self.place_pixel(image, means, known, values, r, c, value, mean)
      return t + 1, image, means, caches

    zeros = tf.zeros(tf.concat([[num], self.image_shape], 0))
    _, image, means, _ = tf.while_loop(lambda t, *_: t < h * w, step,
                                       (tf.constant(0), zeros, zeros, caches))
    return image, means


@registry.MODELS.register("pixelcnn")
class PixelCNN(_PixelModelBase):
  """PixelCNN with residual blocks of mask-B convolutions.

  Args:
    image_shape: (H, W, 1).
    num_blocks: residual blocks (15 at paper scale).
    channels: width of the residual stream (128 at paper scale); blocks narrow to half of it.
    first_kernel_size: k of the first, k×k mask-A convolution (7 in the paper).
    num_levels: 2 (Bernoulli) or K > 2 (K-way categorical).
  """

  def __init__(self, image_shape, num_blocks: int = 15, channels: int = 128,
               first_kernel_size: int = 7, num_levels: int = 2, **kwargs):
    super().__init__(image_shape, num_levels, **kwargs)
    _check_single_channel(self.image_shape)
    half = channels // 2
    self.channels, self.half = channels, half
    self.first = masked.MaskedConv2D(channels, first_kernel_size, "A")
    self.reduce = layers.track_list(self, "reduce", [keras.layers.Dense(half)
                                                     for _ in range(num_blocks)])
    self.spatial = layers.track_list(self, "spatial", [masked.MaskedConv2D(half, 3, "B")
                                                       for _ in range(num_blocks)])
    self.expand = layers.track_list(self, "expand", [keras.layers.Dense(channels)
                                                     for _ in range(num_blocks)])
    self.head = keras.layers.Dense(channels)
    self.out = keras.layers.Dense(self.num_outputs)

  def _logits_from(self, stream):
    logits = self.out(tf.nn.relu(self.head(tf.nn.relu(stream))))
    return logits[..., 0] if self.num_levels == 2 else logits

  def logits(self, x, training=False):
    del training
    x = self.check_images(x)
    stream = self.first(x)
    for reduce, spatial, expand in zip(self.reduce, self.spatial, self.expand):
      u = tf.nn.relu(reduce(tf.nn.relu(stream)))
      stream = stream + expand(tf.nn.relu(spatial(u)))
    logits = self._logits_from(stream)
    return logits[..., None] if self.num_levels == 2 else logits[..., None, :]

  def _empty_caches(self, num):
    h, w, _ = self.image_shape
    # The image, padded by 3 rows for the 7×7 kernel, and every block's 3×3 input, by 1 row.
    return [_RowCache(num, h, w, 1, 3).value] + [
        _RowCache(num, h, w, self.half, 1).value for _ in self.spatial]

  def _row_logits(self, image, r, caches, conditioning):
    del conditioning
    image_cache = _RowCache.update(caches[0], r, 3, image[:, r:r + 1])
    stream = self.first.call_row(_RowCache.window(image_cache, r, 3, 4))
    new_caches = [image_cache]
    for i, (reduce, spatial, expand) in enumerate(zip(self.reduce, self.spatial, self.expand)):
      u = tf.nn.relu(reduce(tf.nn.relu(stream)))
      cache = _RowCache.update(caches[i + 1], r, 1, u)
      stream = stream + expand(tf.nn.relu(spatial.call_row(_RowCache.window(cache, r, 1, 2))))
      new_caches.append(cache)
    logits = self._logits_from(stream)[:, 0]
    return (logits[..., None] if self.num_levels == 2 else logits), new_caches


def _gate(x):
  a, b = tf.split(x, 2, axis=-1)
  return tf.tanh(a) * tf.sigmoid(b)


@registry.MODELS.register("gated_pixelcnn")
class GatedPixelCNN(_PixelModelBase):
  """Gated PixelCNN without the blind spot, optionally class-conditional.

  Args:
    image_shape: (H, W, 1).
    num_layers: gated layers (the first has mask A in its horizontal stack).
    channels: feature maps per stack.
    kernel_size: k of the k×k vertical and 1×k horizontal convolutions of layers after the first.
    first_kernel_size: k of the first layer's convolutions (7 in the paper).
    class_conditional: condition every gate on the image's class (read from batch["label"]).
    num_classes: classes of the data (from the data); used when class_conditional.
    num_levels: 2 (Bernoulli) or K > 2 (K-way categorical).
  """

  DATA_FIELDS = ("num_levels", "num_classes")

  def __init__(self, image_shape, num_layers: int = 15, channels: int = 128,
               kernel_size: int = 3, first_kernel_size: int = 7, class_conditional: bool = False,
               num_classes=None, num_levels: int = 2, **kwargs):
    super().__init__(image_shape, num_levels, **kwargs)
    _check_single_channel(self.image_shape)
    if class_conditional and not num_classes:
      raise errors.ConfigError("class_conditional needs labels; the data set has none")
    self.channels = channels
    self.num_classes = int(num_classes) if class_conditional else None
    sizes = [first_kernel_size] + [kernel_size] * (num_layers - 1)
    self.vertical = layers.track_list(self, "vertical", [
        masked.MaskedConv2D(2 * channels, k, "V") for k in sizes])
    self.horizontal = layers.track_list(self, "horizontal", [
        masked.MaskedConv2D(2 * channels, k, "A" if i == 0 else "B", height=1)
        for i, k in enumerate(sizes)])
    self.link = layers.track_list(self, "link", [keras.layers.Dense(2 * channels) for _ in sizes])
    self.residual = layers.track_list(self, "residual", [keras.layers.Dense(channels)
                                                         for _ in sizes])
    self.embeddings = layers.track_list(self, "embedding", [
        keras.layers.Embedding(num_classes, 2 * channels) for _ in sizes] if num_classes else [])
    self.head = keras.layers.Dense(channels)
    self.out = keras.layers.Dense(self.num_outputs)

  @classmethod
  def data_kwargs(cls, info):
    return {"num_levels": info.num_levels, "num_classes": info.num_classes}

  def _conditioning(self, labels):
    if self.num_classes is None:
      return None
    if labels is None:
      raise errors.DataError("this Gated PixelCNN is class-conditional: pass labels")
    return [e(tf.cast(labels, tf.int32))[:, None, None, :] for e in self.embeddings]

  def _layer(self, i, v, h, v_above, conditioning):
    """One gated layer; v, h: this layer's conv outputs; v_above: v pre-activations shifted down."""
    cond = 0.0 if conditioning is None else conditioning[i]
    h_pre = h + self.link[i](v_above) + cond
    h_out = self.residual[i](_gate(h_pre))
    return _gate(v + cond), h_out

  def _head(self, h):
    logits = self.out(tf.nn.relu(self.head(tf.nn.relu(h))))
    return logits[..., 0] if self.num_levels == 2 else logits

  def logits(self, x, training=False, labels=None):
    del training
    x = self.check_images(x)
    conditioning = self._conditioning(labels)
    v_in, h_in = x, x
    for i in range(len(self.vertical)):
      v = self.vertical[i](v_in)
      # Row r of the horizontal stack may see the vertical stack only up to row r − 1.
      v_above = tf.pad(v[:, :-1], [[0, 0], [1, 0], [0, 0], [0, 0]])
      v_out, h_out = self._layer(i, v, self.horizontal[i](h_in), v_above, conditioning)
      h_in = h_out if i == 0 else h_in + h_out
      v_in = v_out
    logits = self._head(h_in)
    return logits[..., None] if self.num_levels == 2 else logits[..., None, :]


  def _empty_caches(self, num):
    h, w, _ = self.image_shape
    caches = []
    for vertical in self.vertical:
      pad = vertical.height - 1
      # Each layer's vertical input (padded for its kernel) and its pre-activation rows.
      caches.append(_RowCache(num, h, w, 1 if not caches else self.channels, pad).value)
      caches.append(_RowCache(num, h, w, 2 * self.channels, 1).value)
    return caches

  def _row_logits(self, image, r, caches, conditioning):
    new_caches = []
    v_in_row, h_in = image[:, r:r + 1], image[:, r:r + 1]
    for i, (vertical, horizontal) in enumerate(zip(self.vertical, self.horizontal)):
      pad = vertical.height - 1
      v_cache = _RowCache.update(caches[2 * i], r, pad, v_in_row)
      v = vertical.call_row(_RowCache.window(v_cache, r, pad, vertical.height))
      pre_cache = _RowCache.update(caches[2 * i + 1], r, 1, v)
      v_above = _RowCache.window(pre_cache, r - 1, 1, 1)  # Row r − 1 (zeros for r = 0).
      v_out, h_out = self._layer(i, v, horizontal.call_row(h_in), v_above, conditioning)
      h_in = h_out if i == 0 else h_in + h_out
      v_in_row = v_out
      new_caches += [v_cache, pre_cache]
    logits = self._head(h_in)[:, 0]
    return (logits[..., None] if self.num_levels == 2 else logits), new_caches
