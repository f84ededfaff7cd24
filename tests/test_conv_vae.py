"""The convolutional VAE: shapes from the data, likelihoods, batch norm at evaluation, a short run."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfgen import data
from tfgen import errors
from tfgen import evaluate
from tfgen import models
from tfgen import sampling
from tfgen import seeding
from tfgen import train
from tfgen.models import conv_vae
from tests.conftest import load_config
from tests.conftest import shared_data


def _model(shape, likelihood, binary, **kwargs):
  model = conv_vae.ConvVAE(shape, latent_size=3, channels=4, hidden_size=8,
                           likelihood=likelihood, binary=binary, **kwargs)
  model.build_for_images()
  return model


def _images(shape, num, binary, seed=(1, 2)):
  u = tf.random.stateless_uniform((num,) + shape, seed=seed)
  return tf.round(u) if binary else tf.round(u * 255) / 255


@pytest.mark.parametrize("shape,likelihood,binary,steps", [
    ((28, 28, 1), "bernoulli", True, 2),
    ((64, 64, 3), "logistic", False, 4),
    ((28, 28, 1), "normal", False, 2),
    ((28, 28, 1), "categorical", False, 2),
])
def test_shapes_follow_the_data(shape, likelihood, binary, steps):
  model = _model(shape, likelihood, binary)
  assert conv_vae.downsampling_steps(shape[0]) == steps
  x, seed = _images(shape, 3, binary), seeding.as_seed(0)
  loss, metrics = model.loss({"image": x}, seed, training=True)
  assert loss.shape == (3,) and all(v.shape == (3,) for v in metrics.values())
  model.importance_chunk_size = 2
  assert model.log_prob({"image": x}, seed, num_importance_samples=5).shape == (3,)
  assert model.encode(x).event_shape == (3,)
  assert model.decode(tf.zeros([2, 3, 3])).batch_shape == (2, 3)  # k draws of a batch.
  assert model.reconstruct(x, seed).shape == x.shape
  samples = model.sample(2, seed).numpy()
  assert samples.shape == (2,) + shape and samples.min() >= 0 and samples.max() <= 1
  levels = 1 if binary else 255
  np.testing.assert_allclose(samples * levels, np.round(samples * levels), atol=1e-4)


@pytest.mark.parametrize("likelihood", ["logistic", "categorical"])
def test_discretized_likelihood_is_a_proper_distribution_over_levels(likelihood):
  model = _model((28, 28, 1), likelihood, False)
  z = model.prior().sample(1, seed=seeding.as_seed(3))
  p = model.decode(z).distribution  # Independent over pixels; one pixel's 256 levels sum to 1.
  levels = tf.reshape(tf.range(256, dtype=tf.float32) / 255, [256, 1, 1, 1, 1])
  total = tf.reduce_sum(tf.exp(p.log_prob(levels)), 0)
  np.testing.assert_allclose(total.numpy(), 1.0, rtol=1e-4)


def test_bad_shapes_and_likelihoods_are_config_errors():
  with pytest.raises(errors.ConfigError, match="sides halve"):
    conv_vae.ConvVAE((7, 7, 1))
  with pytest.raises(errors.ConfigError, match="sides halve"):
    conv_vae.ConvVAE((28, 64, 1))
  with pytest.raises(errors.ConfigError, match="data are binarized"):
    conv_vae.ConvVAE((28, 28, 1), likelihood="logistic", binary=True)


def test_evaluation_does_not_depend_on_the_batch_size():
  model = _model((28, 28, 1), "bernoulli", True)
  x = _images((28, 28, 1), 50, True, seed=(5, 6))
  # Training-mode calls move the moving averages away from their initial 0 and 1.
  for i in range(5):
    model.loss({"image": x * (i % 2)}, seeding.as_seed(i), training=True)
  seed = seeding.as_seed(9)
  model.importance_chunk_size = 7
  whole = model.log_prob({"image": x}, seed, num_importance_samples=20).numpy()
  parts = np.concatenate([model.log_prob({"image": x[i:i + 7]}, seed, num_importance_samples=20).numpy()
                          for i in range(0, 50, 7)])
  np.testing.assert_allclose(parts, whole, rtol=1e-5)
  bounds = model.bounds({"image": x}, seed)["elbo"].numpy()
  np.testing.assert_allclose(model.bounds({"image": x[:7]}, seed)["elbo"].numpy(), bounds[:7], rtol=1e-5)
  # With batch statistics (training) the same images would score differently in other batches.
  trained = model.loss({"image": x}, seed, training=True)[1]["distortion"].numpy()[:7]
  alone = model.loss({"image": x[:7]}, seed, training=True)[1]["distortion"].numpy()
  assert np.max(np.abs(trained - alone)) > 1e-3


def test_short_run_with_a_discretized_likelihood(tmp_path):
  config = load_config("conv_vae", "tiny,data=mnist_5k")
  config.data.manual_dir = str(shared_data("mnist_5k"))
  config.train.num_epochs = 1
  assert config.model.likelihood == "logistic" and config.data.binarization == "none"
  workdir = str(tmp_path / "run")
  assert train.train(config, workdir, show_progress=False).step == 256 // 32
  results = evaluate.evaluate(workdir, batch_size=7, show_progress=False)
  assert results["binarization"] == "none" and results["num_examples"] == 256
  np.testing.assert_allclose(results["nll_bits_per_dim"],
                             results["nll_nats"] / (784 * math.log(2)), rtol=1e-6)
  assert 0 < results["nll_nats"] <= -results["elbo"] + 1.0
  out = sampling.sample_grid(workdir, 4, str(tmp_path / "grid.png"))
  assert tf.io.decode_png(tf.io.read_file(out)).shape == (59, 59, 1)
  trained = evaluate.load_trained(workdir, splits=())
  assert isinstance(trained.model, models.LatentVariableModel)
  assert trained.info == data.DataInfo.from_json(trained.info.to_json())
