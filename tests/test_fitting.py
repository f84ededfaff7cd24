"""Keras' conventions on every registered model (tfgen/models/fitting.py): one `fit` step is one
step of tfgen's own loop, `evaluate` is tfgen-evaluate, `.keras` files round-trip bit for bit and
keep training, and `model.export` writes tfgen-export's signatures."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgen import config as config_lib
from tfgen import data as data_lib
from tfgen import evaluate as evaluate_lib
from tfgen import export as export_lib
from tfgen import models
from tfgen import seeding
from tfgen import train
from tfgen import workdir as workdir_lib
from tests.conftest import load_config
from tests.test_models import CASES
from tests.test_models import _build

# Every registered model once (its first tiny variant).
MODEL_CASES = [c for i, c in enumerate(CASES) if c[0] not in [d[0] for d in CASES[:i]]]
BATCH = 8


def _images(config_name, variant, num, seed=1):
  """Images the model's data would give: {0, 1} pixels, or 8-bit levels for the flows."""
  config = load_config(config_name, variant)
  uniform = tf.random.stateless_uniform((num, 28, 28, 1), seed=[seed, 2])
  if config.data.binarization == "none":
    return (tf.round(uniform * 255.0) / 255.0).numpy()
  return tf.cast(uniform < 0.5, tf.float32).numpy()


def _optimizer():
  return keras.optimizers.Adam(1e-3, epsilon=1e-4)


@pytest.mark.parametrize("name,config_name,variant", MODEL_CASES)
def test_one_fit_step_is_one_step_of_tfgens_loop(name, config_name, variant):
  del name
  ours, theirs = _build(config_name, variant), _build(config_name, variant)
  theirs.set_weights(ours.get_weights())
  labels = np.arange(BATCH) % 10
  batch = {"image": tf.constant(_images(config_name, variant, BATCH)),
           "label": tf.constant(labels, tf.int32)}
  trainer = train.Trainer(ours, _optimizer(), tf.distribute.get_strategy(), BATCH, seed=3,
                          steps_per_epoch=1)
  loop_metrics, bad_step = trainer.train_steps(iter(tf.data.Dataset.from_tensors(batch).repeat()), 1)
  assert bad_step == -1
  theirs.compile(optimizer=_optimizer(), seed=3)
  history = theirs.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
  np.testing.assert_allclose(history.history["loss"][0], loop_metrics["loss"], rtol=1e-5)
  for metric, value in loop_metrics.items():
    np.testing.assert_allclose(history.history[metric][0], value, rtol=1e-5, atol=1e-6)
  assert len(ours.weights) == len(theirs.weights)
  for a, b in zip(ours.weights, theirs.weights):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)


def _arrays_run(tmp_path, config_name, variant):
  """An untrained run of the tiny config on an .npz of random images: (workdir, config)."""
  rng = np.random.default_rng(0)
  path = tmp_path / "images.npz"
  np.savez(path, train=rng.integers(0, 256, (16, 28, 28, 1), dtype=np.uint8),
           test=rng.integers(0, 256, (12, 28, 28, 1), dtype=np.uint8),
           train_labels=np.arange(16) % 10, test_labels=np.arange(12) % 10)
  config = load_config(config_name, variant)
  config_lib.set_user_data(config, "arrays", binarized=config.data.binarization != "none")
  config.data.path = str(path)
  config.data.num_validation = 4
  config.data.limit = 0
  config.eval.batch_size = 4  # Three batches, each with its own seed.
  config.eval.num_importance_samples = 3
  config.eval.chunk_size = 2
  if config.model.get("stage1_workdir") == "":
    from tests.conftest import untrained_vqvae_run  # pylint: disable=g-import-not-at-top
    config.model.stage1_workdir = untrained_vqvae_run()
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  data = data_lib.load(config.data, config.train.batch_size, config.eval.batch_size,
                       seed=config.seed, splits=("test",))
  model = models.build(config.model, data.info)
  model.build_for_images()
  config_lib.save(config, workdir)
  workdir_lib.save_data_info(data.info, workdir)
  workdir_lib.checkpoint_manager(tf.train.Checkpoint(model=model), workdir, 1).save(
      checkpoint_number=1)
  return workdir, config, model, data


@pytest.mark.parametrize("name,config_name,variant", MODEL_CASES)
def test_evaluate_gives_the_nll_of_tfgen_evaluate(name, config_name, variant, tmp_path):
  del name
  workdir, config, model, data = _arrays_run(tmp_path, config_name, variant)
  results = evaluate_lib.evaluate(workdir, show_progress=False, classify_codes=False)
  images = np.concatenate([b["image"].numpy() for b in data.test])
  labels = np.concatenate([b["label"].numpy() for b in data.test])
  model.compile(seed=config.seed, num_importance_samples=config.eval.num_importance_samples)
  model.importance_chunk_size = config.eval.chunk_size
  scores = model.evaluate(images, labels, batch_size=config.eval.batch_size, verbose=0,
                          return_dict=True)
  np.testing.assert_allclose(scores["nll"], results["nll_nats"], rtol=1e-5)
  np.testing.assert_allclose(scores["bits_per_dim"], results["nll_bits_per_dim"], rtol=1e-5)
  predicted = model.predict({"image": images, "label": labels},
                            batch_size=config.eval.batch_size, verbose=0)
  assert predicted["log_prob"].shape == (len(images),)
  np.testing.assert_allclose(-predicted["log_prob"].mean(), results["nll_nats"], rtol=1e-5)


@pytest.mark.parametrize("name,config_name,variant", MODEL_CASES)
def test_keras_file_round_trip_is_bit_identical_and_keeps_training(name, config_name, variant,
                                                                  tmp_path):
  model = _build(config_name, variant)
  model.compile(optimizer=_optimizer(), seed=5)
  images = _images(config_name, variant, BATCH)
  labelled = (images, np.arange(BATCH) % 10)
  model.fit(*labelled, batch_size=4, epochs=1, verbose=0)
  path = str(tmp_path / f"{name}.keras")
  model.save(path)
  loaded = keras.saving.load_model(path)
  assert type(loaded) is type(model)
  batch = {"image": tf.constant(images), "label": tf.constant(labelled[1], tf.int32)}
  seed = seeding.as_seed(11)
  np.testing.assert_array_equal(loaded.log_prob(batch, seed).numpy(),
                                model.log_prob(batch, seed).numpy())
  for a, b in zip(model.weights, loaded.weights):
    np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=a.path)
  # The optimizer's state came back too: the next step is the one the original takes.
  assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 2
  step = tf.data.Dataset.from_tensors(batch)
  model.fit(step, epochs=1, verbose=0)
  loaded.fit(step, epochs=1, verbose=0)
  for a, b in zip(model.weights, loaded.weights):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)


def test_a_vqvae_prior_saved_as_keras_needs_no_stage1_run(tmp_path):
  model = _build("vqvae", "tiny,stage=2")
  model.compile(optimizer=_optimizer())
  path = str(tmp_path / "prior.keras")
  model.save(path)
  config = model.get_config()
  assert config["stage1_workdir"] == "" and config["stage1"]["class_name"] == "VQVAE"
  loaded = keras.saving.load_model(path)
  assert not loaded.stage1.trainable
  for a, b in zip(model.stage1.weights, loaded.stage1.weights):
    np.testing.assert_array_equal(b.numpy(), a.numpy())


# One model of each family: both paths build the archive from the model's declared signatures
# (export.build_archive), so the families differ only in what they declare.
@pytest.mark.parametrize("config_name,variant", [("iwae", "tiny"), ("nade", "tiny"),
                                                 ("flow", "tiny")])
def test_model_export_writes_the_signatures_of_tfgen_export(config_name, variant, tmp_path):
  workdir, _, model, data = _arrays_run(tmp_path, config_name, variant)
  by_app = export_lib.export(workdir, str(tmp_path / "app"))
  by_keras = model.export(str(tmp_path / "keras"))
  assert by_keras["signatures"] == by_app["signatures"]
  served = tf.saved_model.load(str(tmp_path / "keras")).signatures["log_prob"]
  top = 1 if data.info.binary else 255  # Served images are integer pixel values.
  images = tf.cast(tf.round(next(iter(data.test))["image"] * top), tf.uint8)
  inputs = {"images": images, "seed": tf.constant([1, 2]),
            "num_importance_samples": tf.constant(3)}
  _, wanted = served.structured_input_signature
  scores = served(**{name: inputs[name] for name in wanted})
  assert scores["log_prob"].shape == (images.shape[0],)


def test_compile_refuses_a_loss_and_fit_needs_compile():
  model = _build("nade", "tiny")
  with pytest.raises(ValueError, match="owns its loss"):
    model.compile(optimizer="adam", loss="mse")
  with pytest.raises(RuntimeError, match="compile"):
    model.fit(np.zeros((4, 28, 28, 1), np.float32))


def test_fit_takes_images_without_a_channel_axis_and_validates_on_bounds():
  model = _build("nade", "tiny")
  model.compile(optimizer=_optimizer())
  images = _images("nade", "tiny", 8)[..., 0]
  history = model.fit(images, batch_size=4, epochs=2, validation_data=images, verbose=0)
  assert {"loss", "log_prob", "val_loss", "val_log_prob"} <= set(history.history)
  assert len(history.history["val_loss"]) == 2


def test_two_replicas_fit_as_one_device():
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tests.conftest import REPO  # pylint: disable=g-import-not-at-top
  process = subprocess.run([sys.executable, str(REPO / "tests" / "fit_replicas_script.py")],
                           capture_output=True, text=True, check=False, cwd=str(REPO))
  assert process.returncode == 0, process.stderr[-3000:]
  for name, found in json.loads(process.stdout.strip().splitlines()[-1]).items():
    assert found["replicas"] == 2, name
    assert found["moved"] > 1e-3, name  # The step changed the weights...
    assert found["weights"] < 1e-5, (name, found)  # ...the same way on 2 replicas as on 1.
    np.testing.assert_allclose(found["loss"][1], found["loss"][0], rtol=1e-5)


def test_xla_and_steps_per_execution_train_as_the_plain_step():
  start = _build("nade", "tiny").get_weights()
  images = _images("nade", "tiny", 16)
  results = []
  for options in ({}, {"jit_compile": True, "steps_per_execution": 2}):
    model = _build("nade", "tiny")
    model.set_weights(start)
    model.compile(optimizer=_optimizer(), seed=1, **options)
    history = model.fit(images, batch_size=4, epochs=1, shuffle=False, verbose=0)
    results.append((history.history["loss"][0], model.get_weights()))
  np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-4)
  for a, b in zip(results[0][1], results[1][1]):
    np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5)


def test_standard_callbacks(tmp_path):
  model = _build("iwae", "tiny")
  model.compile(optimizer=_optimizer())
  images = _images("iwae", "tiny", 16)
  callbacks = [
      keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tensorboard")),
      keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_loss",
                                      save_best_only=True),
      keras.callbacks.ModelCheckpoint(str(tmp_path / "epoch{epoch}.weights.h5"),
                                      save_weights_only=True),
      keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True),
      keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
      keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=1, factor=0.5),
  ]
  history = model.fit(images, batch_size=4, epochs=3, validation_data=images[:8],
                      callbacks=callbacks, verbose=0)
  assert 1 <= len(history.history["val_loss"]) <= 3 and "learning_rate" in history.history
  assert os.listdir(tmp_path / "tensorboard")
  best = keras.saving.load_model(str(tmp_path / "best.keras"))
  assert best.get_config() == model.get_config()
  reloaded = _build("iwae", "tiny")
  reloaded.load_weights(str(tmp_path / "epoch1.weights.h5"))
  assert not os.path.exists(tmp_path / "backup" / "latest.weights.h5")  # Removed when done.


def test_tfgen_load_gives_the_runs_model(trained_run):
  import tfgen  # pylint: disable=g-import-not-at-top
  model = tfgen.load(trained_run)
  expected = evaluate_lib.load_trained(trained_run, splits=()).model
  images = _images("iwae", "tiny", 4)
  np.testing.assert_array_equal(model.log_prob(images, seed=[1, 2]),
                                expected.log_prob({"image": images}, seeding.as_seed([1, 2])))
  assert model.sample(3).shape == (3, 28, 28, 1)
  assert model.picture("samples", num=4).dtype == np.uint8


def test_tfgen_build_and_data_load_from_python(tmp_path):
  import tfgen  # pylint: disable=g-import-not-at-top
  from tfgen import errors  # pylint: disable=g-import-not-at-top
  nade = tfgen.build("nade", image_shape=(8, 8, 1), hidden_size=7)
  assert nade.hidden_size == 7 and nade.data_info.binary
  flow = tfgen.build("realnvp", image_shape=(8, 8, 1))
  assert not flow.data_info.binary  # The flows model 8-bit intensities.
  with pytest.raises(errors.ConfigError, match="takes no 'hiden_size'"):
    tfgen.build("nade", image_shape=(8, 8, 1), hiden_size=7)
  with pytest.raises(errors.ConfigError, match="unknown model 'nadee'"):
    tfgen.build("nadee", image_shape=(8, 8, 1))
  with pytest.raises(errors.ConfigError, match="image_shape"):
    tfgen.build("nade")
  path = tmp_path / "mine.npz"
  rng = np.random.default_rng(0)
  np.savez(path, train=rng.integers(0, 256, (20, 8, 8, 1), dtype=np.uint8),
           test=rng.integers(0, 256, (6, 8, 8, 1), dtype=np.uint8))
  data = tfgen.data.load(str(path), batch_size=5, num_validation=5)
  assert data.info.image_shape == (8, 8, 1) and data.steps_per_epoch == 3
  model = tfgen.build("nade", data=data, hidden_size=5)
  model.compile(optimizer="adam")
  model.fit(data, epochs=1, verbose=0)
  assert model.evaluate(data.test, verbose=0, return_dict=True)["nll"] > 0
  with pytest.raises(errors.ConfigError, match="no field 'limt'"):
    tfgen.data.load(str(path), limt=3)
