"""tfgen's promises, second round (issue 36, items 3, 4 and 9; docs/reliability.md).

Export's output folder, files tfgen wrote that a crash or a hand edit damaged, and what kill -9,
a stage-1 run still training or a training in progress mean for export, evaluation, VQ-VAE stage
2 and tuning. Apps are run as a user runs them, in a process of their own; each error path is
tried once.
"""

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from tests import cli
from tests.conftest import REPO
from tests.conftest import load_config
from tests.conftest import untrained_vqvae_run
from tfgen import config as config_lib
from tfgen import early_stopping
from tfgen import errors
from tfgen import evaluate
from tfgen import export
from tfgen import files
from tfgen import train
from tfgen import tune
from tfgen import workdir as workdir_lib
from tfgen.models import vqvae

TINY = "configs/iwae.py:tiny"
STEPS_PER_EPOCH = 256 // 32  # The tiny config: 256 training images, batch 32.
_script, _env, _run, _tfgen_lines = cli.script, cli.env, cli.run, cli.tfgen_lines


def _assert_one_clear_line(result, program: str, message: str) -> str:
  return cli.assert_one_clear_line(result, program, message, exit_code=1)


def _warnings(stderr: str, text: str):
  """absl's warning lines (`W1207 20:51:20.789480 ... file.py:N] ...`) that contain text."""
  return [line for line in stderr.splitlines() if line.startswith("W") and text in line]


def _killed_at(script: str, marker: str, timeout: float = 240) -> subprocess.Popen:
  """Runs python code that prints `marker` at the moment to kill it, and kill -9s it then."""
  process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + timeout
    for line in process.stdout:
      if line.startswith(marker) or time.time() > deadline:
        break
    else:
      pytest.fail(f"ended before {marker}: {process.stderr.read()[-3000:]}")
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
  finally:
    process.kill()
  assert process.returncode == -signal.SIGKILL
  return process


def _cut_short(path):
  """Truncates the file at path to half its length, as a crash or a full disk leaves it."""
  with open(path, "rb") as f:
    content = f.read()
  with open(path, "wb") as f:
    f.write(content[:len(content) // 2])


# --- 3. tfgen-export --out ------------------------------------------------------------------


def test_export_to_an_existing_file_is_one_line_and_leaves_nothing(run_copy, tmp_path):
  a_file = tmp_path / "model.txt"
  a_file.write_text("not a folder")
  result = _run([_script("tfgen-export"), f"--workdir={run_copy}", f"--out={a_file}"])
  _assert_one_clear_line(result, "tfgen-export",
                         f"error: --out '{a_file}' is a file; give a new or empty folder")
  assert a_file.read_text() == "not a folder"
  assert sorted(os.listdir(tmp_path)) == ["model.txt", "run"]


def test_export_to_an_unwritable_place_is_refused_before_loading_and_leaves_nothing(
    run_copy, tmp_path, monkeypatch):
  a_file = tmp_path / "notes.txt"
  a_file.write_text("not a folder")
  monkeypatch.setattr(evaluate, "load_trained", lambda *a, **k: pytest.fail("loaded the run"))
  with pytest.raises(errors.OutputError,
                     match=f"^cannot write '{re.escape(str(a_file))}/model': Not a directory$"):
    export.export(run_copy, str(a_file / "model"))
  if os.geteuid() != 0:  # root writes into read-only folders.
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    with pytest.raises(errors.OutputError, match="Permission denied"):
      export.export(run_copy, str(read_only / "model"))
    assert os.listdir(read_only) == []
    read_only.rmdir()
  assert sorted(os.listdir(tmp_path)) == ["notes.txt", "run"]


def test_an_export_that_fails_while_writing_leaves_nothing_at_out(run_copy, tmp_path,
                                                                   monkeypatch):
  build_archive = export.build_archive

  def disk_full(filepath, **kwargs):
    os.makedirs(os.path.join(filepath, "variables"))  # Part of a SavedModel, then no room.
    raise OSError(28, "No space left on device")

  def failing_archive(*args, **kwargs):
    archive = build_archive(*args, **kwargs)
    archive.write_out = disk_full
    return archive

  monkeypatch.setattr(export, "build_archive", failing_archive)
  out = tmp_path / "model"
  with pytest.raises(errors.OutputError,
                     match=f"^cannot write '{re.escape(str(out))}': .*No space left on device"):
    export.export(run_copy, str(out))
  assert sorted(os.listdir(tmp_path)) == ["run"]


# --- 9. kill -9 while tfgen-export or tfgen-evaluate writes -----------------------------------


def test_export_killed_while_writing_leaves_no_savedmodel_at_out_and_the_next_cleans_up(
    run_copy, tmp_path):
  out = str(tmp_path / "model")
  # The SavedModel is written (into its temporary folder); the kill comes before the rename.
  _killed_at(f"""
import sys, time
from tfgen import export
build_archive = export.build_archive
def slowed(*args, **kwargs):
  archive = build_archive(*args, **kwargs)
  write_out = archive.write_out
  def write_then_wait(filepath, **kwargs):
    write_out(filepath, **kwargs)
    print("WRITTEN", flush=True)
    time.sleep(600)
  archive.write_out = write_then_wait
  return archive
export.build_archive = slowed
from tfgen.apps import export as app
sys.argv = ["tfgen-export", "--workdir={run_copy}", "--out={out}"]
app.run()
""", "WRITTEN")
  assert not os.path.exists(out)  # Nothing that tfgen-sample --saved_model would take.
  [partial] = [name for name in os.listdir(tmp_path) if name.startswith("model.partial-")]
  assert os.path.exists(os.path.join(tmp_path, partial, "saved_model.pb"))

  description = export.export(run_copy, out)  # The same command again.
  assert description["step"] == 2 * STEPS_PER_EPOCH
  assert sorted(os.listdir(tmp_path)) == ["model", "run"]  # The leftover is gone.
  assert os.path.exists(os.path.join(out, export.EXPORT_INFO_FILE))


def test_evaluate_killed_while_writing_keeps_the_previous_results_whole(run_copy):
  path = evaluate.results_path(run_copy, "test", 10)
  previous = {"nll_nats": 123.0, "num_importance_samples": 10, "step": 8}
  files.write_json(path, previous)
  # The new results are in their temporary file; the kill comes before the rename.
  _killed_at(f"""
import os, sys, time
replace = os.replace
def slowed(src, dst):
  if os.path.basename(dst).startswith("evaluation_"):
    print("WRITING", flush=True)
    time.sleep(600)
  return replace(src, dst)
os.replace = slowed
from tfgen.apps import evaluate
sys.argv = ["tfgen-evaluate", "--workdir={run_copy}", "--num_importance_samples=10",
            "--noclassify_codes"]
evaluate.run()
""", "WRITING")
  with open(path, encoding="utf-8") as f:
    assert json.load(f) == previous  # Readers see the old results, whole.
  [leftover] = [n for n in os.listdir(run_copy) if n.startswith(os.path.basename(path) + ".tmp")]
  assert export._test_nll(run_copy)["nats"] == 123.0  # The leftover is not read...

  old = time.time() - 2 * files.ABANDONED_TEMPORARY_S
  os.utime(os.path.join(run_copy, leftover), (old, old))
  results = evaluate.evaluate(run_copy, num_importance_samples=10, show_progress=False,
                              classify_codes=False)
  assert results["step"] == 2 * STEPS_PER_EPOCH
  assert not os.path.exists(os.path.join(run_copy, leftover))  # ...and the next write removes it.


def test_json_files_appear_only_complete(tmp_path, monkeypatch):
  path = str(tmp_path / "state.json")
  files.write_json(path, {"old": True})

  def crash(*args):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(os, "fsync", crash)  # A failure after part of the new file is written.
  with pytest.raises(OSError):
    files.write_json(path, {"new": list(range(10000))})
  assert files.read_json(path) == {"old": True}
  assert os.listdir(tmp_path) == ["state.json"]


# --- 4. Damaged files that tfgen wrote --------------------------------------------------------


def test_read_json_names_the_file_and_what_is_wrong(tmp_path):
  path = tmp_path / "x.json"
  assert files.read_json(str(path)) is None
  for content, problem in [(b'{"a": [1, 2', "not valid JSON: Expecting"), (b"", "empty"),
                           (b"\x00\x00\x00", "not valid JSON"),
                           (b"[1]", "a JSON array where a JSON object belongs"),
                           (b'{"b": 1}', "no 'a'")]:
    path.write_bytes(content)
    with pytest.raises(files.DamagedFileError) as error:
      files.read_json(str(path), dict, ("a",), advice="restore it")
    assert str(error.value).startswith(f"'{path}' is damaged (") and problem in str(error.value)
    assert str(error.value).endswith("; restore it") and "\n" not in str(error.value)


def test_export_ignores_a_damaged_evaluation_with_a_warning(run_copy, tmp_path):
  path = evaluate.results_path(run_copy, "test", 10)
  files.write_json(path, {"nll_nats": 123.0, "num_importance_samples": 10, "step": 16})
  _cut_short(path)
  out = tmp_path / "model"
  result = _run([_script("tfgen-export"), f"--workdir={run_copy}", f"--out={out}"])
  assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
  [warning] = _warnings(result.stderr, "evaluation_test_k10.json")
  assert "is damaged (not valid JSON" in warning and "tfgen-evaluate writes it again" in warning
  with open(out / export.EXPORT_INFO_FILE, encoding="utf-8") as f:
    assert json.load(f)["test_nll"] is None


def test_a_damaged_config_json_is_one_line_naming_it(run_copy):
  _cut_short(os.path.join(run_copy, config_lib.CONFIG_FILE))
  result = _run([_script("tfgen-evaluate"), f"--workdir={run_copy}"])
  line = _assert_one_clear_line(
      result, "tfgen-evaluate",
      f"error: '{run_copy}/config.json' is damaged (not valid JSON: ")
  assert "delete it and start the run's tfgen-train command again" in line


def test_a_deleted_damaged_config_is_written_anew_by_the_runs_training(tiny_config, run_copy):
  # What the one line above advises.
  os.remove(os.path.join(run_copy, config_lib.CONFIG_FILE))
  tiny_config.train.num_epochs = 3
  assert train.train(tiny_config, run_copy, show_progress=False).step == 3 * STEPS_PER_EPOCH
  assert config_lib.load_from_workdir(run_copy).train.num_epochs == 3


def test_a_damaged_config_history_is_kept_aside_and_a_new_one_started(tmp_path):
  path = tmp_path / config_lib.HISTORY_FILE
  path.write_text('[{"time": "2026-12-01", "chan')
  config_lib.append_history(str(tmp_path), {"train.num_epochs": (2, 3)}, resumed_from="ckpt-16")
  assert (tmp_path / f"{config_lib.HISTORY_FILE}.damaged").read_text().endswith('"chan')
  [entry] = files.read_json(str(path), list)
  assert entry["changes"] == {"train.num_epochs": {"from": 2, "to": 3}}


def test_a_damaged_best_json_refuses_training_and_keeps_the_best_weights(tiny_config, tmp_path):
  tiny_config.train.num_epochs = 1
  tiny_config.train.early_stopping_epochs = 5
  tiny_config.train.eval_every_epochs = 1
  workdir = str(tmp_path / "run")
  train.train(tiny_config, workdir, show_progress=False)
  best = os.path.join(workdir, workdir_lib.BEST_DIR)
  weights = sorted(os.listdir(best))
  _cut_short(os.path.join(best, early_stopping.STATE_FILE))
  tiny_config.train.num_epochs = 2
  with pytest.raises(files.DamagedFileError) as error:
    train.train(tiny_config, workdir, show_progress=False)
  message = str(error.value)
  assert message.startswith(f"'{best}/best.json' is damaged (not valid JSON")
  assert f"delete {best}/ to track the best epoch afresh" in message and "\n" not in message
  assert sorted(os.listdir(best)) == weights  # The best epoch's weights are not replaced.


def test_a_damaged_data_info_or_sessions_record_is_ignored_with_a_warning_and_kept(
    run_copy, caplog):
  _cut_short(os.path.join(run_copy, workdir_lib.DATA_INFO_FILE))
  assert workdir_lib.load_data_info(run_copy) is None
  assert evaluate.load_trained(run_copy, splits=()).step == 2 * STEPS_PER_EPOCH  # From the data.
  sessions = os.path.join(run_copy, workdir_lib.SESSIONS_FILE)
  _cut_short(sessions)
  assert workdir_lib.load_sessions(run_copy) == []
  workdir_lib.record_session(run_copy, outcome="finished")
  assert files.read_json(sessions) == [{"outcome": "finished"}]
  assert os.path.exists(f"{sessions}.damaged")  # Kept for a person, not overwritten.
  messages = [r.getMessage() for r in caplog.records]
  for name in (workdir_lib.DATA_INFO_FILE, workdir_lib.SESSIONS_FILE):
    assert [m for m in messages if f"{name}' is damaged" in m], messages


# --- 9. VQ-VAE stage 2 and its stage-1 run ------------------------------------------------------


@pytest.fixture
def stage1_copy(tmp_path):
  """A copy of a tiny stage-1 run (untrained, one checkpoint at step 1)."""
  workdir = str(tmp_path / "stage1")
  shutil.copytree(untrained_vqvae_run(), workdir)
  return workdir


def test_stage_2_on_a_missing_stage_1_workdir_is_one_line(binarized_mnist_dir, tfds_data_dir,
                                                          tmp_path):
  missing = tmp_path / "vq1"
  result = _run([_script("tfgen-train"), "--config=configs/vqvae.py:tiny,stage=2",
                 f"--workdir={tmp_path}/vq2", f"--config.model.stage1_workdir={missing}",
                 f"--config.data.manual_dir={binarized_mnist_dir}",
                 f"--config.data.data_dir={tfds_data_dir}"])
  _assert_one_clear_line(result, "tfgen-train", f"error: config.model.stage1_workdir "
                         f"'{missing}' does not exist; give the workdir of a trained stage-1 run")


def test_stage_2_on_a_stage_1_run_without_checkpoint_is_one_line(stage1_copy):
  shutil.rmtree(os.path.join(stage1_copy, workdir_lib.CHECKPOINT_DIR))
  with pytest.raises(errors.ConfigError, match=(
      f"^config.model.stage1_workdir '{re.escape(stage1_copy)}' has no checkpoint: its stage-1 "
      "training stopped before writing one")):
    vqvae.VQVAEWithPrior((28, 28, 1), stage1_workdir=stage1_copy)


def test_stage_2_on_a_stage_1_run_in_training_takes_its_newest_complete_checkpoint(
    stage1_copy, caplog):
  stage1 = vqvae.VQVAEWithPrior((28, 28, 1), stage1_workdir=stage1_copy).stage1
  manager = workdir_lib.checkpoint_manager(tf.train.Checkpoint(model=stage1), stage1_copy)
  for weight in stage1.weights:  # A later checkpoint, with other weights.
    weight.assign(weight + 1.0)
  manager.save(checkpoint_number=2)
  checkpoints = os.path.join(stage1_copy, workdir_lib.CHECKPOINT_DIR)
  # Checkpoint 3 is being written: its files are under a temporary name, or lack their index.
  os.makedirs(os.path.join(checkpoints, "ckpt-3_temp", "part-00000-of-00001"))
  open(os.path.join(checkpoints, "ckpt-3.data-00000-of-00001"), "wb").close()
  with workdir_lib.locked(stage1_copy):  # This process trains stage 1.
    model = vqvae.VQVAEWithPrior((28, 28, 1), stage1_workdir=stage1_copy)
  [warning] = [r.getMessage() for r in caplog.records if "still training" in r.getMessage()]
  assert warning.startswith(f"stage-1 run {stage1_copy} is still training (process "
                            f"{os.getpid()}): took its newest complete checkpoint, "
                            "checkpoints/ckpt-2.")
  for a, b in zip(model.stage1.weights, stage1.weights):
    assert (a.numpy() == b.numpy()).all()


def test_stage_2_on_a_stage_1_run_in_training_without_checkpoint_is_one_line(stage1_copy):
  shutil.rmtree(os.path.join(stage1_copy, workdir_lib.CHECKPOINT_DIR))
  with workdir_lib.locked(stage1_copy):
    with pytest.raises(errors.ConfigError, match=(
        f"has no checkpoint yet: its stage-1 training \\(process {os.getpid()}\\) has not "
        "written one. Start stage 2 once it has finished")):
      vqvae.VQVAEWithPrior((28, 28, 1), stage1_workdir=stage1_copy)


# --- 9. tfgen-evaluate while the run trains ---------------------------------------------------


def test_evaluate_during_training_reads_the_newest_complete_checkpoint_and_says_which(
    run_copy):
  checkpoints = os.path.join(run_copy, workdir_lib.CHECKPOINT_DIR)
  # The training writes its checkpoint at step 24: not complete, so not evaluated.
  os.makedirs(os.path.join(checkpoints, "ckpt-24_temp", "part-00000-of-00001"))
  open(os.path.join(checkpoints, "ckpt-24.data-00000-of-00001"), "wb").close()
  with workdir_lib.locked(run_copy):  # This process is the training.
    result = _run([_script("tfgen-evaluate"), f"--workdir={run_copy}",
                   "--num_importance_samples=10", "--noclassify_codes"])
  assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
  [warning] = _warnings(result.stderr, "still training")
  assert (f"the run in {run_copy} is still training (process {os.getpid()}): using its newest "
          f"complete checkpoint, checkpoints/ckpt-{2 * STEPS_PER_EPOCH} (step "
          f"{2 * STEPS_PER_EPOCH})") in warning
  assert f"\nstep                    {2 * STEPS_PER_EPOCH}\n" in result.stdout
  with open(evaluate.results_path(run_copy, "test", 10), encoding="utf-8") as f:
    assert json.load(f)["checkpoint"].endswith(f"ckpt-{2 * STEPS_PER_EPOCH}")


# --- 9. tfgen-tune killed with kill -9 mid-trial ------------------------------------------------


@pytest.fixture(scope="module")
def killed_search(tmp_path_factory, binarized_mnist_dir, tfds_data_dir):
  """A search of 2 trials killed with kill -9 in trial 1 (after its first checkpoint), then
  started again with the same command: (search dir, what the restart printed, trial 0's files
  before the restart)."""
  search = str(tmp_path_factory.mktemp("tune") / "search")
  command = [_script("tfgen-tune"), f"--config={TINY}", "--tuner=random", "--max_trials=2",
             "--seed=7", f"--workdir={search}", f"--config.data.manual_dir={binarized_mnist_dir}",
             f"--config.data.data_dir={tfds_data_dir}", "--config.train.eval_every_epochs=0",
             "--config.train.num_epochs=4", "--config.train.checkpoint_every_epochs=1"]
  process = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  trial_1 = os.path.join(search, tune.TRIALS_DIR, "1", workdir_lib.CHECKPOINT_DIR)
  try:
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
      if os.path.isdir(trial_1) and any(n.endswith(".index") for n in os.listdir(trial_1)):
        break
      time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
  finally:
    process.kill()
  assert process.returncode == -signal.SIGKILL, stderr[-3000:]
  trial_0 = os.path.join(search, tune.TRIALS_DIR, "0")
  before = {name: os.stat(os.path.join(trial_0, name)).st_mtime_ns
            for name in os.listdir(trial_0) if name.endswith(".json")}
  restarted = _run(command)
  return search, restarted, before


def test_a_search_killed_mid_trial_resumes_it_and_repeats_no_finished_trial(killed_search):
  search, restarted, before = killed_search
  assert restarted.returncode == 0, restarted.stderr[-3000:]
  assert "Traceback" not in restarted.stderr
  trial_0 = os.path.join(search, tune.TRIALS_DIR, "0")
  assert {name: os.stat(os.path.join(trial_0, name)).st_mtime_ns
          for name in before} == before  # Trial 0 was neither trained nor evaluated again.
  # Trial 1 resumed from the checkpoint the killed process wrote.
  sessions = workdir_lib.load_sessions(os.path.join(search, tune.TRIALS_DIR, "1"))
  assert sessions[-1]["epochs_before"] >= 1 and sessions[-1]["epochs_after"] == 4
  with open(os.path.join(search, tune.TABLE_CSV), encoding="utf-8") as f:
    statuses = [line.split(",")[:2] for line in f.read().splitlines()[1:]]
  assert statuses == [["0", "COMPLETED"], ["1", "COMPLETED"]]


def test_a_search_with_damaged_state_files_is_one_line_or_warns(killed_search, tmp_path,
                                                                tiny_config, caplog):
  search = str(tmp_path / "search")
  shutil.copytree(killed_search[0], search)
  tiny_config.train.eval_every_epochs = 0
  tiny_config.train.num_epochs = 4
  tiny_config.train.checkpoint_every_epochs = 1
  # A lost record of a finished trial: keras-tuner's own record of it counts, with a warning.
  _cut_short(os.path.join(search, tune.TRIALS_DIR, "0", tune.RECORD_FILE))
  rows = tune.search(tiny_config, search, tuner="random", max_trials=2, seed=7)
  assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
  assert rows[0]["objective"] is not None
  assert [r for r in caplog.records if "tune_record.json' is damaged" in r.getMessage()]
  # keras-tuner's state, which the search cannot do without: one line naming the file.
  oracle = os.path.join(search, tune.SEARCH_DIR, tune.ORACLE_FILE)
  _cut_short(oracle)
  with pytest.raises(files.DamagedFileError, match=f"^'{re.escape(oracle)}' is damaged .*; the "
                     f"search in {re.escape(search)} cannot be continued without it"):
    tune.search(tiny_config, search, tuner="random", max_trials=2, seed=7)


def test_a_search_begun_before_a_config_field_existed_continues_at_its_default(
    killed_search, tmp_path, tiny_config):
  search = str(tmp_path / "search")
  shutil.copytree(killed_search[0], search)
  tiny_config.train.eval_every_epochs = 0
  tiny_config.train.num_epochs = 4
  tiny_config.train.checkpoint_every_epochs = 1
  path = os.path.join(search, tune.SEARCH_FILE)
  saved = files.read_json(path)
  del saved["config"]["train"]["seconds_per_call"]  # As tfgen wrote it before the field.
  files.write_json(path, saved)
  rows = tune.search(tiny_config, search, tuner="random", max_trials=2, seed=7)
  assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
  tiny_config.train.seconds_per_call = 1.0  # Not the behaviour the trials were trained with.
  with pytest.raises(errors.WorkdirError, match="holds a search with another config"):
    tune.search(tiny_config, search, tuner="random", max_trials=2, seed=7)
