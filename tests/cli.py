"""Running tfgen's console scripts from tests, and reading the one line they answer with."""

import os
import subprocess
import sys
from typing import List, Optional

import pytest

from tests.conftest import REPO


def script(name: str) -> str:
  """The path of console script `name` (tfgen-train, ...) of this environment."""
  path = os.path.join(os.path.dirname(sys.executable), name)
  if not os.path.exists(path):
    pytest.fail(f"console script {name} is not installed; run pip install -e .")
  return path


def env() -> dict:
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def run(args) -> subprocess.CompletedProcess:
  return subprocess.run(args, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)


def tfgen_lines(stderr: str, program: str) -> List[str]:
  """What tfgen itself printed to stderr as a verdict (`PROGRAM: ...`)."""
  return [line for line in stderr.splitlines() if line.startswith(f"{program}:")]


def assert_one_clear_line(result, program: str, message: str,
                          exit_code: Optional[int] = None) -> str:
  """Asserts a failed run answered with one `PROGRAM: ...` line holding message, no traceback.

  Returns:
    That line.
  """
  if exit_code is None:
    assert result.returncode != 0, result.stderr[-3000:]
  else:
    assert result.returncode == exit_code, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  lines = tfgen_lines(result.stderr, program)
  assert len(lines) == 1 and message in lines[0], result.stderr[-3000:]
  return lines[0]
