"""PixelCNN and Gated PixelCNN for binary, 8-bit grey and 8-bit colour images.

Factorisation over pixels in raster order and, within a pixel, over its channels R | G | B:

  p(x) = ∏_{r,c} ∏_{k} p(x_{r,c,k} | x_{<(r,c)}, x_{r,c,<k}),

each conditional computed by masked convolutions (tfgen/layers/masked.py). On colour images the
feature maps of every layer are split into three groups, one per colour; at the centre pixel the
group of G sees R's, and B's sees R's and G's (channel masks "A" and "B").

* PixelCNN: a 7×7 mask-A convolution, residual blocks ReLU → 1×1 → ReLU → 3×3 mask-B → ReLU →
  1×1 (+ skip), then ReLU → 1×1 → ReLU → 1×1 to Bernoulli or K-way logits per sub-pixel. On
  colour images every 1×1 layer carries the channel mask too.
* Gated PixelCNN: a vertical stack (k×k over the rows above and the current row) and a
  horizontal stack (1×k over the current row, left of the pixel), joined through a down-shifted
  1×1 link so that the receptive field has no blind spot; gated units tanh(a)·σ(b); an optional
  class embedding added inside every gate (`sample(num, labels=...)` draws chosen classes). The
  horizontal stack and the layers after it carry the channel masks; the vertical stack sees only
  the rows above, as on grey images, so it needs none.

Outputs (`output`):
* "categorical": a Bernoulli (binary data) or K-way softmax (K = 256 for 8-bit data) per
  sub-pixel, with the channel masks above.
* "logistic_mixture": PixelCNN++'s discretized logistic mixture of a whole pixel
  (`tfgen.distributions.DiscretizedLogisticMixture`, `num_mixtures` components): all its
  parameters come from the pixels before, through pixel-level masks (no channel groups), and
  the channels depend on each other through the mixture component they share and the linear
  shift of G's location by R and of B's by R and G. 10·M outputs per colour pixel instead of
  3·256.

Sampling is one `tf.while_loop` over the pixels and, for categorical outputs, the channels of
each pixel. No conditional depends on rows below its own, so the sampler keeps every layer's
activations and, for each step, recomputes only the current row of each layer (its inputs above
are final): per image W·C row passes per row instead of H·W·C full-image passes. A mixture pixel
takes one row pass, its channels drawn in turn from it.

References:
  van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016
    (channel masks, section 3.4).
  van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu, "Conditional Image
    Generation with PixelCNN Decoders", NeurIPS 2016.
  Salimans, Karpathy, Chen & Kingma, "PixelCNN++: Improving the PixelCNN with Discretized
    Logistic Mixture Likelihood and Other Modifications", ICLR 2017.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import layers
from tfgen import seeding
from tfgen.distributions import discretized
from tfgen.layers import masked
from tfgen.models import autoregressive
from tfgen.models import registry

tfd = tfp.distributions

OUTPUTS = ("categorical", "logistic_mixture")
SUPPORTED_CHANNELS = (1, 3)
# Floor of the mixture's scales: below a tenth of a bin width the likelihood stops changing.
MIN_SCALE_BINS = 0.1


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
  """What the two PixelCNNs share: outputs, channel groups and the sampling loop; they differ in
  `logits` and `_row_logits`.

  Args:
    image_shape: (H, W, C), C = 1 or 3.
    num_levels: 2 (Bernoulli) or K > 2 (K-way categorical, or the levels the mixture is
      discretized to).
    output: "categorical" or "logistic_mixture" (see module docstring).
    num_mixtures: mixture components of "logistic_mixture" (10 in PixelCNN++).
  """

  def __init__(self, image_shape, num_levels, output, num_mixtures, **kwargs):
    super().__init__(image_shape, num_levels, **kwargs)
    channels = self.image_shape[-1]
    if channels not in SUPPORTED_CHANNELS:
      raise errors.ConfigError(f"the PixelCNNs model images of 1 or 3 channels, got shape "
                               f"{self.image_shape}")
    if output not in OUTPUTS:
      raise errors.ConfigError(f"unknown PixelCNN output {output!r}; known: {', '.join(OUTPUTS)}")
    if int(num_mixtures) < 1:
      raise errors.ConfigError(f"num_mixtures must be at least 1, got {num_mixtures}")
    self.output_kind, self.num_mixtures = output, int(num_mixtures)
    self.mixture = output == "logistic_mixture"
    # Colour groups of the masks: a mixture's parameters all come from the pixels before.
    self.colours = 1 if self.mixture else channels

  @classmethod
  def from_model_config(cls, config, info):
    if config.get("output") == "logistic_mixture" and info.binary:
      raise errors.ConfigError(
          "output=logistic_mixture models 8-bit intensities, but the data are binarized "
          f"({info.binarization}); use output=categorical or --config.data.binarization=none")
    return super().from_model_config(config, info)

  def _check_width(self, name, width):
    """Every colour group of a layer needs a feature map."""
    if width < self.colours:
      raise errors.ConfigError(f"{name}={width} is too narrow for {self.colours} colour groups "
                               f"(needs at least {self.colours})")

  def _dense(self, units, out_parts=1):
    """A 1×1 layer: plain on single-channel data (and mixtures), channel-masked on colour."""
    if self.colours == 1:
      return keras.layers.Dense(units)
    return masked.ChannelMaskedDense(units, self.colours, out_parts)

  @property
  def pixel_outputs(self) -> int:
    """Network outputs per pixel."""
    c = self.image_shape[-1]
    if self.mixture:
      return self.num_mixtures * (1 + 2 * c + c * (c - 1) // 2)
    return c * self.num_outputs

  def _to_logits(self, raw):
    """[..., pixel_outputs] to [..., C] (binary), [..., C, K] (categorical) or, for a mixture,
    its parameters [..., pixel_outputs] as they are."""
    if self.mixture:
      return raw
    if self.num_levels == 2:
      return raw  # One logit per channel, channel c's output c.
    # Output map i belongs to colour i // K (masked.channel_groups).
    return tf.reshape(raw, tf.concat([tf.shape(raw)[:-1], [self.image_shape[-1],
                                                           self.num_levels]], 0))

  def _mixture(self, params) -> discretized.DiscretizedLogisticMixture:
    """The mixture of each pixel from its parameters [..., pixel_outputs]; batch shape [...]."""
    params = tf.cast(params, tf.float32)  # float32 likelihoods under mixed precision.
    c, m = self.image_shape[-1], self.num_mixtures
    logits, locs, scales, coefficients = tf.split(
        params, [m, c * m, c * m, c * (c - 1) // 2 * m], axis=-1)
    batch = tf.shape(params)[:-1]
    shaped = lambda t, rows: tf.reshape(t, tf.concat([batch, [rows, m]], 0))
    min_scale = MIN_SCALE_BINS * 0.5 / (self.num_levels - 1)
    # Locations around mid-grey, unsquashed (as tfgen's discretized likelihoods); tanh bounds
    # the linear dependence as in PixelCNN++.
    return discretized.DiscretizedLogisticMixture(
        logits, shaped(locs, c) + 0.5, tf.nn.softplus(shaped(scales, c)) + min_scale,
        tf.tanh(shaped(coefficients, c * (c - 1) // 2)), num_levels=self.num_levels)

  def distribution(self, logits):
    if not self.mixture:
      return super().distribution(logits)
    return tfd.Independent(self._mixture(logits), 2)

  def targets(self, x):
    if not self.mixture:
      return super().targets(x)
    top = self.num_levels - 1.0
    return tf.round(x * top) / top  # Levels in [0, 1] units, as the mixture reads them.

  def _conditioning(self, labels):
    return None

  def _sample_loop(self, num, seed, known, values, labels=None):
    h, w, channels = self.image_shape
    caches = self._empty_caches(num)
    conditioning = self._conditioning(labels)
    # A categorical sub-pixel per step (its row recomputed once the channels before are in
    # place); a mixture pixel, all channels, per step.
    per_pixel = 1 if self.mixture else channels

    def finish_row_above(image, r, caches):
      # Row r − 1 was last computed before its last sub-pixel was drawn: bring it up to date
      # once, so that every row above the current one is final in the caches.
      return self._row_logits(image, r - 1, caches, conditioning)[1]

    def step(t, image, means, caches):
      pixel, k = t // per_pixel, t % per_pixel
      r, c = pixel // w, pixel % w
      caches = tf.cond(tf.logical_and(tf.logical_and(c == 0, k == 0), r > 0),
                       lambda: finish_row_above(image, r, caches), lambda: caches)
      logits_row, caches = self._row_logits(image, r, caches, conditioning)
      if self.mixture:
        image, means = self._draw_mixture_pixel(
            logits_row[:, c], image, means, known, values, r, c, seeding.fold_in(seed, t))
        return t + 1, image, means, caches
      logits = tf.gather(logits_row[:, c], k, axis=1)  # [B] or [B, K]
      value, mean = self.draw_pixel(logits, seeding.fold_in(seed, t))
      _, image, means = self.place_pixel(image, means, known, values, r, c, value, mean, k)
      return t + 1, image, means, caches

    zeros = tf.zeros(tf.concat([[num], self.image_shape], 0))
    _, image, means, _ = tf.while_loop(lambda t, *_: t < h * w * per_pixel, step,
                                       (tf.constant(0), zeros, zeros, caches))
    return image, means

  def _draw_mixture_pixel(self, params, image, means, known, values, r, c, seed):
    """Draws pixel (r, c) channel by channel from its mixture (params [B, pixel_outputs]),
    each channel given the ones before as drawn or known."""
    mixture = self._mixture(params)
    pixel = tf.zeros([tf.shape(params)[0], self.image_shape[-1]])
    for k in range(self.image_shape[-1]):
      value, mean = mixture.draw_channel(pixel, k, seeding.fold_in(seed, k))
      value, image, means = self.place_pixel(image, means, known, values, r, c, value, mean, k)
      pixel = tf.concat([pixel[:, :k], value[:, None], pixel[:, k + 1:]], axis=1)
    return image, means


@registry.MODELS.register("pixelcnn")
class PixelCNN(_PixelModelBase):
  """PixelCNN with residual blocks of mask-B convolutions.

  Args:
    image_shape: (H, W, C), C = 1 or 3.
    num_blocks: residual blocks (15 at paper scale).
    channels: width of the residual stream (128 at paper scale); blocks narrow to half of it.
    first_kernel_size: k of the first, k×k mask-A convolution (7 in the paper).
    output: "categorical" (per sub-pixel) or "logistic_mixture" (per pixel, PixelCNN++).
    num_mixtures: components of the logistic mixture.
    num_levels: 2 (Bernoulli) or K > 2 (K-way categorical).
  """

  def __init__(self, image_shape, num_blocks: int = 15, channels: int = 128,
               first_kernel_size: int = 7, output: str = "categorical", num_mixtures: int = 10,
               num_levels: int = 2, **kwargs):
    super().__init__(image_shape, num_levels, output, num_mixtures, **kwargs)
    half = channels // 2
    self._check_width("channels // 2", half)
    self.channels, self.half = channels, half
    colours = self.colours
    self.first = masked.MaskedConv2D(channels, first_kernel_size, "A", colours=colours)
    self.reduce = layers.track_list(self, "reduce", [self._dense(half)
                                                     for _ in range(num_blocks)])
    self.spatial = layers.track_list(self, "spatial", [
        masked.MaskedConv2D(half, 3, "B", colours=colours) for _ in range(num_blocks)])
    self.expand = layers.track_list(self, "expand", [self._dense(channels)
                                                     for _ in range(num_blocks)])
    self.head = self._dense(channels)
    self.out = self._dense(self.pixel_outputs)

  def _logits_from(self, stream):
    return self._to_logits(self.out(tf.nn.relu(self.head(tf.nn.relu(stream)))))

  def logits(self, x, training=False):
    del training
    x = self.check_images(x)
    stream = self.first(x)
    for reduce, spatial, expand in zip(self.reduce, self.spatial, self.expand):
      u = tf.nn.relu(reduce(tf.nn.relu(stream)))
      stream = stream + expand(tf.nn.relu(spatial(u)))
    return self._logits_from(stream)

  def _empty_caches(self, num):
    h, w, c = self.image_shape
    # The image, padded by k//2 rows for the k×k first kernel (3 for 7×7), and every block's
    # 3×3 input, by 1 row.
    return [_RowCache(num, h, w, c, self.first.height - 1).value] + [
        _RowCache(num, h, w, self.half, 1).value for _ in self.spatial]

  def _row_logits(self, image, r, caches, conditioning):
    """Row r's logits ([B, W, C], [B, W, C, K] or mixture parameters [B, W, P]) and the caches
    with row r recomputed from `image`."""
    del conditioning
    pad = self.first.height - 1
    image_cache = _RowCache.update(caches[0], r, pad, image[:, r:r + 1])
    stream = self.first.call_row(_RowCache.window(image_cache, r, pad, self.first.height))
    new_caches = [image_cache]
    for i, (reduce, spatial, expand) in enumerate(zip(self.reduce, self.spatial, self.expand)):
      u = tf.nn.relu(reduce(tf.nn.relu(stream)))
      cache = _RowCache.update(caches[i + 1], r, 1, u)
      stream = stream + expand(tf.nn.relu(spatial.call_row(_RowCache.window(cache, r, 1, 2))))
      new_caches.append(cache)
    return self._logits_from(stream)[:, 0], new_caches


def _gate(x):
  a, b = tf.split(x, 2, axis=-1)
  return tf.tanh(a) * tf.sigmoid(b)


@registry.MODELS.register("gated_pixelcnn")
class GatedPixelCNN(_PixelModelBase):
  """Gated PixelCNN without the blind spot, optionally class-conditional.

  Args:
    image_shape: (H, W, C), C = 1 or 3.
    num_layers: gated layers (the first has mask A in its horizontal stack).
    channels: feature maps per stack.
    kernel_size: k of the k×k vertical and 1×k horizontal convolutions of layers after the first.
    first_kernel_size: k of the first layer's convolutions (7 in the paper).
    class_conditional: condition every gate on the image's class (read from batch["label"]).
    output: "categorical" (per sub-pixel) or "logistic_mixture" (per pixel, PixelCNN++).
    num_mixtures: components of the logistic mixture.
    num_classes: classes of the data (from the data); used when class_conditional.
    num_levels: 2 (Bernoulli) or K > 2 (K-way categorical).
  """

  DATA_FIELDS = ("num_levels", "num_classes")

  def __init__(self, image_shape, num_layers: int = 15, channels: int = 128,
               kernel_size: int = 3, first_kernel_size: int = 7, class_conditional: bool = False,
               output: str = "categorical", num_mixtures: int = 10, num_classes=None,
               num_levels: int = 2, **kwargs):
    super().__init__(image_shape, num_levels, output, num_mixtures, **kwargs)
    if class_conditional and not num_classes:
      raise errors.ConfigError("class_conditional needs labels; the data set has none")
    self._check_width("channels", channels)
    self.channels = channels
    self.num_classes = int(num_classes) if class_conditional else None
    sizes = [first_kernel_size] + [kernel_size] * (num_layers - 1)
    self.vertical = layers.track_list(self, "vertical", [
        masked.MaskedConv2D(2 * channels, k, "V") for k in sizes])
    # Pre-activations [a | b] of the gates: two blocks, so that a_i and b_i share a colour group.
    self.horizontal = layers.track_list(self, "horizontal", [
        masked.MaskedConv2D(2 * channels, k, "A" if i == 0 else "B", height=1,
                            colours=self.colours, out_parts=2)
        for i, k in enumerate(sizes)])
    # The link reads only the rows above (the shifted vertical stack): no channel mask needed.
    self.link = layers.track_list(self, "link", [keras.layers.Dense(2 * channels) for _ in sizes])
    self.residual = layers.track_list(self, "residual", [self._dense(channels)
                                                         for _ in sizes])
    self.embeddings = layers.track_list(self, "embedding", [
        keras.layers.Embedding(num_classes, 2 * channels) for _ in sizes] if num_classes else [])
    self.head = self._dense(channels)
    self.out = self._dense(self.pixel_outputs)

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
    return self._to_logits(self.out(tf.nn.relu(self.head(tf.nn.relu(h)))))

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
    return self._head(h_in)

  def _empty_caches(self, num):
    h, w, c = self.image_shape
    caches = []
    for vertical in self.vertical:
      pad = vertical.height - 1
      # Each layer's vertical input (padded for its kernel) and its pre-activation rows.
      caches.append(_RowCache(num, h, w, c if not caches else self.channels, pad).value)
      caches.append(_RowCache(num, h, w, 2 * self.channels, 1).value)
    return caches

  def _row_logits(self, image, r, caches, conditioning):
    """Row r's logits ([B, W, C], [B, W, C, K] or mixture parameters [B, W, P]) and the caches
    with row r recomputed from `image`."""
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
    return self._head(h_in)[:, 0], new_caches
