"""SpikeAndSlab and Discretized8Bit: sampling statistics, KL against Monte Carlo, edge values."""

import numpy as np
import pytest
from scipy import special
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import seeding
from tfgen.distributions import Categorical8Bit
from tfgen.distributions import Discretized8Bit
from tfgen.distributions import SpikeAndSlab
from tfgen.distributions import discretized
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
DELTA = discretized.HALF_BIN
# From the floor of the models' learned scales (likelihoods.MIN_SCALE, PixelCNN's MIN_SCALE_BINS)
# through a bin width to far above the data range.
GRID_SCALES = [likelihoods.MIN_SCALE, 0.5 * DELTA, DELTA, 2 * DELTA, 10 * DELTA, 0.05, 0.3, 1.0,
               10.0, 100.0]
# Bin centres and boundaries, the two edge levels, just outside and far outside [0, 1].
GRID_LOCS = [0.5, 0.5 + DELTA, 0.2 + 0.3 * DELTA, 0.0, 1.0, -0.01, 1.01, -0.5, 1.5, -10.0, 10.0]


def _log1mexp(d):
  """log(1 − e^(−d)) for d ≥ 0, float64 (−inf at 0: only in the tail not taken)."""
  small = d < np.log(2)
  with np.errstate(divide="ignore"):
    return np.where(small, np.log(-np.expm1(-np.where(small, d, 1.0))),
                    np.log1p(-np.exp(-np.where(small, 1.0, d))))


def _reference_log_mass(base, loc, scale, x):
  """The bins' log masses in float64 (of float32 inputs, exactly), as differences of log-CDFs
  taken in the tail the bin lies in, so nothing cancels at float64 precision on the grid."""
  x, loc, scale = (np.asarray(v, np.float64) for v in (x, loc, scale))
  lower, upper = (x - DELTA - loc) / scale, (x + DELTA - loc) / scale
  log_cdf = (lambda z: -np.logaddexp(0.0, -z)) if base == "logistic" else special.log_ndtr
  left = log_cdf(upper) + _log1mexp(log_cdf(upper) - log_cdf(lower))
  right = log_cdf(-lower) + _log1mexp(log_cdf(-lower) - log_cdf(-upper))
  middle = np.where(x <= loc, left, right)
  return np.where(x < DELTA, log_cdf(upper), np.where(x > 1 - DELTA, log_cdf(-lower), middle))


def _sum_tolerance(scale):
  """How far from 1 the 256 probabilities may sum: float32 levels k/255 sit up to 3e-8 off, so
  bins exact for the levels given overlap or leave gaps of up to 6e-8 at their shared edges,
  and the edges next to the mode hold at most 0.4 / scale of density each."""
  return 1e-6 + 5e-8 / np.asarray(scale)


def _grid():
  """Locations and scales [S, L] and the 256 levels [256, 1, 1], float32."""
  loc, scale = np.meshgrid(np.float32(GRID_LOCS), np.float32(GRID_SCALES))
  return loc, scale, LEVELS[:, None, None]


@pytest.mark.parametrize("base", ["logistic", "normal"])
@pytest.mark.parametrize("loc,scale", [(0.3, 0.05), (0.0, 0.001), (1.2, 0.3), (0.5, 1e-5),
                                       (-3.0, 0.01)])
def test_discretized_probabilities_sum_to_one_with_finite_gradients(base, loc, scale):
  loc_var, scale_var = tf.Variable([[loc]]), tf.Variable([[scale]])
  with tf.GradientTape() as tape:
    log_p = Discretized8Bit(loc_var, scale_var, base).log_prob(LEVELS[:, None])
    total = tf.reduce_sum(log_p)
  assert abs(np.sum(np.exp(log_p.numpy().astype(np.float64))) - 1.0) < _sum_tolerance(scale)
  for gradient in tape.gradient(total, [loc_var, scale_var]):
    assert np.all(np.isfinite(gradient))


@pytest.mark.parametrize("base", ["logistic", "normal"])
def test_discretized_log_mass_is_exact_in_every_bin_at_every_scale(base):
  loc, scale, x = _grid()
  computed = discretized.discretized_log_mass(discretized.BASES[base](loc, scale), x).numpy()
  expected = _reference_log_mass(base, loc, scale, x)  # [256, S, L]
  assert np.all(np.isfinite(expected))
  # The grid reaches deep into the tails, where density × bin width used to stand in for the mass.
  assert np.mean(expected < np.log(1e-5)) > 0.5 and expected.min() < -1e4
  # float32 precision: ~1e-6 of the value (of 1 nat near the mode), for every bin, edges included.
  error = np.abs(computed - expected) / np.maximum(1.0, np.abs(expected))
  assert error.max() < 2e-6, np.unravel_index(error.argmax(), error.shape)
  assert np.all(np.abs(np.exp(computed.astype(np.float64)).sum(0) - 1.0) < _sum_tolerance(scale))


@pytest.mark.parametrize("base", ["logistic", "normal"])
def test_discretized_log_mass_gradients_are_finite_and_right_in_every_bin(base):
  loc, scale, x = _grid()
  # One location and scale per bin, so each gradient is that bin's own derivative.
  loc, scale = (np.broadcast_to(v, (256,) + v.shape).copy() for v in (loc, scale))
  loc_var, scale_var = tf.Variable(loc), tf.Variable(scale)
  with tf.GradientTape() as tape:
    total = tf.reduce_sum(discretized.discretized_log_mass(
        discretized.BASES[base](loc_var, scale_var), x))
  d_loc, d_scale = (g.numpy() for g in tape.gradient(total, [loc_var, scale_var]))
  assert np.all(np.isfinite(d_loc)) and np.all(np.isfinite(d_scale))
  # Against central differences of the float64 reference, relative to the size 1/scale that a
  # derivative of a log mass has near the location.
  step = 1e-4 * scale.astype(np.float64)
  reference = lambda l, s: _reference_log_mass(base, l, s, x)
  numeric_loc = (reference(loc + step, scale) - reference(loc - step, scale)) / (2 * step)
  numeric_scale = (reference(loc, scale + step) - reference(loc, scale - step)) / (2 * step)
  for computed, numeric in [(d_loc, numeric_loc), (d_scale, numeric_scale)]:
    error = np.abs(computed - numeric) / np.maximum(np.abs(numeric), 1.0 / scale)
    assert error.max() < 1e-4


def test_discretized_logistic_mixture_shares_the_exact_bin_masses():
  # One component and one channel: PixelCNN++'s mixture is the discretized logistic, tails too.
  loc, scale, x = _grid()
  mixture = discretized.DiscretizedLogisticMixture(
      tf.zeros(loc.shape + (1,)), loc[..., None, None], scale[..., None, None],
      tf.zeros(loc.shape + (0, 1)))
  computed = mixture.log_prob(x[..., None]).numpy()
  expected = _reference_log_mass("logistic", loc, scale, x)
  error = np.abs(computed - expected) / np.maximum(1.0, np.abs(expected))
  assert error.max() < 2e-6


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
