"""SpikeAndSlab and Discretized8Bit: sampling statistics, KL against Monte Carlo, edge values."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import seeding
from tfgen.distributions import Categorical8Bit
from tfgen.distributions import Discretized8Bit
from tfgen.distributions import SpikeAndSlab
from tfgen.distributions import likelihoods

tfd = tfp.distributions

LOC = [0.5, -1.0, 0.0, 2.0]
SCALE = [0.7, 0.3, 1.0, 0.1]
GAMMA = [0.3, 0.9, 1.0, 0.0]


def test_exact_samples_match_mean_variance_and_activity():
  q = SpikeAndSlab(LOC, SCALE, GAMMA)
  z = q.sample(200000, seed=[1, 2]).numpy()
  np.testing.assert_allclose(np.mean(z != 0, 0), q.prob_active(), atol=0.005)
  np.testing.assert_allclose(z.mean(0), q.mean(), atol=0.01)
  np.testing.assert_allclose(z.std(0), q.stddev(), atol=0.01)
  np.testing.assert_allclose(q.mean(), np.multiply(GAMMA, LOC))


def test_relaxed_samples_select_the_slab_with_probability_gamma():
  for sharpness in (50.0, 1e4):
    z = SpikeAndSlab(LOC, SCALE, GAMMA, sharpness=sharpness).sample(100000, seed=[3, 4])
    # The relaxed selection sigmoid(c·(η + γ − 1)) exceeds 1/2 exactly when η > 1 − γ.
    slab = SpikeAndSlab(LOC, SCALE, 1.0).sample(100000, seed=[3, 4])
    selected = np.mean(np.abs(z.numpy()) > 0.5 * np.abs(slab.numpy()), 0)
    np.testing.assert_allclose(selected, GAMMA, atol=0.01)


def test_relaxed_samples_are_differentiable_in_every_parameter():
  loc, scale, gamma = (tf.Variable([0.3, -0.2]), tf.Variable([0.5, 0.4]),
                       tf.Variable([0.4, 0.7]))
  with tf.GradientTape() as tape:
    z = SpikeAndSlab(loc, scale, gamma, sharpness=50.0).sample(1000, seed=[5, 6])
    objective = tf.reduce_mean(tf.square(z - 1.0))
  for gradient in tape.gradient(objective, [loc, scale, gamma]):
    assert np.all(np.isfinite(gradient)) and np.all(gradient != 0)


@pytest.mark.parametrize("alpha", [0.01, 0.2, 0.5])
def test_kl_matches_monte_carlo(alpha):
  q = SpikeAndSlab(LOC[:3], SCALE[:3], [0.3, 0.9, 0.05])
  p = SpikeAndSlab(0.0, 1.0, alpha)
  z = q.sample(400000, seed=[7, 8])
  log_ratio = (q.log_prob(z) - p.log_prob(z)).numpy()
  monte_carlo = log_ratio.mean(0)
  standard_error = log_ratio.std(0) / np.sqrt(len(log_ratio))
  analytic = tfd.kl_divergence(q, p).numpy()
  assert np.all(np.abs(analytic - monte_carlo) < 4 * standard_error + 1e-3)


def test_kl_against_the_vsc_prior_is_the_papers_closed_form():
  loc, scale, gamma, alpha = np.array(LOC), np.array(SCALE), np.array([0.3, 0.9, 0.5, 0.2]), 0.01
  paper = (-0.5 * gamma * (1 + np.log(scale ** 2) - loc ** 2 - scale ** 2)
           + (1 - gamma) * np.log((1 - gamma) / (1 - alpha)) + gamma * np.log(gamma / alpha))
  kl = tfd.kl_divergence(SpikeAndSlab(loc, scale, gamma), SpikeAndSlab(0.0, 1.0, alpha))
  np.testing.assert_allclose(kl, paper, rtol=1e-5)


def test_kl_and_gradients_are_finite_at_gamma_zero_and_one_and_alpha_one():
  loc, scale = tf.Variable([0.5, 0.5, 0.5]), tf.Variable([0.7, 0.7, 0.7])
  gamma = tf.Variable([0.0, 1.0, 1e-12])
  with tf.GradientTape() as tape:
    kl = tfd.kl_divergence(SpikeAndSlab(loc, scale, gamma), SpikeAndSlab(0.0, 1.0, 0.01))
    total = tf.reduce_sum(kl)
  assert np.all(np.isfinite(kl))
  # γ = 0: only the spike's KL, log(1/(1 − α)); nothing of the slab.
  np.testing.assert_allclose(kl[0], -np.log(0.99), rtol=1e-5)
  for gradient in tape.gradient(total, [loc, scale, gamma]):
    assert np.all(np.isfinite(gradient))
  # α = 1 and γ = 1: the Gaussian KL of the plain VAE.
  dense = tfd.kl_divergence(SpikeAndSlab(LOC, SCALE, 1.0), SpikeAndSlab(0.0, 1.0, 1.0))
  vae = tfd.kl_divergence(tfd.Normal(LOC, SCALE), tfd.Normal(0.0, 1.0))
  np.testing.assert_allclose(dense, vae, rtol=1e-6)
  # A posterior with spike mass where the prior has none is infinitely far from it.
  assert np.isinf(tfd.kl_divergence(SpikeAndSlab(0.0, 1.0, 0.5), SpikeAndSlab(0.0, 1.0, 1.0)))


def test_log_prob_scores_the_spike_and_the_slab():
  q = SpikeAndSlab(0.5, 0.7, 0.3)
  np.testing.assert_allclose(q.log_prob(0.0), np.log(0.7), rtol=1e-6)
  np.testing.assert_allclose(q.log_prob(1.2), np.log(0.3) + tfd.Normal(0.5, 0.7).log_prob(1.2),
                             rtol=1e-6)
  # Exact draws are never exactly 0 unless the spike chose them, even at γ = 1.
  z = SpikeAndSlab(tf.zeros([1000]), 1e-30, 1.0).sample(100, seed=[1, 1])
  assert np.all(z.numpy() != 0) and np.all(np.isfinite(SpikeAndSlab(0.0, 1.0, 1.0).log_prob(z)))


def test_independent_spike_and_slab_sums_over_dimensions():
  q = tfd.Independent(SpikeAndSlab(LOC[:3], SCALE[:3], GAMMA[:3]), 1)
  p = tfd.Independent(SpikeAndSlab(tf.zeros(3), 1.0, 0.1), 1)
  per_dim = tfd.kl_divergence(SpikeAndSlab(LOC[:3], SCALE[:3], GAMMA[:3]),
                              SpikeAndSlab(0.0, 1.0, 0.1))
  np.testing.assert_allclose(tfd.kl_divergence(q, p), np.sum(per_dim), rtol=1e-6)
  assert q.sample(5, seed=[2, 2]).shape == (5, 3)


LEVELS = np.arange(256, dtype=np.float32) / 255.0


@pytest.mark.parametrize("base", ["logistic", "normal"])
@pytest.mark.parametrize("loc,scale", [(0.3, 0.05), (0.0, 0.001), (1.2, 0.3), (0.5, 1e-5),
                                       (-3.0, 0.01)])
def test_discretized_probabilities_sum_to_one_with_finite_gradients(base, loc, scale):
  loc_var, scale_var = tf.Variable([[loc]]), tf.Variable([[scale]])
  with tf.GradientTape() as tape:
    log_p = Discretized8Bit(loc_var, scale_var, base).log_prob(LEVELS[:, None])
    total = tf.reduce_sum(log_p)
  np.testing.assert_allclose(np.sum(np.exp(log_p)), 1.0, atol=1e-4)
  for gradient in tape.gradient(total, [loc_var, scale_var]):
    assert np.all(np.isfinite(gradient))


def test_discretized_samples_lie_on_the_levels_with_the_right_frequencies():
  d = Discretized8Bit(0.4, 0.02, "logistic")
  z = d.sample(100000, seed=[4, 4]).numpy()
  np.testing.assert_allclose(z * 255, np.round(z * 255), atol=1e-4)
  probabilities = np.exp(d.log_prob(LEVELS).numpy())
  frequencies = np.bincount(np.round(z * 255).astype(int), minlength=256) / len(z)
  assert np.abs(frequencies - probabilities).max() < 0.005


def test_continuous_likelihoods_refuse_binary_data():
  with pytest.raises(errors.ConfigError, match="binarized"):
    likelihoods.build("logistic", (28, 28, 1), binary=True)
  with pytest.raises(errors.ConfigError, match="unknown likelihood"):
    likelihoods.build("poisson", (28, 28, 1), binary=False)
  pixels = likelihoods.build("normal", (4, 4, 3), binary=False)
  dist = pixels.distribution(tf.zeros([5, 2 * 48]))
  assert dist.batch_shape == (5,) and dist.event_shape == (4, 4, 3)
  fixed = likelihoods.build("logistic", (4, 4, 3), binary=False, learned_scale=False)
  assert fixed.num_params == 1 and fixed.distribution(tf.zeros([2, 4, 4, 3])).event_shape == (4, 4, 3)


def test_categorical_8bit_levels_log_prob_sample_and_mean():
  logits = tf.random.stateless_normal([2, 3, 256], seed=[4, 2])
  p = Categorical8Bit(logits)
  assert p.batch_shape == (2, 3) and p.event_shape == ()
  levels = tf.reshape(tf.range(256, dtype=tf.float32) / 255, [256, 1, 1])
  log_probs = p.log_prob(levels)  # [256, 2, 3]
  np.testing.assert_allclose(tf.reduce_sum(tf.exp(log_probs), 0), 1.0, rtol=1e-5)
  np.testing.assert_allclose(tf.transpose(log_probs, [1, 2, 0]), tf.nn.log_softmax(logits),
                             rtol=1e-5, atol=1e-6)
  draws = p.sample(4000, seed=seeding.as_seed(5)).numpy()
  assert draws.shape == (4000, 2, 3)
  np.testing.assert_allclose(draws * 255, np.round(draws * 255), atol=1e-4)
  np.testing.assert_allclose(draws.mean(0), p.mean(), atol=0.02)
  pixels = likelihoods.build("categorical", (4, 4, 3), binary=False)
  assert pixels.num_params == 256
  image_p = pixels.distribution(tf.zeros([5, 256 * 4 * 4 * 3]))
  assert image_p.event_shape == (4, 4, 3)
  np.testing.assert_allclose(image_p.log_prob(tf.zeros([5, 4, 4, 3])), -48 * np.log(256.0),
                             rtol=1e-5)
