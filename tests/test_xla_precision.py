"""XLA (`config.train.jit_compile`) and mixed precision (`config.train.precision`) change speed,
not what is computed: every registered model's loss and gradients agree with the plain float32
graph within tolerance.

Stateless random ops draw other numbers under XLA than without it, so for models whose loss
depends on the seed the test compares the mean loss over many draws (within 5 standard errors);
seed-free losses and their gradients must agree to float32 round-off.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgen import config as config_lib
from tfgen import errors
from tfgen import optimizers
from tfgen import seeding
from tfgen import train
from tfgen.data import in_graph
from tests.conftest import load_config
from tests.test_models import CASES
from tests.test_models import _build

REPEATS = 16  # Draws per image for the statistical comparison.
# Every registered model once (its first variant in the contract cases): XLA and precision act
# on a model's layers and likelihood, which its variants share.
MODEL_CASES = [c for i, c in enumerate(CASES) if c[0] not in [d[0] for d in CASES[:i]]]
# What the compiled multi-step call must carry through its loop: a KL warm-up schedule and noise
# (vae), a connectivity drawn from each step's seed (made), a hand-written gradient around a
# while loop (nade), state updated from summed statistics (vqvae), and a spike-and-slab
# posterior whose sharpness follows a schedule (vsc). Each case costs a few XLA compilations
# (10-15 s for a convolutional model), so not every registered model is here; every one compiles
# its loss above (MAF and the Matryoshka networks, whose configs also turn XLA on, passed this
# test too when run on 2026-12-03).
WHOLE_CALL_CASES = [c for c in MODEL_CASES if c[0] in ("vae", "made", "nade", "vqvae", "vsc")]


def _batch(config_name, variant, num_images=4):
  config = load_config(config_name, variant)
  uniform = tf.random.stateless_uniform((num_images, 28, 28, 1), seed=[1, 2])
  if config.data.binarization == "none":
    images = tf.round(uniform * 255.0) / 255.0
  else:
    images = tf.cast(uniform < 0.5, tf.float32)
  images = tf.repeat(images, REPEATS, axis=0)
  return {"image": images, "label": tf.zeros([num_images * REPEATS], tf.int64)}


def _loss_and_gradients(model):
  def fn(batch, seed):
    with tf.GradientTape() as tape:
      per_example, _ = model.loss(batch, seed, training=True)
      loss = tf.reduce_mean(per_example)
    return per_example, tape.gradient(loss, model.trainable_variables)
  return fn


@pytest.mark.parametrize("name,config_name,variant", MODEL_CASES)
def test_xla_gives_the_loss_and_gradients_of_the_plain_graph(name, config_name, variant):
  del name
  model = _build(config_name, variant)
  batch = _batch(config_name, variant)
  seed = seeding.as_seed(7)
  plain = _loss_and_gradients(model)  # Eager: no second compilation.
  compiled = tf.function(_loss_and_gradients(model), jit_compile=True)
  loss, gradients = plain(batch, seed)
  xla_loss, xla_gradients = compiled(batch, seed)
  loss, xla_loss = loss.numpy(), xla_loss.numpy()
  assert np.all(np.isfinite(xla_loss))
  seed_free = np.allclose(plain(batch, seeding.as_seed(8))[0].numpy(), loss, rtol=1e-6)
  if seed_free:
    np.testing.assert_allclose(xla_loss, loss, rtol=2e-5, atol=1e-3)
    for g, xla_g in zip(gradients, xla_gradients):
      if g is not None:  # IndexedSlices (a codebook's gather) become dense tensors.
        np.testing.assert_allclose(tf.convert_to_tensor(xla_g), tf.convert_to_tensor(g),
                                   rtol=2e-3, atol=2e-4)
  else:
    standard_error = np.sqrt((loss.var() + xla_loss.var()) / loss.size)
    assert abs(xla_loss.mean() - loss.mean()) <= 5 * standard_error + 1e-4 * abs(loss.mean())
    assert all(np.all(np.isfinite(tf.convert_to_tensor(g))) for g in xla_gradients
               if g is not None)


@pytest.mark.parametrize("name,config_name,variant", MODEL_CASES)
def test_bfloat16_compute_keeps_the_float32_loss(name, config_name, variant):
  del name
  reference = _build(config_name, variant)
  with train.compute_precision("mixed_bfloat16"):
    model = _build(config_name, variant)
  for source, target in zip(reference.weights, model.weights):
    assert target.dtype == tf.float32  # Weights stay float32.
    target.assign(source)
  batch, seed = _batch(config_name, variant, num_images=2), seeding.as_seed(3)
  loss, _ = reference.loss(batch, seed, training=True)
  mixed_loss, metrics = model.loss(batch, seed, training=True)
  assert mixed_loss.dtype == tf.float32 and all(v.dtype == tf.float32 for v in metrics.values())
  # bfloat16 keeps 8 bits of mantissa: summed over 784 pixels the batch's loss stays within 1%,
  # each image's within 5% (a classifier's 16-bit guess can move one image's more).
  np.testing.assert_allclose(mixed_loss.numpy().mean(), loss.numpy().mean(), rtol=1e-2)
  np.testing.assert_allclose(mixed_loss.numpy(), loss.numpy(), rtol=5e-2)


def test_compute_precision_restores_the_global_policy():
  with train.compute_precision("mixed_bfloat16"):
    model = _build("pixelcnn", "tiny")
  assert model.first.compute_dtype == "bfloat16" and model.first.kernel.dtype == tf.float32
  other = _build("pixelcnn", "tiny")
  assert other.first.compute_dtype == "float32"
  # The sampler runs with 16-bit layers too, and gives binary pixels.
  samples = tf.function(model.sample)(2, seeding.as_seed(0)).numpy()
  assert samples.dtype == np.float32 and set(np.unique(samples)) <= {0.0, 1.0}


def test_float16_training_scales_the_loss_and_trains():
  config = load_config("iwae", "tiny")
  with train.compute_precision("mixed_float16"):
    model = _build("iwae", "tiny")
    optimizer = optimizers.build(config.train, "mixed_float16")
  trainer = train.Trainer(model, optimizer, tf.distribute.get_strategy(), 64, 0, jit_compile=True)
  batch = _batch("iwae", "tiny")
  dataset = tf.data.Dataset.from_tensors(batch).repeat()
  before = [w.numpy().copy() for w in model.trainable_weights]
  metrics, bad_step = trainer.train_steps(iter(dataset), 3)
  assert bad_step == -1 and np.isfinite(metrics["loss"])
  assert float(optimizer.dynamic_scale) > 1  # Loss scaling is on.
  assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


def test_xla_train_steps_match_the_plain_loop_for_a_seed_free_model():
  config = load_config("pixelcnn", "tiny")
  batch = _batch("pixelcnn", "tiny")
  weights = []
  for jit_compile in (False, True):
    keras.utils.set_random_seed(0)
    model = _build("pixelcnn", "tiny")
    trainer = train.Trainer(model, optimizers.build(config.train), tf.distribute.get_strategy(),
                            64, 0, jit_compile=jit_compile)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    trainer.train_steps(iter(dataset), 3)
    weights.append([w.numpy() for w in model.trainable_weights])
  for plain, xla in zip(*weights):
    np.testing.assert_allclose(xla, plain, rtol=1e-3, atol=1e-5)


def test_unknown_precision_is_refused():
  config = load_config("iwae", "tiny")
  config.train.precision = "float8"
  with pytest.raises(errors.ConfigError, match="config.train.precision must be one of"):
    config_lib.validate(config)


def _in_graph_arrays(config_name, variant, num_examples):
  config = load_config(config_name, variant)
  rng = np.random.RandomState(0)
  if config.data.binarization == "none":
    image = rng.randint(0, 256, size=(num_examples, 28, 28, 1))
  else:
    image = rng.uniform(size=(num_examples, 28, 28, 1)) < 0.5
  return {"image": image.astype(np.uint8)}, config.data.binarization


@pytest.mark.parametrize("name,config_name,variant", WHOLE_CALL_CASES)
def test_xla_compiles_the_whole_call_over_in_graph_batches_as_step_by_step(name, config_name,
                                                                           variant):
  """With one replica and in-graph batches XLA compiles the multi-step call, loop and all; it
  updates as one compiled step per batch does, the same batches fed from tf.data."""
  del name
  batch_size, num_steps = 8, 3
  arrays, binarization = _in_graph_arrays(config_name, variant, batch_size * num_steps)
  binarization = "none" if binarization == "none" else "fixed"
  weights, losses, initial = [], [], None
  for feed in ("whole call", "step by step"):
    model = _build(config_name, variant)
    if initial is None:
      initial = [w.numpy() for w in model.weights]
    for w, value in zip(model.weights, initial):
      w.assign(value)
    # Plain gradient steps: Adam's first steps divide each gradient by its own size, which turns
    # the float rounding of a near-zero gradient (a bias before batch norm) into a full step.
    trainer = train.Trainer(model, keras.optimizers.SGD(0.01), tf.distribute.get_strategy(),
                            batch_size, 0, steps_per_epoch=num_steps, jit_compile=True)
    batches = in_graph.InGraphBatches(arrays, batch_size, binarization, seed=1).start_epoch(0)
    if feed == "whole call":
      metrics, bad_step = trainer.train_steps(batches, num_steps)
    else:
      block = tf.function(batches.start_epoch(0).take)(tf.constant(num_steps))
      dataset = tf.data.Dataset.from_tensor_slices(block).batch(batch_size)
      metrics, bad_step = trainer.train_steps(iter(dataset), num_steps)
    assert bad_step == -1 and int(trainer.optimizer.iterations) == num_steps
    weights.append([w.numpy() for w in model.weights])
    losses.append(metrics["loss"])
  assert losses[0] == pytest.approx(losses[1], rel=1e-4)
  for whole, by_step in zip(*weights):
    np.testing.assert_allclose(whole, by_step, rtol=1e-3, atol=1e-5)


def test_a_seed_folded_inside_xla_is_the_one_folded_outside():
  """The compiled train call derives each step's seed inside XLA; the step-by-step path outside."""
  seed = seeding.as_seed([123, -7])
  fold_twice = lambda step: seeding.fold_in(seeding.fold_in(seed, step), 0)
  compiled = tf.function(fold_twice, jit_compile=True)
  for step in (0, 1, 977):
    step = tf.constant(step, tf.int64)
    np.testing.assert_array_equal(compiled(step).numpy(), fold_twice(step).numpy())
