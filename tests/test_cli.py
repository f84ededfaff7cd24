"""The console scripts as a user runs them: train, evaluate, sample, and their errors."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

TINY = "configs/iwae.py:tiny"


def _run(args, **kwargs):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                        **kwargs)


def _script(name):
  """The installed console script, next to the interpreter running the tests."""
  path = os.path.join(os.path.dirname(sys.executable), name)
  if not os.path.exists(path):
    pytest.fail(f"console script {name} is not installed; run pip install -e .")
  return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, binarized_mnist_dir, tfds_data_dir):
  workdir = str(tmp_path_factory.mktemp("cli") / "run")
  # With early stopping (patience longer than the run), so that evaluation, sampling and export
  # below read the best validation epoch's weights from best/.
  result = _run([_script("tfgen-train"), f"--config={TINY}", f"--workdir={workdir}",
                 f"--config.data.manual_dir={binarized_mnist_dir}",
                 f"--config.data.data_dir={tfds_data_dir}",
                 "--config.train.early_stopping_epochs=5"])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Epoch 2/2" in result.stdout
  assert "best validation iwae_bound " in result.stdout and "stopped early" not in result.stdout
  assert os.path.exists(os.path.join(workdir, "best", "best.json"))
  return workdir


def test_train_writes_checkpoints_events_and_pngs(trained_run):
  assert os.path.exists(os.path.join(trained_run, "checkpoints", "checkpoint"))
  assert os.listdir(os.path.join(trained_run, "tensorboard"))
  for png in ("samples.png", "reconstructions.png"):
    with open(os.path.join(trained_run, png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_evaluate_prints_and_writes_nll_elbo_and_active_units(trained_run):
  result = _run([_script("tfgen-evaluate"), f"--workdir={trained_run}"])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "nll_nats" in result.stdout and "active_units" in result.stdout
  with open(os.path.join(trained_run, "evaluation_test_k10.json"), encoding="utf-8") as f:
    results = json.load(f)
  assert results["num_examples"] == 256 and results["num_importance_samples"] == 10
  assert results["binarization"] == "fixed"
  assert f"{os.sep}best{os.sep}ckpt-" in results["checkpoint"]
  assert 0 < results["nll_nats"] <= -results["elbo"] + 1e-3
  assert 0 <= results["active_units"][0] <= results["latent_units"][0] == 4


def test_sample_writes_a_grid_and_bin_scripts_are_the_same_apps(trained_run, tmp_path):
  out = str(tmp_path / "grid.png")
  result = _run([_script("tfgen-sample"), f"--workdir={trained_run}", "--num=16", f"--out={out}"])
  assert result.returncode == 0, result.stderr[-3000:]
  with open(out, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  for name in ("train", "evaluate", "sample", "export"):
    # absl prints the usage on stdout (and exits 1 after --help, by its convention).
    result = _run([sys.executable, f"bin/{name}.py", "--help"])
    assert f"tfgen-{name}:" in result.stdout and "--workdir" in result.stdout, result.stderr


def test_export_writes_a_saved_model_and_refuses_a_full_folder(trained_run, tmp_path):
  out = str(tmp_path / "exported")
  result = _run([_script("tfgen-export"), f"--workdir={trained_run}", f"--out={out}"])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "signatures decode, encode, log_prob, sample, serving_default" in result.stdout
  assert os.path.exists(os.path.join(out, "saved_model.pb"))
  again = _run([_script("tfgen-export"), f"--workdir={trained_run}", f"--out={out}"])
  assert again.returncode != 0 and "not empty" in again.stderr
  assert "Traceback" not in again.stderr


# Each case below is a separate process (a TensorFlow import each), so each kind of error is
# tried once here; the checks behind them (unknown data sets, sizes, truncated files, bad
# overrides) are tested in-process in test_data.py, test_reliability*.py and test_train.py, and
# the bad overrides as processes in test_reliability.py.
def test_bad_config_is_one_clear_error(tmp_path):
  result = _run([_script("tfgen-train"), f"--config={TINY}", f"--workdir={tmp_path}/w",
                 "--config.model.name=nope"])
  assert result.returncode != 0
  assert "unknown model 'nope'" in result.stderr
  assert "Traceback" not in result.stderr


def test_unknown_variant_option_is_one_clear_error(tmp_path):
  result = _run([_script("tfgen-train"), "--config=configs/iwae.py:layerz=2",
                 f"--workdir={tmp_path}/w"])
  assert result.returncode != 0 and "unknown config variant option 'layerz'" in result.stderr
  assert "Traceback" not in result.stderr


def test_evaluate_without_a_run_is_one_clear_error(tmp_path):
  result = _run([_script("tfgen-evaluate"), f"--workdir={tmp_path}"])
  assert result.returncode != 0 and "holds no training run" in result.stderr
  assert "Traceback" not in result.stderr


def test_missing_data_is_one_clear_error(tmp_path):
  result = _run([_script("tfgen-train"), f"--config={TINY}", f"--workdir={tmp_path}/w",
                 f"--config.data.manual_dir={tmp_path}/empty",
                 f"--config.data.data_dir={tmp_path}/tfds"])
  assert result.returncode != 0
  assert "binarized_mnist_train.amat" in result.stderr and "manual_dir" in result.stderr
  assert "Traceback" not in result.stderr

