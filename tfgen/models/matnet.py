"""Matryoshka Networks: deep hierarchical VAEs with shared top-down inference and generation.

Factorisation, for M stochastic modules with Gaussian latents z_0 (top) … z_{M−1} (bottom):

  p(x, z) = ∏_i p(z_i | h_i) · p(x | h_M),      h_0 learned,  h_{i+1} = h_i + f_i(h_i, z_i)
  q(z | x) = ∏_i q(z_i | h_i, b_i, g_i),         g_{i+1} = g_i + e_i(g_i, h_i, b_i)

h_i is the top-down (TD) state, a deterministic function of z_<i; b_i the state of a bottom-up
(BU) residual network over x at the scale and depth mirroring module i; g_i the inference ("merge")
state that runs top-down beside h. Inference and generation share the TD computation: a posterior
draw z_i ~ q feeds the same merge f_i that a prior draw would. Every p(z_i | h_i) and q(z_i | ·) is
a diagonal Gaussian per unit (fully connected variant) or per channel and position (convolutional
variant, latents [h, w, c] at the TD state's resolution); q is parameterized relative to p
(loc_p + Δloc, scale_p · softplus(Δ)), so an inference network that outputs zero gives q = p.
p(x | h_M) is Bernoulli for binary images or a discretized 8-bit likelihood
(tfgen/distributions/likelihoods.py).

Bounds, with log wᵢ = log p(x, z⁽ⁱ⁾) − log q(z⁽ⁱ⁾ | x) for k draws z⁽ⁱ⁾ ~ q:

  ELBO = E_q[log p(x | z)] − Σ_i E_q[KL(q(z_i | ·) ‖ p(z_i | h_i))]     (KL_i in closed form given
                                                                       the drawn z_<i)
  IWAE_k = log (1/k) Σᵢ wᵢ  ≥ ELBO

Per-module KL terms `kl_0` (top) … `kl_{M−1}` sum to the `rate`. Upper modules tend to switch off
early in training; two remedies are options: KL warm-up (the KL weight β rises linearly from 0 to 1
over `kl_warmup_epochs`, held in a non-trainable variable that `update_schedules` sets) and free
bits (a module whose batch-mean KL is below `free_bits` nats pays that constant instead, with no
gradient pushing its KL lower; Kingma et al. 2016). The test NLL is −IWAE_K, K = 1000 … 5000,
drawn in chunks so memory is bounded.

References:
  Bachman, "An Architecture for Deep, Hierarchical Generative Models", NIPS 2016.
  Sønderby, Raiko, Maaløe, Sønderby & Winther, "Ladder Variational Autoencoders", NIPS 2016.
  Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling, "Improved Variational Inference with
    Inverse Autoregressive Flow", NIPS 2016 (free bits).
  Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

from typing import List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import layers
from tfgen import seeding
from tfgen.distributions import likelihoods
from tfgen.layers import matnet as blocks
from tfgen.models import base
from tfgen.models import registry

tfd = tfp.distributions

ARCHITECTURES = ("fc", "conv")
OBJECTIVES = base.OBJECTIVES


def _normal(loc, scale, event_ndims: int) -> tfd.Distribution:
  return tfd.Independent(tfd.Normal(tf.cast(loc, tf.float32), tf.cast(scale, tf.float32)),
                         event_ndims)


def _tile(t: tf.Tensor, num) -> tf.Tensor:
  """[B, …] -> [num·B, …], sample-major (row s·B + b is example b), so [num, B] reshapes back."""
  multiples = tf.concat([[num], tf.ones([t.shape.rank - 1], tf.int32)], 0)
  return tf.tile(t, multiples)


@registry.MODELS.register("matnet")
class MatNet(base.LatentVariableModel):
  """A Matryoshka Network, fully connected or convolutional (see module docstring).

  Args:
    image_shape: (H, W, C).
    architecture: "fc" (dense states and latents) or "conv" (feature maps, latents per channel and
      position).
    fc_modules: fc: number of stochastic modules.
    fc_width: fc: width of the TD, BU and inference states.
    fc_latent: fc: latents per module.
    conv_modules: conv: modules per scale, coarsest (top) first; scale s has resolution
      H / 2^(S−s) for S scales, so (2, 2) on 28×28 images puts two modules at 7×7 and two at 14×14.
    conv_channels: conv: channels of every state.
    conv_latent_channels: conv: latent channels per position.
    activation: Keras activation of the residual blocks.
    likelihood: pixel likelihood name ("bernoulli", "logistic", "normal"); empty: Bernoulli
      for binary images, a discretized logistic for 8-bit intensities.
    binary: whether the images are binary (from the data).
    learned_scale, fixed_scale: scale of a continuous likelihood.
    min_scale: floor of every latent standard deviation.
    **kwargs: the latent-variable core's: objective ("elbo" or "iwae"), num_importance_samples
      (k of the objective and of `bounds`), free_bits (nats per module below which a module's
      KL gets no gradient; ELBO only) and kl_warmup_epochs (epochs over which the KL weight
      rises from 0 to 1).
  """

  DATA_FIELDS = ("binary",)
  reports_layer_rates = True

  def __init__(self, image_shape, architecture: str = "fc", fc_modules: int = 4,
               fc_width: int = 256, fc_latent: int = 32, conv_modules: Sequence[int] = (2, 2),
               conv_channels: int = 64, conv_latent_channels: int = 4, activation: str = "elu",
               likelihood: str = "", binary: bool = True,
               learned_scale: bool = True, fixed_scale: float = 0.1, min_scale: float = 1e-3,
               **kwargs):
    super().__init__(image_shape, **kwargs)
    if architecture not in ARCHITECTURES:
      raise errors.ConfigError(f"unknown MatNet architecture {architecture!r}; known: "
                               f"{', '.join(ARCHITECTURES)}")
    if self.free_bits > 0 and self.objective != "elbo":
      raise errors.ConfigError("free bits apply to the ELBO objective; with objective 'iwae' use "
                               "kl_warmup_epochs instead")
    self.architecture = architecture
    likelihood = likelihood or ("bernoulli" if binary else "logistic")
    self.likelihood = likelihoods.build(likelihood, image_shape, binary, learned_scale,
                                        fixed_scale)
    try:
      self._activation = keras.activations.get(activation)
    except ValueError as e:
      raise errors.ConfigError(f"unknown activation {activation!r} in config.model.activation") from e
    h, w, c = self.image_shape
    num_params = self.likelihood.num_params

    if architecture == "fc":
      if fc_modules < 1 or fc_width < 1 or fc_latent < 1:
        raise errors.ConfigError("config.model.fc_modules, fc_width and fc_latent must be >= 1, "
                                 f"got {fc_modules}, {fc_width}, {fc_latent}")
      kind, width = "dense", int(fc_width)
      self.modules_per_scale = [int(fc_modules)]
      self.state_shapes = [(width,)]
      self.latent_shapes = [(int(fc_latent),)] * int(fc_modules)
      self.stem = keras.layers.Dense(width)
      self.downs, self.td_ups, self.im_ups = [], [], []
      self.out_up = None
      self.out = keras.layers.Dense(num_params * self.event_size)
    else:
      conv_modules = [int(m) for m in conv_modules]
      num_scales = len(conv_modules)
      if not conv_modules or min(conv_modules) < 1 or conv_channels < 1 or conv_latent_channels < 1:
        raise errors.ConfigError("config.model.conv_modules needs one count >= 1 per scale and "
                                 "conv_channels, conv_latent_channels must be >= 1, got "
                                 f"{conv_modules}, {conv_channels}, {conv_latent_channels}")
      factor = 2 ** num_scales
      if h % factor or w % factor:
        raise errors.ConfigError(f"{num_scales} scales halve {h}x{w} images {num_scales} times; "
                                 f"H and W must be divisible by {factor}")
      kind, width = "conv", int(conv_channels)
      self.modules_per_scale = conv_modules
      # Scale s (0 = top) has resolution H / 2^(S − s); the image is one doubling below the last.
      self.state_shapes = [(h // 2 ** (num_scales - s), w // 2 ** (num_scales - s), width)
                           for s in range(num_scales)]
      self.latent_shapes = [shape[:2] + (int(conv_latent_channels),)
                            for shape, m in zip(self.state_shapes, conv_modules) for _ in range(m)]
      self.stem = keras.layers.Conv2D(width, 3, padding="same")
      # BU downsamplings run fine to coarse: image -> bottom scale -> … -> top scale.
      self.downs = layers.track_list(self, "down", [blocks.linear(kind, width, strides=2)
                                                    for _ in range(num_scales)])
      self.td_ups = layers.track_list(self, "td_up", [
          blocks.linear(kind, width, strides=2, transpose=True) for _ in range(num_scales - 1)])
      self.im_ups = layers.track_list(self, "im_up", [
          blocks.linear(kind, width, strides=2, transpose=True) for _ in range(num_scales - 1)])
      self.out_up = blocks.linear(kind, width, strides=2, transpose=True)
      self.out = keras.layers.Conv2D(num_params * c, 3, padding="same")
    self.kind = kind
    self.num_modules = len(self.latent_shapes)
    self.latent_sizes = [int(np.prod(s)) for s in self.latent_shapes]
    # Module i's scale, and whether the TD/inference states are upsampled before it.
    self._module_scale = [s for s, m in enumerate(self.modules_per_scale) for _ in range(m)]
    self.bu_blocks = layers.track_list(self, "bu", [
        blocks.ResidualBranch(kind, width, activation) for _ in range(self.num_modules)])
    self.td_modules = layers.track_list(self, "module", [
        blocks.LatentModule(kind, width, shape[-1], activation, min_scale)
        for shape in self.latent_shapes])
    self.top_state = self.add_weight(
        shape=self.state_shapes[0], name="top_state",
        initializer=keras.initializers.RandomNormal(stddev=0.1))

  @classmethod
  def data_kwargs(cls, info):
    return {"binary": info.binary}

  # --- The two passes ---------------------------------------------------------------------------

  def _bottom_up(self, x) -> List[tf.Tensor]:
    """BU states b_i [B, …state] for every module i, top module first."""
    if self.kind == "dense":
      s = self.stem(tf.reshape(x, [-1, self.event_size]) - 0.5)
      states = []
      for block in self.bu_blocks:
        s = block(s)
        states.append(s)
      return states[::-1]
    s = self.stem(x - 0.5)
    states, blocks_used = [], 0
    # Fine to coarse: scale S−1 (just below the image) first, the top scale last.
    for scale in reversed(range(len(self.modules_per_scale))):
      s = self.downs[len(self.modules_per_scale) - 1 - scale](self._activation(s))
      for block in self.bu_blocks[blocks_used:blocks_used + self.modules_per_scale[scale]]:
        s = block(s)
        states.append(s)
      blocks_used += self.modules_per_scale[scale]
    return states[::-1]

  def _top_down(self, num, seed, bu: Optional[List[tf.Tensor]] = None,
                latents: Optional[List[tf.Tensor]] = None, use_mean: bool = False):
    """Runs the TD network over `num` rows, drawing (or taking) z_i module by module.

    Args:
      num: rows N (an int or an int32 scalar).
      seed: int32 [2]; module i draws with fold_in(seed, i).
      bu: BU states per module, each [N, …] (tiled already); None draws from the prior.
      latents: z_i per module, [N, …latent shape], used instead of draws.
      use_mean: take z_i = the mean of its distribution instead of a draw.

    Returns:
      params: the likelihood's parameters [N, …]; modules: per module a dict with `z`, prior
      `p_loc`, `p_scale` and, with bu, posterior `q_loc`, `q_scale`.
    """
    h = tf.broadcast_to(self.top_state, tf.concat([[num], tf.shape(self.top_state)], 0))
    g = tf.zeros_like(h) if bu is not None else None
    records = []
    for i, module in enumerate(self.td_modules):
      scale = self._module_scale[i]
      if i > 0 and scale != self._module_scale[i - 1]:
        h = self.td_ups[scale - 1](self._activation(h))
        if g is not None:
          g = self.im_ups[scale - 1](self._activation(g))
      p_loc, p_scale = module.prior(h)
      record = {"p_loc": p_loc, "p_scale": p_scale}
      loc, scale_ = p_loc, p_scale
      if bu is not None:
        loc, scale_, g = module.posterior(h, bu[i], g, p_loc, p_scale)
        record.update(q_loc=loc, q_scale=scale_)
      if latents is not None:
        z = latents[i]
      elif use_mean:
        z = loc
      else:
        z = loc + scale_ * tf.random.stateless_normal(tf.shape(loc), seeding.fold_in(seed, i))
      record["z"] = z
      records.append(record)
      h = module.merge(h, z)
    if self.kind == "conv":
      h = self.out_up(self._activation(h))
    return self.out(self._activation(h)), records

  def _pixels(self, params, leading) -> tfd.Distribution:
    """p(x | h_M) from params [N, …], reshaped to batch shape `leading` (e.g. [k, B])."""
    tail = params.shape[1:]
    params = tf.reshape(params, tf.concat([leading, tf.shape(params)[1:]], 0))
    # Keep the static trailing shape, which the likelihood reads to tell flat from image layout.
    params = tf.ensure_shape(params, [None] * int(leading.shape[0]) + tail.as_list())
    return self.likelihood.distribution(params)

  def _event_ndims(self) -> int:
    return 1 if self.kind == "dense" else 3

  def _posterior_pass(self, x, num, seed):
    """num draws z ~ q(z | x) for images x [B, …]: (params [num·B, …], module records).

    (MatNets have no batch norm or dropout, so nothing here depends on `training`.)
    """
    bu = [_tile(b, num) for b in self._bottom_up(x)]
    return self._top_down(num * tf.shape(x)[0], seed, bu=bu)

  # --- Distributions -----------------------------------------------------------------------------

  def prior(self) -> tfd.Distribution:
    """p(z_0 | h_0) of the top module (h_0 is learned); event shape [size of z_0]."""
    loc, scale = self.td_modules[0].prior(self.top_state[None])
    return _normal(tf.reshape(loc, [-1]), tf.reshape(scale, [-1]), 1)

  def encode(self, x, training=False) -> tfd.Distribution:
    """q over every module's latents, flattened and concatenated top first: [B, Σ sizes].

    The exact posterior of a lower module depends on the draws above it; this one is the
    diagonal Gaussian each module's q has when every module above takes its posterior mean (the
    "mean path"). `reconstruct` and the bounds draw from the full ancestral q instead.
    """
    del training
    x = self.check_images(x)
    bu = self._bottom_up(x)
    _, records = self._top_down(tf.shape(x)[0], seeding.as_seed(0), bu=bu, use_mean=True)
    batch = tf.shape(x)[0]
    loc = tf.concat([tf.reshape(r["q_loc"], [batch, -1]) for r in records], -1)
    scale = tf.concat([tf.reshape(r["q_scale"], [batch, -1]) for r in records], -1)
    return _normal(loc, scale, 1)

  def split_latents(self, z: tf.Tensor) -> List[tf.Tensor]:
    """[N, Σ sizes] -> per module [N, …latent shape]."""
    parts = tf.split(z, self.latent_sizes, axis=-1)
    return [tf.reshape(p, tf.concat([tf.shape(z)[:1], shape], 0))
            for p, shape in zip(parts, self.latent_shapes)]

  def decode(self, z, training=False) -> tfd.Distribution:
    """p(x | z) for every module's latents z [..., Σ sizes] (as `encode` lays them out)."""
    del training
    leading = tf.shape(z)[:-1]
    flat = tf.reshape(z, [-1, sum(self.latent_sizes)])
    params, _ = self._top_down(tf.shape(flat)[0], seeding.as_seed(0),
                               latents=self.split_latents(flat))
    return self._pixels(params, leading)

  # --- Bounds -----------------------------------------------------------------------------------

  def latent_terms(self, batch, num_samples, seed, training=False):
    """Module i pairs log q(z_i | ·) with log p(z_i | h_i), its KL in closed form given the draws
    above. (MatNets have no batch norm or dropout, so nothing depends on `training`.)"""
    del training
    x = self.images(batch)
    params, records = self._posterior_pass(x, num_samples, seed)
    leading = tf.stack([num_samples, tf.shape(x)[0]])
    log_px = self._pixels(params, leading).log_prob(x)
    nd = self._event_ndims()
    log_p, log_q, kls = [], [], []
    for r in records:
      p = _normal(r["p_loc"], r["p_scale"], nd)
      q = _normal(r["q_loc"], r["q_scale"], nd)
      log_p.append(tf.reshape(p.log_prob(r["z"]), leading))
      log_q.append(tf.reshape(q.log_prob(r["z"]), leading))
      kls.append(tf.reshape(tfd.kl_divergence(q, p), leading))
    return base.LatentTerms(log_px, log_p, log_q, kl=kls)

  # --- Sampling and codes -------------------------------------------------------------------------

  def sample(self, num, seed, mean=False):
    params, _ = self._top_down(num, seeding.fold_in(seed, 0))
    p_x = self._pixels(params, tf.reshape(tf.cast(num, tf.int32), [1]))
    return p_x.mean() if mean else p_x.sample(seed=seeding.fold_in(seed, 1))

  def reconstruct(self, x, seed):
    """Pixel means of p(x | z) at one ancestral draw z ~ q(z | x), [B, H, W, C]."""
    x = self.check_images(x)
    params, _ = self._posterior_pass(x, 1, seed)
    return self._pixels(params, tf.shape(x)[:1]).mean()

  def posterior_means(self, x, seed, num_samples: int = 10) -> List[tf.Tensor]:
    """Per module [B, size_i]: E_q[(μ_q − μ_p) / σ_p], the posterior mean in prior units.

    Below the top, p(z_i | h_i) moves with x through the draws above, so the raw posterior mean
    of a module whose q equals its prior (KL = 0) still varies with x; measured against the prior
    it is 0, and the active-unit count (Cov_x > 0.01) sees only what x itself adds. With an
    N(0, I) prior this is Burda et al.'s E_q[u]. The expectation averages num_samples draws of
    the modules above.
    """
    x = self.check_images(x)
    _, records = self._posterior_pass(x, num_samples, seed)
    batch = tf.shape(x)[0]
    return [tf.reduce_mean(tf.reshape((r["q_loc"] - r["p_loc"]) / r["p_scale"],
                                      [num_samples, batch, -1]), axis=0)
            for r in records]
