"""Normalizing flows for 8-bit images: RealNVP, Glow and MAF.

A flow is an invertible map f: w ↦ z onto a standard Normal z ~ N(0, I_D), D = H·W·C, so the
density of w is exact by the change of variables

  log p_W(w) = log N(f(w); 0, I) + log|det ∂f/∂w|.

The data are discrete, x ∈ {0, 1/255, …, 1}^D, and a density on them would be degenerate, so the
flow models dequantized values (Theis et al. 2016; the protocol of RealNVP, Glow and MAF):

  y = (255·x + u) / 256,   u ~ U[0, 1)^D           (each x owns a bin of volume 256^−D in [0, 1)^D)
  w = logit(α + (1 − 2α)·y)                         (α = `logit_alpha`; α = 0: w = y − 0.5)
  log p_Y(y) = log p_W(w) + log|det ∂w/∂y|,
  log P(x) = log ∫_bin p_Y(y) dy ≥ E_u[log p_Y(y)] − D·log 256   (Jensen).

With K draws u⁽ⁱ⁾ the importance-sampled log (1/K) Σᵢ p_Y(y⁽ⁱ⁾)·256^−D is still a lower bound on
log P(x), tighter as K grows (as for IWAE). Since p_Y integrates to at most 1 over [0, 1)^D, the
bound is ≤ 0 in expectation: bits/dim = −log P(x) / (D ln 2) ≥ 0, in bits of the 8-bit data.
With α > 0 the logit maps a slightly wider interval than [0, 1) onto R, and with α = 0 (Glow's
centring, no logit) p_W lives on all of R^D: in both cases the mass outside [0, 1)^D is simply
lost to the bound, never counted twice. `distribution()` is p_Y as a `tfd.TransformedDistribution`
of a standard Normal with event shape [H, W, C]; `flow_distribution()` is p_W.

Latent layout. The multi-scale flows (RealNVP, Glow) factor out half of the channels after each
scale; with a plain N(0, I) base the factored-out parts go straight to z, so the whole map is one
bijection R^D → R^D. z is stored in a fixed permuted layout: the factored-out parts in the order
they leave, then the last scale's output, each flattened, concatenated and reshaped to [H, W, C].
MAF flattens the image and reshapes its output the same way.

The three flows (subclasses supply f; `FlowModel` does the rest):

* RealNVP: per scale, 3 affine couplings with checkerboard masks (alternating parity), a 2x2
  squeeze, 3 couplings with channel masks (alternating halves), then half of the channels are
  factored out; the last scale has 4 checkerboard couplings only. Coupling networks are
  batch-norm free ResNets with a scale·tanh log-scale and a zero-initialised last layer, so the
  flow starts as the identity.
* Glow: per scale, a squeeze, then `steps_per_scale` steps of actnorm → invertible 1x1
  convolution (LU parametrisation, random rotation at first) → affine coupling on a channel
  split with scale σ(raw + 2); half of the channels are factored out after every scale but the
  last. Actnorm starts as the identity (no data-dependent initialisation).
* MAF: `num_flows` masked autoregressive affine transforms of the flattened image, each a MADE
  (masks from `tfgen.models.made.made_masks`), reversing the order between flows; no batch norm.
  Density evaluation is one pass per transform; sampling and `decode` run D sequential MADE
  passes per transform in a `tf.while_loop`.

Training (`loss(training=True)`) draws the dequantization noise independently per image;
evaluation (`loss(training=False)`, `bounds`, `log_prob`) shares draw i across the batch, so an
image's estimate depends on the seed and i, not on the batch it is in.

References:
  Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017.
  Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018.
  Papamakarios, Pavlakou & Murray, "Masked Autoregressive Flow for Density Estimation",
    NeurIPS 2017.
  Theis, van den Oord & Bethge, "A note on the evaluation of generative models", ICLR 2016.
"""

import abc
import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util

from tfgen import errors
from tfgen import layers
from tfgen import seeding
from tfgen import viz
from tfgen.layers import flow as flow_layers
from tfgen.models import base
from tfgen.models import capabilities as caps
from tfgen.models import made
from tfgen.models import registry

tfb = tfp.bijectors
tfd = tfp.distributions

NUM_LEVELS = 256
# Rows of `tfgen-sample --mode=temperatures`.
TEMPERATURES = (0.0, 0.25, 0.5, 0.75, 1.0)
SQUEEZE = "squeeze"
FACTOR_OUT = "factor_out"


class FlowBijector(tfb.Bijector):
  """A model's flow as a TFP bijector: forward z ↦ w (generation), inverse w ↦ z (density).

  The density direction computes z and log|det ∂z/∂w| in one pass, and `log_prob` runs the
  networks once: the log-det is filed with TFP's own cache entry for w (as FFJORD does), where
  the `inverse_log_det_jacobian` that TFP calls right after `inverse` finds it. That entry holds
  w, z and the log-det only while the caller still holds z, so a bijector kept for many batches
  (inverse calls with or without their log-det) keeps none of them.

  Args:
    to_latent: w [B, H, W, C] -> (z [B, H, W, C], log|det ∂z/∂w| [B]).
    from_latent: z [B, H, W, C] -> w [B, H, W, C].
  """

  # Not a dict of our own keyed on w.ref(): its strong references kept every w and log-det that
  # `inverse` saw without an `inverse_log_det_jacobian` after it, for the bijector's lifetime.
  _cache = cache_util.BijectorCacheWithGreedyAttrs(forward_name="_augmented_forward",
                                                   inverse_name="_augmented_inverse")

  def __init__(self, to_latent, from_latent, name: str = "flow"):
    parameters = dict(locals())
    super().__init__(forward_min_event_ndims=3, validate_args=False, parameters=parameters,
                     name=name)
    self._to_latent, self._from_latent = to_latent, from_latent

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict()

  def _augmented_forward(self, z):
    return self._from_latent(z), None

  def _augmented_inverse(self, w):
    z, log_det = self._to_latent(w)
    return z, {"ildj": log_det}

  def _forward(self, z):
    return self._from_latent(z)

  def _inverse(self, w):
    return self._to_latent(w)[0]

  def _inverse_log_det_jacobian(self, w):
    # Reached only when the cache has no log-det for w (w came from `forward`, or its z is gone).
    return self._to_latent(w)[1]


class FlowModel(base.GenerativeModel):
  """Dequantization, logit transform, bounds, sampling and codes shared by the flows.

  Subclasses implement `to_latent` and `from_latent`, the flow f on w-space.

  Args:
    image_shape: (H, W, C).
    logit_alpha: α of w = logit(α + (1 − 2α)·y), in [0, 0.5); 0 means no logit, w = y − 0.5.
    num_dequantization_samples: K of `loss`, `bounds` and the default of `log_prob`.
  """

  def __init__(self, image_shape, logit_alpha: float = 0.05,
               num_dequantization_samples: int = 1, **kwargs):
    super().__init__(image_shape, **kwargs)
    if not 0.0 <= logit_alpha < 0.5:
      raise errors.ConfigError(f"logit_alpha must lie in [0, 0.5), got {logit_alpha}")
    if num_dequantization_samples < 1:
      raise errors.ConfigError(f"num_dequantization_samples must be >= 1, got "
                               f"{num_dequantization_samples}")
    self.logit_alpha = float(logit_alpha)
    self.num_dequantization_samples = int(num_dequantization_samples)

  @classmethod
  def data_kwargs(cls, info):
    if info.binary:
      raise errors.ConfigError(f"the flows model 8-bit intensities; data set {info.name!r} is "
                               f"binarized ({info.binarization!r}): set "
                               "config.data.binarization='none'")
    return {}

  def _build_weights(self):
    """Creates every weight eagerly (subclasses call it last in __init__)."""
    self.to_latent(tf.zeros((1,) + self.image_shape))
    self.built = True  # Keras only sets it through __call__, which the contract never uses.

  # --- The flow on w-space (subclasses) --------------------------------------------------------

  @abc.abstractmethod
  def to_latent(self, w: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """f: w [B, H, W, C] -> (z [B, H, W, C], log|det ∂f/∂w| [B])."""

  @abc.abstractmethod
  def from_latent(self, z: tf.Tensor) -> tf.Tensor:
    """f⁻¹: z [B, H, W, C] -> w [B, H, W, C]."""

  # --- Distributions ---------------------------------------------------------------------------

  def data_bijector(self) -> tfb.Bijector:
    """w ↦ y, the inverse of the logit transform (elementwise)."""
    alpha = self.logit_alpha
    if alpha == 0.0:
      return tfb.Shift(0.5)
    return tfb.Chain([tfb.Scale(1.0 / (1.0 - 2.0 * alpha)), tfb.Shift(-alpha), tfb.Sigmoid()])

  def flow_bijector(self) -> tfb.Bijector:
    """z ↦ w, the generative direction of the flow."""
    return FlowBijector(self.to_latent, self.from_latent)

  def base_distribution(self) -> tfd.Distribution:
    """N(0, I) with event shape [H, W, C]."""
    return tfd.Independent(tfd.Normal(tf.zeros(self.image_shape), 1.0), 3)

  def flow_distribution(self) -> tfd.TransformedDistribution:
    """p_W on w-space; event shape [H, W, C]."""
    return tfd.TransformedDistribution(self.base_distribution(), self.flow_bijector())

  def distribution(self) -> tfd.TransformedDistribution:
    """p_Y of dequantized images y ∈ [0, 1)^D (support a little wider for α > 0)."""
    return tfd.TransformedDistribution(
        self.base_distribution(), tfb.Chain([self.data_bijector(), self.flow_bijector()]))

  # --- Dequantization --------------------------------------------------------------------------

  @staticmethod
  def _levels(x: tf.Tensor) -> tf.Tensor:
    """Intensities k = 255·x rounded, so float error in k/255 never changes the bin."""
    return tf.round(x * (NUM_LEVELS - 1))

  def to_8bit(self, y: tf.Tensor) -> tf.Tensor:
    """The 8-bit image k/255 whose bin holds y (values outside [0, 1) go to the end bins)."""
    k = tf.clip_by_value(tf.floor(y * NUM_LEVELS), 0.0, NUM_LEVELS - 1.0)
    return k / (NUM_LEVELS - 1)

  def log_weights(self, x: tf.Tensor, num_samples, seed: tf.Tensor,
                  shared: bool = True) -> tf.Tensor:
    """log p_Y(y⁽ⁱ⁾) − D·log 256 for num_samples dequantizations y⁽ⁱ⁾ of x, [num_samples, B].

    Args:
      x: 8-bit images k/255, [B, H, W, C].
      num_samples: a Python int or an int32 scalar tensor.
      seed: int32 [2].
      shared: use draw i's noise u⁽ⁱ⁾ for every image of the batch (evaluation), rather than
        independent noise per image (training).
    """
    x = self.check_images(x)
    batch = tf.shape(x)[0]
    num_samples = tf.convert_to_tensor(num_samples, tf.int32)
    noise_batch = 1 if shared else batch
    noise = tf.random.stateless_uniform(
        tf.concat([[num_samples, noise_batch], self.image_shape], 0), seed=seed)
    y = (self._levels(x)[None] + noise) / NUM_LEVELS  # [K, B, H, W, C]
    log_p = self.distribution().log_prob(tf.reshape(y, (-1,) + self.image_shape))
    return tf.reshape(log_p, [num_samples, batch]) - self.event_size * math.log(NUM_LEVELS)

  def _bound(self, x, num_samples: int, seed, shared: bool) -> tf.Tensor:
    """The K-sample bound in one pass (K a Python int), [B]."""
    log_w = self.log_weights(x, num_samples, seed, shared)
    return tf.reduce_logsumexp(log_w, axis=0) - math.log(num_samples)

  # --- The model contract ----------------------------------------------------------------------

  def loss(self, batch: Dict[str, tf.Tensor], seed: tf.Tensor,
           training: bool = False) -> Tuple[tf.Tensor, base.Metrics]:
    """−(dequantized bound on log P(x)) in nats per image, [B], and its metrics.

    Args:
      batch: dict with `image` float32 [B, H, W, C] holding k/255, k = 0..255.
      seed: int32 [2], draws the dequantization noise.
      training: draws noise independently per image; otherwise draw i is shared by the batch.

    Returns:
      loss [B]; metrics {"log_prob": [B], "bits_per_dim": [B]}.
    """
    x = self.images(batch)
    log_prob = self._bound(x, self.num_dequantization_samples, seed, shared=not training)
    return -log_prob, {"log_prob": log_prob, "bits_per_dim": self.bits_per_dim(log_prob)}

  def bounds(self, batch: Dict[str, tf.Tensor], seed: tf.Tensor) -> base.Metrics:
    """The K = `num_dequantization_samples` bound: {"log_prob", "bits_per_dim"}, each [B]."""
    log_prob = self.log_prob(batch, seed)
    return {"log_prob": log_prob, "bits_per_dim": self.bits_per_dim(log_prob)}

  def log_prob(self, batch: Dict[str, tf.Tensor], seed: tf.Tensor,
               num_importance_samples: Optional[int] = None) -> tf.Tensor:
    """log (1/K) Σᵢ p_Y(y⁽ⁱ⁾)·256^−D, a lower bound on log P(x) in nats, [B].

    The K dequantizations are drawn `importance_chunk_size` at a time, so memory stays that of
    that many passes over the batch.

    Args:
      batch: dict with `image` [B, H, W, C] (k/255).
      seed: int32 [2].
      num_importance_samples: K, a Python int or an int32 scalar tensor; None: the model's
        `num_dequantization_samples`.
    """
    x = self.images(batch)
    # Not `or`: under tf.function a tensor K would turn it into a conditional on an integer.
    k = (self.num_dequantization_samples if num_importance_samples is None
         else num_importance_samples)
    return base.chunked_logmeanexp(lambda n, s: self.log_weights(x, n, s), k,
                                   self.importance_chunk_size, seed)

  def log_prob_samples(self, num_importance_samples):
    return num_importance_samples

  def sample(self, num, seed: tf.Tensor, mean: bool = False,
             temperature: float = 1.0) -> tf.Tensor:
    """Draws z ~ N(0, T²·I) and maps it through f⁻¹ and the inverse logit, [num, H, W, C].

    A flow has no pixel means: `mean=True` returns the continuous y clipped to [0, 1], and
    `mean=False` the 8-bit image k/255 of y's bin, a draw from the discrete model. Temperature 0
    gives the image of z = 0, the same for every draw.

    Args:
      num: a Python int or an int32 scalar tensor.
      seed: int32 [2].
      mean: return y rather than its quantized image.
      temperature: T, the base's standard deviation.
    """
    shape = tf.concat([tf.reshape(tf.cast(num, tf.int32), [1]), self.image_shape], 0)
    z = temperature * tf.random.stateless_normal(shape, seed=seed)
    y = self.data_bijector().forward(self.from_latent(z))
    return tf.clip_by_value(y, 0.0, 1.0) if mean else self.to_8bit(y)

  def encode(self, images: tf.Tensor) -> tf.Tensor:
    """z = f(w(y)) of each image at the centre of its bin (u = 0.5), [B, H, W, C]."""
    y = (self._levels(self.check_images(images)) + 0.5) / NUM_LEVELS
    return self.to_latent(self.data_bijector().inverse(y))[0]

  def decode(self, z: tf.Tensor) -> tf.Tensor:
    """The 8-bit image k/255 of f⁻¹(z), [B, H, W, C]; decode(encode(x)) == x."""
    return self.to_8bit(self.data_bijector().forward(self.from_latent(z)))

  def call(self, images):
    return self.encode(images)

  # --- Declared capabilities -------------------------------------------------------------------

  def signatures(self):
    """sample; log_prob(images, num_importance_samples) with K dequantizations; the bijection
    itself: encode (images -> latents z, flattened [B, D]) and decode (latents -> images)."""
    size = self.event_size
    code = (tf.float32, (size,))
    pixels = {"images": (caps.PIXELS, caps.IMAGE)}

    def log_prob(images, num_importance_samples, seed):
      return self.scores(self.log_prob({"image": images}, seed, num_importance_samples))

    def encode(images, seed):
      del seed
      return {"latents": tf.reshape(self.encode(images), [-1, size])}

    def decode(latents, seed):
      del seed
      return {"images": self.decode(tf.reshape(latents, (-1,) + self.image_shape))}

    return {
        "sample": self.sample_signature(),
        "log_prob": caps.Signature(
            log_prob, (caps.Input(caps.IMAGES), caps.Input(caps.NUM_IMPORTANCE_SAMPLES)),
            base.SCORES, draws_per_item=lambda num_importance_samples: tf.minimum(
                num_importance_samples, self.importance_chunk_size)),
        "encode": caps.Signature(encode, (caps.Input(caps.IMAGES),), {"latents": code}),
        "decode": caps.Signature(decode, (caps.Input(caps.LATENTS, size),), pixels),
    }

  def sample_modes(self):
    modes = super().sample_modes()
    modes["temperatures"] = caps.SampleMode(
        self._temperatures_picture,
        help="rows of --num samples at temperatures 0, 0.25, 0.5, 0.75 and 1")
    return modes

  def _temperatures_picture(self, request):
    """Row i: `num` samples at temperature TEMPERATURES[i] (the same z scaled, so a column
    shows one draw cooling down)."""
    seed = seeding.as_seed(request.seed)
    rows = [self.sample(request.num, seed, mean=request.mean, temperature=t)
            for t in TEMPERATURES]
    return viz.image_grid(tf.concat(rows, 0).numpy(), request.num)


class MultiScaleFlow(FlowModel):
  """A flow given as a program of invertible layers, squeezes and factor-outs.

  Subclasses call `_set_program` with a list whose items are invertible layers (with
  `to_latent` / `from_latent`), SQUEEZE or FACTOR_OUT (half the channels leave for z).
  """

  def _set_program(self, program):
    steps = [op for op in program if not isinstance(op, str)]
    self.steps = layers.track_list(self, "step", steps)
    index = iter(range(len(steps)))
    self.program = tuple(op if isinstance(op, str) else next(index) for op in program)
    # The shapes of the parts of z, in the order they leave the flow.
    height, width, channels = self.image_shape
    pieces = []
    for op in self.program:
      if op == SQUEEZE:
        height, width, channels = height // 2, width // 2, channels * 4
      elif op == FACTOR_OUT:
        pieces.append((height, width, channels // 2))
        channels -= channels // 2
    self.piece_shapes = tuple(pieces) + ((height, width, channels),)

  def to_latent(self, w):
    batch = tf.shape(w)[0]
    h, log_det, pieces = w, tf.zeros([batch]), []
    for op in self.program:
      if op == SQUEEZE:
        h = flow_layers.squeeze(h)
      elif op == FACTOR_OUT:
        half = h.shape[-1] // 2
        pieces.append(h[..., :half])
        h = h[..., half:]
      else:
        h, step_log_det = self.steps[op].to_latent(h)
        log_det += step_log_det
    flat = tf.concat([tf.reshape(p, [batch, -1]) for p in pieces + [h]], axis=1)
    return tf.reshape(flat, tf.concat([[batch], self.image_shape], 0)), log_det

  def from_latent(self, z):
    batch = tf.shape(z)[0]
    flat = tf.reshape(z, [batch, self.event_size])
    sizes = [math.prod(s) for s in self.piece_shapes]
    pieces = [tf.reshape(p, tf.concat([[batch], s], 0))
              for p, s in zip(tf.split(flat, sizes, axis=1), self.piece_shapes)]
    h = pieces.pop()
    for op in reversed(self.program):
      if op == SQUEEZE:
        h = flow_layers.unsqueeze(h)
      elif op == FACTOR_OUT:
        h = tf.concat([pieces.pop(), h], axis=-1)
      else:
        h = self.steps[op].from_latent(h)
    return h


def _check_positive(**values):
  for name, value in values.items():
    if value < 1:
      raise errors.ConfigError(f"{name} must be >= 1, got {value}")


def _check_divisible(model: str, image_shape, squeezes: int, num_scales: int):
  factor = 2 ** squeezes
  if image_shape[0] % factor or image_shape[1] % factor:
    raise errors.ConfigError(
        f"{model} with num_scales={num_scales} squeezes {squeezes} times, so the image height "
        f"and width must be divisible by {factor}; got {tuple(image_shape)}")


@registry.MODELS.register("realnvp")
class RealNVP(MultiScaleFlow):
  """Multi-scale RealNVP with checkerboard and channel affine couplings.

  Args:
    image_shape: (H, W, C); H and W divisible by 2^(num_scales − 1).
    num_scales: scales; all but the last end with a squeeze and a factor-out.
    hidden_channels: channels of the coupling ResNets.
    num_blocks: residual blocks per coupling ResNet.
    logit_alpha: see `FlowModel` (0.05 as RealNVP used for MNIST).
    num_dequantization_samples: see `FlowModel`.
  """

  def __init__(self, image_shape, num_scales: int = 2, hidden_channels: int = 64,
               num_blocks: int = 4, logit_alpha: float = 0.05,
               num_dequantization_samples: int = 1, **kwargs):
    super().__init__(image_shape, logit_alpha, num_dequantization_samples, **kwargs)
    _check_positive(num_scales=num_scales, hidden_channels=hidden_channels,
                    num_blocks=num_blocks)
    _check_divisible("RealNVP", self.image_shape, num_scales - 1, num_scales)
    self.num_scales, self.hidden_channels, self.num_blocks = num_scales, hidden_channels, num_blocks
    coupling = lambda shape, mask, parity: flow_layers.AffineCoupling(
        shape, mask, parity, hidden_channels, num_blocks)
    height, width, channels = self.image_shape
    program = []
    for scale in range(num_scales):
      last = scale == num_scales - 1
      shape = (height, width, channels)
      program += [coupling(shape, "checkerboard", i % 2) for i in range(4 if last else 3)]
      if last:
        break
      height, width, channels = height // 2, width // 2, channels * 4
      shape = (height, width, channels)
      program += [SQUEEZE] + [coupling(shape, "channel", i % 2) for i in range(3)]
      program.append(FACTOR_OUT)
      channels -= channels // 2
    self._set_program(program)
    self._build_weights()


@registry.MODELS.register("glow")
class Glow(MultiScaleFlow):
  """Glow: squeeze, steps of actnorm → invertible 1x1 convolution → affine coupling, factor-out.

  Args:
    image_shape: (H, W, C); H and W divisible by 2^num_scales.
    num_scales: scales (L); each starts with a squeeze, all but the last end with a factor-out.
    steps_per_scale: flow steps per scale (K).
    hidden_channels: channels of the coupling networks.
    logit_alpha: see `FlowModel` (0: Glow's own w = y − 0.5).
    num_dequantization_samples: see `FlowModel`.
    seed: draws the initial rotations of the 1x1 convolutions.
  """

  def __init__(self, image_shape, num_scales: int = 2, steps_per_scale: int = 8,
               hidden_channels: int = 128, logit_alpha: float = 0.05,
               num_dequantization_samples: int = 1, seed: int = 0, **kwargs):
    super().__init__(image_shape, logit_alpha, num_dequantization_samples, **kwargs)
    _check_positive(num_scales=num_scales, steps_per_scale=steps_per_scale,
                    hidden_channels=hidden_channels)
    _check_divisible("Glow", self.image_shape, num_scales, num_scales)
    self.num_scales, self.steps_per_scale = num_scales, steps_per_scale
    self.hidden_channels = hidden_channels
    rng = np.random.RandomState(seed)
    height, width, channels = self.image_shape
    program = []
    for scale in range(num_scales):
      height, width, channels = height // 2, width // 2, channels * 4
      shape = (height, width, channels)
      program.append(SQUEEZE)
      for _ in range(steps_per_scale):
        program += [flow_layers.ActNorm(shape), flow_layers.InvertibleConv1x1(shape, rng),
                    flow_layers.GlowCoupling(shape, hidden_channels)]
      if scale < num_scales - 1:
        program.append(FACTOR_OUT)
        channels -= channels // 2
    self._set_program(program)
    self._build_weights()


@registry.MODELS.register("maf")
class MAF(FlowModel):
  """Masked autoregressive flow on the flattened image.

  Args:
    image_shape: (H, W, C).
    num_flows: MADE transforms; the order is reversed between consecutive ones.
    hidden_sizes: hidden layer widths of each MADE.
    logit_alpha: see `FlowModel`.
    num_dequantization_samples: see `FlowModel`.
    seed: draws the MADEs' hidden degrees.
    log_scale_bound: each transform's log-scale α is bound·tanh(raw / bound).
  """

  def __init__(self, image_shape, num_flows: int = 5, hidden_sizes: Sequence[int] = (1024,),
               logit_alpha: float = 0.05, num_dequantization_samples: int = 1, seed: int = 0,
               log_scale_bound: float = 5.0, **kwargs):
    super().__init__(image_shape, logit_alpha, num_dequantization_samples, **kwargs)
    hidden_sizes = tuple(int(h) for h in hidden_sizes)
    _check_positive(num_flows=num_flows)
    if log_scale_bound <= 0:
      raise errors.ConfigError(f"log_scale_bound must be > 0, got {log_scale_bound}")
    if any(h < 1 for h in hidden_sizes):
      raise errors.ConfigError(f"hidden_sizes must be >= 1 each, got {hidden_sizes}")
    self.num_flows, self.hidden_sizes = num_flows, hidden_sizes
    rng = np.random.RandomState(seed)
    degrees = np.arange(1, self.event_size + 1)
    self.transforms = layers.track_list(self, "transform", [
        flow_layers.MaskedAutoregressiveAffine(made.made_masks(degrees, hidden_sizes, 2, rng),
                                               log_scale_bound)
        for _ in range(num_flows)])
    self._build_weights()

  def to_latent(self, w):
    batch = tf.shape(w)[0]
    h, log_det = tf.reshape(w, [batch, self.event_size]), tf.zeros([batch])
    for i, transform in enumerate(self.transforms):
      if i > 0:
        h = tf.reverse(h, axis=[1])
      h, step_log_det = transform.to_latent(h)
      log_det += step_log_det
    return tf.reshape(h, tf.concat([[batch], self.image_shape], 0)), log_det

  def from_latent(self, z):
    batch = tf.shape(z)[0]
    h = tf.reshape(z, [batch, self.event_size])
    for i in reversed(range(self.num_flows)):
      h = self.transforms[i].from_latent(h)
      if i > 0:
        h = tf.reverse(h, axis=[1])
    return tf.reshape(h, tf.concat([[batch], self.image_shape], 0))
