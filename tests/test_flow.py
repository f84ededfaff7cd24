"""RealNVP, Glow and MAF: invertibility, exact log-determinants, normalisation, bounds, training."""

import gc
import math
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import seeding
from tfgen.layers import flow as flow_layers
from tfgen.models import flow
from tests.conftest import NO_TFGEN_PREAMBLE
from tests.conftest import load_config

tfd = tfp.distributions

SHAPE = (4, 4, 1)
TINY = {
    "realnvp": (flow.RealNVP, {"num_scales": 2, "hidden_channels": 8, "num_blocks": 1}),
    "glow": (flow.Glow, {"num_scales": 2, "steps_per_scale": 2, "hidden_channels": 8}),
    "maf": (flow.MAF, {"num_flows": 2, "hidden_sizes": (16,)}),
}
NAMES = sorted(TINY)


def _perturb(variables, scale=0.1, seed=0):
  """Adds small noise to every weight, so zero-initialised last layers no longer give identities."""
  rng = np.random.RandomState(seed)
  for v in variables:
    v.assign(v + scale * rng.normal(size=v.shape).astype(np.float32))


def _model(name, image_shape=SHAPE, perturb=True, **overrides):
  cls, kwargs = TINY[name]
  model = cls(image_shape, **{**kwargs, **overrides})
  if perturb:
    _perturb(model.trainable_variables)
  return model


def _images(num, shape=SHAPE, seed=0):
  """Random 8-bit images k/255, float32 [num, H, W, C]."""
  levels = np.random.RandomState(seed).randint(0, 256, size=(num,) + shape)
  return (levels / 255.0).astype(np.float32)


def _slogdet_of_jacobian(fn, inputs):
  """log|det ∂fn/∂inputs| by autodiff on a flat view: fn maps [B, D] to [B, D]."""
  with tf.GradientTape() as tape:
    tape.watch(inputs)
    outputs = fn(inputs)
  jacobian = tape.batch_jacobian(outputs, inputs)  # [B, D, D]
  return tf.linalg.slogdet(jacobian)[1]


@pytest.mark.parametrize("name", NAMES)
def test_flow_is_invertible_and_decode_inverts_encode(name):
  model = _model(name)
  w = tf.random.stateless_normal((3,) + SHAPE, seed=[1, 2])
  z, _ = model.to_latent(w)
  assert z.shape == w.shape
  assert np.abs(z - w).max() > 1e-2  # The map is not the identity.
  np.testing.assert_allclose(model.from_latent(z), w, atol=1e-4)
  np.testing.assert_allclose(model.to_latent(model.from_latent(w))[0], w, atol=1e-4)
  x = _images(16)
  np.testing.assert_array_equal(model.decode(model.encode(x)), x)
  # The centre of x's bin: the code is deterministic.
  np.testing.assert_array_equal(model.encode(x), model.encode(x))


@pytest.mark.parametrize("name", NAMES)
def test_log_det_matches_autodiff_jacobian(name):
  model = _model(name)
  d = model.event_size
  image = lambda flat: tf.reshape(flat, (-1,) + SHAPE)
  flat = lambda images: tf.reshape(images, [-1, d])
  # The flow alone, w -> z.
  w = tf.reshape(tf.random.stateless_normal((2,) + SHAPE, seed=[3, 4]), [2, d])
  expected = _slogdet_of_jacobian(lambda v: flat(model.to_latent(image(v))[0]), w)
  np.testing.assert_allclose(model.to_latent(image(w))[1], expected, atol=1e-3)
  # The whole data transform y -> w -> z through the model's TFP bijector (z ↦ y forward).
  bijector = model.distribution().bijector
  noise = np.random.RandomState(5).uniform(size=(2,) + SHAPE)
  y = tf.reshape(tf.constant((_images(2) * 255.0 + noise) / 256.0, tf.float32), [2, d])
  expected = _slogdet_of_jacobian(lambda v: flat(bijector.inverse(image(v))), y)
  np.testing.assert_allclose(bijector.inverse_log_det_jacobian(image(y), event_ndims=3),
                             expected, atol=1e-3)


def _glow_step_log_density(points):
  """log p of one Glow step (actnorm, 1x1 convolution, coupling) over D = 2, for [N, 2] points."""
  shape = (1, 1, 2)
  steps = [flow_layers.ActNorm(shape),
           flow_layers.InvertibleConv1x1(shape, np.random.RandomState(0)),
           flow_layers.GlowCoupling(shape, hidden_channels=8)]
  h = tf.reshape(points, [-1, 1, 1, 2])
  steps[-1].to_latent(h)  # Builds the coupling's convolutions before the weights are perturbed.
  _perturb([v for step in steps for v in step.trainable_variables])
  log_det = 0.0
  for step in steps:
    h, step_log_det = step.to_latent(h)
    log_det += step_log_det
  return tfd.Independent(tfd.Normal(tf.zeros(shape), 1.0), 3).log_prob(h) + log_det


@pytest.mark.parametrize("name", NAMES)
def test_density_integrates_to_one_in_two_dimensions(name):
  side = np.linspace(-16.0, 16.0, 641, dtype=np.float32)
  step = side[1] - side[0]
  points = np.stack(np.meshgrid(side, side, indexing="ij"), -1).reshape(-1, 2)
  if name == "glow":  # Glow squeezes first, so no image of D = 2 exists: one step on 1x1x2.
    log_density = _glow_step_log_density(points)
  else:  # RealNVP: one scale of 4 checkerboard couplings on a 1x2 image.
    model = _model(name, image_shape=(1, 2, 1), **({"num_scales": 1} if name == "realnvp" else {}))
    log_density = model.flow_distribution().log_prob(points.reshape(-1, 1, 2, 1))
  density = np.exp(log_density.numpy().astype(np.float64))
  assert abs(density.max() - 1 / (2 * np.pi)) > 1e-2  # Not the base N(0, I) itself.
  mass = density.sum() * step**2
  assert mass == pytest.approx(1.0, abs=1e-2)


@pytest.mark.parametrize("name", NAMES)
def test_dequantized_bound_is_a_bound_and_tightens_with_k(name):
  model = _model(name)
  x = _images(32, seed=1)
  seed = seeding.as_seed(7)
  terms = model.bounds({"image": x}, seed)
  bits = terms["bits_per_dim"].numpy()
  assert np.all(np.isfinite(bits)) and np.all(bits >= 0.0)
  np.testing.assert_allclose(bits, -terms["log_prob"] / (model.event_size * math.log(2.0)),
                             rtol=1e-6)
  # K = 8 in chunks of one draw: chunk i uses fold_in(seed, i), so the eight K = 1 bounds of the
  # same dequantizations are log_weights(x, 1, fold_in(seed, i)).
  model.importance_chunk_size = 1
  k8 = model.log_prob({"image": x}, seed, num_importance_samples=8).numpy()
  k1 = np.concatenate([model.log_weights(x, 1, seeding.fold_in(seed, i)).numpy()
                       for i in range(8)])  # [8, B]
  np.testing.assert_allclose(k8, tf.reduce_logsumexp(k1, 0) - math.log(8), rtol=1e-5)
  assert np.all(k8 >= k1.mean(0) - 1e-4)
  assert k8.mean() > k1.mean()
  # K as a tensor inside tf.function gives the same estimate as eagerly (default chunks).
  estimate = tf.function(lambda images, k: model.log_prob({"image": images}, seed, k))
  np.testing.assert_allclose(estimate(x, tf.constant(8)), model.log_prob({"image": x}, seed, 8),
                             rtol=1e-5)
  # None means the model's own K.
  np.testing.assert_allclose(model.log_prob({"image": x}, seed),
                             model.log_prob({"image": x}, seed, 1), rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_sample_shapes_levels_and_temperature(name):
  model = _model(name)
  seed = seeding.as_seed(3)
  images = model.sample(5, seed).numpy()
  assert images.shape == (5,) + SHAPE and images.dtype == np.float32
  assert images.min() >= 0.0 and images.max() <= 1.0
  np.testing.assert_allclose(images * 255, np.round(images * 255), atol=1e-4)
  means = model.sample(5, seed, mean=True).numpy()
  assert means.min() >= 0.0 and means.max() <= 1.0
  assert not np.allclose(means * 255, np.round(means * 255), atol=1e-3)  # Continuous values.
  compiled = tf.function(lambda num, s: model.sample(num, s))
  assert compiled(tf.constant(3), seed).shape == (3,) + SHAPE
  modes = [model.sample(tf.constant(2), seeding.as_seed(s), temperature=0.0).numpy()
           for s in (1, 2)]
  np.testing.assert_array_equal(modes[0], modes[1])
  np.testing.assert_array_equal(modes[0][0], modes[0][1])
  np.testing.assert_array_equal(modes[0][:1], model.decode(tf.zeros((1,) + SHAPE)))


@pytest.mark.parametrize("name", NAMES)
def test_adam_steps_on_a_tiny_data_set_lower_bits_per_dim(name):
  model = _model(name, perturb=False)
  batch = {"image": tf.constant(np.tile(_images(8, seed=2), (8, 1, 1, 1)))}  # 64 images.
  optimizer = keras.optimizers.Adam(3e-3)
  variables = model.trainable_variables

  @tf.function
  def train_step(step):
    with tf.GradientTape() as tape:
      loss, _ = model.loss(batch, seeding.fold_in([0, 0], step), training=True)
      mean_loss = tf.reduce_mean(loss)
    optimizer.apply_gradients(zip(tape.gradient(mean_loss, variables), variables))
    return mean_loss

  evaluation_seed = seeding.as_seed(9)
  before = model.bounds(batch, evaluation_seed)["bits_per_dim"].numpy().mean()
  for step in range(100):
    train_step(tf.constant(step))
  after = model.bounds(batch, evaluation_seed)["bits_per_dim"].numpy().mean()
  assert np.isfinite(after) and after >= 0.0
  assert after < before - 1.0, (before, after)


@pytest.mark.parametrize("name", NAMES)
def test_loss_does_not_retrace(name):
  model = _model(name)
  compiled = tf.function(lambda batch, seed: model.loss(batch, seed, training=True))
  for i in range(3):
    loss, metrics = compiled({"image": tf.constant(_images(4, seed=i))}, seeding.as_seed(i))
    assert loss.shape == (4,) and set(metrics) >= {"log_prob", "bits_per_dim"}
  assert compiled.experimental_get_tracing_count() == 1


def test_glow_without_logit_transform_and_log_prob_runs_the_flow_once():
  # logit_alpha = 0 is Glow's own w = y − 0.5, whose log-det is 0.
  model = _model("glow", logit_alpha=0.0)
  x = _images(8)
  np.testing.assert_array_equal(model.decode(model.encode(x)), x)
  bits = model.bounds({"image": x}, seeding.as_seed(1))["bits_per_dim"].numpy()
  assert np.all(np.isfinite(bits)) and np.all(bits >= 0.0)
  y = tf.constant((x * 255.0 + 0.5) / 256.0)
  w = model.data_bijector().inverse(y)
  np.testing.assert_allclose(w, y - 0.5, atol=1e-7)
  np.testing.assert_allclose(model.distribution().log_prob(y),
                             model.flow_distribution().log_prob(w), rtol=1e-6)
  # TFP asks for the inverse and its log-det separately; the bijector computes both in one pass.
  calls = []
  to_latent = model.to_latent
  bijector = flow.FlowBijector(lambda v: calls.append(1) or to_latent(v), model.from_latent)
  tfd.TransformedDistribution(model.base_distribution(), bijector).log_prob(w)
  assert len(calls) == 1


def test_flow_bijector_keeps_no_batch_after_many_inverse_calls():
  # A bijector kept for a whole run (an exported density, a notebook) sees one batch after
  # another, most of them through `inverse` alone: it must not keep any of them alive.
  model = _model("glow")
  bijector = model.flow_bijector()
  distribution = tfd.TransformedDistribution(model.base_distribution(), bijector)
  alive = []
  for i in range(60):
    w = tf.random.stateless_normal((2,) + SHAPE, seed=[i, 0])
    alive.append(weakref.ref(w))
    bijector.inverse(w)
  for i in range(5):  # The log-det path: still one pass, with to_latent's log-det.
    w = tf.random.stateless_normal((2,) + SHAPE, seed=[i, 1])
    alive.append(weakref.ref(w))
    z, log_det = model.to_latent(w)
    np.testing.assert_allclose(distribution.log_prob(w),
                               model.base_distribution().log_prob(z) + log_det, rtol=1e-6)
    sample = distribution.sample(2, seed=seeding.as_seed(i))  # And the generative direction.
    alive.append(weakref.ref(sample))
    distribution.log_prob(sample)
  del w, z, log_det, sample
  gc.collect()
  assert sum(ref() is not None for ref in alive) == 0, "batches still held"
  assert not bijector._cache.weak_keys()  # pylint: disable=protected-access


@pytest.mark.parametrize("build, match", [
    (lambda: flow.RealNVP((28, 28, 1), num_scales=4), "divisible by 8"),
    (lambda: flow.Glow((28, 28, 1), num_scales=3), "divisible by 8"),
    (lambda: flow.Glow((8, 8, 1), steps_per_scale=0), "steps_per_scale"),
    (lambda: flow.MAF((4, 4, 1), logit_alpha=0.5), "logit_alpha"),
    (lambda: flow.MAF((4, 4, 1), num_dequantization_samples=0), "num_dequantization_samples"),
    (lambda: flow.MAF((4, 4, 1), hidden_sizes=(0,)), "hidden_sizes"),
])
def test_invalid_hyperparameters_are_one_line_config_errors(build, match):
  with pytest.raises(errors.ConfigError, match=match) as error:
    build()
  assert "\n" not in str(error.value)


# --- End to end: the flow through the generic apps, with no flow-specific code in them ----------

_RELOAD = NO_TFGEN_PREAMBLE + r"""
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
sig = loaded.signatures
images = np.load(sys.argv[2])["images"]
sample = sig["sample"](num_samples=tf.constant(3), seed=tf.constant([1, 2]))
scores = sig["log_prob"](images=tf.constant(images), num_importance_samples=tf.constant(2))
code = sig["encode"](images=tf.constant(images))["latents"]
back = sig["decode"](latents=code)["images"].numpy()
try:
  sig["decode"](latents=tf.fill([1, 7], 0.0))
  refused = ""
except tf.errors.InvalidArgumentError as e:
  refused = e.message
json.dump({"signatures": sorted(sig), "sample_shape": sample["images"].shape.as_list(),
           "sample_dtype": sample["images"].dtype.name,
           "bits_per_dim": scores["bits_per_dim"].numpy().tolist(),
           "code_shape": code.shape.as_list(), "round_trip": bool(np.all(back == images)),
           "refused": refused}, open(sys.argv[3], "w"))
"""


def test_train_evaluate_sample_export_and_reload_without_tfgen(tfds_data_dir, tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tests.conftest import shared_data  # pylint: disable=g-import-not-at-top
  from tfgen import evaluate  # pylint: disable=g-import-not-at-top
  from tfgen import export  # pylint: disable=g-import-not-at-top
  from tfgen import sampling  # pylint: disable=g-import-not-at-top
  from tfgen import train  # pylint: disable=g-import-not-at-top
  # Through the package functions the apps call (tests/test_cli.py runs the apps themselves): a
  # TensorFlow import per app would cost more than the tiny training.
  config = load_config("flow", "tiny,data=mnist_5k")
  config.data.manual_dir, config.data.data_dir = str(shared_data("mnist_5k")), tfds_data_dir
  config.train.num_epochs = 1
  workdir, out = tmp_path / "run", tmp_path / "sm"
  train.train(config, str(workdir), show_progress=False)
  assert (workdir / "samples.png").exists()
  evaluate.evaluate(str(workdir), num_importance_samples=2, show_progress=False)
  with open(workdir / "evaluation_test_k2.json", encoding="utf-8") as f:
    results = json.load(f)
  # An untrained-ish tiny flow: a bound, in bits of the 8-bit data, that is >= 0 and finite.
  assert results["num_importance_samples"] == 2 and results["binarization"] == "none"
  assert 0 < results["nll_bits_per_dim"] < 8.5
  assert results["bits_per_dim"] >= 0
  sampling.sample_grid(str(workdir), 4, str(tmp_path / "t.png"), mode="temperatures")
  picture = tf.io.decode_png(tf.io.read_file(str(tmp_path / "t.png")))
  assert picture.shape == (5 * 29 + 1, 4 * 29 + 1, 1)  # A row per temperature.
  # A mode flows do not declare is a ConfigError naming those they do, which tfgen-sample prints
  # as one line (tests/test_reliability.py runs the app's error path).
  with pytest.raises(errors.ConfigError, match="temperatures"):
    sampling.sample_grid(str(workdir), 4, str(tmp_path / "x.png"), mode="traversal")
  export.export(str(workdir), str(out))
  images = np.round(np.random.RandomState(0).uniform(size=(3, 28, 28, 1)) * 255).astype(np.uint8)
  np.savez(tmp_path / "inputs.npz", images=images)
  reload = subprocess.run([sys.executable, "-c", _RELOAD, str(out), str(tmp_path / "inputs.npz"),
                           str(tmp_path / "out.json")], capture_output=True, text=True,
                          timeout=600)
  assert reload.returncode == 0, reload.stderr[-3000:]
  with open(tmp_path / "out.json", encoding="utf-8") as f:
    served = json.load(f)
  assert set(served["signatures"]) == {"sample", "serving_default", "log_prob", "encode",
                                       "decode"}
  assert served["sample_shape"] == [3, 28, 28, 1] and served["sample_dtype"] == "uint8"
  assert served["code_shape"] == [3, 784] and served["round_trip"]
  assert all(b > 0 for b in served["bits_per_dim"])
  assert "decode: `latents` must be float32 [batch, 784]" in served["refused"]
