"""PixelSNAIL: causal convolutions interleaved with causal self-attention over every earlier pixel.

Factorisation over pixels in raster order, p(x) = ∏_t p(x_t | x_<t), t = r·W + c, single-channel
images (binary: Bernoulli; K levels: K-way categorical, K = 256 for 8-bit grey or the codebook
size when PixelSNAIL is a VQ-VAE's prior). The network:

* a k×k mask-A convolution of the image (scaled to [−1, 1]), then `num_blocks` blocks of
* `num_residual` gated residual units, s ← s + gate(conv_B(elu(conv_B(elu(s)))) + class),
  gate(a, b) = a·σ(b), with 3×3 mask-B convolutions, and
* causal multi-head attention: queries from [s, position], keys and values from
  [s, image, position], where position is the pixel's (row, column) scaled to [−½, ½]. A query
  at t attends to keys at t' < t only (strictly: the key at t' holds the pixel x_t' itself), so
  the first pixel's attention output is zero; s ← s + gate(dense(elu([s, attention]))).
* Each block's stream adds into a skip sum (as the PyTorch zoo does, for stable training), which
  a two-layer head turns into the logits.

Mask-B convolutions alone have a blind spot above-right of each pixel; the attention sees every
earlier pixel, which removes it.

Sampling is one `tf.while_loop` over the pixels that never recomputes an earlier position: each
convolution keeps its input in a padded buffer and computes only the current pixel from its
window (`MaskedConv2D.call_pixel`), and each attention layer keeps the keys and values of the
pixels drawn so far, appending the current pixel's once it is drawn — per pixel, O(layers) small
products plus one attention row instead of a whole-image pass.

References:
  Chen, Mishra, Rohaninejad & Abbeel, "PixelSNAIL: An Improved Autoregressive Generative Model",
    ICML 2018.
  van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu, "Conditional Image
    Generation with PixelCNN Decoders", NeurIPS 2016 (gated units, class conditioning).
"""

import keras
import numpy as np
import tensorflow as tf

from tfgen import errors
from tfgen import layers
from tfgen import seeding
from tfgen.layers import masked
from tfgen.models import autoregressive
from tfgen.models import registry


def _gate(x):
  a, b = tf.split(x, 2, axis=-1)
  return a * tf.sigmoid(b)


class _WholeImage:
  """The parallel pass: every layer over the whole image at once ([B, H, W, ·] tensors)."""

  def __init__(self, model, x_in):
    self.model = model
    self.x_in = x_in
    self.position = tf.broadcast_to(model.positions()[None], tf.concat([tf.shape(x_in)[:3], [2]], 0))

  def conv(self, layer, value):
    return layer(value)

  def first(self):
    return self.model.first(self.x_in)

  def attend(self, block, stream):
    model = self.model
    shape = tf.shape(stream)
    n = model.event_size
    # Under mixed precision the stream is 16-bit; the image and positions follow it.
    position, x_in = (tf.cast(t, stream.dtype) for t in (self.position, self.x_in))
    query = model.query[block](tf.concat([stream, position], -1))
    memory = tf.concat([stream, x_in, position], -1)
    key, value = model.key[block](memory), model.value[block](memory)
    # [B, heads, N, d] with N = H·W in raster order.
    query, key, value = (tf.reshape(t, [shape[0], n, model.num_heads, -1]) for t in
                         (query, key, value))
    query, key, value = (tf.transpose(t, [0, 2, 1, 3]) for t in (query, key, value))
    earlier = tf.constant(np.tril(np.ones([n, n], bool), k=-1))
    weights = model.attention_weights(tf.einsum("bhqd,bhkd->bhqk", query, key), earlier)
    out = tf.einsum("bhqk,bhkd->bhqd", weights, value)
    return tf.reshape(tf.transpose(out, [0, 2, 1, 3]), tf.concat([shape[:3], [-1]], 0))


class _OnePixel:
  """The sampler's pass at pixel (r, c) = t: [B, ·] tensors, buffers of every layer's input."""

  def __init__(self, model, t, state):
    self.model, self.t, self.state = model, t, dict(state)
    w = model.image_shape[1]
    self.r, self.c = t // w, t % w
    self.position = tf.broadcast_to(model.positions()[self.r, self.c][None],
                                    [tf.shape(state["keys"][0])[0], 2])
    self.convs_seen = 0
    self.streams = []

  def _window(self, buffer, layer):
    return buffer[self.r:self.r + layer.height, self.c:self.c + layer.width]

  def conv(self, layer, value):
    # Buffers are [H + height − 1, W + width − 1, B, in]: the input at (r, c) sits at
    # (r + height − 1, c + width // 2), so its window starts at (r, c).
    i = self.convs_seen
    self.convs_seen += 1
    buffer = self.state["buffers"][i]
    buffer = tf.tensor_scatter_nd_update(
        buffer, [[self.r + layer.height - 1, self.c + layer.width // 2]],
        tf.cast(value, buffer.dtype)[None])
    self.state["buffers"] = self.state["buffers"][:i] + [buffer] + self.state["buffers"][i + 1:]
    return layer.call_pixel(self._window(buffer, layer))

  def first(self):
    # The image buffer is written once each pixel is drawn; mask A never reads the centre.
    return self.model.first.call_pixel(self._window(self.state["image"], self.model.first))

  def attend(self, block, stream):
    model = self.model
    # The sampler's state is float32; 16-bit layer outputs (mixed precision) are cast to it.
    stream = tf.cast(stream, tf.float32)
    self.streams.append(stream)
    query = tf.cast(model.query[block](tf.concat([stream, self.position], -1)), tf.float32)
    query = tf.reshape(query, [tf.shape(stream)[0], model.num_heads, 1, -1])
    keys, values = self.state["keys"][block], self.state["values"][block]  # [B, heads, N, d]
    earlier = (tf.range(model.event_size) < self.t)[None, :]
    weights = model.attention_weights(tf.einsum("bhqd,bhkd->bhqk", query, keys), earlier)
    return tf.reshape(tf.einsum("bhqk,bhkd->bhqd", weights, values), [tf.shape(stream)[0], -1])

  def remember(self, x_in):
    """After pixel t is drawn (x_in [B, 1] in [−1, 1]): its keys, values and image entry."""
    model, num = self.model, tf.shape(x_in)[0]
    first = model.first
    self.state["image"] = tf.tensor_scatter_nd_update(
        self.state["image"], [[self.r + first.height - 1, self.c + first.width // 2]], x_in[None])
    keys, values = [], []
    for block, stream in enumerate(self.streams):
      memory = tf.concat([stream, x_in, self.position], -1)
      new = [tf.reshape(tf.cast(dense(memory), tf.float32), [num, model.num_heads, 1, -1])
             for dense in (model.key[block], model.value[block])]
      index = tf.stack([tf.repeat(tf.range(num), model.num_heads),
                        tf.tile(tf.range(model.num_heads), [num]),
                        tf.fill([num * model.num_heads], self.t)], axis=1)
      keys.append(tf.tensor_scatter_nd_update(self.state["keys"][block], index,
                                              tf.reshape(new[0], [num * model.num_heads, -1])))
      values.append(tf.tensor_scatter_nd_update(self.state["values"][block], index,
                                                tf.reshape(new[1], [num * model.num_heads, -1])))
    self.state["keys"], self.state["values"] = keys, values
    return self.state


@registry.MODELS.register("pixelsnail")
class PixelSNAIL(autoregressive.AutoregressiveModel):
  """PixelSNAIL for single-channel images, optionally class-conditional.

  Args:
    image_shape: (H, W, 1).
    num_blocks: blocks of residual units followed by attention (8 in the PyTorch zoo's MNIST run).
    num_residual: gated residual units per block.
    channels: width of the stream.
    num_heads: attention heads.
    key_size: query/key size per head.
    value_size: value size per head.
    first_kernel_size: k of the first, k×k mask-A convolution.
    class_conditional: condition every residual unit on the image's class (batch["label"]).
    num_classes: classes of the data (from the data); used when class_conditional.
    num_levels: 2 (Bernoulli) or K > 2 (K-way categorical).
  """

  DATA_FIELDS = ("num_levels", "num_classes")

  def __init__(self, image_shape, num_blocks: int = 8, num_residual: int = 2, channels: int = 64,
               num_heads: int = 2, key_size: int = 16, value_size: int = 32,
               first_kernel_size: int = 7, class_conditional: bool = False, num_classes=None,
               num_levels: int = 2, **kwargs):
    super().__init__(image_shape, num_levels, **kwargs)
    if self.image_shape[-1] != 1:
      raise errors.ConfigError("PixelSNAIL models single-channel images; colour needs channel "
                               f"masks, not implemented yet (got shape {self.image_shape})")
    if class_conditional and not num_classes:
      raise errors.ConfigError("class_conditional needs labels; the data set has none")
    if min(num_blocks, num_residual, channels, num_heads, key_size, value_size) < 1:
      raise errors.ConfigError("PixelSNAIL sizes must all be at least 1")
    self.num_heads, self.key_size = num_heads, key_size
    self.num_classes = int(num_classes) if class_conditional else None
    units = num_blocks * num_residual
    self.num_residual = num_residual
    self.first = masked.MaskedConv2D(channels, first_kernel_size, "A")
    self.conv_in = layers.track_list(self, "conv_in", [masked.MaskedConv2D(channels, 3, "B")
                                                       for _ in range(units)])
    self.conv_out = layers.track_list(self, "conv_out", [
        masked.MaskedConv2D(2 * channels, 3, "B") for _ in range(units)])
    self.embeddings = layers.track_list(self, "embedding", [
        keras.layers.Embedding(num_classes, 2 * channels) for _ in range(units)]
                                        if self.num_classes else [])
    dense = lambda size: [keras.layers.Dense(size) for _ in range(num_blocks)]
    self.query = layers.track_list(self, "query", dense(num_heads * key_size))
    self.key = layers.track_list(self, "key", dense(num_heads * key_size))
    self.value = layers.track_list(self, "value", dense(num_heads * value_size))
    self.attention_out = layers.track_list(self, "attention_out", dense(2 * channels))
    self.skip = layers.track_list(self, "skip", dense(channels))
    self.head = keras.layers.Dense(channels)
    self.out = keras.layers.Dense(self.num_outputs)

  @classmethod
  def data_kwargs(cls, info):
    return {"num_levels": info.num_levels, "num_classes": info.num_classes}

  # --- Pieces shared by the parallel pass and the sampler --------------------------------------

  def positions(self):
    """[H, W, 2]: each pixel's (row, column) scaled to [−½, ½]."""
    h, w, _ = self.image_shape
    rows, cols = np.meshgrid(np.arange(h) / max(h - 1, 1) - 0.5,
                             np.arange(w) / max(w - 1, 1) - 0.5, indexing="ij")
    return tf.constant(np.stack([rows, cols], -1), tf.float32)

  def attention_weights(self, logits, earlier):
    """Softmax over the earlier keys only; rows with none (the first pixel) are all zero."""
    logits = logits / np.sqrt(self.key_size)
    weights = tf.nn.softmax(tf.where(earlier, logits, -1e9), axis=-1)
    return weights * tf.cast(earlier, weights.dtype)

  def _conditioning(self, labels):
    if self.num_classes is None:
      return [0.0] * len(self.conv_in)
    if labels is None:
      raise errors.DataError("this PixelSNAIL is class-conditional: pass labels")
    return [e(tf.cast(labels, tf.int32)) for e in self.embeddings]

  def _network(self, ops, conditioning, expand):
    """The logits, computed by `ops` (whole image or one pixel); expand: [B, C] -> ops' shape."""
    stream = ops.first()
    skip = 0.0
    for block in range(len(self.query)):
      for unit in range(block * self.num_residual, (block + 1) * self.num_residual):
        hidden = ops.conv(self.conv_in[unit], tf.nn.elu(stream))
        hidden = ops.conv(self.conv_out[unit], tf.nn.elu(hidden))
        # Casts: under mixed precision Keras layers give 16 bits, the sampler's convs float32.
        stream = stream + _gate(hidden + tf.cast(expand(conditioning[unit]), hidden.dtype))
      attended = tf.cast(ops.attend(block, stream), stream.dtype)
      stream = stream + tf.cast(_gate(self.attention_out[block](
          tf.nn.elu(tf.concat([stream, attended], -1)))), stream.dtype)
      skip = skip + self.skip[block](stream)
    logits = self.out(tf.nn.elu(self.head(tf.nn.elu(skip))))
    return logits[..., 0] if self.num_levels == 2 else logits

  def _scaled(self, x):
    return 2.0 * x - 1.0

  def logits(self, x, training=False, labels=None):
    del training
    x = self.check_images(x)
    ops = _WholeImage(self, self._scaled(x))
    expand = lambda c: c if isinstance(c, float) else c[:, None, None, :]
    logits = self._network(ops, self._conditioning(labels), expand)
    return logits[..., None] if self.num_levels == 2 else logits[..., None, :]

  # --- Sampling ---------------------------------------------------------------------------------

  def _empty_state(self, num):
    h, w, _ = self.image_shape
    buffer = lambda layer, depth: tf.zeros([h + layer.height - 1, w + layer.width - 1, num, depth])
    buffers = []
    for conv_in, conv_out in zip(self.conv_in, self.conv_out):
      buffers += [buffer(conv_in, conv_in.kernel.shape[2]), buffer(conv_out,
                                                                     conv_out.kernel.shape[2])]
    n = self.event_size
    return {
        "image": buffer(self.first, 1),
        "buffers": buffers,
        "keys": [tf.zeros([num, self.num_heads, n, self.key_size]) for _ in self.key],
        "values": [tf.zeros([num, self.num_heads, n, v.units // self.num_heads])
                   for v in self.value],
    }

  def _sample_loop(self, num, seed, known, values, labels=None):
    h, w, _ = self.image_shape
    conditioning = self._conditioning(labels)

    def step(t, image, means, state):
      r, c = t // w, t % w
      ops = _OnePixel(self, t, state)
      logits = self._network(ops, conditioning, lambda cond: cond)
      value, mean = self.draw_pixel(logits, seeding.fold_in(seed, t))
      value, image, means = self.place_pixel(image, means, known, values, r, c, value, mean)
      return t + 1, image, means, ops.remember(self._scaled(value)[:, None])

    zeros = tf.zeros(tf.concat([[num], self.image_shape], 0))
    _, image, means, _ = tf.while_loop(lambda t, *_: t < h * w, step,
                                       (tf.constant(0), zeros, zeros, self._empty_state(num)))
    return image, means
