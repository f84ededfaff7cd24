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

References:
  Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
  Rezende, Mohamed & Wierstra, "Stochastic Backpropagation and Approximate Inference in Deep
    Generative Models", ICML 2014.
  Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

import math
from typing import List, Sequence

import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import layers
from tfgen import seeding
from tfgen.models import base
from tfgen.models import registry

tfd = tfp.distributions

OBJECTIVES = ("elbo", "iwae")


def _diagonal_normal(params: tf.Tensor, min_scale: float) -> tfd.Distribution:
  """Splits [..., 2d] into a location and a softplus scale; event shape [d]."""
  loc, raw_scale = tf.split(params, 2, axis=-1)
  return tfd.Independent(tfd.Normal(loc, tf.nn.softplus(raw_scale) + min_scale), 1)


@registry.MODELS.register("vae")
class VAE(base.LatentVariableModel):
  """VAE / IWAE with Gaussian latents in one or more stochastic layers and Bernoulli pixels.

  Args:
    image_shape: (H, W, C) of binary images.
    latent_sizes: size of each stochastic layer, bottom (nearest x) first: (50,) or (100, 50).
    hidden_sizes: deterministic layers of the MLP below each stochastic layer, bottom first; the
      generative MLPs mirror them: ((200, 200),) or ((200, 200), (100, 100)).
    activation: activation of the hidden layers.
    objective: "elbo" (k-sample average) or "iwae" (importance-weighted bound).
    num_importance_samples: k used for training.
    batch_norm: batch normalization in the MLPs.
    analytic_kl: with one stochastic layer and the ELBO objective, compute the KL in closed form.
    min_scale: floor of every Gaussian standard deviation, for numerical safety.
  """

  def __init__(self, image_shape, latent_sizes: Sequence[int] = (50,),
               hidden_sizes: Sequence[Sequence[int]] = ((200, 200),), activation: str = "tanh",
               objective: str = "elbo", num_importance_samples: int = 1, batch_norm: bool = False,
               analytic_kl: bool = True, min_scale: float = 1e-4, **kwargs):
    super().__init__(image_shape, **kwargs)
    if objective not in OBJECTIVES:
      raise errors.ConfigError(f"unknown VAE objective {objective!r}; known: "
                               f"{', '.join(OBJECTIVES)}")
    if not latent_sizes or len(latent_sizes) != len(hidden_sizes):
      raise errors.ConfigError("config.model.latent_sizes and hidden_sizes need one entry per "
                               f"stochastic layer, got {latent_sizes} and {hidden_sizes}")
    if num_importance_samples < 1 or min(latent_sizes) < 1:
      raise errors.ConfigError("num_importance_samples and latent sizes must be >= 1")
    self.latent_sizes = [int(s) for s in latent_sizes]
    self.objective = objective
    self.num_importance_samples = int(num_importance_samples)
    self.analytic_kl = analytic_kl and len(self.latent_sizes) == 1 and objective == "elbo"
    self.min_scale = min_scale
    mlp = lambda sizes, out: layers.MLP(sizes, out, activation, batch_norm)
    # encoders[l]: (x or z_l) -> q(z_{l+1}); decoders[l]: z_{l+1} -> p(z_l), decoders[0] -> x.
    self.encoders = layers.track_list(
        self, "encoder", [mlp(h, 2 * s) for h, s in zip(hidden_sizes, self.latent_sizes)])
    self.decoders = layers.track_list(
        self, "decoder", [mlp(list(reversed(hidden_sizes[0])), self.event_size)] + [
            mlp(list(reversed(h)), 2 * s)
            for h, s in zip(hidden_sizes[1:], self.latent_sizes[:-1])])

  @classmethod
  def from_config(cls, config, info):
    if not info.binary:
      raise errors.ConfigError(f"the VAE models binary pixels; data set {info.name!r} has "
                               "binarization 'none'")
    return cls(info.image_shape, latent_sizes=tuple(config.latent_sizes),
               hidden_sizes=tuple(tuple(h) for h in config.hidden_sizes),
               activation=config.activation, objective=config.objective,
               num_importance_samples=config.num_importance_samples,
               batch_norm=config.batch_norm, analytic_kl=config.analytic_kl)

  # --- Distributions ---------------------------------------------------------------------------

  def prior(self) -> tfd.Distribution:
    size = self.latent_sizes[-1]
    return tfd.Independent(tfd.Normal(tf.zeros([size]), tf.ones([size])), 1)

  def encode(self, x, training=False) -> tfd.Distribution:
    x = self.check_images(x)
    flat = tf.reshape(x, [-1, self.event_size])
    return _diagonal_normal(self.encoders[0](flat, training=training), self.min_scale)

  def decode(self, z, training=False) -> tfd.Distribution:
    logits = self.decoders[0](z, training=training)
    logits = tf.reshape(logits, tf.concat([tf.shape(z)[:-1], self.image_shape], 0))
    return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), 3)

  def _posterior_above(self, layer: int, z, training=False) -> tfd.Distribution:
    """q(z_{layer+1} | z_layer) for layer >= 1."""
    return _diagonal_normal(self.encoders[layer](z, training=training), self.min_scale)

  def _prior_below(self, layer: int, z, training=False) -> tfd.Distribution:
    """p(z_layer | z_{layer+1}) for layer >= 1."""
    return _diagonal_normal(self.decoders[layer](z, training=training), self.min_scale)

  # --- Bounds ----------------------------------------------------------------------------------

  def _log_weight_terms(self, x, num_samples: int, seed, training=False):
    """Draws z ~ q(z | x) num_samples times.

    Returns:
      log_px: log p(x | z_1), [k, B]; log_pz: log p(z), [k, B]; log_qz: log q(z | x), [k, B];
      q1: q(z_1 | x), batch shape [B].
    """
    seeds = tfp.random.split_seed(seed, n=len(self.latent_sizes))
    q1 = self.encode(x, training=training)
    z = q1.sample(num_samples, seed=seeds[0])
    log_qz = q1.log_prob(z)
    zs = [z]
    for layer in range(1, len(self.latent_sizes)):
      q = self._posterior_above(layer, z, training)
      z = q.sample(seed=seeds[layer])
      log_qz += q.log_prob(z)
      zs.append(z)
    log_pz = self.prior().log_prob(zs[-1])
    for layer in range(1, len(self.latent_sizes)):
      log_pz += self._prior_below(layer, zs[layer], training).log_prob(zs[layer - 1])
    log_px = self.decode(zs[0], training=training).log_prob(x)
    return log_px, log_pz, log_qz, q1

  def _terms(self, x, seed, training):
    k = self.num_importance_samples
    log_px, log_pz, log_qz, q1 = self._log_weight_terms(x, k, seed, training)
    log_w = log_px + log_pz - log_qz
    distortion = -tf.reduce_mean(log_px, axis=0)
    if self.analytic_kl:
      rate = tfd.kl_divergence(q1, self.prior())
    else:
      rate = tf.reduce_mean(log_qz - log_pz, axis=0)
    return {
        "elbo": -distortion - rate,
        "iwae_bound": tf.reduce_logsumexp(log_w, axis=0) - math.log(k),
        "rate": rate,
        "distortion": distortion,
    }

  def loss(self, batch, seed, training=False):
    x = self.check_images(batch["image"])
    terms = self._terms(x, seed, training)
    objective = terms["elbo"] if self.objective == "elbo" else terms["iwae_bound"]
    return -objective, terms

  def bounds(self, x, seed):
    """ELBO, IWAE bound, rate and distortion with the training k, per example [B]."""
    return self._terms(self.check_images(x), seed, training=False)

  def log_weights(self, x, num_samples: int, seed) -> tf.Tensor:
    """log p(x, z) − log q(z | x) for num_samples draws z ~ q(z | x), [num_samples, B]."""
    log_px, log_pz, log_qz, _ = self._log_weight_terms(self.check_images(x), num_samples, seed)
    return log_px + log_pz - log_qz

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

  def call(self, x, training=False):
    return self.encode(x, training=training).mean()
