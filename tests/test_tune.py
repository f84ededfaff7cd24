"""tfgen-tune: a search beats the defaults, records failed trials, resumes, writes a runnable config."""

import csv
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO
from tfgen import errors
from tfgen import train
from tfgen import tune
from tfgen import workdir as workdir_lib
from tfgen.models import vae

# With this oracle seed the tiny space's first random draw has latent size 2, which the tests
# below make fail, and a later one beats the defaults.
SEED = 7
STEPS_PER_EPOCH = 256 // 32


def _failing_latent_size_2(monkeypatch):
  """Injects a failure: models with latent size 2 get a NaN loss, as a diverging run would."""
  original = vae.VAE.loss

  def loss(self, batch, seed, training=False):
    value, metrics = original(self, batch, seed, training)
    return (value * np.nan if self.latent_sizes[0] == 2 else value), metrics

  monkeypatch.setattr(vae.VAE, "loss", loss)


def _count_trainings(monkeypatch, interrupt_trial=None):
  """Wraps train.train to record each trial it trains and the checkpoint it started from."""
  calls = []
  original = train.train

  def counting_train(config, workdir, **kwargs):
    trial = os.path.basename(workdir)
    calls.append((trial, tf.train.latest_checkpoint(
        os.path.join(workdir, workdir_lib.CHECKPOINT_DIR))))
    if trial == interrupt_trial:
      config = config.copy_and_resolve_references()
      config.train.num_epochs = 1
      original(config, workdir, **kwargs)
      raise KeyboardInterrupt  # Ctrl-C after the trial's first epoch was checkpointed.
    return original(config, workdir, **kwargs)

  monkeypatch.setattr(train, "train", counting_train)
  return calls


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tune") / "search")


@pytest.fixture
def tune_config(tiny_config):
  """The tiny config without validation passes during training: the search scores each trial."""
  tiny_config.train.eval_every_epochs = 0
  return tiny_config


def test_search_records_failures_resumes_and_beats_the_defaults(tune_config, search_dir,
                                                                monkeypatch):
  _failing_latent_size_2(monkeypatch)
  # First start: trials 0 and 1 finish, trial 2 is interrupted after its first epoch.
  first = _count_trainings(monkeypatch, interrupt_trial="2")
  with pytest.raises(KeyboardInterrupt):
    tune.search(tune_config, search_dir, tuner="random", max_trials=3, seed=SEED)
  assert [trial for trial, _ in first] == ["0", "1", "2"]
  interrupted = list(csv.DictReader(open(os.path.join(search_dir, tune.TABLE_CSV))))
  assert interrupted[2]["status"] == "INTERRUPTED"

  # Second start, one more trial: the finished ones are not trained again, trial 2 resumes
  # from the checkpoint of its first epoch.
  monkeypatch.undo()
  _failing_latent_size_2(monkeypatch)
  second = _count_trainings(monkeypatch)
  rows = tune.search(tune_config, search_dir, tuner="random", max_trials=4, seed=SEED)
  assert [trial for trial, _ in second] == ["2", "3"]
  assert second[0][1].endswith(f"ckpt-{STEPS_PER_EPOCH}")

  by_status = {}
  for row in rows:
    by_status.setdefault(row["status"], []).append(row)
  assert set(by_status) == {"COMPLETED", "FAILED"}
  for row in by_status["FAILED"]:  # Recorded as failed, and the search went on.
    assert row["latent_size"] == 2 and row["objective"] is None
    assert "NonFiniteLossError" in row["error"]
  completed = by_status["COMPLETED"]
  assert [r["trial"] for r in by_status["FAILED"]] == ["1"]  # Trials after it completed.
  assert len(completed) == 3 and all(r["epochs"] == 2 for r in completed)
  default = next(r for r in rows if r["defaults"])
  assert default["trial"] == "0" and default["learning_rate"] == tune_config.train.learning_rate
  best = min(completed, key=lambda r: r["objective"])
  assert best is not default and best["objective"] < default["objective"] - 1.0

  # The table as CSV and on stdout, the HParams view and the best config.
  table = list(csv.DictReader(open(os.path.join(search_dir, tune.TABLE_CSV))))
  assert [r["trial"] for r in table] == [r["trial"] for r in rows]
  assert float(next(r for r in table if r["trial"] == best["trial"])["objective"]) == (
      pytest.approx(best["objective"]))
  text = tune.format_table(rows, "validation_nll")
  assert text.splitlines()[1].startswith(best["trial"] + " ")  # Best first.
  runs = os.listdir(os.path.join(search_dir, tune.HPARAMS_DIR))
  assert {f"trial_{r['trial']}" for r in rows} <= set(runs)
  spec = importlib.util.spec_from_file_location("best", os.path.join(search_dir,
                                                                     tune.BEST_CONFIG))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  best_config = module.get_config()
  assert best_config.train.learning_rate == best["learning_rate"]
  assert best_config.model.latent_sizes == (best["latent_size"],)
  assert best_config.model.hidden_sizes == ((best["hidden_size"],),)


def test_tfgen_tune_continues_the_search_and_tfgen_train_runs_the_best_config(
    search_dir, binarized_mnist_dir, tfds_data_dir, tmp_path):
  if not os.path.exists(os.path.join(search_dir, tune.BEST_CONFIG)):
    pytest.skip("needs the search of the previous test")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  bin_dir = os.path.dirname(sys.executable)
  # The finished search again from the command line: nothing is trained, the table is printed.
  result = subprocess.run(
      [os.path.join(bin_dir, "tfgen-tune"), "--config=configs/iwae.py:tiny", "--tuner=random",
       "--max_trials=4", f"--seed={SEED}", f"--workdir={search_dir}",
       f"--config.data.manual_dir={binarized_mnist_dir}",
       f"--config.data.data_dir={tfds_data_dir}", "--config.train.eval_every_epochs=0"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Running Trial" not in result.stdout
  assert "validation_nll" in result.stdout and "COMPLETED" in result.stdout
  assert "FAILED" in result.stdout
  # The best config trains as it is, from another directory.
  workdir = str(tmp_path / "best")
  result = subprocess.run(
      [os.path.join(bin_dir, "tfgen-train"),
       f"--config={os.path.join(search_dir, tune.BEST_CONFIG)}", f"--workdir={workdir}"],
      cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"trained to epoch 2, step {2 * STEPS_PER_EPOCH}" in result.stdout


def test_hyperband_continues_trials_from_their_checkpoints(tune_config, tmp_path, monkeypatch):
  calls = _count_trainings(monkeypatch)
  tune_config.tuning.hyperband_factor = 2  # Budgets of 1 and 2 epochs.
  rows = tune.search(tune_config, str(tmp_path / "hyperband"), tuner="hyperband", max_trials=3,
                     seed=SEED)
  assert [r["epochs"] for r in rows] == [1, 1, 2]
  continued = rows[2]
  assert continued["continues"] in ("0", "1")
  parent = rows[int(continued["continues"])]
  assert all(continued[k] == parent[k] for k in tune_config.tuning.space)
  # It started from a copy of its parent's checkpoint and trained the second epoch only.
  assert calls[2][0] == "2" and calls[2][1].endswith(f"ckpt-{STEPS_PER_EPOCH}")


def test_another_search_in_the_same_workdir_is_refused(tune_config, search_dir):
  if not os.path.exists(os.path.join(search_dir, tune.SEARCH_FILE)):
    pytest.skip("needs the search of the first test")
  with pytest.raises(errors.WorkdirError, match="another tuner"):
    tune.search(tune_config, search_dir, tuner="bayesian", max_trials=4)
  tune_config.model.activation = "relu"
  with pytest.raises(errors.WorkdirError, match="another config"):
    tune.search(tune_config, search_dir, tuner="random", max_trials=4)


def test_a_bad_space_is_one_config_error(tune_config, tmp_path):
  tune_config.tuning.space.learning_rate.min = 0.01  # Excludes the config's own 1e-3.
  with pytest.raises(errors.ConfigError, match="learning_rate.*must lie in"):
    tune.search(tune_config, str(tmp_path / "bad"), tuner="random", max_trials=2)
  tune_config.tuning.space.learning_rate.field = "train.nope"
  with pytest.raises(errors.ConfigError, match="train.nope"):
    tune.search(tune_config, str(tmp_path / "bad"), tuner="random", max_trials=2)
