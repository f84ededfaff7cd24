"""Matryoshka Networks: shapes per level, prior/posterior alignment, KL terms, bounds, a short run."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from tfgen import errors
from tfgen import evaluate
from tfgen import sampling
from tfgen import seeding
from tfgen import train
from tfgen.models import matnet
from tests.conftest import load_config

SHAPE = (8, 8, 1)


def _model(architecture="fc", **kwargs):
  if architecture == "fc":
    args = dict(fc_modules=3, fc_width=16, fc_latent=3)
  else:
    args = dict(conv_modules=(1, 2), conv_channels=8, conv_latent_channels=2)
  args.update(kwargs)
  model = matnet.MatNet(SHAPE, architecture=architecture, **args)
  model.build_for_images()
  return model


def _images(n=16, seed=0):
  return tf.cast(tf.random.stateless_uniform((n,) + SHAPE, seed=[seed, 1]) < 0.3, tf.float32)


@pytest.mark.parametrize("architecture,latent_shapes,bu_shapes", [
    ("fc", [(3,)] * 3, [(16,)] * 3),
    # Two scales of an 8x8 image: 2x2 at the top (one module), 4x4 below (two modules).
    ("conv", [(2, 2, 2), (4, 4, 2), (4, 4, 2)], [(2, 2, 8), (4, 4, 8), (4, 4, 8)]),
])
def test_shapes_at_every_level(architecture, latent_shapes, bu_shapes):
  model = _model(architecture)
  x = _images(5)
  assert model.latent_shapes == latent_shapes
  assert [tuple(b.shape[1:]) for b in model._bottom_up(x)] == bu_shapes
  params, records = model._posterior_pass(x, 3, seeding.as_seed(1))
  assert params.shape[0] == 15
  for record, shape in zip(records, latent_shapes):
    for name in ("p_loc", "p_scale", "q_loc", "q_scale", "z"):
      assert tuple(record[name].shape) == (15,) + shape, name
  sizes = [math.prod(s) for s in latent_shapes]
  assert [tuple(m.shape) for m in model.posterior_means(x, seeding.as_seed(2))] == [
      (5, s) for s in sizes]
  q = model.encode(x)
  assert q.event_shape == [sum(sizes)] and q.batch_shape == [5]
  assert model.prior().event_shape == [sizes[0]]
  assert model.decode(q.sample(seed=seeding.as_seed(3))).batch_shape == [5]
  assert model.decode(tf.zeros([2, 5, sum(sizes)])).batch_shape == [2, 5]
  assert model.sample(4, seeding.as_seed(4)).shape == (4,) + SHAPE
  terms = model.bounds({"image": x}, seeding.as_seed(5))
  assert sorted(k for k in terms if k.startswith("kl_")) == [f"kl_{i}" for i in range(3)]


@pytest.mark.parametrize("architecture", ["fc", "conv"])
def test_prior_and_posterior_line_up_module_by_module(architecture):
  model = _model(architecture)
  x, seed = _images(8), seeding.as_seed(3)
  _, records = model._posterior_pass(x, 2, seed)
  trained_kls = model.bounds({"image": x}, seed)
  assert sum(float(tf.reduce_mean(trained_kls[f"kl_{i}"])) for i in range(3)) > 0
  for record in records:
    assert record["p_loc"].shape == record["q_loc"].shape
    assert record["p_scale"].shape == record["q_scale"].shape
  # Zero the inference network's output: every module's posterior must become its prior.
  for module in model.td_modules:
    for weight in module.posterior_head.weights:
      weight.assign(tf.zeros_like(weight))
  _, records = model._posterior_pass(x, 2, seed)
  for record in records:
    np.testing.assert_allclose(record["q_loc"], record["p_loc"], atol=1e-6)
    np.testing.assert_allclose(record["q_scale"], record["p_scale"], rtol=1e-5)
  terms = model.bounds({"image": x}, seed)
  for i in range(3):
    np.testing.assert_allclose(terms[f"kl_{i}"], 0.0, atol=1e-4)
  # Measured against its prior, no module is then active, although the raw q means vary with x.
  for means in model.posterior_means(x, seed):
    np.testing.assert_allclose(means, 0.0, atol=1e-5)
  assert np.var(records[-1]["q_loc"].numpy(), axis=0).max() > 1e-4
  # Then every importance weight is p(x | z) with z drawn from the prior, and the ELBO is its mean.
  terms = model.latent_terms({"image": x}, 4, seed)
  np.testing.assert_allclose(tf.add_n(terms.log_prior), tf.add_n(terms.log_posterior), rtol=1e-5,
                             atol=1e-3)


@pytest.mark.parametrize("architecture", ["fc", "conv"])
def test_kl_terms_sum_to_the_rate_and_match_monte_carlo(architecture):
  model = _model(architecture)
  x, seed = _images(8), seeding.as_seed(4)
  terms = model.bounds({"image": x}, seed)
  np.testing.assert_allclose(sum(terms[f"kl_{i}"] for i in range(3)), terms["rate"], rtol=1e-5)
  np.testing.assert_allclose(terms["elbo"], -terms["distortion"] - terms["rate"], rtol=1e-5)
  # Each closed-form KL_i, averaged over draws of the modules above, is E_q[log q_i − log p_i].
  draws = model.latent_terms({"image": x}, 1500, seed)
  for lp, lq, kl in zip(draws.log_prior, draws.log_posterior, draws.kl):
    mc = tf.reduce_mean(lq - lp, axis=0).numpy()
    exact = tf.reduce_mean(kl, axis=0).numpy()
    np.testing.assert_allclose(mc, exact, atol=0.2 + 0.05 * np.abs(exact).max())


@pytest.mark.parametrize("architecture", ["fc", "conv"])
def test_iwae_bound_is_at_least_the_elbo(architecture):
  model = _model(architecture, objective="iwae", num_importance_samples=8)
  x, seed = _images(16), seeding.as_seed(5)
  terms = model.bounds({"image": x}, seed)
  # Same 8 draws: log-mean-exp ≥ mean, per example.
  log_w = model.log_weights({"image": x}, 8, seed).numpy()
  assert np.all(np.logaddexp.reduce(log_w, axis=0) - math.log(8) >= log_w.mean(axis=0) - 1e-4)
  assert np.all(terms["iwae_bound"].numpy() >= terms["elbo"].numpy() - 1.0)
  model.importance_chunk_size = 64
  estimate = model.log_prob({"image": x}, seed, num_importance_samples=300).numpy()
  assert estimate.mean() > float(tf.reduce_mean(terms["elbo"]))
  loss, _ = model.loss({"image": x}, seed, training=True)
  np.testing.assert_allclose(loss, -terms["iwae_bound"], rtol=1e-5)


@pytest.mark.parametrize("architecture", ["fc", "conv"])
def test_eight_bit_images_get_a_discretized_likelihood(architecture):
  model = _model(architecture, likelihood="logistic", binary=False)
  levels = tf.random.stateless_uniform((4,) + SHAPE, seed=[3, 3], maxval=256, dtype=tf.int32)
  x, seed = tf.cast(levels, tf.float32) / 255.0, seeding.as_seed(7)
  log_px = model.decode(model.encode(x).sample(seed=seed)).log_prob(x).numpy()
  # A proper probability of 8-bit levels: at most 0 nats, unlike a density.
  assert log_px.shape == (4,) and np.all(log_px <= 0)
  assert np.all(np.isfinite(model.log_prob({"image": x}, seed, num_importance_samples=5).numpy()))
  samples = model.sample(3, seed).numpy()
  np.testing.assert_allclose(samples * 255, np.round(samples * 255), atol=1e-3)
  with pytest.raises(errors.ConfigError, match="models 8-bit intensities"):
    matnet.MatNet(SHAPE, likelihood="logistic", binary=True)


def test_kl_warmup_and_free_bits_change_only_the_training_loss():
  model = _model("fc", kl_warmup_epochs=100)
  x, seed = _images(16), seeding.as_seed(6)
  model.update_schedules(tf.constant(25.0))
  assert float(model.kl_weight) == pytest.approx(0.25)
  loss, terms = model.loss({"image": x}, seed, training=True)
  np.testing.assert_allclose(loss, terms["distortion"] + 0.25 * terms["rate"], rtol=1e-5)
  model.update_schedules(tf.constant(1000.0))
  assert float(model.kl_weight) == 1.0
  free = _model("fc", free_bits=50.0)  # More than any module's KL here: each pays 50 nats.
  loss, terms = free.loss({"image": x}, seed, training=True)
  np.testing.assert_allclose(loss, terms["distortion"] + 3 * 50.0, rtol=1e-5)
  with tf.GradientTape() as tape:
    mean_loss = tf.reduce_mean(free.loss({"image": x}, seed, training=True)[0])
  # The KL terms pay a constant, but the reconstruction still trains the inference network.
  heads = [w for m in free.td_modules for w in m.posterior_head.trainable_weights]
  assert all(g is not None for g in tape.gradient(mean_loss, heads))


@pytest.mark.parametrize("kwargs,match", [
    (dict(architecture="mlp"), "unknown MatNet architecture"),
    (dict(objective="wake-sleep"), "unknown objective"),
    (dict(objective="iwae", free_bits=1.0), "free bits apply to the ELBO"),
    (dict(architecture="conv", conv_modules=(1, 1, 1, 1)), "divisible by 16"),
    (dict(fc_modules=0), "fc_modules"),
])
def test_invalid_settings_are_one_clear_error(kwargs, match):
  with pytest.raises(errors.ConfigError, match=match):
    matnet.MatNet(SHAPE, **kwargs)


def test_config_variants():
  with pytest.raises(errors.ConfigError, match="both conv and fc"):
    load_config("matnet", "conv,fc")
  assert load_config("matnet", "").model.architecture == "conv"
  config = load_config("matnet", "fc_modules=6")
  assert config.model.architecture == "fc" and config.model.fc_modules == 6
  # Durations are epochs; the loop resolves them from the data's own size.
  assert load_config("matnet", "fc,warmup=2").model.kl_warmup_epochs == 2


def test_short_run_trains_evaluates_and_samples(binarized_mnist_dir, tfds_data_dir, tmp_path):
  """The convolutional tiny variant through train, evaluate and sample, with KL warm-up on.

  The fully connected tiny variant takes the same path in tests/test_export.py (TINY_VARIANTS):
  one epoch of the training loop, export, evaluation; a second run here would only add time.
  """
  config = load_config("matnet", "tiny,warmup=1")
  config.data.manual_dir = str(binarized_mnist_dir)
  config.data.data_dir = tfds_data_dir
  config.train.num_epochs = 1
  config.data.limit = 64  # Two steps of 32: the run is about the plumbing, not the fit.
  workdir = str(tmp_path / "run")
  result = train.train(config, workdir, show_progress=False)
  assert result.train_metrics["kl_weight"] > 0 and "kl_1" in result.validation_metrics
  results = evaluate.evaluate(workdir, num_importance_samples=6, show_progress=False)
  with open(results["json"], encoding="utf-8") as f:
    saved = json.load(f)
  modules = 2
  assert len(saved["active_units"]) == len(saved["latent_units"]) == modules
  assert all(f"kl_{i}" in saved for i in range(modules))
  assert saved["nll_nats"] <= -saved["elbo"] + 1.0 and saved["seconds"] > 0
  out = sampling.sample_grid(workdir, 4, str(tmp_path / "grid.png"))
  assert os.path.getsize(out) > 0
