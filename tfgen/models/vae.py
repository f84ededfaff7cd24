"""Variational and importance-weighted autoencoders with one or more stochastic layers.

Factorisation, for L stochastic layers of Gaussian latents z_1 … z_L and Bernoulli pixels x:

  p(x, z) = p(z_L) · ∏_{l<L} p(z_l | z_{l+1}) · p(x | z_1),      p(z_L) = N(0, I)
  q(z | x) = q(z_1 | x) · ∏_{l<L} q(z_{l+1} | z_l)

Every conditional is a diagonal Gaussian (or the Bernoulli over pixels) whose parameters an MLP
computes. With k draws z⁽ⁱ⁾ ~ q(z | x) and log weights log wᵢ = log p(x, z⁽ⁱ⁾) − log q(z⁽ⁱ⁾ | x):

  ELBO_k  = (1/k) Σᵢ log wᵢ                  (the VAE objective, k samples averaged)
  IWAE_k  = log (1/k) Σᵢ wᵢ                   (the importance-weighted bound)

ELBO_k ≤ IWAE_k ≤ log p(x), IWAE_1 = ELBO_1, and IWAE_k grows with k towards log p(x) (Burda et
al. 2016, Theorem 1); the test log-likelihood is estimated with IWAE_5000. With one stochastic
layer and the ELBO objective, the KL term (the `rate`) is computed in closed form, which lowers the
variance of the gradient; the `distortion` is −E_q[log p(x | z_1)].

The architectures of the IWAE paper: one stochastic layer 784-200-200-50 (tanh), two stochastic
layers with deterministic layers 200-200 and 100-100 and latents 100 and 50.

The decoder of x (`decoder`): "mlp" maps z_1 to all H·W·C logits at once; "cppn" maps z_1 and
the coordinates of a pixel to that pixel's logit (a compositional pattern-producing network,
tfgen/cppn.py), so the trained model decodes at any resolution: `tfgen-sample --mode=hires_samples
--scale=4` renders its samples at 4 times the training size.

References:
  Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
  Rezende, Mohamed & Wierstra, "Stochastic Backpropagation and Approximate Inference in Deep
    Generative Models", ICML 2014.
  Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

from typing import List, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import cppn
from tfgen import errors
from tfgen import layers
from tfgen import seeding
from tfgen import viz
from tfgen.models import base
from tfgen.models import capabilities as caps
from tfgen.models import registry

tfd = tfp.distributions

OBJECTIVES = base.OBJECTIVES
DECODERS = ("mlp", "cppn")
# Upscaling of --mode=hires_samples / hires_reconstructions when tfgen-sample gives no --scale.
DEFAULT_RENDER_SCALE = 4
# Images decoded at once at a high resolution: bounds the memory of [images, pixels, units].
_RENDER_IMAGES_PER_CHUNK = 8


@registry.MODELS.register("vae")
class VAE(base.LatentVariableModel):
  """VAE / IWAE with Gaussian latents in one or more stochastic layers and Bernoulli pixels.

  Args:
    image_shape: (H, W, C) of binary images.
    latent_sizes: size of each stochastic layer, bottom (nearest x) first: (50,) or (100, 50).
    hidden_sizes: deterministic layers of the MLP below each stochastic layer, bottom first; the
      generative MLPs mirror them: ((200, 200),) or ((200, 200), (100, 100)).
    activation: activation of the hidden layers.
    batch_norm: batch normalization in the MLPs.
    analytic_kl: with one stochastic layer and the ELBO objective, compute the KL in closed form.
    min_scale: floor of every Gaussian standard deviation, for numerical safety.
    decoder: "mlp" (z_1 -> every logit) or "cppn" (z_1 and a pixel's coordinates -> its logit,
      decodable at any resolution).
    cppn_width, cppn_depth, cppn_fourier_frequencies: the cppn decoder's per-pixel network: hidden
      width, hidden layers, Fourier frequencies of the coordinates (0: x, y, r only). Unused by
      the mlp decoder.
    **kwargs: the latent-variable core's (objective, num_importance_samples, kl_warmup_epochs,
      free_bits; see base.LatentVariableModel).
  """

  def __init__(self, image_shape, latent_sizes: Sequence[int] = (50,),
               hidden_sizes: Sequence[Sequence[int]] = ((200, 200),), activation: str = "tanh",
               batch_norm: bool = False, analytic_kl: bool = True, min_scale: float = 1e-4,
               decoder: str = "mlp", cppn_width: int = 64, cppn_depth: int = 3,
               cppn_fourier_frequencies: int = 0, **kwargs):
    super().__init__(image_shape, **kwargs)
    if not latent_sizes or len(latent_sizes) != len(hidden_sizes):
      raise errors.ConfigError("config.model.latent_sizes and hidden_sizes need one entry per "
                               f"stochastic layer, got {latent_sizes} and {hidden_sizes}")
    if min(latent_sizes) < 1:
      raise errors.ConfigError("latent sizes must be >= 1")
    if decoder not in DECODERS:
      raise errors.ConfigError(f"config.model.decoder {decoder!r} is not one of "
                               f"{', '.join(DECODERS)}")
    self.decoder = decoder
    self.latent_sizes = [int(s) for s in latent_sizes]
    self.analytic_kl = analytic_kl and len(self.latent_sizes) == 1 and self.objective == "elbo"
    self.min_scale = min_scale
    mlp = lambda sizes, out: layers.MLP(sizes, out, activation, batch_norm)
    # encoders[l]: (x or z_l) -> q(z_{l+1}); decoders[l]: z_{l+1} -> p(z_l), decoders[0] -> x.
    self.encoders = layers.track_list(
        self, "encoder", [mlp(h, 2 * s) for h, s in zip(hidden_sizes, self.latent_sizes)])
    if decoder == "cppn":
      bottom = cppn.CPPNDecoder(self.image_shape, list(reversed(hidden_sizes[0])), activation,
                                batch_norm, cppn_width, cppn_depth, cppn_fourier_frequencies)
    else:
      bottom = mlp(list(reversed(hidden_sizes[0])), self.event_size)
    self.decoders = layers.track_list(
        self, "decoder", [bottom] + [
            mlp(list(reversed(h)), 2 * s)
            for h, s in zip(hidden_sizes[1:], self.latent_sizes[:-1])])

  @classmethod
  def data_kwargs(cls, info):
    if not info.binary:
      raise errors.ConfigError(f"the VAE models binary pixels; data set {info.name!r} has "
                               "binarization 'none'")
    return {}

  # --- Distributions ---------------------------------------------------------------------------

  def prior(self) -> tfd.Distribution:
    return base.standard_normal(self.latent_sizes[-1])

  def encode(self, x, training=False) -> tfd.Distribution:
    x = self.check_images(x)
    flat = tf.reshape(x, [-1, self.event_size])
    return base.diagonal_normal(self.encoders[0](flat, training=training), self.min_scale)

  def decode(self, z, training=False) -> tfd.Distribution:
    logits = tf.cast(self.decoders[0](z, training=training), tf.float32)
    logits = tf.reshape(logits, tf.concat([tf.shape(z)[:-1], self.image_shape], 0))
    return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), 3)

  def decode_at(self, z, height: int, width: int) -> tfd.Distribution:
    """p(x | z) rendered at height × width pixels (cppn decoder only); event [height, width, C].

    Raises:
      ConfigError: the model's decoder is the mlp, which has the training resolution only.
    """
    if self.decoder != "cppn":
      raise errors.ConfigError(f"decoding at {width}x{height} needs config.model.decoder='cppn'; "
                               f"this VAE's decoder is {self.decoder!r}")
    logits = tf.cast(self.decoders[0](z, height=height, width=width), tf.float32)
    return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), 3)

  def _posterior_above(self, layer: int, z, training=False) -> tfd.Distribution:
    """q(z_{layer+1} | z_layer) for layer >= 1."""
    return base.diagonal_normal(self.encoders[layer](z, training=training), self.min_scale)

  def _prior_below(self, layer: int, z, training=False) -> tfd.Distribution:
    """p(z_layer | z_{layer+1}) for layer >= 1."""
    return base.diagonal_normal(self.decoders[layer](z, training=training), self.min_scale)

  # --- Log-density terms -----------------------------------------------------------------------

  def latent_terms(self, batch, num_samples, seed, training=False):
    """Draws z ~ q(z | x) num_samples times; layer l pairs q(z_l | z_{l−1}) with p(z_l | z_{l+1})."""
    x = self.images(batch)
    seeds = tfp.random.split_seed(seed, n=len(self.latent_sizes))
    q1 = self.encode(x, training=training)
    z = q1.sample(num_samples, seed=seeds[0])
    log_q, zs = [q1.log_prob(z)], [z]
    for layer in range(1, len(self.latent_sizes)):
      q = self._posterior_above(layer, z, training)
      z = q.sample(seed=seeds[layer])
      log_q.append(q.log_prob(z))
      zs.append(z)
    log_p = [self._prior_below(layer + 1, zs[layer + 1], training).log_prob(zs[layer])
             for layer in range(len(self.latent_sizes) - 1)] + [self.prior().log_prob(zs[-1])]
    log_px = self.decode(zs[0], training=training).log_prob(x)
    kl = [tfd.kl_divergence(q1, self.prior())] if self.analytic_kl else None
    return base.LatentTerms(log_px, log_p, log_q, kl=kl)

  # --- Sampling and codes ----------------------------------------------------------------------

  def sample(self, num, seed, mean=False):
    seeds = tfp.random.split_seed(seed, n=len(self.latent_sizes) + 1)
    z = self.prior().sample(num, seed=seeds[0])
    for layer in reversed(range(1, len(self.latent_sizes))):
      z = self._prior_below(layer, z).sample(seed=seeds[layer])
    p_x = self.decode(z)
    return p_x.mean() if mean else p_x.sample(seed=seeds[-1])

  def posterior_means(self, x, seed, num_samples: int = 100) -> List[tf.Tensor]:
    """E_q[z_l] per layer; layers above the first average over num_samples draws of the ones below."""
    q1 = self.encode(x)
    means = [q1.mean()]
    z = q1.sample(num_samples, seed=seed)
    for layer in range(1, len(self.latent_sizes)):
      q = self._posterior_above(layer, z)
      means.append(tf.reduce_mean(q.mean(), axis=0))
      z = q.sample(seed=seeding.fold_in(seed, layer))
    return means

  # --- Any-resolution pictures (cppn decoder) --------------------------------------------------

  def sample_modes(self):
    modes = super().sample_modes()
    if self.decoder == "cppn":  # Only a decoder of coordinates can render other resolutions.
      modes["hires_samples"] = caps.SampleMode(
          self._hires_samples_picture, uses_scale=True,
          help=f"samples decoded at --scale times the training resolution (default "
               f"{DEFAULT_RENDER_SCALE}; cppn decoder)")
      modes["hires_reconstructions"] = caps.SampleMode(
          self._hires_reconstructions_picture, needs_test_data=True, uses_label=True,
          uses_scale=True,
          help="--num_images test images (enlarged by pixel repetition) above their "
               "reconstructions decoded at --scale times the resolution (cppn decoder)")
    return modes

  def _render_size(self, scale: float):
    scale = scale or DEFAULT_RENDER_SCALE
    height, width, _ = self.image_shape
    return cppn.check_size(round(height * scale), round(width * scale),
                           "--scale times the training size")

  def _decode_means_at(self, z, height: int, width: int) -> np.ndarray:
    """Pixel probabilities [N, height, width, C] of latents [N, size], a few images at a time."""
    return np.concatenate([
        self.decode_at(z[start:start + _RENDER_IMAGES_PER_CHUNK], height, width).mean().numpy()
        for start in range(0, int(z.shape[0]), _RENDER_IMAGES_PER_CHUNK)])

  def _hires_samples_picture(self, request):
    height, width = self._render_size(request.scale)
    seeds = tfp.random.split_seed(seeding.as_seed(request.seed), n=len(self.latent_sizes) + 1)
    z = self.prior().sample(request.num, seed=seeds[0])
    for layer in reversed(range(1, len(self.latent_sizes))):
      z = self._prior_below(layer, z).sample(seed=seeds[layer])
    means = self._decode_means_at(z, height, width)
    if not request.mean:
      means = tf.cast(tf.random.stateless_uniform(means.shape, seed=seeds[-1]) < means,
                      tf.float32).numpy()
    return viz.image_grid(means, request.num_columns)

  def _hires_reconstructions_picture(self, request):
    height, width = self._render_size(request.scale)
    images = caps.test_images(request, request.num_images, request.label)
    z = self.encode(images).sample(seed=seeding.as_seed([request.seed, 2]))
    reconstructions = self._decode_means_at(z, height, width)
    rows = np.arange(height) * self.image_shape[0] // height
    cols = np.arange(width) * self.image_shape[1] // width
    enlarged = images.numpy()[:, rows][:, :, cols]
    return viz.reconstruction_pairs(enlarged, reconstructions,
                                    request.num_columns or min(8, request.num_images))
