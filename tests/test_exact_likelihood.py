"""The k=5000 importance-sampled estimate against log-likelihoods known exactly."""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import seeding
from tfgen.models import base
from tfgen.models import vae

tfd = tfp.distributions


def test_linear_gaussian_model_estimate_within_0_05_nats():
  # p(z) = N(0, I_2), p(x | z) = N(Wz + b, s^2 I_5)  =>  p(x) = N(b, W W^T + s^2 I) exactly.
  rng = np.random.RandomState(0)
  w = rng.normal(size=(5, 2)).astype(np.float32)
  b = rng.normal(size=5).astype(np.float32)
  s = 0.7
  marginal = tfd.MultivariateNormalFullCovariance(b, w @ w.T + s**2 * np.eye(5, dtype=np.float32))
  x = marginal.sample(50, seed=seeding.as_seed(1))
  # Proposal: the exact posterior, widened and shifted so the weights are not constant.
  precision = np.eye(2) + w.T @ w / s**2
  cov = np.linalg.inv(precision).astype(np.float32)
  post_mean = tf.matmul(x - b, (w / s**2) @ cov)  # [B, 2]
  proposal = tfd.MultivariateNormalFullCovariance(post_mean + 0.2, 1.5 * cov)
  prior = tfd.MultivariateNormalDiag(tf.zeros(2))

  def log_weights(num, seed):
    z = proposal.sample(num, seed=seed)  # [k, B, 2]
    likelihood = tfd.MultivariateNormalDiag(tf.linalg.matvec(w, z) + b, s * tf.ones(5))
    return likelihood.log_prob(x) + prior.log_prob(z) - proposal.log_prob(z)

  estimate = base.chunked_logmeanexp(log_weights, 5000, 500, seeding.as_seed(2))
  np.testing.assert_allclose(estimate, marginal.log_prob(x), atol=0.05)


def test_vae_estimate_matches_quadrature_for_a_one_dimensional_latent():
  # With one latent dimension, log p(x) = log ∫ p(x | z) N(z; 0, 1) dz by dense quadrature.
  model = vae.VAE((3, 3, 1), latent_sizes=(1,), hidden_sizes=((8,),))
  model.build_for_images()
  # q(z | x) = N(0, 2²) for every x: wider than any posterior here, so the importance weights
  # are bounded and 5000 samples pin the estimate down.
  head = model.encoders[0].out
  head.kernel.assign(tf.zeros_like(head.kernel))
  head.bias.assign([0.0, float(np.log(np.expm1(2.0)))])
  x = model.sample(20, seed=seeding.as_seed(4))
  grid = np.linspace(-9, 9, 20001, dtype=np.float32)
  step = grid[1] - grid[0]
  log_px_given_z = model.decode(tf.constant(grid[:, None])).log_prob(x[:, None])  # [B, G]
  log_prior = tfd.Normal(0.0, 1.0).log_prob(grid)
  exact = tf.reduce_logsumexp(log_px_given_z + log_prior, axis=1) + math.log(step)
  estimate = model.log_prob({"image": x}, seeding.as_seed(5), num_importance_samples=5000)
  np.testing.assert_allclose(estimate, exact, atol=0.05)
