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
_CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ [\w./-]+\.(cc|cpp|h):\d+\] |^WARNING: All log "
                           r"messages before absl::InitializeLog")


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
