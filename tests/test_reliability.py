"""tfgen's promises to a user who makes a mistake or stops a run (docs/reliability.md).

Every failure a user can cause ends in one clear line and a non-zero exit, and nothing already
trained is lost. Each test below is one promise; the serving and data promises are in
test_reliability_serving.py and test_reliability_data.py.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import cli
from tests.conftest import REPO
from tests.conftest import load_config
from tfgen import config as config_lib
from tfgen import errors
from tfgen import evaluate
from tfgen import sampling
from tfgen import signals
from tfgen import train
from tfgen import workdir as workdir_lib
from tfgen.apps import common

TINY = "configs/iwae.py:tiny"
STEPS_PER_EPOCH = 256 // 32  # The tiny config: 256 training images, batch 32.
_script, _env, _run, _tfgen_lines = cli.script, cli.env, cli.run, cli.tfgen_lines
_assert_one_clear_line = cli.assert_one_clear_line


def _checkpoint_steps(workdir):
  state = tf.train.get_checkpoint_state(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR))
  return sorted(int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths)


def _weights(workdir):
  return [w.numpy() for w in evaluate.load_trained(workdir, splits=()).model.weights]


# --- Signals and schedulers -----------------------------------------------------------------


def test_sigterm_saves_a_checkpoint_exits_143_with_one_line_and_the_run_resumes(
    binarized_mnist_dir, tfds_data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  command = [_script("tfgen-train"), f"--config={TINY}", f"--workdir={workdir}",
             f"--config.data.manual_dir={binarized_mnist_dir}",
             f"--config.data.data_dir={tfds_data_dir}", "--config.train.num_epochs=10000",
             "--config.train.checkpoint_every_epochs=10000", "--config.train.eval_every_epochs=0"]
  process = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 240
    for line in process.stdout:  # Training is under way once its third epoch starts.
      if "Epoch 3/" in line or time.time() > deadline:
        break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
  finally:
    process.kill()
  assert process.returncode == common.EXIT_TERMINATED, stderr[-3000:]
  assert "Traceback" not in stderr
  [line] = _tfgen_lines(stderr, "tfgen-train")
  assert "terminated (SIGTERM); checkpoint at step" in line and "resumes" in line
  [step] = _checkpoint_steps(workdir)  # Only the checkpoint written on the way out.
  assert step >= 2 * STEPS_PER_EPOCH and f"step {step} " in line

  # The same command (asking for one epoch more than it reached) resumes and ends at exactly
  # the step an uninterrupted run ends at.
  epochs = step // STEPS_PER_EPOCH + 1
  resumed = _run(command[:-3] + [f"--config.train.num_epochs={epochs}"])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"trained to epoch {epochs}, step {epochs * STEPS_PER_EPOCH};" in resumed.stdout


def test_sigterm_on_a_slow_model_writes_its_checkpoint_within_a_schedulers_grace_period(
    binarized_mnist_dir, tfds_data_dir, tmp_path):
  # One second a step and 256 steps an epoch: calls of steps_per_execution=256 steps would make
  # a stop wait over 4 minutes; calls sized to seconds_per_call=2 keep it to seconds.
  workdir = str(tmp_path / "run")
  command = [sys.executable, os.path.join(REPO, "tests", "slow_model_script.py"), "1.0",
             f"--config={TINY}", f"--workdir={workdir}",
             f"--config.data.manual_dir={binarized_mnist_dir}",
             f"--config.data.data_dir={tfds_data_dir}", "--config.train.batch_size=1",
             "--config.train.steps_per_execution=256", "--config.train.seconds_per_call=2",
             "--config.train.jit_compile=false", "--config.train.eval_every_epochs=0"]
  process = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  try:
    for line in process.stderr:  # bench/loop_speed.py's line: the first call has run.
      if "first train call finished" in line:
        break
    time.sleep(4)  # Into the calls sized from the measured step time.
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    seconds = time.monotonic() - sent
  finally:
    process.kill()
  assert process.returncode == common.EXIT_TERMINATED, stderr[-3000:]
  [step] = _checkpoint_steps(workdir)
  assert step >= 3
  assert seconds < 30, f"the stop took {seconds:.1f} s"


def test_call_sizes_fit_the_measured_step_time():
  sizer = train.CallSizer(max_steps=50, seconds=5.0)
  assert sizer.next_call(500) == 1  # Nothing timed yet.
  sizer.record(1, 30.0)  # The first call of a size may include compilation: not taken.
  assert sizer.next_call(500) == 1
  sizer.record(1, 0.3)  # 0.3 s a step: 16 steps (a power of two) fit in 5 s.
  assert sizer.next_call(500) == 16 and sizer.next_call(7) == 7
  sizer.record(16, 20.0)
  sizer.record(16, 0.016)  # Fast after all: capped at steps_per_execution.
  assert sizer.next_call(500) == 50
  sizer.record(50, 500.0)
  sizer.record(50, 500.0)  # 10 s a step: one step a call.
  assert sizer.next_call(500) == 1
  fixed = train.CallSizer(max_steps=50, seconds=0.0)
  fixed.record(50, 500.0)
  fixed.record(50, 500.0)
  assert fixed.next_call(500) == 50


def test_sigterm_leaves_the_running_trial_unfinished_and_a_restart_reruns_it(
    tiny_config, tmp_path, monkeypatch):
  from tfgen import tune  # pylint: disable=g-import-not-at-top
  tiny_config.train.eval_every_epochs = 0
  search_dir = str(tmp_path / "search")
  original = train.train
  calls = []

  def terminated_after_one_epoch(config, workdir, **kwargs):
    calls.append(workdir_lib.newest_checkpoint(workdir))
    config = config.copy_and_resolve_references()
    config.train.num_epochs = 1
    original(config, workdir, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)  # A scheduler stops the search mid-trial.
    time.sleep(5)
    raise AssertionError("SIGTERM did not stop the search")

  monkeypatch.setattr(train, "train", terminated_after_one_epoch)
  with pytest.raises(signals.Terminated), signals.handle_signals():
    tune.search(tiny_config, search_dir, tuner="random", max_trials=1, seed=0)
  table = open(os.path.join(search_dir, tune.TABLE_CSV), encoding="utf-8").read()
  assert "INTERRUPTED" in table

  counted = []
  monkeypatch.setattr(train, "train", lambda config, workdir, **kw: counted.append(
      workdir_lib.newest_checkpoint(workdir)) or original(config, workdir, **kw))
  rows = tune.search(tiny_config, search_dir, tuner="random", max_trials=1, seed=0)
  assert [r["status"] for r in rows] == ["COMPLETED"] and rows[0]["epochs"] == 2
  # The trial was run again from the checkpoint of its first epoch.
  assert counted[0].endswith(f"ckpt-{STEPS_PER_EPOCH}")


def test_resuming_mid_epoch_ends_where_an_uninterrupted_run_ends_with_the_same_weights(
    tiny_config, tmp_path, monkeypatch):
  tiny_config.train.eval_every_epochs = 0
  tiny_config.train.checkpoint_every_epochs = 100
  uninterrupted = str(tmp_path / "uninterrupted")
  train.train(tiny_config, uninterrupted, show_progress=False)

  interrupted = str(tmp_path / "interrupted")
  original = train.Trainer.train_steps

  def stop_at_step_12(self, iterator, num_steps):
    result = original(self, iterator, num_steps)
    if int(self.optimizer.iterations.numpy()) == STEPS_PER_EPOCH + 4:
      raise KeyboardInterrupt  # Ctrl-C in the middle of the second epoch.
    return result

  monkeypatch.setattr(train.Trainer, "train_steps", stop_at_step_12)
  with pytest.raises(KeyboardInterrupt):
    train.train(tiny_config, interrupted, show_progress=False)
  assert _checkpoint_steps(interrupted) == [STEPS_PER_EPOCH + 4]
  monkeypatch.undo()

  result = train.train(tiny_config, interrupted, show_progress=False)
  assert (result.epoch, result.step) == (2, 2 * STEPS_PER_EPOCH)
  # Both invocations are on record, the stopped one with its time (tfgen-reproduce sums them).
  sessions = workdir_lib.load_sessions(interrupted)
  assert [(s["epochs_before"], s["epochs_after"], s["step"], s["outcome"]) for s in sessions] == [
      (0, 1, STEPS_PER_EPOCH + 4, "stopped"), (1, 2, 2 * STEPS_PER_EPOCH, "finished")]
  assert all(s["seconds"] > 0 and s["host"] for s in sessions)
  # The skipped batches are exactly those trained before the interruption: same weights.
  for a, b in zip(_weights(uninterrupted), _weights(interrupted)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_partial_checkpoints_left_by_a_kill_are_removed_on_start(tiny_config, run_copy):
  checkpoints = os.path.join(run_copy, workdir_lib.CHECKPOINT_DIR)
  os.makedirs(os.path.join(checkpoints, "ckpt-12_temp_0a1b2c", "part-00000-of-00001"))
  open(os.path.join(checkpoints, "ckpt-13_temp.index"), "w").close()
  best = os.path.join(run_copy, workdir_lib.BEST_DIR)  # Early stopping's best weights.
  os.makedirs(best)
  open(os.path.join(best, "ckpt-14_temp.index"), "w").close()
  tiny_config.train.num_epochs = 3
  train.train(tiny_config, run_copy, show_progress=False)
  for folder in (checkpoints, best):
    assert not [name for name in os.listdir(folder) if "_temp" in name]


def _snapshot(folder):
  """{relative path: bytes} of every file under folder."""
  out = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = f.read()
  return out


def _index_names(workdir):
  state = tf.train.get_checkpoint_state(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR))
  return [os.path.basename(p) for p in state.all_model_checkpoint_paths]


@pytest.mark.parametrize("index", ["missing", "stale"])
def test_a_lost_or_stale_index_file_resumes_from_the_newest_checkpoint_on_disk(
    tiny_config, run_copy, index):
  checkpoints = os.path.join(run_copy, workdir_lib.CHECKPOINT_DIR)
  index_file = os.path.join(checkpoints, workdir_lib.INDEX_FILE)
  if index == "missing":  # As a backup tool or an rsync of *.index/*.data* leaves it.
    os.remove(index_file)
  else:  # As a kill between renaming ckpt-16 into place and updating the index leaves it.
    with open(index_file, "w", encoding="utf-8") as f:
      f.write('model_checkpoint_path: "ckpt-8"\nall_model_checkpoint_paths: "ckpt-8"\n')
  before = _snapshot(checkpoints)
  tiny_config.train.num_epochs = 3
  result = train.train(tiny_config, run_copy, show_progress=False)
  # Resumed at step 16 (epoch 2) and trained one epoch more, not three from scratch.
  assert (result.epoch, result.step) == (3, 3 * STEPS_PER_EPOCH)
  assert workdir_lib.load_sessions(run_copy)[-1]["epochs_before"] == 2
  # The checkpoints it found are untouched, and the index lists them again.
  for name, content in before.items():
    if name != workdir_lib.INDEX_FILE:
      assert _snapshot(checkpoints)[name] == content, name
  assert _index_names(run_copy) == ["ckpt-8", "ckpt-16", "ckpt-24"]
  assert workdir_lib.newest_checkpoint(run_copy).endswith("ckpt-24")


def test_a_lost_index_file_still_protects_the_run_from_another_config(tiny_config, run_copy):
  os.remove(os.path.join(run_copy, workdir_lib.CHECKPOINT_DIR, workdir_lib.INDEX_FILE))
  before = _snapshot(run_copy)
  tiny_config.model.activation = "relu"
  with pytest.raises(errors.ConfigError, match="another config"):
    train.train(tiny_config, run_copy, show_progress=False)
  assert _snapshot(run_copy) == before


def test_checkpoints_of_another_model_without_a_config_file_are_refused_and_kept(
    tiny_config, run_copy):
  os.remove(os.path.join(run_copy, config_lib.CONFIG_FILE))
  os.remove(os.path.join(run_copy, workdir_lib.CHECKPOINT_DIR, workdir_lib.INDEX_FILE))
  before = _snapshot(run_copy)
  tiny_config.model.latent_sizes = (7,)
  with pytest.raises(errors.WorkdirError, match="do not fit this model") as error:
    train.train(tiny_config, run_copy, show_progress=False)
  assert "ckpt-16 (ckpt-16.data-00000-of-00001" in str(error.value)
  # Not even a config.json or data_info.json that would describe the checkpoints wrongly.
  assert _snapshot(run_copy) == before


def test_unreadable_checkpoints_are_refused_with_what_is_on_disk_and_nothing_written(
    tiny_config, run_copy):
  checkpoints = os.path.join(run_copy, workdir_lib.CHECKPOINT_DIR)
  for name in os.listdir(checkpoints):
    if ".data-" in name:  # Truncated, as a full disk or a broken copy leaves them.
      with open(os.path.join(checkpoints, name), "r+b") as f:
        f.truncate(100)
  before = _snapshot(run_copy)
  with pytest.raises(errors.WorkdirError) as error:
    train.train(tiny_config, run_copy, show_progress=False)
  message = str(error.value)
  assert "unreadable" in message and "Was the config changed" not in message
  assert "ckpt-16 (ckpt-16.data-00000-of-00001 100 B" in message and "ckpt-8 (" in message
  assert "\n" not in message
  assert _snapshot(run_copy) == before


def test_a_newer_checkpoint_that_cannot_be_restored_is_set_aside_never_written_over(
    tiny_config, run_copy):
  checkpoints = os.path.join(run_copy, workdir_lib.CHECKPOINT_DIR)
  damaged = os.path.join(checkpoints, "ckpt-16.data-00000-of-00001")
  with open(damaged, "r+b") as f:
    f.truncate(100)
  kept = {name: content for name, content in _snapshot(checkpoints).items()
          if name.startswith("ckpt-16")}
  tiny_config.train.num_epochs = 3
  result = train.train(tiny_config, run_copy, show_progress=False)
  # Resumed from ckpt-8, so it trained epochs 2 and 3 and wrote a new ckpt-16 on the way.
  assert (result.epoch, result.step) == (3, 3 * STEPS_PER_EPOCH)
  aside = _snapshot(os.path.join(checkpoints, workdir_lib.UNREADABLE_DIR))
  assert aside == kept
  assert _index_names(run_copy) == ["ckpt-8", "ckpt-16", "ckpt-24"]


@pytest.mark.parametrize("where,message", [
    ("file", "is a file, not a folder"),
    ("under_a_file", "is a file, not a folder"),
    ("proc", "cannot use '/proc/tfgen_x' as a workdir: No such file or directory"),
])
def test_a_workdir_that_cannot_be_a_folder_is_one_line(tmp_path, where, message):
  a_file = tmp_path / "notes.txt"
  a_file.write_text("not a folder")
  workdir = {"file": str(a_file), "under_a_file": str(a_file / "run"),
             "proc": "/proc/tfgen_x"}[where]
  result = _run([_script("tfgen-train"), f"--config={TINY}", f"--workdir={workdir}"])
  _assert_one_clear_line(result, "tfgen-train", message)
  assert result.returncode == 1 and a_file.read_text() == "not a folder"


@pytest.mark.parametrize("program,args,message", [
    ("tfgen-tune", [f"--config={TINY}"], "is a file, not a folder"),
    ("tfgen-reproduce", ["run", "tiny"], "is a file, not a folder"),
    ("tfgen-vsc-study", ["run", "--data=mnist_5k", "--manual_dir=/nonexistent"],
     "is a file, not a folder"),
    ("tfgen-evaluate", [], "Not a directory"),
    ("tfgen-sample", [], "Not a directory"),
    ("tfgen-export", ["--out=/nonexistent/export"], "Not a directory"),
])
def test_every_app_answers_a_workdir_that_is_a_file_with_one_line(tmp_path, program, args,
                                                                  message):
  a_file = tmp_path / "notes.txt"
  a_file.write_text("not a folder")
  result = _run([_script(program), *args, f"--workdir={a_file}"])
  _assert_one_clear_line(result, program, message)
  assert result.returncode == 1 and a_file.read_text() == "not a folder"


# --- A run's record is never overwritten by a different config -------------------------------


@pytest.mark.parametrize("changes,listed", [
    ({"model.latent_sizes": (7,)}, "model.latent_sizes"),  # Would not fit the checkpoint.
    ({"model.activation": "relu"}, "model.activation 'tanh' -> 'relu'"),  # Would fit it.
    ({"model.objective": "iwae", "model.num_importance_samples": 5}, "model.objective"),
    ({"data.name": "mnist"}, "data.name"),
])
def test_a_different_config_is_refused_before_anything_is_written(tiny_config, run_copy,
                                                                  changes, listed):
  files = {name: open(os.path.join(run_copy, name), "rb").read()
           for name in (config_lib.CONFIG_FILE, workdir_lib.DATA_INFO_FILE)}
  checkpoints = sorted(os.listdir(os.path.join(run_copy, workdir_lib.CHECKPOINT_DIR)))
  for field, value in changes.items():
    section, name = field.split(".")
    tiny_config[section][name] = value
  with pytest.raises(errors.ConfigError, match="another config") as error:
    train.train(tiny_config, run_copy, show_progress=False)
  assert listed in str(error.value) and "--init_from" in str(error.value)
  for name, content in files.items():
    assert open(os.path.join(run_copy, name), "rb").read() == content
  assert sorted(os.listdir(os.path.join(run_copy, workdir_lib.CHECKPOINT_DIR))) == checkpoints
  # The intact run still evaluates, as a user would check it.
  evaluate.load_trained(run_copy, splits=())


def test_resumable_changes_are_kept_and_recorded_in_the_run_history(tiny_config, run_copy):
  tiny_config.train.num_epochs = 3
  tiny_config.eval.num_importance_samples = 20
  result = train.train(tiny_config, run_copy, show_progress=False)
  assert result.step == 3 * STEPS_PER_EPOCH
  saved = config_lib.load_from_workdir(run_copy)
  assert saved.train.num_epochs == 3 and saved.eval.num_importance_samples == 20
  with open(os.path.join(run_copy, config_lib.HISTORY_FILE), encoding="utf-8") as f:
    [entry] = json.load(f)
  assert entry["changes"] == {"eval.num_importance_samples": {"from": 10, "to": 20},
                              "train.num_epochs": {"from": 2, "to": 3}}
  assert entry["resumed_from"] == f"ckpt-{2 * STEPS_PER_EPOCH}"


def test_init_from_starts_from_another_runs_weights_under_a_new_config(tiny_config, run_copy,
                                                                       tmp_path):
  tiny_config.model.activation = "relu"
  result = train.train(tiny_config, str(tmp_path / "relu"), init_from=run_copy,
                       show_progress=False)
  assert result.step == 2 * STEPS_PER_EPOCH


# --- Configs and flags: one line, never a traceback wall --------------------------------------


@pytest.mark.parametrize("args,message", [
    (["--config.train.batchsize=5"],
     "unknown config field 'train.batchsize'; did you mean 'train.batch_size'?"),
    (["--config.train.num_epochs=many"], "--config.train.num_epochs=many"),
    (["--config.train.num_epochs=0"], "config.train.num_epochs must be > 0, got 0"),
])
def test_a_bad_override_is_one_line(args, message, tmp_path):
  result = _run([_script("tfgen-train"), f"--config={TINY}", f"--workdir={tmp_path}/w", *args])
  _assert_one_clear_line(result, "tfgen-train", message)
  assert not os.path.exists(tmp_path / "w" / config_lib.CONFIG_FILE)


def test_a_missing_config_file_is_one_line(tmp_path):
  result = _run([_script("tfgen-train"), "--config=configs/nope.py", f"--workdir={tmp_path}/w"])
  _assert_one_clear_line(result, "tfgen-train", "config file 'configs/nope.py' does not exist")
  assert result.returncode == common.EXIT_USAGE


@pytest.mark.parametrize("variant,message", [
    ("tiny=ture", "tiny='ture' must be true or false"),
    ("layers=3", "layers='3' is not one of: 1, 2"),
    ("model=iwea", "model='iwea' is not one of: vae, iwae"),
    ("k=-5", "k='-5' must be >= 0"),
    ("k=many", "k='many' must be int"),
])
def test_variant_values_are_checked(variant, message):
  with pytest.raises(errors.ConfigError, match=message.replace("(", r"\(")):
    load_config("iwae", variant)


def test_variant_booleans_take_the_usual_words():
  assert load_config("iwae", "tiny=true").train.num_epochs == 2
  assert load_config("iwae", "tiny=no").train.num_epochs == 100


@pytest.mark.parametrize("field,value", [
    ("train.num_epochs", 0), ("train.num_epochs", -1), ("train.batch_size", 0),
    ("model.num_importance_samples", 0), ("model.latent_sizes", (0,)),
    ("model.hidden_sizes", ((200, -1),)), ("eval.num_importance_samples", -3),
    ("eval.batch_size", 0),
])
def test_zero_or_negative_sizes_epochs_and_k_are_config_errors(field, value):
  config = load_config("iwae", "tiny")
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(errors.ConfigError, match=f"config.{field} must be > 0"):
    config_lib.validate(config)


@pytest.mark.parametrize("flag", ["num_importance_samples", "batch_size", "chunk_size"])
@pytest.mark.parametrize("value", [0, -2])
def test_evaluate_refuses_zero_or_negative_sizes(run_copy, flag, value):
  with pytest.raises(errors.ConfigError, match=f"{flag} must be >= 1, got {value}"):
    evaluate.evaluate(run_copy, **{flag: value}, show_progress=False)


def test_sample_to_an_existing_folder_is_one_line_and_leaves_nothing(run_copy, tmp_path):
  folder = tmp_path / "pictures"
  folder.mkdir()
  result = _run([_script("tfgen-sample"), f"--workdir={run_copy}", f"--out={folder}"])
  _assert_one_clear_line(result, "tfgen-sample", "is a folder")
  assert os.listdir(folder) == [] and not os.path.exists(f"{folder}.tmp")


def test_sample_to_an_unwritable_path_is_refused_before_loading_and_leaves_nothing(
    run_copy, tmp_path, monkeypatch):
  a_file = tmp_path / "notes.txt"
  a_file.write_text("not a folder")
  monkeypatch.setattr(evaluate, "load_trained", lambda *a, **k: pytest.fail("loaded the run"))
  with pytest.raises(errors.OutputError, match="cannot write"):
    sampling.sample_grid(run_copy, 4, str(a_file / "grid.png"))
  assert sorted(os.listdir(tmp_path)) == ["notes.txt", "run"]
