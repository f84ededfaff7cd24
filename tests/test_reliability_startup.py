"""What a user sees first: a command line mistake as one line, and a quiet start (reliability.md).

Every test runs the installed console scripts in a process of its own, as a user would.
"""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

TINY = "configs/iwae.py:tiny"
# A line of TensorFlow's C++ logging (absl format): what item 5's tests leave out of the count.
_CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ [\w./-]+\.(cc|cpp|h):\d+\] "
                           r"|^WARNING: All log messages before absl::InitializeLog")


def _script(name):
  path = os.path.join(os.path.dirname(sys.executable), name)
  if not os.path.exists(path):
    pytest.fail(f"console script {name} is not installed; run pip install -e .")
  return path


def _run(name, *args, env=None):
  env = dict(os.environ if env is None else env, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([_script(name), *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)


def _own_lines(stderr):
  return [line for line in stderr.splitlines() if not _CPP_LOG_LINE.match(line)]


@pytest.mark.parametrize("name, args, message", [
    ("tfgen-train", ("--config=" + TINY, "--workdir={tmp}/run", "extra"),
     "unexpected arguments: extra"),
    ("tfgen-tune", ("--config=" + TINY, "--workdir={tmp}/tune", "extra", "more"),
     "unexpected arguments: extra more"),
    ("tfgen-evaluate", ("--workdir={tmp}", "extra"), "unexpected arguments: extra"),
    ("tfgen-sample", ("--workdir={tmp}", "extra"), "unexpected arguments: extra"),
    ("tfgen-export", ("--workdir={tmp}", "--out={tmp}/out", "extra"),
     "unexpected arguments: extra"),
    ("tfgen-style", ("--content=a.png", "--style=b.png", "extra"), "unexpected arguments: extra"),
    ("tfgen-cppn", ("random", "extra"), "unexpected arguments: extra (tfgen-cppn takes one mode)"),
    ("tfgen-reproduce", ("list", "tiny", "extra"),
     "unexpected arguments: extra (tfgen-reproduce list takes one TABLE)"),
    ("tfgen-vsc-study", ("plot", "extra"),
     "unexpected arguments: extra (tfgen-vsc-study takes one of run, plot)"),
])
def test_an_unexpected_argument_is_one_line_and_exit_2_without_the_help(name, args, message,
                                                                        tmp_path):
  result = _run(name, *(a.format(tmp=tmp_path) for a in args))
  assert result.returncode == 2, result.stderr[-3000:]
  # Only the line; absl's app.run would print the 20-30 lines of --help before it.
  assert _own_lines(result.stderr) == [f"{name}: error: {message}"], result.stderr[-3000:]
  assert result.stdout == ""
  assert not os.listdir(tmp_path)  # Nothing was started.


def test_positional_modes_still_work_and_a_wrong_one_is_still_one_line():
  listed = _run("tfgen-reproduce", "list")
  assert listed.returncode == 0, listed.stderr[-3000:]
  assert "iwae_table1_fixed" in listed.stdout
  wrong = _run("tfgen-cppn", "draw")
  assert wrong.returncode == 1, wrong.stderr[-3000:]
  assert _own_lines(wrong.stderr) == [
      "tfgen-cppn: error: give one mode, random, interpolate, fit (got: draw); e.g. tfgen-cppn "
      "random --size=256x256 --seed=3 --out=cppn.png"]


# --- A quiet start (item 10) --------------------------------------------------------------------


def _env_without_log_level(**extra):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env.update(extra)
  return env


def _device_lines(stderr, program):
  return [line for line in stderr.splitlines() if line.startswith(f"{program} running on ")]


def test_a_tiny_run_starts_quietly_says_its_devices_once_and_still_shows_errors(
    binarized_mnist_dir, tfds_data_dir, tmp_path):
  from tfgen.apps import common  # pylint: disable=g-import-not-at-top
  # As a user runs it: without the TF_CPP_MIN_LOG_LEVEL that conftest.py and .ci/run set.
  env = _env_without_log_level()
  common_args = [f"--config={TINY}", "--config.train.num_epochs=1",
                 f"--config.data.data_dir={tfds_data_dir}"]
  result = subprocess.run(
      [_script("tfgen-train"), *common_args, f"--workdir={tmp_path / 'run'}",
       f"--config.data.manual_dir={binarized_mnist_dir}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "trained to epoch 1" in result.stdout
  lines = result.stderr.splitlines()
  devices = _device_lines(result.stderr, "tfgen-train")
  assert len(devices) == 1 and lines[0] == devices[0], result.stderr[:3000]
  if not common._nvidia_driver():  # pylint: disable=protected-access
    cores = common._cpu_count()  # pylint: disable=protected-access
    assert devices[0] == f"tfgen-train {common.device_summary([], cores, False)}"
    noise = [line for line in lines
             if re.search(r"cuda|cuInit|absl::InitializeLog|oneDNN", line, re.IGNORECASE)]
    assert not noise, "\n".join(noise)

  # tfgen's own error after TensorFlow's import is still its one line, after the device line.
  empty = tmp_path / "no_data"
  empty.mkdir()
  failed = subprocess.run(
      [_script("tfgen-train"), *common_args, f"--workdir={tmp_path / 'failed'}",
       f"--config.data.manual_dir={empty}",
       f"--config.data.data_dir={tmp_path / 'fresh_tfds'}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert failed.returncode == 1, failed.stderr[-3000:]
  errors = [line for line in failed.stderr.splitlines() if line.startswith("tfgen-train:")]
  assert len(errors) == 1 and errors[0].startswith("tfgen-train: error: "), failed.stderr[-3000:]
  assert len(_device_lines(failed.stderr, "tfgen-train")) == 1, failed.stderr[-3000:]
  assert "Traceback" not in failed.stderr


# A stand-in for TensorFlow whose import prints what TensorFlow 2.21's does on a machine without
# a GPU, plus a real error; FAKE_TF_ABORT makes it die as TensorFlow does on a CPU it cannot use.
_FAKE_TENSORFLOW = r'''
import os, sys
def log(line):
  os.write(2, line.encode() + b"\n")
log("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
log("I0000 00:00:1796676116.585301    4035 port.cc:153] oneDNN custom operations are on.")
log("I0000 00:00:1796676116.585722    4035 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.")
log("E0000 00:00:1796676116.600000    4035 op_kernel.cc:99] a real TensorFlow error")
print("a Python warning during the import", file=sys.stderr)
if os.environ.get("FAKE_TF_ABORT"):
  log("F0000 00:00:1796676116.700000    4035 cpu_feature_guard.cc:37] The TensorFlow library "
      "was compiled to use AVX instructions, but these aren't available on your machine.")
  os.abort()
class config:
  @staticmethod
  def list_physical_devices(kind):
    log("E0000 00:00:1796676122.791468    4035 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
    return []
'''

_IMPORT_IT = r'''
import os, sys
sys.path.insert(0, sys.argv[1])
from tfgen.apps import common
common._nvidia_driver = lambda: False  # As on this test's machine, whatever machine runs it.
common.quiet_tensorflow_start()
import tensorflow
os.write(2, b"E0000 00:00:1796676130.000000    4035 cuda_platform.cc:52] failed call to cuInit: "
            b"later lines are not filtered\n")
print("tfgen-x: error: tfgen's own line", file=sys.stderr)
'''


def _import_fake_tensorflow(tmp_path, **env):
  (tmp_path / "tensorflow").mkdir(exist_ok=True)
  (tmp_path / "tensorflow" / "__init__.py").write_text(_FAKE_TENSORFLOW)
  return subprocess.run([sys.executable, "-c", _IMPORT_IT, str(tmp_path)], cwd=REPO,
                        env=_env_without_log_level(**env), capture_output=True, text=True,
                        timeout=60)


def test_the_import_filter_drops_only_start_up_noise_and_only_during_the_import(tmp_path):
  result = _import_fake_tensorflow(tmp_path, TF_CPP_MIN_LOG_LEVEL="2")
  assert result.returncode == 0, result.stderr
  assert result.stderr.splitlines() == [
      "E0000 00:00:1796676116.600000    4035 op_kernel.cc:99] a real TensorFlow error",
      "a Python warning during the import",
      "E0000 00:00:1796676130.000000    4035 cuda_platform.cc:52] failed call to cuInit: later "
      "lines are not filtered",
      "tfgen-x: error: tfgen's own line"]


def test_the_import_filter_passes_everything_at_level_0_and_a_fatal_line_before_an_abort(
    tmp_path):
  everything = _import_fake_tensorflow(tmp_path, TF_CPP_MIN_LOG_LEVEL="0")
  assert everything.returncode == 0, everything.stderr
  # The import's 5 lines, the cuInit line of the GPU listing and the 2 lines after them.
  assert len(everything.stderr.splitlines()) == 8, everything.stderr
  assert "oneDNN" in everything.stderr and "absl::InitializeLog" in everything.stderr
  aborted = _import_fake_tensorflow(tmp_path, FAKE_TF_ABORT="1")  # Level 2 (tfgen.apps' default).
  assert aborted.returncode != 0
  assert aborted.stderr.splitlines()[-2:] == [
      "a Python warning during the import",
      "F0000 00:00:1796676116.700000    4035 cpu_feature_guard.cc:37] The TensorFlow library was "
      "compiled to use AVX instructions, but these aren't available on your machine."]


def test_the_device_line_names_the_gpus_or_says_why_there_is_none(monkeypatch):
  from tfgen.apps import common  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
  assert common.device_summary([], 2, False) == "running on CPU (2 cores), no GPU"
  assert common.device_summary([], 1, False) == "running on CPU (1 core), no GPU"
  assert common.device_summary(["NVIDIA A100"], 8, True) == "running on GPU: NVIDIA A100"
  assert common.device_summary(["NVIDIA A100", "NVIDIA A100", "NVIDIA T4"], 8, True) == (
      "running on 3 GPUs: 2x NVIDIA A100, NVIDIA T4")
  assert "found no usable GPU although this machine has an NVIDIA driver" in (
      common.device_summary([], 8, True))
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
  assert common.device_summary([], 8, True) == (
      "running on CPU (8 cores), no GPU (CUDA_VISIBLE_DEVICES='')")


def test_a_reader_that_stops_reading_ends_the_program_quietly():
  # `tfgen-reproduce list | true`: the reader is gone before the program writes.
  process = subprocess.Popen([_script("tfgen-reproduce"), "list"], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  process.stdout.close()
  stderr = process.stderr.read()
  process.wait(timeout=60)
  assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
  assert process.returncode == 141
