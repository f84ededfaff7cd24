"""Properties of the VAE / IWAE bounds and of the chunked importance-sampling estimate."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfgen import seeding
from tfgen.models import base
from tfgen.models import vae

SHAPE = (6, 6, 1)


def _model(layers=1, analytic_kl=False, objective="elbo", k=1):
  latent_sizes, hidden = ((3,), ((16,),)) if layers == 1 else ((4, 2), ((16,), (8,)))
  model = vae.VAE(SHAPE, latent_sizes=latent_sizes, hidden_sizes=hidden, objective=objective,
                  num_importance_samples=k, analytic_kl=analytic_kl)
  model.build_for_images()
  return model


def _images(n=64, seed=0):
  return tf.cast(tf.random.stateless_uniform((n,) + SHAPE, seed=[seed, 1]) < 0.3, tf.float32)


@pytest.mark.parametrize("layers", [1, 2])
def test_iwae_bound_with_one_sample_equals_elbo(layers):
  model = _model(layers)
  terms = model.bounds({"image": _images()}, seeding.as_seed(3))
  np.testing.assert_allclose(terms["iwae_bound"], terms["elbo"], rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("layers", [1, 2])
def test_iwae_bound_is_at_least_elbo_and_grows_with_k(layers):
  x, seed = _images(128), seeding.as_seed(7)
  model = _model(layers)
  log_w = model.log_weights({"image": x}, 5000, seed).numpy()  # [k, B]
  elbo = log_w.mean(axis=0)
  means = []
  for k in (1, 5, 50, 500, 5000):
    # Non-overlapping groups of k draws: IWAE_k estimates per example, averaged over groups.
    groups = log_w[: (5000 // k) * k].reshape(5000 // k, k, -1)
    iwae_k = (np.logaddexp.reduce(groups, axis=1) - math.log(k)).mean(axis=0)
    assert np.all(iwae_k >= elbo - 1e-4) if k == 5000 else True
    means.append(iwae_k.mean())
  assert all(a < b for a, b in zip(means, means[1:])), means
  assert model.log_prob({"image": x}, seed, num_importance_samples=5000).numpy().mean() >= elbo.mean()


def test_analytic_kl_matches_monte_carlo_rate():
  x = _images(256)
  exact = _model(analytic_kl=True, k=1)
  sampled = _model(analytic_kl=False, k=2000)
  sampled.set_weights(exact.get_weights())
  rate_exact = exact.bounds({"image": x}, seeding.as_seed(1))["rate"].numpy()
  rate_mc = sampled.bounds({"image": x}, seeding.as_seed(1))["rate"].numpy()
  # Per example the Monte Carlo estimate has noise of about 0.05 nats; over 256 it averages out.
  np.testing.assert_allclose(rate_exact, rate_mc, atol=0.3)
  assert abs(rate_exact.mean() - rate_mc.mean()) < 0.02


def test_chunked_estimate_is_exact_whatever_the_chunk_size():
  batch = 5

  def log_weights(num, seed):
    return 3.0 * tf.random.stateless_normal([num, batch], seed=seed)

  seed = seeding.as_seed(11)
  # Reference: the same draws the chunked function makes, concatenated, then one log-mean-exp.
  for num, chunk in [(10, 10), (10, 3), (7, 2), (12, 4)]:
    chunk_eff = min(chunk, num)
    sizes = [chunk_eff] * (num // chunk_eff) + ([num % chunk_eff] if num % chunk_eff else [])
    draws = tf.concat([log_weights(n, seeding.fold_in(seed, i)) for i, n in enumerate(sizes)], 0)
    expected = tf.reduce_logsumexp(draws, axis=0) - math.log(num)
    got = base.chunked_logmeanexp(log_weights, num, chunk, seed)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_log_prob_does_not_depend_on_chunking_beyond_monte_carlo_error():
  # Different chunkings draw different samples, so only the averages over a batch agree.
  model, x = _model(), _images(256)
  model.importance_chunk_size = 2000
  a = model.log_prob({"image": x}, seeding.as_seed(1), num_importance_samples=2000)
  model.importance_chunk_size = 37
  b = model.log_prob({"image": x}, seeding.as_seed(2), num_importance_samples=2000)
  assert abs(float(tf.reduce_mean(a)) - float(tf.reduce_mean(b))) < 0.1
