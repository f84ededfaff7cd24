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

from typing import List, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import layers
from tfgen import schedules
from tfgen import seeding
from tfgen import viz
from tfgen.distributions import likelihoods
from tfgen.distributions.spike_and_slab import SpikeAndSlab
from tfgen.models import base
from tfgen.models import capabilities as caps
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
    binary: whether the images are binary (from the data; continuous likelihoods need 8-bit data).
    learned_scale, fixed_scale: scale of a continuous likelihood.
    sharpness_start, sharpness_end: the relaxation's c at step 0 and after the warm-up.
    sharpness_warmup_epochs: epochs over which c grows linearly from start to end.
    min_scale: floor of the slab standard deviations.
    **kwargs: the latent-variable core's: num_importance_samples (draws per example in training,
      averaged, and in `bounds`) and kl_warmup_epochs (epochs over which the weight of the KL
      term in the training loss grows linearly from 0 to 1: early on, the KL would switch off
      every dimension before the decoder learns to use any; the warm-up (Sønderby et al. 2016)
      lets codes form first. Reported ELBOs always weight the KL by 1). The objective is the
      ELBO of relaxed draws.
  """

  DATA_FIELDS = ("binary",)

  def __init__(self, image_shape, latent_size: int = 200, alpha: float = 0.01,
               architecture: str = "mlp", hidden_sizes: Sequence[int] = (400,),
               conv_filters: Sequence[int] = (32, 32, 64, 64), activation: str = "relu",
               likelihood: str = "bernoulli", binary: bool = True, learned_scale: bool = True,
               fixed_scale: float = 0.1, sharpness_start: float = 50.0,
               sharpness_end: float = 200.0, sharpness_warmup_epochs: float = 0.0,
               min_scale: float = 1e-4, **kwargs):
    super().__init__(image_shape, **kwargs)
    if self.objective != "elbo":
      raise errors.ConfigError("VSC trains the ELBO of relaxed draws; config.model.objective "
                               f"must be 'elbo', got {self.objective!r}")
    if not 0.0 < alpha <= 1.0:
      raise errors.ConfigError(f"config.model.alpha must lie in (0, 1], got {alpha}")
    if latent_size < 1:
      raise errors.ConfigError("config.model.latent_size must be >= 1")
    if architecture not in ARCHITECTURES:
      raise errors.ConfigError(f"unknown VSC architecture {architecture!r}; known: "
                               f"{', '.join(ARCHITECTURES)}")
    if sharpness_start <= 0 or sharpness_end <= 0 or sharpness_warmup_epochs < 0:
      raise errors.ConfigError("the VSC schedules need sharpness_start, sharpness_end > 0 and "
                               "sharpness_warmup_epochs >= 0")
    self.latent_size = int(latent_size)
    self.alpha = float(alpha)
    self.min_scale = min_scale
    self.pixels = likelihoods.build(likelihood, self.image_shape, binary, learned_scale,
                                    fixed_scale)
    self.sharpness_start, self.sharpness_end = float(sharpness_start), float(sharpness_end)
    self.sharpness_warmup_epochs = float(sharpness_warmup_epochs)
    # With α = 1 the posterior has no spike, so no head predicts γ.
    posterior_params = (2 if self.is_dense else 3) * self.latent_size
    self.flat_input = architecture == "mlp"
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

  @classmethod
  def data_kwargs(cls, info):
    return {"binary": info.binary}

  @property
  def is_dense(self) -> bool:
    """α = 1: every dimension is always active, the model is the plain VAE."""
    return self.alpha >= 1.0

  def update_schedules(self, epoch):
    super().update_schedules(epoch)
    self.sharpness.assign(self.sharpness_start + (self.sharpness_end - self.sharpness_start)
                          * schedules.linear_warmup(epoch, self.sharpness_warmup_epochs))

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
    inputs = tf.reshape(x, [-1, self.event_size]) if self.flat_input else x
    params = tf.cast(self.encoder(inputs, training=training), tf.float32)
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

  # --- Log-density terms -----------------------------------------------------------------------

  def latent_terms(self, batch, num_samples, seed, training=False):
    """Relaxed draws in training (no importance weights then), exact ones otherwise; the KL is
    in closed form (tfgen.distributions.SpikeAndSlab)."""
    x = self.images(batch)
    q = self.encode(x, training=training, relaxed=training)
    z = q.sample(num_samples, seed=seed)
    log_px = self.decode(z, training=training).log_prob(x)
    kl = [tfd.kl_divergence(q, self.prior())]
    extra = {"active_dimensions": self._count_active(q)}
    if training:
      return base.LatentTerms(log_px, kl=kl, extra=extra)
    return base.LatentTerms(log_px, [self.prior().log_prob(z)], [q.log_prob(z)], kl=kl,
                            extra=extra)

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

  # --- Declared capabilities -------------------------------------------------------------------

  def finish_evaluation(self, results, collected, context):
    results = super().finish_evaluation(results, collected, context)
    results["active_dimensions_per_image"] = results.pop("active_dimensions")
    return results

  def sample_modes(self):
    modes = super().sample_modes()
    modes["conditional"] = caps.SampleMode(
        self._conditional_picture, needs_test_data=True, uses_label=True,
        help="keep the dimensions each of --num_images test images uses and redraw their values")
    return modes

  def _conditional_picture(self, request):
    """Per test image (of class --label if >= 0), a row: the image and `num` decodings of new
    codes on its active dimensions."""
    images = caps.test_images(request, request.num_images, request.label)
    pictures = conditional_images(self, images, request.num, seeding.as_seed(request.seed))
    return viz.image_grid(pictures, request.num + 1)


def conditional_codes(usage, num_samples: int, seed) -> tf.Tensor:
  """New codes that use the same dimensions as given ones.

  Dimensions with usage > ACTIVE_THRESHOLD take values drawn from the prior's slab, N(0, 1); the
  others are 0 (for dense codes every dimension is redrawn, an ordinary prior sample).

  Args:
    usage: probability that each image uses each dimension, [N, J].
    num_samples: codes per image.
    seed: int32 [2].

  Returns:
    [N, num_samples, J].
  """
  used = usage > ACTIVE_THRESHOLD
  values = tf.random.stateless_normal([used.shape[0], num_samples, used.shape[1]], seed=seed)
  return tf.where(used[:, None, :], values, 0.0)


def conditional_images(model: VSC, images, num_samples: int, seed) -> np.ndarray:
  """Per image [N, H, W, C]: the image, then `num_samples` decoded conditional codes.

  Returns:
    [N·(num_samples + 1), H, W, C].
  """
  codes = conditional_codes(model.prob_active(images), num_samples, seed)
  decoded = model.decode(tf.reshape(codes, [-1, codes.shape[-1]])).mean()
  decoded = tf.reshape(decoded, [-1, num_samples] + list(images.shape[1:]))
  return tf.reshape(tf.concat([images[:, None], decoded], 1),
                    [-1] + list(images.shape[1:])).numpy()
