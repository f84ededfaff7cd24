"""VQ-VAE: quantization, straight-through gradients, EMA codebook, the bound, two stages end to end."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfgen import errors
from tfgen import evaluate
from tfgen import export
from tfgen import models
from tfgen import sampling
from tfgen import seeding
from tfgen import train
from tfgen.models import vqvae
from tests.conftest import NO_TFGEN_PREAMBLE
from tests.conftest import load_config
from tests.conftest import untrained_vqvae_run

SHAPE = (8, 8, 1)


def _model(**overrides):
  kwargs = dict(num_codes=6, code_size=3, channels=8, num_residual=1, downsampling=1)
  kwargs.update(overrides)
  model = vqvae.VQVAE(SHAPE, **kwargs)
  model.build_for_images()
  return model


def _images(num=4, seed=0):
  return tf.cast(tf.random.stateless_uniform((num,) + SHAPE, seed=[seed, 1]) < 0.4, tf.float32)


def test_quantization_picks_the_nearest_code():
  model = _model()
  z_e = tf.random.stateless_normal([5, 4, 4, 3], seed=[1, 2]) * 0.2
  codes = model.quantizer.nearest(z_e).numpy()
  codebook = model.quantizer.codebook.numpy()
  distances = ((z_e.numpy()[..., None, :] - codebook) ** 2).sum(-1)
  np.testing.assert_array_equal(codes, distances.argmin(-1))
  np.testing.assert_allclose(model.quantizer.lookup(codes), codebook[codes])


@pytest.mark.parametrize("codebook", ["ema", "loss"])
def test_straight_through_gradient_reaches_the_encoder(codebook):
  model = _model(codebook=codebook)
  x = _images()
  with tf.GradientTape(persistent=True) as tape:
    loss, metrics = model.loss({"image": x}, seeding.as_seed(0), training=True)
    distortion = tf.reduce_sum(metrics["distortion"])
    total = tf.reduce_sum(loss)
  encoder = [v for layer in model.down + [model.to_code] for v in layer.trainable_weights]
  # The distortion depends on the encoder only through the straight-through copy of z_q.
  grads = tape.gradient(distortion, encoder)
  assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
  codebook_grad = tape.gradient(total, model.quantizer.codebook)
  if codebook == "ema":
    # The EMA codebook is state, not a weight: no gradient, not trainable.
    assert codebook_grad is None
    assert not any(v is model.quantizer.codebook for v in model.trainable_variables)
  else:
    assert float(tf.reduce_max(tf.abs(codebook_grad))) > 0


def test_ema_update_matches_its_closed_form():
  model = _model(ema_decay=0.9)
  q = model.quantizer
  count0, sum0 = q.ema_count.numpy().copy(), q.ema_sum.numpy().copy()
  np.testing.assert_allclose(sum0 / count0[:, None], q.codebook.numpy())  # Consistent at start.
  x = _images(6)
  statistics = model.step_statistics({"image": x}, seeding.as_seed(0))
  z_e = model.encoder_output(x).numpy().reshape(-1, 3)
  codes = model.codes(x).numpy().reshape(-1)
  n = np.bincount(codes, minlength=6).astype(np.float32)
  s = np.stack([z_e[codes == k].sum(0) for k in range(6)])
  np.testing.assert_allclose(statistics["code_counts"], n)
  np.testing.assert_allclose(statistics["code_sums"], s, atol=1e-5)
  model.apply_step_statistics(statistics)
  count = 0.9 * count0 + 0.1 * n
  total = 0.9 * sum0 + 0.1 * s
  smoothed = (count + 1e-5) / (count.sum() + 6 * 1e-5) * count.sum()
  np.testing.assert_allclose(q.ema_count, count, rtol=1e-6)
  np.testing.assert_allclose(q.ema_sum, total, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(q.codebook, total / smoothed[:, None], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("likelihood", ["bernoulli", "categorical"])
def test_stage_one_bound_is_distortion_plus_the_uniform_prior(likelihood):
  binary = likelihood == "bernoulli"
  model = _model(likelihood=likelihood, binary=binary)
  x = _images() if binary else tf.round(
      tf.random.stateless_uniform((4,) + SHAPE, seed=[3, 1]) * 255) / 255
  bounds = model.bounds({"image": x}, seeding.as_seed(0))
  codes = model.codes(x)
  assert codes.dtype == tf.int32 and codes.shape == (4, 4, 4)
  expected = model.decode(codes).log_prob(x) - 16 * math.log(6)
  np.testing.assert_allclose(bounds["log_prob"], expected, rtol=1e-6)
  np.testing.assert_allclose(bounds["rate"], 16 * math.log(6), rtol=1e-6)
  np.testing.assert_allclose(model.log_prob({"image": x}), bounds["log_prob"])
  assert model.encode(x).sample(seed=seeding.as_seed(1)).dtype == tf.int32


def test_stage_two_freezes_stage_one_and_its_bound_uses_the_prior():
  config = load_config("vqvae", "tiny,stage=2")
  config.model.stage1_workdir = untrained_vqvae_run()
  info = __import__("tfgen.data", fromlist=["DataInfo"]).DataInfo(
      "binarized_mnist", (28, 28, 1), "fixed", {"train": 0})
  model = models.build(config.model, info)
  model.build_for_images()
  stage1 = models.load_frozen(config.model.stage1_workdir)
  for a, b in zip(model.stage1.weights, stage1.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  trainable = {id(v) for v in model.trainable_variables}
  assert trainable and not trainable & {id(v) for v in model.stage1.weights}
  assert trainable == {id(v) for v in model.prior.trainable_variables}
  x = tf.cast(tf.random.stateless_uniform((3, 28, 28, 1), seed=[3, 3]) < 0.3, tf.float32)
  bounds = model.bounds({"image": x}, seeding.as_seed(0))
  codes = model.codes(x)
  prior = model.prior.log_prob({"image": tf.cast(codes, tf.float32)[..., None] / 7.0})
  np.testing.assert_allclose(bounds["log_prob"], model.stage1.decode(codes).log_prob(x) + prior,
                             rtol=1e-5)
  samples = model.sample_codes(4, seeding.as_seed(2))
  assert samples.dtype == tf.int32 and samples.shape == (4, 7, 7)
  assert int(tf.reduce_min(samples)) >= 0 and int(tf.reduce_max(samples)) < 8


def test_codebook_usage():
  usage = vqvae.codebook_usage(np.array([[0, 0], [1, 1]]), 4)
  assert usage["dead_codes"] == 2 and usage["code_perplexity"] == pytest.approx(2.0)


@pytest.mark.parametrize("build, match", [
    (lambda: vqvae.VQVAE(SHAPE, codebook="kmeans"), "codebook must be one of ema, loss"),
    (lambda: vqvae.VQVAE((28, 28, 1), downsampling=3), "divisible by 8"),
    (lambda: vqvae.VQVAE(SHAPE, num_codes=1), "num_codes"),
    (lambda: vqvae.VQVAEWithPrior((28, 28, 1)), "set --config.model.stage1_workdir"),
    (lambda: vqvae.VQVAEWithPrior((28, 28, 1), stage1_workdir=untrained_vqvae_run(),
                                  prior={"name": "vae"}), "must be an autoregressive model"),
    (lambda: vqvae.VQVAEWithPrior((32, 32, 1), stage1_workdir=untrained_vqvae_run()),
     "images of shape"),
])
def test_invalid_settings_are_one_line_config_errors(build, match):
  with pytest.raises(errors.ConfigError, match=match) as error:
    build()
  assert "\n" not in str(error.value)


# --- Both stages through the generic apps --------------------------------------------------------

_RELOAD = NO_TFGEN_PREAMBLE + r"""
import numpy as np
import tensorflow as tf
sig = tf.saved_model.load(sys.argv[1]).signatures
images = np.load(sys.argv[2])["images"]
sample = sig["sample"](num_samples=tf.constant(3), seed=tf.constant([1, 2]))
scores = sig["log_prob"](images=tf.constant(images))
codes = sig["encode"](images=tf.constant(images))["codes"]
decoded = sig["decode"](codes=codes)
refused = {}
for name, bad in [("range", tf.fill([1, 7, 7], 99)), ("shape", tf.zeros([1, 49], tf.int32))]:
  try:
    sig["decode"](codes=bad)
    refused[name] = ""
  except tf.errors.InvalidArgumentError as e:
    refused[name] = e.message
json.dump({"signatures": sorted(sig), "sample_shape": sample["images"].shape.as_list(),
           "sample_dtype": sample["images"].dtype.name,
           "log_prob": scores["log_prob"].numpy().tolist(),
           "codes": codes.numpy().tolist(), "codes_dtype": codes.dtype.name,
           "decoded_shape": decoded["images"].shape.as_list(),
           "decoded_dtype": decoded["images"].dtype.name, "refused": refused},
          open(sys.argv[3], "w"))
"""


def test_two_stages_train_evaluate_sample_export_and_reload_without_tfgen(
    binarized_mnist_dir, tfds_data_dir, tmp_path):
  # Through the package functions the apps call (tests/test_cli.py runs the apps themselves): a
  # TensorFlow import per app would cost more than the two tiny trainings.
  def config(variant, **model_fields):
    result = load_config("vqvae", variant)
    result.data.manual_dir, result.data.data_dir = str(binarized_mnist_dir), tfds_data_dir
    result.train.num_epochs = 1
    result.model.update(model_fields)
    return result

  stage1, stage2, out = tmp_path / "vq1", tmp_path / "vq2", tmp_path / "sm"
  train.train(config("tiny"), str(stage1), show_progress=False)
  assert (stage1 / "reconstructions.png").exists()
  # Stage 2 without its stage-1 run: a ConfigError, which the apps print as one line.
  with pytest.raises(errors.ConfigError, match="set --config.model.stage1_workdir=RUN"):
    train.train(config("tiny,stage=2"), str(tmp_path / "x"), show_progress=False)
  train.train(config("tiny,stage=2", stage1_workdir=str(stage1)), str(stage2),
              show_progress=False)
  assert (stage2 / "samples.png").exists() and (stage2 / "reconstructions.png").exists()

  results = evaluate.evaluate(str(stage2), show_progress=False)
  with open(stage2 / "evaluation_test_k1.json", encoding="utf-8") as f:
    assert json.load(f)["nll_nats"] == pytest.approx(results["nll_nats"])
  assert results["num_importance_samples"] == 1 and results["binarization"] == "fixed"
  # The bound is distortion plus the prior's rate, which the learned prior keeps below the
  # uniform prior's 49·log 8 nats.
  assert results["nll_nats"] == pytest.approx(results["distortion"] + results["rate"], rel=1e-4)
  assert 0 < results["rate"] < 49 * math.log(8)
  assert 1 <= results["code_perplexity"] <= 8 and 0 <= results["dead_codes"] < 8

  for mode in ("samples", "reconstructions"):
    written = sampling.sample_grid(str(stage2), 4, str(tmp_path / (mode + ".png")), mode=mode)
    assert tf.io.decode_png(tf.io.read_file(written)).shape[-1] == 1

  export.export(str(stage2), str(out))
  trained = evaluate.load_trained(str(stage2), splits=("test",))
  images = next(iter(trained.data.test))["image"][:3]
  np.savez(tmp_path / "inputs.npz", images=images.numpy().astype(np.uint8))
  reload = subprocess.run([sys.executable, "-c", _RELOAD, str(out), str(tmp_path / "inputs.npz"),
                           str(tmp_path / "out.json")], capture_output=True, text=True,
                          timeout=600)
  assert reload.returncode == 0, reload.stderr[-3000:]
  with open(tmp_path / "out.json", encoding="utf-8") as f:
    served = json.load(f)
  assert set(served["signatures"]) == {"sample", "serving_default", "log_prob", "encode",
                                       "decode"}
  assert served["sample_shape"] == [3, 28, 28, 1] and served["sample_dtype"] == "uint8"
  assert served["codes_dtype"] == "int32"
  np.testing.assert_array_equal(served["codes"], trained.model.codes(images).numpy())
  np.testing.assert_allclose(served["log_prob"], trained.model.log_prob({"image": images}),
                             rtol=1e-5)
  assert served["decoded_shape"] == [3, 28, 28, 1] and served["decoded_dtype"] == "uint8"
  assert "decode: `codes` must be int32 [batch, 7, 7] with values 0..7" in (
      served["refused"]["range"])
  assert "decode: `codes` must be int32 [batch, 7, 7]" in served["refused"]["shape"]
