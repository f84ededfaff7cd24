"""The training loop: checkpoints, resuming, --init_from, non-finite losses, the workdir lock."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tfgen import errors
from tfgen import evaluate
from tfgen import train
from tfgen import workdir as workdir_lib
from tfgen.models import vae


def _weights(workdir):
  trained = evaluate.load_trained(workdir, splits=())
  return [w.numpy() for w in trained.model.weights], trained.step


def test_short_run_writes_checkpoints_events_and_pngs(tiny_config, tmp_path):
  workdir = str(tmp_path / "run")
  tiny_config.train.num_epochs, tiny_config.train.eval_every_epochs = 4, 2
  result = train.train(tiny_config, workdir, show_progress=False)
  steps_per_epoch = 256 // 32
  assert result.epoch == 4 and result.step == 4 * steps_per_epoch
  assert result.checkpoint.endswith(f"ckpt-{result.step}")
  for name in ("config.json", train.SAMPLES_PNG, train.RECONSTRUCTIONS_PNG):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  events_dir = os.path.join(workdir, workdir_lib.TENSORBOARD_DIR)
  steps = {}
  for name in os.listdir(events_dir):
    assert name.startswith("events.out.tfevents")
    for event in tf.compat.v1.train.summary_iterator(os.path.join(events_dir, name)):
      for value in event.summary.value:
        steps.setdefault(value.tag, []).append(event.step)
  assert steps["train/loss"] == [steps_per_epoch * e for e in (1, 2, 3, 4)]
  # Validation only where it ran, every second epoch.
  assert steps["validation/elbo"] == [steps_per_epoch * e for e in (2, 4)]
  assert np.isfinite(result.validation_metrics["elbo"])
  assert result.validation_metrics["iwae_bound"] >= result.validation_metrics["elbo"] - 1.0


def test_second_start_resumes_at_the_same_step_with_the_same_weights(tiny_config, tmp_path):
  workdir = str(tmp_path / "run")
  first = train.train(tiny_config, workdir, show_progress=False)
  weights, step = _weights(workdir)
  again = train.train(tiny_config, workdir, show_progress=False)
  assert (again.epoch, again.step) == (first.epoch, first.step) == (2, step)
  for a, b in zip(weights, _weights(workdir)[0]):
    np.testing.assert_array_equal(a, b)
  # Asking for more epochs continues from there.
  tiny_config.train.num_epochs = 3
  more = train.train(tiny_config, workdir, show_progress=False)
  assert (more.epoch, more.step) == (3, first.step + 8)


def test_a_runs_weights_do_not_depend_on_whether_it_prepared_its_data(tiny_config, tmp_path):
  # TFDS draws from the global generators while it prepares a data set; the first run on a new
  # data folder prepares it, the second finds it prepared.
  tiny_config.data.data_dir = str(tmp_path / "tensorflow_datasets")
  tiny_config.train.num_epochs = 1
  first = str(tmp_path / "first")
  train.train(tiny_config, first, show_progress=False)
  second = str(tmp_path / "second")
  train.train(tiny_config, second, show_progress=False)
  for a, b in zip(_weights(first)[0], _weights(second)[0]):
    np.testing.assert_array_equal(a, b)


def test_resume_skips_a_damaged_newest_checkpoint(tiny_config, tmp_path):
  workdir = str(tmp_path / "run")
  train.train(tiny_config, workdir, show_progress=False)
  directory = os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)
  newest = tf.train.latest_checkpoint(directory)
  with open(newest + ".data-00000-of-00001", "wb") as f:
    f.write(b"half a checkpoint")
  tiny_config.train.num_epochs = 2
  result = train.train(tiny_config, workdir, show_progress=False)
  # Resumed from the epoch-1 checkpoint (step 8) and trained epoch 2 again.
  assert result.step == 16 and result.epoch == 2


def test_init_from_loads_another_runs_weights(tiny_config, tmp_path):
  source = str(tmp_path / "vae")
  train.train(tiny_config, source, show_progress=False)
  source_weights, _ = _weights(source)
  tiny_config.model.objective = "iwae"
  tiny_config.model.num_importance_samples = 5
  tiny_config.train.num_epochs = 1
  target = str(tmp_path / "iwae")
  result = train.train(tiny_config, target, init_from=source, show_progress=False)
  assert result.step == 8
  # The run saved the weights it started from as its step-0 checkpoint.
  trained = evaluate.load_trained(target, splits=())
  tf.train.Checkpoint(model=trained.model).read(
      os.path.join(target, workdir_lib.CHECKPOINT_DIR, "ckpt-0")).expect_partial()
  for a, b in zip(source_weights, trained.model.weights):
    np.testing.assert_array_equal(a, b.numpy())


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_good_checkpoint(
    tiny_config, tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  tiny_config.train.num_epochs = 1
  train.train(tiny_config, workdir, show_progress=False)
  good = tf.train.latest_checkpoint(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR))

  original = vae.VAE.loss

  def exploding_loss(self, batch, seed, training=False):
    loss, metrics = original(self, batch, seed, training)
    return loss * np.nan, metrics

  monkeypatch.setattr(vae.VAE, "loss", exploding_loss)
  tiny_config.train.num_epochs = 2
  with pytest.raises(errors.NonFiniteLossError, match="at step 8 "):
    train.train(tiny_config, workdir, show_progress=False)
  assert tf.train.latest_checkpoint(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)) == good


def test_a_second_run_on_a_locked_workdir_refuses(tiny_config, tmp_path):
  workdir = str(tmp_path / "run")
  with workdir_lib.locked(workdir):
    with pytest.raises(errors.WorkdirError, match="in use"):
      train.train(tiny_config, workdir, show_progress=False)
  assert not os.path.exists(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR))


def test_changed_model_shape_refuses_to_overwrite_checkpoints(tiny_config, tmp_path):
  workdir = str(tmp_path / "run")
  train.train(tiny_config, workdir, show_progress=False)
  before = sorted(os.listdir(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)))
  tiny_config.model.latent_sizes = (7,)
  with pytest.raises(errors.ConfigError, match="model.latent_sizes"):
    train.train(tiny_config, workdir, show_progress=False)
  assert sorted(os.listdir(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR))) == before


@pytest.mark.parametrize("field,value,match", [
    ("train.batch_size", -1, "batch_size"),
    ("train.learning_rate", 0.0, "learning_rate"),
    ("eval.num_importance_samples", 0, "num_importance_samples"),
    ("train.early_stopping_epochs", -1, "early_stopping_epochs"),
])
def test_invalid_config_values(tiny_config, tmp_path, field, value, match):
  section, name = field.split(".")
  tiny_config[section][name] = value
  with pytest.raises(errors.ConfigError, match=match):
    train.train(tiny_config, str(tmp_path / "run"), show_progress=False)


@pytest.mark.parametrize("section,name,value", [
    ("model", "name", "nope"), ("data", "name", "nope"), ("train", "optimizer", "nope"),
    ("train", "schedule", "nope"), ("model", "objective", "nope")])
def test_unknown_names(tiny_config, tmp_path, section, name, value):
  tiny_config[section][name] = value
  with pytest.raises(errors.ConfigError, match=f"unknown .*'{value}'"):
    train.train(tiny_config, str(tmp_path / "run"), show_progress=False)


def test_sampling_needs_no_data_set(tiny_config, tmp_path, monkeypatch):
  from tfgen import data  # pylint: disable=g-import-not-at-top
  from tfgen import sampling
  workdir = str(tmp_path / "run")
  tiny_config.train.num_epochs = 1
  train.train(tiny_config, workdir, show_progress=False)

  def no_data(*args, **kwargs):
    raise AssertionError("sampling must not load the data set")

  monkeypatch.setattr(data, "load", no_data)
  out = sampling.sample_grid(workdir, 9, str(tmp_path / "grid.png"), seed=3)
  assert os.path.getsize(out) > 0


def test_inpainting_grid_from_a_trained_autoregressive_model(binarized_mnist_dir, tfds_data_dir,
                                                             tmp_path):
  from tests.conftest import load_config  # pylint: disable=g-import-not-at-top
  from tfgen import sampling
  config = load_config("nade", "tiny")
  config.data.manual_dir, config.data.data_dir = str(binarized_mnist_dir), tfds_data_dir
  config.train.num_epochs = 1
  workdir = str(tmp_path / "nade")
  train.train(config, workdir, show_progress=False)
  out = sampling.sample_grid(workdir, 8, str(tmp_path / "inpainted.png"), inpaint=True)
  grid = tf.io.decode_png(tf.io.read_file(out)).numpy()
  assert grid.shape == (2 * 29 + 1, 8 * 29 + 1, 1)  # A row of originals, a row of completions.
  with pytest.raises(errors.ConfigError, match="class-conditional"):
    sampling.sample_grid(workdir, 4, str(tmp_path / "x.png"), label=3)


def test_a_run_saved_before_a_field_existed_resumes_when_the_field_keeps_its_default(tmp_path):
  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfgen import models  # pylint: disable=g-import-not-at-top
  new = config_lib.base_config()
  new.model = models.model_config("nade", hidden_size=8)
  saved = new.copy_and_resolve_references()
  for section, field in (("train", "precision"), ("train", "stop_after_epochs"),
                         ("model", "recurrence")):
    del saved[section][field]
  assert config_lib.check_resume(saved, new, str(tmp_path)) == {}
  # Not at its default, a field the saved run lacks is a change like any other.
  new.train.precision = "mixed_bfloat16"
  with pytest.raises(errors.ConfigError, match="train.precision '<absent>' -> 'mixed_bfloat16'"):
    config_lib.check_resume(saved, new, str(tmp_path))
  # NADE's recurrence computes the same numbers either way, so it may change on resume.
  new.train.precision = "float32"
  new.model.recurrence = "sequential"
  assert config_lib.check_resume(saved, new, str(tmp_path)) == {
      "model.recurrence": ("<absent>", "sequential")}


# Validation iwae_bound after each epoch of the scripted run below: best after epoch 2.
_SCRIPTED_VALIDATION = {1: -100.0, 2: -90.0, 3: -95.0, 4: -96.0, 5: -80.0, 6: -70.0}


def _scripted_validation(monkeypatch, calls):
  """Makes validation report _SCRIPTED_VALIDATION for the epochs trained (8 steps each)."""

  def evaluate_bounds(self, dataset, seed):
    del dataset, seed
    epoch = int(self.optimizer.iterations.numpy()) // 8
    calls.append(epoch)
    return {"elbo": _SCRIPTED_VALIDATION[epoch] - 1.0, "iwae_bound": _SCRIPTED_VALIDATION[epoch]}

  monkeypatch.setattr(train.Trainer, "evaluate_bounds", evaluate_bounds)


def test_early_stopping_keeps_the_best_epoch_and_resumes_without_forgetting_it(
    tiny_config, tmp_path, monkeypatch):
  from tfgen import early_stopping  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  calls = []
  _scripted_validation(monkeypatch, calls)
  tiny_config.train.num_epochs, tiny_config.train.early_stopping_epochs = 6, 2
  tiny_config.train.checkpoint_every_epochs = 10
  # Interrupted after epoch 3: the best epoch (2) is on disk, the last checkpoint is epoch 3's.
  tiny_config.train.stop_after_epochs = 3
  first = train.train(tiny_config, workdir, show_progress=False)
  assert (first.epoch, first.stopped_early, first.best["epoch"]) == (3, False, 2)
  tiny_config.train.stop_after_epochs = 0
  result = train.train(tiny_config, workdir, show_progress=False)
  # Epoch 4 is the second without a better iwae_bound than epoch 2's: epochs 5 and 6 never run.
  assert (result.epoch, result.step, result.stopped_early) == (4, 32, True)
  assert calls == [1, 2, 3, 4]
  assert early_stopping.read_state(workdir) == {"metric": "iwae_bound", "value": -90.0,
                                                "epoch": 2, "step": 16}
  assert result.checkpoint.endswith("ckpt-32")  # Training itself can still resume from there.
  # Evaluation, sampling and export read the best epoch's weights.
  best_weights, best_step = _weights(workdir)
  assert best_step == 16
  newest = tf.train.Checkpoint(model=result.model)
  workdir_lib.restore_newest(newest, workdir, partial=True)
  assert any(not np.array_equal(a, b.numpy()) for a, b in zip(best_weights,
                                                              result.model.weights))
  # Started again, a run that stopped early trains and validates no more.
  again = train.train(tiny_config, workdir, show_progress=False)
  assert (again.epoch, again.step, again.stopped_early) == (4, 32, True)
  assert calls == [1, 2, 3, 4]
  outcomes = [s["outcome"] for s in workdir_lib.load_sessions(workdir)]
  assert outcomes == ["finished", "stopped early", "stopped early"]


def test_early_stopping_selects_on_the_first_declared_figure_validation_measured():
  from tfgen import early_stopping  # pylint: disable=g-import-not-at-top
  declared = vae.VAE.selection_metrics
  assert early_stopping.selection_metric(declared, {"elbo": -1.0, "iwae_bound": -0.5}) == (
      "iwae_bound")
  assert early_stopping.selection_metric(declared, {"elbo": -1.0}) == "elbo"
  with pytest.raises(errors.ConfigError, match="validation measured only rate"):
    early_stopping.selection_metric(declared, {"rate": 1.0})


def test_early_stopping_needs_validation(tiny_config, tmp_path):
  tiny_config.train.early_stopping_epochs, tiny_config.train.eval_every_epochs = 3, 0
  with pytest.raises(errors.ConfigError, match="needs validation"):
    train.train(tiny_config, str(tmp_path / "run"), show_progress=False)
  assert not os.path.exists(str(tmp_path / "run" / workdir_lib.CHECKPOINT_DIR))
