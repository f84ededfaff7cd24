"""Variational Sparse Coding: shapes, the VAE limit, the likelihood estimate, schedules, probes,
traversals and conditional samples, and a real run on ../shared/data/mnist_5k."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import evaluate
from tfgen import probes
from tfgen import sampling
from tfgen import train
from tfgen.models import base
from tfgen.models import capabilities as caps
from tfgen.models import vsc
from tests.conftest import load_config
from tests.conftest import shared_data

tfd = tfp.distributions


def _model(image_shape=(28, 28, 1), **kwargs):
  kwargs.setdefault("latent_size", 6)
  kwargs.setdefault("hidden_sizes", (16,))
  model = vsc.VSC(image_shape, **kwargs)
  model.build_for_images()
  return model


@pytest.mark.parametrize("image_shape,architecture,likelihood,binary", [
    ((28, 28, 1), "mlp", "bernoulli", True),
    ((28, 28, 1), "conv", "logistic", False),
    ((64, 64, 3), "conv", "normal", False),
    ((64, 64, 3), "mlp", "bernoulli", False),
])
def test_shapes(image_shape, architecture, likelihood, binary):
  model = _model(image_shape, architecture=architecture, likelihood=likelihood, binary=binary,
                 conv_filters=(4, 8, 8, 8), num_importance_samples=3)
  x = tf.random.stateless_uniform((5,) + image_shape, seed=[1, 1])
  x = tf.round(x) if binary else tf.round(x * 255) / 255
  q = model.encode(x)
  assert q.batch_shape == (5,) and q.event_shape == (6,)
  p = model.decode(q.sample(2, seed=[2, 2]))
  assert p.batch_shape == (2, 5) and p.event_shape == image_shape
  terms = model.bounds({"image": x}, seed=tf.constant([3, 3]))
  assert set(terms) == {"elbo", "iwae_bound", "rate", "distortion", "active_dimensions"}
  assert all(v.shape == (5,) for v in terms.values())
  loss, _ = model.loss({"image": x}, seed=tf.constant([4, 4]), training=True)
  assert loss.shape == (5,) and np.all(np.isfinite(loss))
  assert model.sample(4, seed=tf.constant([5, 5])).shape == (4,) + image_shape
  assert model.codes(x).shape == (5, 6) and model.prob_active(x).shape == (5, 6)
  assert model.log_prob({"image": x}, seed=tf.constant([6, 6]), num_importance_samples=7).shape == (5,)


def test_alpha_one_is_the_plain_vae():
  model = _model(alpha=1.0)
  x = tf.round(tf.random.stateless_uniform((8, 28, 28, 1), seed=[1, 2]))
  q = model.encode(x)
  gaussian = tfd.Independent(tfd.Normal(q.distribution.loc, q.distribution.scale), 1)
  vae_kl = tfd.kl_divergence(gaussian, tfd.Independent(tfd.Normal(tf.zeros(6), 1.0), 1))
  np.testing.assert_allclose(model.bounds({"image": x}, seed=tf.constant([0, 1]))["rate"], vae_kl,
                             rtol=1e-5)
  np.testing.assert_array_equal(model.prob_active(x), 1.0)
  assert np.all(model.num_active_dimensions(x) == 6)
  # Exact draws are the Gaussian's, so the importance weights are the VAE's.
  z = q.sample(4, seed=[3, 3])
  np.testing.assert_allclose(q.log_prob(z) - model.prior().log_prob(z),
                             gaussian.log_prob(z) - tfd.Independent(
                                 tfd.Normal(tf.zeros(6), 1.0), 1).log_prob(z), rtol=1e-4)


def test_importance_sampled_likelihood_matches_numerical_integration():
  """One latent dimension, two pixels: p(x) = (1 − α) p(x | 0) + α ∫ N(z) p(x | z) dz."""
  alpha = 0.3
  model = _model((1, 2, 1), latent_size=1, alpha=alpha, hidden_sizes=(8,))
  # A proposal q(z | x) = 0.6 · N(0.3, 1.5²) + 0.4 · δ₀ wider than the prior, so that 50,000
  # importance weights pin log p(x) down; it differs from the prior in both parts, so the
  # ratio of spike and slab densities is exercised.
  out = model.encoder.out
  out.kernel.assign(tf.zeros_like(out.kernel))
  out.bias.assign([0.3, float(tfp.math.softplus_inverse(1.5 - model.min_scale)),
                   float(np.log(0.6 / 0.4))])
  images = tf.constant([[0, 0], [0, 1], [1, 0], [1, 1]], tf.float32)[:, None, :, None]
  grid = np.linspace(-8, 8, 4001, dtype=np.float32)
  log_px_given_z = model.decode(tf.constant(grid)[:, None, None]).log_prob(images)  # [G, 4]
  slab = np.trapezoid(np.exp(log_px_given_z.numpy()) * np.exp(
      tfd.Normal(0.0, 1.0).log_prob(grid).numpy())[:, None], grid, axis=0)
  spike = np.exp(model.decode(tf.zeros([1, 1])).log_prob(images).numpy()[0])
  exact = np.log((1 - alpha) * spike + alpha * slab)
  estimate = model.log_prob({"image": images}, seed=tf.constant([7, 7]), num_importance_samples=50000)
  np.testing.assert_allclose(estimate, exact, atol=0.02)
  np.testing.assert_allclose(np.sum(np.exp(exact)), 1.0, atol=1e-4)
  # Every bound is below the estimate it bounds, and the ELBO below the IWAE bound.
  bounds = model.bounds({"image": images}, seed=tf.constant([1, 1]))
  elbo = np.mean([model.bounds({"image": images}, seed=tf.constant([i, 0]))["elbo"] for i in range(200)], 0)
  assert np.all(elbo <= exact + 1e-4) and bounds["rate"].shape == (4,)


def test_schedules_live_in_variables():
  # Durations in epochs; the loop passes each step's fractional epoch.
  model = _model(sharpness_start=50.0, sharpness_end=250.0, sharpness_warmup_epochs=100,
                 kl_warmup_epochs=10)
  expected = {0: (50.0, 0.0), 5: (60.0, 0.5), 50: (150.0, 1.0), 1000: (250.0, 1.0)}
  for step, (sharpness, kl_weight) in expected.items():
    model.update_schedules(tf.constant(float(step)))
    np.testing.assert_allclose([float(model.sharpness), float(model.kl_weight)],
                               [sharpness, kl_weight], rtol=1e-6)
  assert {"sharpness", "kl_weight"} <= {w.name for w in model.non_trainable_weights}
  x = tf.round(tf.random.stateless_uniform((4, 28, 28, 1), seed=[1, 2]))
  model.update_schedules(tf.constant(0.0))
  loss, terms = model.loss({"image": x}, seed=tf.constant([1, 1]), training=True)
  np.testing.assert_allclose(loss, terms["distortion"], rtol=1e-6)  # KL weight 0 at step 0.


def test_invalid_settings_fail_clearly():
  with pytest.raises(errors.ConfigError, match="alpha"):
    vsc.VSC((28, 28, 1), alpha=0.0)
  with pytest.raises(errors.ConfigError, match="architecture"):
    vsc.VSC((28, 28, 1), architecture="transformer")
  with pytest.raises(errors.ConfigError, match="binarized"):
    vsc.VSC((28, 28, 1), likelihood="logistic", binary=True)


class _IdentityCodes:
  """A stand-in model whose codes are its inputs."""

  def codes(self, x):
    return tf.reshape(x, [tf.shape(x)[0], -1])


def _dataset(features, labels):
  return tf.data.Dataset.from_tensor_slices({"image": features, "label": labels}).batch(64)


def test_probe_separates_informative_codes_and_not_random_ones():
  rng = np.random.RandomState(0)
  labels = rng.randint(0, 3, size=900).astype(np.int32)
  informative = (np.eye(3)[labels] * 3 + rng.normal(size=(900, 3))).astype(np.float32)
  noise = rng.normal(size=(900, 3)).astype(np.float32)
  splits = lambda f: [_dataset(f[s], labels[s]) for s in (slice(0, 600), slice(600, 700),
                                                          slice(700, 900))]
  good = probes.classify_codes(_IdentityCodes(), *splits(informative), num_classes=3)
  bad = probes.classify_codes(_IdentityCodes(), *splits(noise), num_classes=3)
  assert good.test_accuracy > 0.9 and bad.test_accuracy < 0.45
  assert good.num_train == 600 and good.num_test == 200
  assert good.l2_penalty in probes.L2_PENALTIES


def test_traversal_changes_one_used_dimension_at_a_time():
  codes = tf.constant([[0.0, 1.5, 0.0, -0.2], [0.3, 0.0, 0.0, 0.0]])
  usage = tf.constant([[0.1, 0.9, 0.2, 0.8], [0.95, 0.0, 0.6, 0.0]])
  traversed = base.traversal_codes(codes, usage, num_dimensions=2, num_steps=5).numpy()
  assert traversed.shape == (2, 2, 5, 4)
  for image, dims in enumerate([(1, 3), (0, 2)]):
    for row, dim in enumerate(dims):
      changed = np.any(traversed[image, row] != codes[image].numpy(), axis=0)
      assert list(np.flatnonzero(changed)) == [dim]
      np.testing.assert_allclose(traversed[image, row, :, dim], np.linspace(-3, 3, 5))


def test_conditional_codes_keep_the_used_dimensions():
  usage = tf.constant([[0.9, 0.1, 0.7], [0.0, 0.0, 0.99]])
  codes = vsc.conditional_codes(usage, num_samples=100, seed=tf.constant([1, 2])).numpy()
  assert codes.shape == (2, 100, 3)
  np.testing.assert_array_equal(codes != 0, np.broadcast_to((usage.numpy() > 0.5)[:, None],
                                                            codes.shape))
  assert abs(codes[0, :, 0].std() - 1.0) < 0.2


@pytest.fixture(scope="module")
def mnist_5k_run(tmp_path_factory):
  """A tiny VSC trained on the real 5,000-digit MNIST sample (intensities, Bernoulli)."""
  manual_dir = shared_data("mnist_5k")
  config = load_config("vsc", "tiny")
  config.data.manual_dir = str(manual_dir)
  config.data.limit = 0
  config.train.batch_size = 100
  workdir = str(tmp_path_factory.mktemp("vsc") / "run")
  train.train(config, workdir, show_progress=False)
  return workdir


# Through the package functions the apps call (tests/test_cli.py runs the apps themselves, and
# how they print a ConfigError): a TensorFlow import per app would cost more than the work.
def test_evaluate_reports_bounds_sparsity_and_code_accuracy(mnist_5k_run):
  results = evaluate.evaluate(mnist_5k_run, num_importance_samples=20, show_progress=False)
  with open(evaluate.results_path(mnist_5k_run, "test", 20), encoding="utf-8") as f:
    written = json.load(f)
  for field in ("nll_nats", "elbo", "active_dimensions_per_image",
                "code_classification_test_accuracy"):
    assert written[field] == pytest.approx(results[field])
  assert results["num_examples"] == 1000 and results["binarization"] == "none"
  assert results["code_classification_num_train"] == 3500
  # Two epochs of a tiny model already carry the class far above chance (10%).
  assert results["code_classification_test_accuracy"] > 0.3
  assert 0 < results["active_dimensions_per_image"] <= 8
  assert -results["nll_nats"] >= results["elbo"] - 0.5


def test_sample_modes_write_grids(mnist_5k_run, tmp_path):
  out = str(tmp_path / "traversal.png")
  sampling.sample_grid(mnist_5k_run, 4, out, mode="traversal", num_images=2)
  picture = tf.io.decode_png(tf.io.read_file(out))
  trained = evaluate.load_trained(mnist_5k_run, splits=("test",))
  request = caps.SampleRequest(num=2, num_classes=trained.info.num_classes,
                               test=trained.data.test)
  images = caps.test_images(request, 2)
  used = np.clip(np.sum(trained.model.prob_active(images).numpy() > 0.5, 1), 1, 8)
  # A row per used dimension of each image, 9 columns of 28+1 pixels.
  assert picture.shape == (int(used.sum()) * 29 + 1, 9 * 29 + 1, 1)
  out = str(tmp_path / "threes.png")
  sampling.sample_grid(mnist_5k_run, 5, out, mode="conditional", label=3, num_images=3)
  assert tf.io.decode_png(tf.io.read_file(out)).shape == (3 * 29 + 1, 6 * 29 + 1, 1)
  assert caps.test_images(request, 3, label=3).shape == (3, 28, 28, 1)
  with pytest.raises(errors.DataError, match="0 images of class 12"):
    sampling.sample_grid(mnist_5k_run, 4, str(tmp_path / "none.png"), mode="conditional",
                         label=12)
  assert not (tmp_path / "none.png").exists()


@pytest.mark.parametrize("variant,shape", [
    ("tiny,data=fashion_mnist", (28, 28, 1)),
    ("tiny,data=celeb_a,architecture=conv,likelihood=logistic", (64, 64, 3)),
])
def test_trains_on_tfds_sets_through_the_common_loop(variant, shape, tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = load_config("vsc", variant)
  config.data.data_dir = str(tmp_path / "tfds")
  config.data.limit = 0
  config.data.num_validation = 10
  config.train.batch_size = config.eval.batch_size = 10
  config.train.num_epochs = 1
  workdir = str(tmp_path / "run")
  with tfds.testing.mock_data(num_examples=30):
    result = train.train(config, workdir, show_progress=False)
    trained = evaluate.load_trained(workdir, splits=("test",))
  assert result.step == trained.info.num_examples["train"] // 10 > 0
  assert trained.model.image_shape == shape
  assert np.isfinite(result.validation_metrics["elbo"])
  assert config.data.binarization == "none"  # Intensities, as the paper models them.
