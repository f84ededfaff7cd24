"""tfgen-tune over several processes: a chief oracle and two workers on 127.0.0.1.

The processes are those of a search over several machines (keras-tuner's KERASTUNER_* variables,
the chief's oracle served over gRPC), on one machine sharing one search directory.
"""

import concurrent.futures
import csv
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time

import keras_tuner
from keras_tuner.src.distribute import oracle_chief
import pytest

from tests.conftest import REPO
from tfgen import data
from tfgen import errors
from tfgen import train
from tfgen import tune

SEED = 7
MAX_TRIALS = 4
WORKERS = ("tuner1", "tuner2")  # Not tuner0, the id of a search in one process: see below.
# The whole search (three processes, each importing TensorFlow) must end within this; it takes
# about a minute on two busy CPU cores.
DEADLINE_S = 120
KT_ENV = (tune.TUNER_ID_ENV, tune.ORACLE_IP_ENV, tune.ORACLE_PORT_ENV)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _flags(search_dir, binarized_mnist_dir, tfds_data_dir):
  # Bayesian: the chief's oracle refuses to start without scikit-learn, which the commands keep
  # out of Keras's import (tfgen/apps/common.py) but must leave importable.
  return ["--config=configs/iwae.py:tiny", "--tuner=bayesian", f"--max_trials={MAX_TRIALS}",
          f"--seed={SEED}", f"--workdir={search_dir}",
          f"--config.data.manual_dir={binarized_mnist_dir}",
          f"--config.data.data_dir={tfds_data_dir}", "--config.train.eval_every_epochs=0",
          "--config.train.num_epochs=1"]


def _start(tuner_id, port, flags, log_dir):
  """Starts tfgen-tune as process `tuner_id` of the search; its output goes to log files."""
  env = {k: v for k, v in os.environ.items() if k not in KT_ENV}
  env.update(TF_CPP_MIN_LOG_LEVEL="3", KERASTUNER_TUNER_ID=tuner_id,
             KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(port))
  with open(log_dir / f"{tuner_id}.out", "w") as out, open(log_dir / f"{tuner_id}.err",
                                                           "w") as err:
    return subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "tfgen-tune"), *flags],
        cwd=REPO, env=env, stdout=out, stderr=err)


def _log(log_dir, tuner_id, stream="out") -> str:
  return (log_dir / f"{tuner_id}.{stream}").read_text()


def test_a_chief_and_two_workers_run_one_search(binarized_mnist_dir, tfds_data_dir, tmp_path,
                                               tiny_config, monkeypatch):
  # Prepared once here: two workers preparing one TFDS data_dir at the same time would race.
  data.load(tiny_config.data, 32, splits=("validation",))
  search_dir = tmp_path / "search"
  flags = _flags(search_dir, binarized_mnist_dir, tfds_data_dir)
  port = _free_port()
  start = time.monotonic()
  processes = {}
  try:
    processes["chief"] = _start("chief", port, flags, tmp_path)
    for worker in WORKERS:
      processes[worker] = _start(worker, port, flags, tmp_path)
    for name, process in processes.items():
      process.wait(timeout=max(1, DEADLINE_S - (time.monotonic() - start)))
  except subprocess.TimeoutExpired:
    pytest.fail(f"the search did not end within {DEADLINE_S} s: " + "; ".join(
        f"{name}: {_log(tmp_path, name)[-1500:]} {_log(tmp_path, name, 'err')[-1500:]}"
        for name in processes))
  finally:
    for process in processes.values():
      if process.poll() is None:
        process.kill()
        process.wait()
  wall = time.monotonic() - start
  print(f"chief and two workers: {wall:.1f} s")

  for name in ("chief", *WORKERS):  # Each ended by itself, successfully.
    assert processes[name].returncode == 0, (name, _log(tmp_path, name, "err")[-3000:])
  # Every trial was trained exactly once, by one worker or the other, and both had some.
  started = {}
  for worker in WORKERS:
    out = _log(tmp_path, worker)
    started[worker] = re.findall(rf"^{worker}: trial (\d+) starts", out, re.MULTILINE)
    assert started[worker], out
    assert re.search(rf"^{worker}: the chief has no trial left", out, re.MULTILINE)
  trials = [t for ts in started.values() for t in ts]
  assert sorted(trials, key=int) == [str(i) for i in range(MAX_TRIALS)]
  # The chief's table: every trial completed, with the worker that trained it.
  table = list(csv.DictReader(open(search_dir / tune.TABLE_CSV)))
  assert [r["trial"] for r in table] == [str(i) for i in range(MAX_TRIALS)]
  assert all(r["status"] == "COMPLETED" for r in table), table
  for worker, ids in started.items():
    assert {r["trial"] for r in table if r["tuner"] == worker} == set(ids)
  assert sum(r["defaults"] == "True" for r in table) == 1
  chief_out = _log(tmp_path, "chief")
  assert f"at 127.0.0.1:{port}" in chief_out and "validation_nll" in chief_out
  spec = importlib.util.spec_from_file_location("best", search_dir / tune.BEST_CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  best = min(table, key=lambda r: float(r["objective"]))
  assert module.get_config().train.learning_rate == pytest.approx(float(best["learning_rate"]))

  # The finished search continued in one process (tuner0, which never ran here): it reloads
  # the chief's oracle rather than starting afresh, and trains nothing.
  for name in KT_ENV:
    monkeypatch.delenv(name, raising=False)
  trained = []
  monkeypatch.setattr(train, "train", lambda *args, **kwargs: trained.append(args))
  tiny_config.train.eval_every_epochs = 0
  tiny_config.train.num_epochs = 1
  rows = tune.search(tiny_config, str(search_dir), tuner="bayesian", max_trials=MAX_TRIALS,
                     seed=SEED)
  assert not trained
  assert [r["trial"] for r in rows] == [r["trial"] for r in table]
  assert "tuner" in tune.format_table(rows, "validation_nll").splitlines()[0]


def test_process_roles_come_from_keras_tuners_variables():
  assert not tune.process_role({}).is_worker and not tune.process_role({}).is_chief
  env = {tune.TUNER_ID_ENV: "chief", tune.ORACLE_IP_ENV: "10.0.0.1",
         tune.ORACLE_PORT_ENV: "8000"}
  assert tune.process_role(env).is_chief
  role = tune.process_role(dict(env, **{tune.TUNER_ID_ENV: "tuner3"}))
  assert role.is_worker and role.address == "10.0.0.1:8000" and role.tuner_id == "tuner3"
  with pytest.raises(errors.ConfigError, match="KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT "
                     "are not set"):
    tune.process_role({tune.TUNER_ID_ENV: "tuner0"})
  with pytest.raises(errors.ConfigError, match="KERASTUNER_ORACLE_PORT is not set"):
    tune.process_role({k: v for k, v in env.items() if k != tune.ORACLE_PORT_ENV})
  with pytest.raises(errors.ConfigError, match="not a port number"):
    tune.process_role(dict(env, **{tune.ORACLE_PORT_ENV: "80a"}))
  with pytest.raises(errors.ConfigError, match="names a file"):
    tune.process_role(dict(env, **{tune.TUNER_ID_ENV: "../x"}))


def test_a_partial_environment_stops_a_search_before_it_starts(tiny_config, tmp_path,
                                                                monkeypatch):
  for name in KT_ENV:
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv(tune.TUNER_ID_ENV, "tuner1")
  with pytest.raises(errors.ConfigError, match="not set"):
    tune.search(tiny_config, str(tmp_path / "s"), tuner="random", max_trials=2)
  assert not (tmp_path / "s").exists()


def test_a_worker_whose_chief_never_answers_gives_up(tiny_config, tmp_path, monkeypatch):
  monkeypatch.setenv(tune.TUNER_ID_ENV, "tuner1")
  monkeypatch.setenv(tune.ORACLE_IP_ENV, "127.0.0.1")
  monkeypatch.setenv(tune.ORACLE_PORT_ENV, str(_free_port()))  # Nothing listens there.
  start = time.monotonic()
  with pytest.raises(errors.TuningError, match="no chief answers at 127.0.0.1:.* after 1 s"):
    tune.search(tiny_config, str(tmp_path / "s"), oracle_timeout=1)
  assert time.monotonic() - start < 10


def test_a_worker_refuses_another_search_directory_or_config(tiny_config, tmp_path,
                                                             monkeypatch):
  with socket.socket() as chief:  # Stands in for the chief: its port accepts connections.
    chief.bind(("127.0.0.1", 0))
    chief.listen()
    monkeypatch.setenv(tune.TUNER_ID_ENV, "tuner1")
    monkeypatch.setenv(tune.ORACLE_IP_ENV, "127.0.0.1")
    monkeypatch.setenv(tune.ORACLE_PORT_ENV, str(chief.getsockname()[1]))
    search_dir = tmp_path / "s"
    with pytest.raises(errors.WorkdirError, match="holds no search"):
      tune.search(tiny_config, str(search_dir), oracle_timeout=5)
    search_dir.mkdir()
    chiefs = tiny_config.copy_and_resolve_references()
    chiefs.data.manual_dir = "/elsewhere"  # May differ between machines.
    chiefs.model.activation = "relu"
    (search_dir / tune.SEARCH_FILE).write_text(json.dumps(
        {"tuner": "random", "config": json.loads(chiefs.to_json_best_effort())}))
    with pytest.raises(errors.ConfigError, match=r"differs from the chief's .* in "
                       r"config\.model\.activation;"):
      tune.search(tiny_config, str(search_dir), oracle_timeout=5)


def test_the_chief_ends_the_search_after_too_many_failed_trials_in_a_row(tiny_config,
                                                                         tmp_path):
  from keras_tuner.src import protos  # pylint: disable=g-import-not-at-top
  service = protos.get_service()

  class Aborted(Exception):
    pass

  class Context:
    """The chief's side of a gRPC request: abort raises, as gRPC's does."""

    def abort(self, code, details):
      self.aborted = (code.name, details)
      raise Aborted(details)

  tuner_obj = tune.make_tuner(tiny_config, str(tmp_path / "s"), "random", 10,
                              max_consecutive_failed_trials=2, role=tune.Role())
  oracle = tuner_obj.oracle
  servicer = tune._make_servicer(oracle)  # pylint: disable=protected-access
  # Requests are served on a thread of their own, as gRPC serves them.
  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as grpc_thread:

    def request(method, message):
      return grpc_thread.submit(getattr(servicer, method), message, Context()).result()

    trials = [keras_tuner.engine.trial.Trial.from_proto(request(
        "CreateTrial", service.CreateTrialRequest(tuner_id=tuner_id)).trial)
              for tuner_id in ("tuner1", "tuner2")]
    for trial in trials:  # Two failures in a row: the limit.
      trial.status = "FAILED"
      request("EndTrial", service.EndTrialRequest(trial=trial.to_proto()))
    assert "consecutive failures exceeded the limit of 2" in servicer.stopped_by
    # The oracle's lock is free (keras-tuner's own error would have left it held): the chief's
    # main thread sees the search is over and that no trial runs.
    done = concurrent.futures.ThreadPoolExecutor(max_workers=1).submit(
        lambda: (tune._search_over(oracle, servicer),  # pylint: disable=protected-access
                 oracle_chief.exit_chief(oracle)))
    assert done.result(timeout=10) == (True, False)  # The workers were not told yet.
    # Each worker asking for a trial now is refused, with the reason, and the chief can stop.
    for tuner_id in ("tuner1", "tuner2"):
      context = Context()
      with pytest.raises(Aborted, match="consecutive failures"):
        servicer.CreateTrial(service.CreateTrialRequest(tuner_id=tuner_id), context)
      assert context.aborted[0] == "FAILED_PRECONDITION"
    assert oracle_chief.exit_chief(oracle)
  assert [t.status for t in oracle.trials.values()] == ["FAILED", "FAILED"]
