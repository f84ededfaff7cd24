"""Variational Sparse Coding: a VAE whose latents follow a spike-and-slab prior.

Factorisation, for J latent dimensions and pixels x:

  p(x, z) = p(x | z) · ∏ⱼ p(zⱼ),      p(zⱼ) = α · N(zⱼ; 0, 1) + (1 − α) · δ₀(zⱼ)
  q(z | x) = ∏ⱼ γⱼ(x) · N(zⱼ; μⱼ(x), σⱼ²(x)) + (1 − γⱼ(x)) · δ₀(zⱼ)

so each image switches on only the few dimensions it needs (α is the prior probability that a
dimension is active). Training maximizes

  ELBO = E_q[log p(x | z)] − Σⱼ KL(q(zⱼ | x) ‖ p(zⱼ))

with the KL in closed form (tfgen.distributions.SpikeAndSlab) and the expectation over relaxed
draws z = sigmoid(c · (η + γ − 1)) ⊙ (μ + σ ε), whose sharpness c grows during training (a
schedule kept in a variable). Evaluation uses exact draws: the ELBO, and the importance-weighted
bound log (1/K) Σᵢ p(x, z⁽ⁱ⁾) / q(z⁽ⁱ⁾ | x) with densities relative to Lebesgue measure plus an
atom at 0, an unbiased estimate of p(x) for every K.

With α = 1 the prior is N(0, I), the posterior has no spike (γ ≡ 1) and VSC is the plain VAE of
the same architecture; that is the baseline the paper compares against.

Likelihood: Bernoulli (binary images, or grey-scale intensities as in the paper, where it is a
cross-entropy rather than a normalized likelihood of 8-bit data) or a discretized Logistic or
Normal over 8-bit levels (tfgen.distributions.likelihoods).

Architectures: "mlp" (784-400-J for MNIST and Fashion-MNIST; 2000-2000 hidden for CelebA) and
"conv" (stride-2 convolutions, for CelebA 64x64).

References:
  Tonolini, Jensen & Murray-Smith, "Variational Sparse Coding", UAI 2019 (PMLR 115).
  Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

import math
from typing import List, Sequence

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import layers
from tfgen import schedules
from tfgen.distributions import likelihoods
from tfgen.distributions.spike_and_slab import SpikeAndSlab
from tfgen.models import base
from tfgen.models import registry

tfd = tfp.distributions

ARCHITECTURES = ("mlp", "conv")
# A dimension counts as used by an image when its posterior puts at least this mass on the slab.
ACTIVE_THRESHOLD = 0.5


@registry.MODELS.register("vsc")
class VSC(base.LatentVariableModel):
  """Variational Sparse Coding with an MLP or convolutional encoder and decoder.

  Args:
    image_shape: (H, W, C).
    latent_size: J, the number of latent dimensions.
    alpha: prior probability that a dimension is active, in (0, 1]; 1 gives the plain VAE.
    architecture: "mlp" or "conv".
    hidden_sizes: MLP hidden layers of the encoder (the decoder mirrors them); for "conv", the
      dense layer between the convolutions and the latents (its first entry, 0 for none).
    conv_filters: "conv" only: channels of the stride-2 convolutions, finest first.
    activation: activation of the hidden layers.
    likelihood: "bernoulli", "logistic" or "normal" (see tfgen.distributions.likelihoods).
    binary: whether the images are binary (continuous likelihoods need 8-bit data).
    learned_scale, fixed_scale: scale of a continuous likelihood.
    num_importance_samples: draws per example in training (averaged ELBO) and in `bounds`.
    sharpness_start, sharpness_end: the relaxation's c at step 0 and after the warm-up.
    sharpness_warmup_steps: steps over which c grows linearly from start to end.
    kl_warmup_steps: steps over which the weight of the KL term in the training loss grows
      linearly from 0 to 1 (0: always 1). Early on, the KL would switch off every dimension
      before the decoder learns to use any; the warm-up (Sønderby et al. 2016) lets codes form
      first. Reported ELBOs always weight the KL by 1.
    min_scale: floor of the slab standard deviations.
  """

  def __init__(self, image_shape, latent_size: int = 200, alpha: float = 0.01,
               architecture: str = "mlp", hidden_sizes: Sequence[int] = (400,),
               conv_filters: Sequence[int] = (32, 32, 64, 64), activation: str = "relu",
               likelihood: str = "bernoulli", binary: bool = True, learned_scale: bool = True,
               fixed_scale: float = 0.1, num_importance_samples: int = 1,
               sharpness_start: float = 50.0, sharpness_end: float = 200.0,
               sharpness_warmup_steps: int = 10000, kl_warmup_steps: int = 0,
               min_scale: float = 1e-4, **kwargs):
    super().__init__(image_shape, **kwargs)
    if not 0.0 < alpha <= 1.0:
      raise errors.ConfigError(f"config.model.alpha must lie in (0, 1], got {alpha}")
    if latent_size < 1 or num_importance_samples < 1:
      raise errors.ConfigError("config.model.latent_size and num_importance_samples must be >= 1")
    if architecture not in ARCHITECTURES:
      raise errors.ConfigError(f"unknown VSC architecture {architecture!r}; known: "
                               f"{', '.join(ARCHITECTURES)}")
    if sharpness_start <= 0 or sharpness_end <= 0 or min(sharpness_warmup_steps,
                                                         kl_warmup_steps) < 0:
      raise errors.ConfigError("the VSC schedules need sharpness_start, sharpness_end > 0 and "
                               "sharpness_warmup_steps, kl_warmup_steps >= 0")
    self.latent_size = int(latent_size)
    self.alpha = float(alpha)
    self.num_importance_samples = int(num_importance_samples)
    self.min_scale = min_scale
    self.pixels = likelihoods.build(likelihood, self.image_shape, binary, learned_scale,
                                    fixed_scale)
    self.sharpness_start, self.sharpness_end = float(sharpness_start), float(sharpness_end)
    self.sharpness_warmup_steps = int(sharpness_warmup_steps)
    self.kl_warmup_steps = int(kl_warmup_steps)
    # With α = 1 the posterior has no spike, so no head predicts γ.
    posterior_params = (2 if self.is_dense else 3) * self.latent_size
    if architecture == "mlp":
      self.encoder = layers.MLP(list(hidden_sizes), posterior_params, activation)
      self.decoder = layers.MLP(list(reversed(hidden_sizes)),
                                self.pixels.num_params * self.event_size, activation)
    else:
      dense = hidden_sizes[0] if hidden_sizes else 0
      self.encoder = layers.ConvEncoder(conv_filters, dense, posterior_params, activation)
      self.decoder = layers.ConvDecoder(self.image_shape[:2], list(reversed(conv_filters)), dense,
                                        self.pixels.num_params * self.image_shape[2], activation)
    self.sharpness = self.add_weight(
        shape=(), initializer=keras.initializers.Constant(self.sharpness_start),
        trainable=False, name="sharpness")
    self.kl_weight = self.add_weight(
        shape=(), initializer=keras.initializers.Constant(0.0 if kl_warmup_steps else 1.0),
        trainable=False, name="kl_weight")

  @classmethod
  def from_config(cls, config, info):
    return cls(info.image_shape, latent_size=config.latent_size, alpha=config.alpha,
               architecture=config.architecture, hidden_sizes=tuple(config.hidden_sizes),
               conv_filters=tuple(config.conv_filters), activation=config.activation,
               likelihood=config.likelihood, binary=info.binary,
               learned_scale=config.learned_scale, fixed_scale=config.fixed_scale,
               num_importance_samples=config.num_importance_samples,
               sharpness_start=config.sharpness_start, sharpness_end=config.sharpness_end,
               sharpness_warmup_steps=config.sharpness_warmup_steps,
               kl_warmup_steps=config.get("kl_warmup_steps", 0))

  @property
  def is_dense(self) -> bool:
    """α = 1: every dimension is always active, the model is the plain VAE."""
    return self.alpha >= 1.0

  def update_schedules(self, step):
    self.sharpness.assign(self.sharpness_start + (self.sharpness_end - self.sharpness_start)
                          * schedules.linear_warmup(step, self.sharpness_warmup_steps))
    self.kl_weight.assign(schedules.linear_warmup(step, self.kl_warmup_steps))

  # --- Distributions ---------------------------------------------------------------------------

  def prior(self) -> tfd.Distribution:
    zeros = tf.zeros([self.latent_size])
    return tfd.Independent(SpikeAndSlab(zeros, zeros + 1.0, zeros + self.alpha), 1)

  def encode(self, x, training=False, relaxed: bool = False) -> tfd.Distribution:
    """q(z | x): a spike-and-slab per dimension, batch [B], event [J].

    Args:
      x: images [B, H, W, C].
      training: layer mode.
      relaxed: draw with the paper's relaxation at the current sharpness (training); exact
        draws otherwise.
    """
    x = self.check_images(x)
    inputs = tf.reshape(x, [-1, self.event_size]) if isinstance(self.encoder, layers.MLP) else x
    params = self.encoder(inputs, training=training)
    if self.is_dense:
      loc, raw_scale = tf.split(params, 2, axis=-1)
      prob_active = tf.ones_like(loc)
    else:
      loc, raw_scale, logits = tf.split(params, 3, axis=-1)
      prob_active = tf.sigmoid(logits)
    scale = tf.nn.softplus(raw_scale) + self.min_scale
    # The relaxation only matters for γ's gradient; with γ ≡ 1 exact draws are reparameterized.
    sharpness = self.sharpness if relaxed and not self.is_dense else None
    return tfd.Independent(SpikeAndSlab(loc, scale, prob_active, sharpness=sharpness), 1)

  def decode(self, z, training=False) -> tfd.Distribution:
    return self.pixels.distribution(self.decoder(z, training=training))

  # --- Bounds ----------------------------------------------------------------------------------

  def _terms(self, x, seed, training, relaxed):
    q = self.encode(x, training=training, relaxed=relaxed)
    z = q.sample(self.num_importance_samples, seed=seed)
    log_px = self.decode(z, training=training).log_prob(x)
    distortion = -tf.reduce_mean(log_px, axis=0)
    rate = tfd.kl_divergence(q, self.prior())
    terms = {"elbo": -distortion - rate, "rate": rate, "distortion": distortion,
             "active_dimensions": self._count_active(q)}
    if not relaxed:
      log_w = log_px + self.prior().log_prob(z) - q.log_prob(z)
      terms["iwae_bound"] = (tf.reduce_logsumexp(log_w, axis=0)
                             - math.log(self.num_importance_samples))
    return terms

  def loss(self, batch, seed, training=False):
    x = self.check_images(batch["image"])
    terms = self._terms(x, seed, training, relaxed=True)
    return terms["distortion"] + self.kl_weight * terms["rate"], terms

  def bounds(self, x, seed):
    """ELBO (exact draws), IWAE bound at the training k, rate, distortion, active dimensions."""
    return self._terms(self.check_images(x), seed, training=False, relaxed=False)

  def log_weights(self, x, num_samples, seed) -> tf.Tensor:
    """log p(x, z) − log q(z | x) for exact draws z ~ q(z | x), [num_samples, B]."""
    x = self.check_images(x)
    q = self.encode(x)
    z = q.sample(num_samples, seed=seed)
    return self.decode(z).log_prob(x) + self.prior().log_prob(z) - q.log_prob(z)

  # --- Codes, sparsity and sampling ------------------------------------------------------------

  @staticmethod
  def _count_active(q) -> tf.Tensor:
    active = q.distribution.prob_active() > ACTIVE_THRESHOLD
    return tf.reduce_sum(tf.cast(active, tf.float32), axis=-1)

  def num_active_dimensions(self, x):
    """Per image, the dimensions whose posterior slab probability γ exceeds 0.5, [B]."""
    return self._count_active(self.encode(x))

  def prob_active(self, x):
    """γ(x), the posterior probability that each dimension is active, [B, J]."""
    return self.encode(x).distribution.prob_active()

  def posterior_means(self, x, seed) -> List[tf.Tensor]:
    del seed
    return [self.encode(x).mean()]

  def sample(self, num, seed, mean=False):
    latent_seed, pixel_seed = tfp.random.split_seed(seed, n=2)
    p_x = self.decode(self.prior().sample(num, seed=latent_seed))
    return p_x.mean() if mean else p_x.sample(seed=pixel_seed)

  def call(self, x, training=False):
    return self.encode(x, training=training).mean()
