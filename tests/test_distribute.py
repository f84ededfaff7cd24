"""tf.distribute: 2 replicas or 2 worker processes make the same updates as one; restarts resume.

Both ways of feeding the replicas are covered: the in-graph batches (the default; every replica
slices the global batch) and the tf.data pipeline distributed by the strategy.

The loop scales the loss by the global batch and each step's global batch is split between the
replicas, so a deterministic model ends with the same weights however many replicas train it.
Everything runs in subprocesses with timeouts: devices and strategies must be set up before
TensorFlow starts, and a hung collective must not block the test run.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

SCRIPT = str(REPO / "tests" / "replicas_script.py")
STEPS_PER_EPOCH = 40 // 8
TIMEOUT = 120


def _env(**extra):
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO), **extra)


def _last_json(stdout):
  return json.loads(stdout.strip().splitlines()[-1])


def _run(*args):
  result = subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True,
                          text=True, timeout=TIMEOUT, env=_env())
  assert result.returncode == 0, result.stderr[-3000:]
  return _last_json(result.stdout)


def _assert_same_weights(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_allclose(np.array(x), np.array(y), atol=1e-5)


def _free_ports(num):
  sockets = [socket.socket() for _ in range(num)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _run_workers(workdir, epochs, num_workers=2):
  """Starts num_workers processes of one MultiWorkerMirroredStrategy cluster; their outputs."""
  cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(num_workers)]}
  procs = []
  for index in range(num_workers):
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    procs.append(subprocess.Popen([sys.executable, SCRIPT, "worker", str(workdir), str(epochs)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=_env(TF_CONFIG=tf_config)))
  outputs = []
  try:
    for proc in procs:
      stdout, stderr = proc.communicate(timeout=TIMEOUT)
      assert proc.returncode == 0, stderr[-3000:]
      outputs.append((_last_json(stdout), stderr))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.communicate()
  return outputs


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
  """One process: the default strategy, then MirroredStrategy over 2 logical CPU devices.

  Each trains 1 epoch, is stopped, and is started again for a second epoch.
  """
  return _run("mirrored", tmp_path_factory.mktemp("one_process"))


def test_two_replicas_make_the_same_updates_as_one(one_process):
  one, two = one_process["one"], one_process["two"]
  for epochs in (1, 2):
    assert one[f"epochs{epochs}"]["step"] == two[f"epochs{epochs}"]["step"] == (
        epochs * STEPS_PER_EPOCH)
    _assert_same_weights(one[f"epochs{epochs}"]["weights"], two[f"epochs{epochs}"]["weights"])
    # Metrics are aggregated over the replicas: the mean loss of the global batch.
    assert one[f"epochs{epochs}"]["loss"] == pytest.approx(two[f"epochs{epochs}"]["loss"],
                                                           abs=1e-4)
  # The weights were trained, not left at their zero initialization.
  assert max(np.abs(np.array(w)).max() for w in two["epochs2"]["weights"]) > 1e-3
  assert "must be a multiple of the 2 replicas" in one_process["odd_batch_error"]


def test_two_replicas_update_an_ema_codebook_as_one_does(one_process):
  one, two = one_process["vqvae_one"], one_process["vqvae_two"]
  _assert_same_weights(one["weights"], two["weights"])
  # The EMA codebook, updated in cross-replica context from the summed statistics.
  np.testing.assert_allclose(one["codebook"], two["codebook"], atol=1e-5)
  assert one["step"] == two["step"] == STEPS_PER_EPOCH


def test_two_replicas_make_the_same_xla_updates_as_one(one_process):
  one, two = one_process["xla_one"], one_process["xla_two"]
  assert one["step"] == two["step"] == STEPS_PER_EPOCH
  _assert_same_weights(one["weights"], two["weights"])
  # And the same as without XLA.
  _assert_same_weights(one["weights"], one_process["one"]["epochs1"]["weights"])


def test_two_replicas_make_the_same_updates_as_one_from_a_tf_data_pipeline(one_process):
  one, two = one_process["tfdata_one"], one_process["tfdata_two"]
  assert one["step"] == two["step"] == STEPS_PER_EPOCH
  _assert_same_weights(one["weights"], two["weights"])
  # The pipeline's shuffle is not the in-graph order, so the weights differ from the default's.
  assert not np.allclose(one["weights"][0], one_process["one"]["epochs1"]["weights"][0])


@pytest.fixture(scope="module")
def multi_worker_run(tmp_path_factory):
  """Two worker processes trained for 1 epoch: (workdir, [(output, stderr)] per worker)."""
  workdir = tmp_path_factory.mktemp("multi_worker") / "run"
  return workdir, _run_workers(workdir, epochs=1)


def test_two_workers_end_with_the_same_weights_as_one_process(multi_worker_run, one_process):
  workdir, outputs = multi_worker_run
  (chief, _), (other, _) = outputs
  for out in (chief, other):
    assert out["strategy"] == "MultiWorkerMirroredStrategy" and out["replicas"] == 2
    assert out["step"] == STEPS_PER_EPOCH
  assert chief["chief"] and not other["chief"]
  _assert_same_weights(chief["weights"], other["weights"])
  _assert_same_weights(chief["weights"], one_process["one"]["epochs1"]["weights"])
  # Only the chief's checkpoints and best weights remain; the other worker's copies were deleted.
  assert sorted(os.listdir(workdir)) == [".lock", "best", "checkpoints", "config.json",
                                         "data_info.json", "samples.png", "tensorboard",
                                         "training_sessions.json"]
  assert chief["best"] == other["best"] and chief["best"]["epoch"] == 1
  assert os.path.exists(workdir / "best" / f"ckpt-{STEPS_PER_EPOCH}.index")
  assert chief["checkpoint"] == other["checkpoint"] == str(
      workdir / "checkpoints" / f"ckpt-{STEPS_PER_EPOCH}")


def test_a_restarted_multi_worker_run_resumes_from_the_chiefs_checkpoint(multi_worker_run,
                                                                          one_process):
  workdir, _ = multi_worker_run
  outputs = _run_workers(workdir, epochs=2)
  chief_checkpoint = str(workdir / "checkpoints" / f"ckpt-{STEPS_PER_EPOCH}")
  for out, stderr in outputs:
    assert f"resumed from {chief_checkpoint} at epoch 1, step {STEPS_PER_EPOCH}" in stderr
    assert out["step"] == 2 * STEPS_PER_EPOCH
  _assert_same_weights(outputs[0][0]["weights"], outputs[1][0]["weights"])
  # The same as one process stopped and restarted at the same point.
  _assert_same_weights(outputs[0][0]["weights"], one_process["one"]["epochs2"]["weights"])
