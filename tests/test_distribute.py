"""Under a tf.distribute strategy the loop scales the loss by the global batch: 2 replicas = 1."""

import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import REPO


def test_two_replicas_make_the_same_updates_as_one(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, str(REPO / "tests" / "replicas_script.py"),
                           str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  weights = json.loads(result.stdout.strip().splitlines()[-1])
  assert weights["one_step"] == weights["two_step"] == 2 * (40 // 8)
  moved = False
  for one, two in zip(weights["one"], weights["two"]):
    np.testing.assert_allclose(np.array(one), np.array(two), atol=1e-5)
    moved = moved or np.abs(np.array(one)).max() > 1e-3
  assert moved  # The weights were trained, not left at their zero initialization.
