"""Hyperparameter search over a config's `tuning.space` with keras-tuner.

Every trial is an ordinary tfgen run: the config with the trial's values set is trained by
`train.train` (the one training loop) in a workdir of its own, `SEARCH/trials/ID/`, and scored
on the validation split by `evaluate.evaluate`. The objective, minimized, is the validation NLL
(exact, or minus the IWAE bound with `config.tuning.num_importance_samples` for latent-variable
models) or minus one of the model's bounds (`config.tuning.objective`).

  * random / bayesian: each trial trains `config.train.num_epochs` epochs.
  * hyperband: the oracle hands out epoch budgets up to `config.train.num_epochs`; a trial that
    continues an earlier one starts from a copy of that trial's checkpoints, so it trains only
    the epochs in between.

With `config.tuning.include_defaults` the first trial trains the config's own values, so the
table shows what the search gained over the defaults under the same budget. Search state lives
in `SEARCH/search/` (keras-tuner's oracle) and in the trials' checkpoints: a search stopped at
any point (also by kill -9: every state file is written whole, then renamed into place) and
started again repeats no finished trial and resumes an interrupted one from its newest
checkpoint. A state file damaged otherwise (a disk crash, a hand edit) stops the search with one
line naming it; a damaged tune_record.json of a trial is ignored with a warning. A trial whose
loss becomes NaN or that runs out of memory is recorded as failed and the search goes on. At the
end the search writes `trials.csv`, a TensorBoard HParams view under `hparams/`, and
`best_config.py`, which `tfgen-train --config=` runs as it is.

A search can also run over several processes or machines, as keras-tuner runs one: its
environment variables KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT make
the process with the id `chief` serve the oracle over gRPC (it trains nothing and exits once the
search is over, after writing the reports) and every other process a worker that asks the chief
for trials and trains them on its own devices. All of them take the same SEARCH directory, which
must be one directory they all see (a shared file system across machines): workers write the
trials there and the chief reads them for its reports. See `search` and docs/tuning.md.
"""

import contextlib
import copy
import csv
import dataclasses
import gc
import io
import json
import math
import os
import pprint
import re
import shutil
import socket
import time
from typing import Dict, List, Optional

from absl import logging
import keras_tuner
import ml_collections
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp_api

from tfgen import config as config_lib
from tfgen import errors
from tfgen import evaluate
from tfgen import files
from tfgen import train
from tfgen import workdir as workdir_lib

TUNERS = ("random", "bayesian", "hyperband")
SEARCH_DIR = "search"
TRIALS_DIR = "trials"
HPARAMS_DIR = "hparams"
TABLE_CSV = "trials.csv"
BEST_CONFIG = "best_config.py"
SEARCH_FILE = "tune.json"
RECORD_FILE = "tune_record.json"
ORACLE_FILE = "oracle.json"  # keras-tuner's oracle state, in SEARCH_DIR.
TRIAL_FILE = "trial.json"  # keras-tuner's state of one trial, in SEARCH_DIR/trial_ID/.
WORKERS_DIR = "workers"  # A lock per worker id: two workers must not share one.

# keras-tuner's variables for a search over several processes.
TUNER_ID_ENV = "KERASTUNER_TUNER_ID"
ORACLE_IP_ENV = "KERASTUNER_ORACLE_IP"
ORACLE_PORT_ENV = "KERASTUNER_ORACLE_PORT"
SINGLE_TUNER_ID = "tuner0"  # keras-tuner's id of a tuner that runs a whole search itself.
# How long a worker waits for the chief: to answer at its start, and to answer each request
# later (keras-tuner's own default is an hour per request).
ORACLE_TIMEOUT_S = 600.0
# How long the chief of a search that is over waits for workers that ran trials to ask for the
# next one (and hear that there is none) before it exits without telling them. A live worker
# asks within a moment of ending its trial; one that does not has gone.
STOP_GRACE_S = 30.0
_POLL_S = 0.2


# --- The search space -----------------------------------------------------------------------


def _get_field(config: ml_collections.ConfigDict, field: str):
  node = config
  for part in field.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise errors.ConfigError(f"the search space names config field {field!r}, which the "
                               "config does not have")
    node = node[part]
  return node


def _set_field(config: ml_collections.ConfigDict, field: str, value) -> None:
  *parents, name = field.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[name] = value


def _leaves(value) -> list:
  if isinstance(value, (tuple, list)):
    return [leaf for item in value for leaf in _leaves(item)]
  return [value]


def _replace_leaves(value, new):
  """`value` with every number in its (nested) tuples replaced by `new`."""
  if isinstance(value, (tuple, list)):
    return tuple(_replace_leaves(item, new) for item in value)
  return type(value)(new) if isinstance(value, (int, float)) and not isinstance(
      value, bool) else new


def _current_value(config, name: str, spec):
  """The config's own value of hyperparameter `name` (its default in the search)."""
  leaves = _leaves(_get_field(config, spec.field))
  if not leaves or any(leaf != leaves[0] for leaf in leaves):
    raise errors.ConfigError(
        f"tuning.space.{name} sets every number of config.{spec.field}, but its values "
        f"{_get_field(config, spec.field)} differ; tune a field holding one value")
  return leaves[0]


def hyperparameters(config: ml_collections.ConfigDict) -> keras_tuner.HyperParameters:
  """Declares config.tuning.space, each with the config's own value as its default.

  Raises:
    ConfigError: an empty space, an unknown kind or field, or a config value outside its range.
  """
  space = config.tuning.space
  if not space:
    raise errors.ConfigError("config.tuning.space is empty; a config file declares its search "
                             "space with config_lib.search_float / search_int / search_choice")
  hps = keras_tuner.HyperParameters()
  for name in sorted(space):
    spec = space[name]
    if name.startswith("tuner/"):
      raise errors.ConfigError(f"hyperparameter name {name!r} is reserved by keras-tuner")
    default = _current_value(config, name, spec)
    kind = spec.get("kind")
    if kind in ("float", "int"):
      if not spec.min <= default <= spec.max or (spec.log and spec.min <= 0):
        raise errors.ConfigError(
            f"tuning.space.{name}: the config's value {default} of config.{spec.field} must lie "
            f"in [{spec.min}, {spec.max}] (and the range must be positive for log sampling)")
      sampling = "log" if spec.log else "linear"
      if kind == "float":
        hps.Float(name, spec.min, spec.max, sampling=sampling, default=float(default))
      else:
        hps.Int(name, spec.min, spec.max, step=None if spec.log else spec.step,
                sampling=sampling, default=int(default))
    elif kind == "choice":
      values = list(spec["values"])
      if default not in values:
        raise errors.ConfigError(f"tuning.space.{name}: the config's value {default!r} of "
                                 f"config.{spec.field} is not one of {values}")
      hps.Choice(name, values, default=default)
    else:
      raise errors.ConfigError(f"tuning.space.{name} has kind {kind!r}; known: float, int, "
                               "choice")
  return hps


def apply(config: ml_collections.ConfigDict, values: Dict) -> ml_collections.ConfigDict:
  """A copy of config with the hyperparameter values of a trial set in their fields."""
  config = copy.deepcopy(config)
  if config.is_locked:
    config.unlock()
  for name, spec in config.tuning.space.items():
    if name in values:
      _set_field(config, spec.field, _replace_leaves(_get_field(config, spec.field),
                                                     values[name]))
  return config


def objective_name(config: ml_collections.ConfigDict) -> str:
  objective = config.tuning.objective
  return "validation_nll" if objective == "nll" else f"validation_neg_{objective}"


def objective_value(trial_workdir: str, config: ml_collections.ConfigDict) -> float:
  """The objective of a trained run: validation NLL or a negated validation bound, in nats."""
  results = evaluate.evaluate(trial_workdir, split="validation",
                              num_importance_samples=config.tuning.num_importance_samples,
                              show_progress=False)
  objective = config.tuning.objective
  if objective == "nll":
    return float(results["nll_nats"])
  if objective not in results:
    raise errors.ConfigError(f"config.tuning.objective {objective!r} is not a bound of this "
                             "model; known: nll, " + ", ".join(
                                 k for k in ("elbo", "iwae_bound", "log_prob") if k in results))
  return -float(results[objective])


# --- The tuner ------------------------------------------------------------------------------


class _DefaultsFirst:
  """Oracle mixin: the first trial drawn trains the config's own values (the defaults)."""

  include_defaults = True

  def _random_values(self):
    defaults = {hp.name: hp.default for hp in self.hyperparameters.space}
    tried = any(all(t.hyperparameters.values.get(k) == v for k, v in defaults.items())
                for t in self.trials.values())
    if self.include_defaults and not tried:
      return defaults
    return super()._random_values()


class _WholeFiles:
  """Oracle mixin: the oracle's and its trials' state files are written whole (then renamed).

  keras-tuner truncates and rewrites them in place, so a search killed (kill -9, a lost machine)
  in the middle of a write would leave an empty or half file, from which it cannot continue.
  """

  def save(self):
    files.write_json(self._get_oracle_fname(), self.get_state())

  def _save_trial(self, trial):
    files.write_json(os.path.join(self._get_trial_dir(trial.trial_id), TRIAL_FILE),
                     trial.get_state())


class _RandomOracle(_DefaultsFirst, _WholeFiles, keras_tuner.oracles.RandomSearchOracle):
  pass


class _BayesianOracle(_DefaultsFirst, _WholeFiles,
                      keras_tuner.oracles.BayesianOptimizationOracle):
  pass


class _HyperbandOracle(_DefaultsFirst, _WholeFiles, keras_tuner.oracles.HyperbandOracle):
  pass


class _Fatal(keras_tuner.errors.FatalError):
  """Carries a user error (bad config, missing data) out of keras-tuner, which stops."""

  def __init__(self, error: errors.TfgenError):
    super().__init__(str(error))
    self.error = error


class ConfigTuner(keras_tuner.Tuner):
  """Runs each keras-tuner trial as a tfgen training run of the config with the trial's values.

  Args:
    oracle: a keras-tuner oracle whose space is `hyperparameters(config)`.
    config: the base config (with its `tuning` section).
    workdir: the search's directory.
    **kwargs: for keras_tuner.Tuner.
  """

  def __init__(self, oracle, config, workdir: str, **kwargs):
    self.base_config = config
    self.search_workdir = workdir
    self.ran = []  # (trial id, status) of the trials this tuner ran, in order.
    super().__init__(oracle=oracle, directory=workdir, project_name=SEARCH_DIR, **kwargs)

  def trial_workdir(self, trial_id: str) -> str:
    return os.path.join(self.search_workdir, TRIALS_DIR, trial_id)

  def save(self):
    # As keras-tuner's, but this tuner's file too is written whole (see _WholeFiles).
    if not self._is_worker():
      self.oracle.save()
    files.write_json(self._get_tuner_fname(), self.get_state())

  def on_trial_begin(self, trial):
    super().on_trial_begin(trial)
    if self._is_worker():  # The chief's oracle prints the search's progress; a worker its own.
      values = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(_public(
          trial.hyperparameters.values).items()))
      print(f"{self.tuner_id}: trial {trial.trial_id} starts: {values}", flush=True)

  def on_trial_end(self, trial):
    self.ran.append((trial.trial_id, str(trial.status)))
    if self._is_worker():
      record = _read_record(self.trial_workdir(trial.trial_id)) or {}
      result = (f" ({objective_name(self.base_config)} {_fmt(record['objective'])})"
                if trial.status == "COMPLETED" and "objective" in record else "")
      print(f"{self.tuner_id}: trial {trial.trial_id} {trial.status}{result}", flush=True)
    super().on_trial_end(trial)  # Reports the trial to the oracle.

  def run_trial(self, trial, *args, **kwargs):
    values = trial.hyperparameters.values
    config = apply(self.base_config, values)
    workdir = self.trial_workdir(trial.trial_id)
    if "tuner/epochs" in values:  # Hyperband's budget is the loop's epochs.
      config.train.num_epochs = int(values["tuner/epochs"])
      previous = values.get("tuner/trial_id")
      checkpoints = os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)
      if previous and not os.path.exists(checkpoints):
        # Continue the earlier trial of the same values from its newest checkpoint.
        shutil.copytree(os.path.join(self.trial_workdir(previous), workdir_lib.CHECKPOINT_DIR),
                        checkpoints)
    record = {"trial_id": trial.trial_id, "values": _public(values),
              "epochs": config.train.num_epochs, "tuner": self.tuner_id}
    start = time.perf_counter()
    try:
      result = train.train(config, workdir, show_progress=False)
      value = objective_value(workdir, config)
      if not math.isfinite(value):
        raise errors.NonFiniteLossError(f"the validation objective is {value}")
    except (errors.NonFiniteLossError, tf.errors.ResourceExhaustedError, MemoryError) as e:
      record.update(status="FAILED", seconds=time.perf_counter() - start,
                    error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
      _write_json(os.path.join(workdir, RECORD_FILE), record)
      logging.warning("trial %s failed: %s", trial.trial_id, record["error"])
      raise keras_tuner.errors.FailedTrialError(record["error"]) from e
    except errors.TfgenError as e:
      raise _Fatal(e) from e
    finally:
      gc.collect()
    record.update(status="COMPLETED", objective=value, epochs=result.epoch,
                  seconds=time.perf_counter() - start, step=result.step)
    _write_json(os.path.join(workdir, RECORD_FILE), record)
    return {objective_name(config): value}

  def save_model(self, trial_id, model, step=0):
    """Checkpoints are written by the training loop into the trial's workdir."""

  def load_model(self, trial):
    raise NotImplementedError("load a trial's model with evaluate.load_trained(trial workdir)")


def _public(values: Dict) -> Dict:
  return {k: v for k, v in values.items() if not k.startswith("tuner/")}


def _write_json(path: str, obj) -> None:
  files.write_json(path, obj, sort_keys=True)


def _read_json(path: str, workdir: str) -> Optional[Dict]:
  """A JSON object of the search's state in `workdir`, or None when the file is absent.

  Raises:
    files.DamagedFileError: the file is damaged (a disk crash, a hand edit): the search cannot
      go on from it, and says so in one line.
  """
  return files.read_json(path, dict, advice=(
      f"the search in {workdir} cannot be continued without it: restore it from a copy, or "
      "start the search afresh in another --workdir (the trained trials in "
      f"{os.path.join(workdir, TRIALS_DIR)} are kept)"))


def _read_record(trial_workdir: str) -> Optional[Dict]:
  """A trial's RECORD_FILE, or None when it has none; a damaged one is ignored with a warning
  (keras-tuner's own trial file holds the trial's status and objective too)."""
  return files.read_json_or_warn(os.path.join(trial_workdir, RECORD_FILE), dict,
                                 consequence=("ignored: keras-tuner's record of the trial "
                                              f"({SEARCH_DIR}/trial_ID/{TRIAL_FILE}) gives its "
                                              "status and objective"))


def _check_search_files(workdir: str) -> None:
  """Refuses, in one line, a search whose keras-tuner state files are damaged; keras-tuner would
  stop with a traceback when reloading them."""
  project = os.path.join(workdir, SEARCH_DIR)
  if not os.path.isdir(project):
    return
  names = sorted(n for n in os.listdir(project) if n.endswith(".json"))
  names += sorted(os.path.join(n, TRIAL_FILE) for n in os.listdir(project)
                  if n.startswith("trial_") and os.path.isdir(os.path.join(project, n)))
  for name in names:
    _read_json(os.path.join(project, name), workdir)


def make_tuner(config: ml_collections.ConfigDict, workdir: str, tuner: str, max_trials: int,
               seed: int = 0, max_consecutive_failed_trials: int = 3,
               role: Optional["Role"] = None) -> ConfigTuner:
  """A ConfigTuner over config.tuning.space, reloading the search in workdir if there is one.

  Args:
    config: the base config.
    workdir: the search's directory.
    tuner: "random", "bayesian" or "hyperband".
    max_trials: the number of trials in all.
    seed: the oracle's random seed.
    max_consecutive_failed_trials: stop after this many failed trials in a row.
    role: this process's part in the search; default: from the environment (`process_role`).
      A worker's tuner asks the chief's oracle for its trials (keras-tuner wraps its own oracle,
      which it then does not use, in a gRPC client).
  """
  if tuner not in TUNERS:
    raise errors.ConfigError(f"unknown tuner {tuner!r}; known: {', '.join(TUNERS)}")
  if max_trials < 1:
    raise errors.ConfigError(f"max_trials must be >= 1, got {max_trials}")
  role = role or process_role()
  common = dict(objective=keras_tuner.Objective(objective_name(config), direction="min"),
                hyperparameters=hyperparameters(config), seed=seed, tune_new_entries=False,
                allow_new_entries=False,
                max_consecutive_failed_trials=max_consecutive_failed_trials)
  if tuner == "random":
    oracle = _RandomOracle(max_trials=max_trials, **common)
  elif tuner == "bayesian":
    oracle = _BayesianOracle(max_trials=max_trials, **common)
  else:
    oracle = _HyperbandOracle(max_epochs=max(config.train.num_epochs, 1),
                              factor=config.tuning.hyperband_factor, **common)
    # Hyperband plans its brackets from max_epochs; max_trials caps how many trials it runs.
    oracle.max_trials = max_trials
  oracle.include_defaults = bool(config.tuning.include_defaults)
  project = os.path.join(workdir, SEARCH_DIR)
  if not role.is_worker:  # A worker reads nothing of it: the chief's oracle answers.
    _check_search_files(workdir)
  own_file = os.path.join(project, f"{role.tuner_id}.json")
  if (not role.is_worker and os.path.exists(os.path.join(project, ORACLE_FILE))
      and not os.path.exists(own_file)):
    # keras-tuner reloads the oracle only when the file of this tuner id (which holds no state)
    # exists. Without it a search begun in one process (tuner0) and continued over several
    # (chief), or the other way round, would start afresh and overwrite its trials.
    _write_json(own_file, {})
  result = ConfigTuner(oracle, config, workdir, overwrite=False)
  if not role.is_worker:
    # A reload restores the previous max_trials; the one asked for now decides.
    result.oracle.max_trials = max_trials
  return result


def search(config: ml_collections.ConfigDict, workdir: str, tuner: str = "bayesian",
           max_trials: int = 10, seed: int = 0, max_consecutive_failed_trials: int = 3,
           oracle_timeout: float = ORACLE_TIMEOUT_S) -> List[Dict]:
  """Runs (or continues) a search, or this process's part in a search over several processes.

  In one process (none of keras-tuner's KERASTUNER_* variables set) it draws and trains the
  trials itself. Over several (`process_role`), the chief serves the oracle and trains nothing
  (`_serve`), and each worker trains the trials the chief hands it until there are none left
  (`_work`). Every process takes the same workdir, seen by all of them (a shared file system
  across machines); the chief, like a search in one process, writes the reports at the end.

  Args:
    config: a tfgen config with a non-empty `tuning.space`; every process of a search takes the
      same (a worker's may differ from the chief's in `data.manual_dir` and `data.data_dir`).
    workdir: the search's directory; one holding a search of the same config and tuner is
      continued (finished trials are not repeated), raising max_trials extends it.
    tuner: "random", "bayesian" or "hyperband" (on a worker: ignored, the chief's oracle decides).
    max_trials: the number of trials in all (including those of earlier starts; worker: ignored).
    seed: the oracle's random seed (worker: ignored).
    max_consecutive_failed_trials: stop after this many failed trials in a row (worker: ignored).
    oracle_timeout: seconds a worker waits for the chief to answer, at its start and at each
      request later.

  Returns:
    The rows of the trials table (see `trial_rows`); on a worker, {"trial", "status"} of each
    trial it ran.

  Raises:
    ConfigError, DataError, WorkdirError: bad config, data, workdir or KERASTUNER_* variables.
    TuningError: no trial completed, too many failed in a row, or a worker lost the chief.
  """
  role = process_role()
  config_lib.validate(config)
  train.check_names(config)
  hyperparameters(config)  # Fails on a bad space before anything is written.
  if role.is_worker:
    return _work(config, workdir, role, oracle_timeout)
  with workdir_lib.locked(workdir):
    _check_same_search(config, workdir, tuner)
    tuner_obj = make_tuner(config, workdir, tuner, max_trials, seed,
                           max_consecutive_failed_trials, role)
    try:
      if role.is_chief:
        _serve(tuner_obj, role)
      else:
        tuner_obj.search()
    except _Fatal as e:
      raise e.error from None
    except RuntimeError as e:
      if "consecutive failures" not in str(e):
        raise
      raise errors.TuningError(_stopped_message(str(e))) from None
    finally:
      # Also after an interruption: the table shows what is done and what will resume.
      rows = trial_rows(tuner_obj)
      if rows:
        write_table(rows, os.path.join(workdir, TABLE_CSV))
        write_hparams(rows, config, os.path.join(workdir, HPARAMS_DIR))
    completed = [r for r in rows if r["status"] == "COMPLETED"]
    if not completed:
      raise errors.TuningError(f"no trial completed in {workdir!r}; see {TABLE_CSV}")
    best = min(completed, key=lambda r: r["objective"])
    write_best_config(best, config, tuner, workdir)
  return rows


def _stopped_message(error: str) -> str:
  """The one line for keras-tuner's "Number of consecutive failures exceeded the limit"."""
  return (f"the search stopped: {error.splitlines()[0]} (see {TABLE_CSV}); the space may hold "
          "settings that cannot train")


# --- Several processes: keras-tuner's chief oracle and its workers --------------------------


@dataclasses.dataclass(frozen=True)
class Role:
  """This process's part in a search, as keras-tuner's environment variables give it.

  Attributes:
    tuner_id: KERASTUNER_TUNER_ID; "tuner0" for a search in one process.
    ip: KERASTUNER_ORACLE_IP, the chief's address (the chief listens on it); None for a search
      in one process.
    port: KERASTUNER_ORACLE_PORT.
  """

  tuner_id: str = SINGLE_TUNER_ID
  ip: Optional[str] = None
  port: Optional[int] = None

  @property
  def is_chief(self) -> bool:
    # keras-tuner's own rule (distribute/utils.py), which its tuners follow.
    return self.ip is not None and "chief" in self.tuner_id

  @property
  def is_worker(self) -> bool:
    return self.ip is not None and not self.is_chief

  @property
  def address(self) -> str:
    return f"{self.ip}:{self.port}"


def process_role(environ: Optional[Dict[str, str]] = None) -> Role:
  """This process's part in a search, from KERASTUNER_TUNER_ID, _ORACLE_IP and _ORACLE_PORT.

  None of them set: a search in one process. All three: the chief (an id containing "chief")
  or a worker. keras-tuner itself would run a search in one process under an id set alone, or
  fail later with a traceback; a partial set is more likely a mistake in a job script.

  Args:
    environ: the environment; default: os.environ.

  Raises:
    ConfigError: some but not all of the three are set, or one has a value keras-tuner cannot
      use.
  """
  environ = os.environ if environ is None else environ
  names = (TUNER_ID_ENV, ORACLE_IP_ENV, ORACLE_PORT_ENV)
  if not any(name in environ for name in names):
    return Role()
  missing = [name for name in names if not environ.get(name)]
  if missing:
    raise errors.ConfigError(
        f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set, but a search "
        f"over several processes needs all of {', '.join(names)} (unset all three to search in "
        "one process)")
  tuner_id, ip, port = (environ[name] for name in names)
  if not re.fullmatch(r"[A-Za-z0-9_.-]+", tuner_id):
    raise errors.ConfigError(f"{TUNER_ID_ENV}={tuner_id!r}: an id is letters, digits, '_', '.' "
                             "and '-' (it names a file); 'chief' for the chief, e.g. 'tuner0', "
                             "'tuner1', ... for the workers")
  if not port.isdigit() or not 0 < int(port) < 65536:
    raise errors.ConfigError(f"{ORACLE_PORT_ENV}={port!r} is not a port number (1-65535)")
  return Role(tuner_id, ip, int(port))


@keras_tuner.synchronized
def _search_over(oracle, servicer) -> bool:
  """Whether the chief's oracle hands out no more trials (with the oracle's lock held)."""
  if servicer.stop_triggered or servicer.stopped_by:
    return True
  # A search that was over before the chief started: no worker will be told so.
  return bool(oracle.max_trials) and len(oracle.trials) >= oracle.max_trials and not any(
      str(t.status) == "RUNNING" for t in oracle.trials.values())


def _make_servicer(oracle):
  """keras-tuner's gRPC servicer of an oracle, which ends the search on too many failures.

  keras-tuner's oracle raises its "consecutive failures" error inside the request that ends a
  trial. A chief would only pass it on to that worker as an opaque gRPC error, and its
  `synchronized` decorator, which releases the oracle's lock only when the method returns,
  would leave the lock held, so the chief would hang. Here the oracle only records why the
  search stopped, ends the trial as usual, and every worker that asks for a trial afterwards is
  refused with that reason (FAILED_PRECONDITION, which it reports in one line); the chief stops
  once the running trials are in.
  """
  import grpc  # pylint: disable=g-import-not-at-top
  from keras_tuner.src.distribute import oracle_chief  # pylint: disable=g-import-not-at-top

  class Servicer(oracle_chief.OracleServicer):
    """keras-tuner's OracleServicer with `stopped_by`: why the search stopped early, if it did."""

    def __init__(self, oracle):
      super().__init__(oracle)
      self.stopped_by = None
      check = oracle._check_consecutive_failures  # pylint: disable=protected-access

      def record_instead_of_raising():
        try:
          check()
        except RuntimeError as e:
          self.stopped_by = self.stopped_by or str(e).splitlines()[0]

      # pylint: disable-next=protected-access
      oracle._check_consecutive_failures = record_instead_of_raising

    def CreateTrial(self, request, context):  # pylint: disable=invalid-name
      if self.stopped_by and request.tuner_id not in self.oracle.ongoing_trials:
        # (A worker started again with a trial of its own running gets it back to finish.)
        self.oracle.tuner_ids.discard(request.tuner_id)
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, _stopped_message(self.stopped_by))
      return super().CreateTrial(request, context)

    def EndTrial(self, request, context):  # pylint: disable=invalid-name
      response = super().EndTrial(request, context)
      # The oracle saved its state before it let the trial go; saved again without it, as a
      # tuner in one process does after each trial, a restarted chief does not hand the
      # finished trial out again.
      self.oracle.save()
      return response

  return Servicer(oracle)


def _return_interrupted_trials(tuner_obj: ConfigTuner) -> None:
  """Gives the trials that were running when the chief last stopped back to their workers.

  keras-tuner's oracle, reloaded, queues them for whichever tuner asks first. That suits one
  process, but a chief started again while its workers run would hand a trial that one worker
  is still training to another, which would find the trial's workdir locked and stop. Kept with
  the worker that ran it, a trial is finished by that worker if it still runs, or resumed from
  its checkpoint by the worker started again with the same id.
  """
  oracle = tuner_obj.oracle
  saved = _read_json(os.path.join(tuner_obj.search_workdir, SEARCH_DIR, ORACLE_FILE),
                     tuner_obj.search_workdir) or {}
  queue = getattr(oracle, "_retry_queue", [])  # keras-tuner 1.4's queue of trials to run again.
  for tuner_id, trial_id in saved.get("ongoing_trials", {}).items():
    if trial_id in queue and trial_id in oracle.trials:
      queue.remove(trial_id)
      oracle.ongoing_trials[tuner_id] = oracle.trials[trial_id]


def _serve(tuner_obj: ConfigTuner, role: Role) -> None:
  """Serves the chief's oracle to the workers until the search is over; trains nothing.

  keras-tuner's own chief (BaseTuner.search) checks whether its workers are done only every 20
  seconds, and waits forever for a worker that was handed trials and died; this one checks five
  times a second and gives such workers STOP_GRACE_S once no trial is running any more.

  Raises:
    TuningError: the address cannot be listened on, or too many trials failed in a row.
  """
  from concurrent import futures  # pylint: disable=g-import-not-at-top
  import grpc  # pylint: disable=g-import-not-at-top
  from keras_tuner.src import protos  # pylint: disable=g-import-not-at-top
  from keras_tuner.src.distribute import oracle_chief  # pylint: disable=g-import-not-at-top

  oracle = tuner_obj.oracle
  servicer = _make_servicer(oracle)
  # One request at a time, as in keras-tuner's chief: the oracle's methods are not reentrant.
  # gRPC would share the port with another server that also allows it (SO_REUSEPORT, its
  # default on Linux), so two chiefs would split one search's workers between them.
  server = grpc.server(futures.ThreadPoolExecutor(max_workers=1),
                       options=[("grpc.so_reuseport", 0)])
  protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
  cannot_listen = (f"the chief cannot listen on {role.address} ({ORACLE_IP_ENV}, "
                   f"{ORACLE_PORT_ENV})")
  try:
    # Tried first with a socket of our own: gRPC would also log its own error lines.
    family, kind, proto, _, address = socket.getaddrinfo(
        role.ip, role.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind, proto) as probe:
      probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # As gRPC binds.
      probe.bind(address)
  except OSError as e:
    raise errors.TuningError(f"{cannot_listen}: {e.strerror or e}; the port must be free and "
                             "the address one of this machine's") from None
  try:
    bound = server.add_insecure_port(role.address)
  except RuntimeError:  # Newer gRPC raises instead of returning 0.
    bound = 0
  if not bound:
    raise errors.TuningError(f"{cannot_listen}: the port is in use, or the address is not one "
                             "of this machine's")
  _return_interrupted_trials(tuner_obj)
  tuner_obj.save()  # As keras-tuner's chief does: the oracle's state, also for a restart.
  server.start()
  print(f"chief: serving the search in {tuner_obj.search_workdir} at {role.address} to the "
        f"workers ({oracle.max_trials} trials in all)", flush=True)
  for tuner_id, trial in sorted(oracle.ongoing_trials.items()):
    print(f"chief: trial {trial.trial_id} was running on {tuner_id} and stays with it: a worker "
          f"{tuner_id} that still runs finishes it, one started again resumes it", flush=True)
  started = time.monotonic()
  # A search that is over already is served for STOP_GRACE_S all the same, so that the workers
  # started with the chief hear that there is nothing to do rather than find no chief.
  over_before = _search_over(oracle, servicer)
  try:
    idle_since = None
    while True:
      time.sleep(_POLL_S)
      if not _search_over(oracle, servicer):
        continue
      if oracle_chief.exit_chief(oracle):  # No trial runs, every worker was told to stop.
        if not over_before or time.monotonic() - started >= STOP_GRACE_S:
          break
        continue
      if oracle.ongoing_trials:  # Wait for the running trials, however long they take.
        idle_since = None
        continue
      idle_since = idle_since or time.monotonic()
      if time.monotonic() - idle_since > STOP_GRACE_S:
        logging.warning("the search is over, but workers %s did not ask for another trial "
                        "within %g s; exiting without them", sorted(oracle.tuner_ids),
                        STOP_GRACE_S)
        break
  finally:
    # The grace lets the answer that told the last worker to stop reach it.
    server.stop(grace=2).wait()
    tuner_obj.save()
  if servicer.stopped_by:
    raise errors.TuningError(_stopped_message(servicer.stopped_by))


def _wait_for_chief(role: Role, timeout: float) -> None:
  """Waits until the chief's port accepts connections.

  A plain TCP probe rather than a gRPC channel: a channel that fails while the chief is still
  starting backs off exponentially and would connect many seconds after the chief is up.

  Raises:
    TuningError: nothing accepts connections there within `timeout` seconds.
  """
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((role.ip, role.port), timeout=min(5.0, timeout)):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise errors.TuningError(
            f"no chief answers at {role.address} ({ORACLE_IP_ENV}, {ORACLE_PORT_ENV}) after "
            f"{timeout:g} s ({e.strerror or e}); start tfgen-tune with {TUNER_ID_ENV}=chief "
            "there (a finished search's chief has exited)") from None
      time.sleep(0.5)


def _comparable(config_json: Dict) -> Dict:
  """A config as JSON without the fields that may differ between machines: data locations."""
  config_json = copy.deepcopy(config_json)
  for field in ("manual_dir", "data_dir"):
    config_json.get("data", {}).pop(field, None)
  return config_json


def _first_difference(a, b, prefix: str = "") -> str:
  if isinstance(a, dict) and isinstance(b, dict):
    for key in sorted(set(a) | set(b)):
      if a.get(key) != b.get(key):
        return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
  return prefix.rstrip(".")


def _check_worker_config(config: ml_collections.ConfigDict, workdir: str, role: Role) -> None:
  """Refuses a worker whose workdir is not the chief's, or whose config differs from the chief's.

  Raises:
    WorkdirError: workdir holds no search (the chief writes SEARCH_FILE before it serves).
    ConfigError: the config differs in a field other than the data locations.
  """
  saved = _read_json(os.path.join(workdir, SEARCH_FILE), workdir)
  if saved is None:
    raise errors.WorkdirError(
        f"the chief answers at {role.address}, but {workdir!r} holds no search ({SEARCH_FILE}): "
        "every process of a search takes the chief's --workdir, a directory all of them see at "
        "the same path (a shared file system across machines)")
  chief = _comparable(saved["config"])
  mine = _comparable(json.loads(config.to_json_best_effort()))
  if chief != mine:
    raise errors.ConfigError(
        f"this worker's config differs from the chief's (in {workdir}/{SEARCH_FILE}) in "
        f"config.{_first_difference(chief, mine)}; give every process the same --config and "
        "overrides (data.manual_dir and data.data_dir may differ)")


class _ChiefOracle:
  """A worker's view of the chief's oracle: keras-tuner's OracleClient, with one-line errors.

  A gRPC error becomes a TuningError (as keras-tuner's FatalError, which its search loop does
  not record as a failed trial but passes on), and a trial the oracle cannot hand out yet
  (IDLE: Hyperband waiting for other workers' trials) is asked for again after a second rather
  than at once, which keras-tuner's loop would do as fast as the network allows.
  """

  def __init__(self, client, role: Role, timeout: float):
    self._client = client
    self._role = role
    self._timeout = timeout

  def _error(self, error) -> errors.TuningError:
    import grpc  # pylint: disable=g-import-not-at-top
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else "") or str(error)
    details = details.splitlines()[0] if details else ""
    if code == grpc.StatusCode.FAILED_PRECONDITION:  # The chief stopped the search.
      return errors.TuningError(f"the chief at {self._role.address} ended the search: {details}")
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
      return errors.TuningError(
          f"lost the chief at {self._role.address}: no answer within {self._timeout:g} s; this "
          f"worker's trial keeps its checkpoints and resumes when the worker is started again "
          f"(same {TUNER_ID_ENV}) while the chief runs")
    return errors.TuningError(f"the chief at {self._role.address} failed: "
                              f"{getattr(code, 'name', code)}: {details}")

  def __getattr__(self, name):
    import grpc  # pylint: disable=g-import-not-at-top
    attribute = getattr(self._client, name)
    if not callable(attribute):
      return attribute

    def call(*args, **kwargs):
      try:
        result = attribute(*args, **kwargs)
      except grpc.RpcError as e:
        raise _Fatal(self._error(e)) from None
      if name == "create_trial" and str(result.status) == "IDLE":
        time.sleep(1.0)
      return result

    return call


def _work(config: ml_collections.ConfigDict, workdir: str, role: Role,
          oracle_timeout: float) -> List[Dict]:
  """A worker: trains the trials the chief hands it, on this process's devices, until none are left.

  Returns:
    {"trial", "status"} of each trial this worker ran.
  """
  # keras-tuner imports its gRPC modules only for a search over several processes.
  from keras_tuner.src.distribute import oracle_client  # pylint: disable=g-import-not-at-top
  _wait_for_chief(role, oracle_timeout)
  _check_worker_config(config, workdir, role)
  with contextlib.ExitStack() as stack:
    try:
      stack.enter_context(workdir_lib.locked(os.path.join(workdir, WORKERS_DIR, role.tuner_id)))
    except errors.WorkdirError:
      raise errors.WorkdirError(f"another worker with {TUNER_ID_ENV}={role.tuner_id} works on "
                                f"the search in {workdir!r}; give every worker its own id"
                                ) from None
    # keras-tuner's client waits up to an hour for every answer; a worker waits oracle_timeout.
    saved_timeout = oracle_client.TIMEOUT
    oracle_client.TIMEOUT = oracle_timeout
    try:
      tuner_obj = make_tuner(config, workdir, "random", 1, role=role)
      tuner_obj.oracle = _ChiefOracle(tuner_obj.oracle, role, oracle_timeout)
      tuner_obj.search()
    except _Fatal as e:
      raise e.error from None
    finally:
      oracle_client.TIMEOUT = saved_timeout
  return [{"trial": trial_id, "status": status} for trial_id, status in tuner_obj.ran]


def _check_same_search(config, workdir: str, tuner: str) -> None:
  """Refuses to continue a search of another config or tuner in the same workdir.

  A search none of whose trials finished (it crashed or was stopped before its first result)
  holds nothing worth keeping, so another tuner or config starts afresh there instead.
  """
  path = os.path.join(workdir, SEARCH_FILE)
  current = {"tuner": tuner, "config": json.loads(config.to_json_best_effort())}
  saved = _read_json(path, workdir)
  if saved is not None and saved != current:
    if saved.get("tuner") == tuner and _same_config(saved.get("config"), config):
      return
    what = "tuner" if saved.get("tuner") != tuner else "config"
    finished = _finished_trials(workdir)
    if finished:
      raise errors.WorkdirError(
          f"{workdir!r} holds a search with another {what} and {len(finished)} finished "
          "trial(s); continue it with the same command or use another --workdir")
    logging.warning("no trial of the search in %s (tuner %s) finished; removing it to start "
                    "afresh with another %s", workdir, saved.get("tuner"), what)
    _remove_search(workdir)
    saved = None
  if saved is None:
    _write_json(path, current)


def _same_config(saved, config: ml_collections.ConfigDict) -> bool:
  """Whether a search's saved config is `config`, but for fields added to tfgen since the search
  began that keep their defaults (the behaviour its trials were trained with), as a resumed
  training run takes them (`config.check_resume`)."""
  if not isinstance(saved, dict):
    return False
  try:
    return not config_lib.check_resume(ml_collections.ConfigDict(saved), config, "")
  except (errors.ConfigError, TypeError, ValueError):
    return False


def _finished_trials(workdir: str) -> List[str]:
  """Ids of the trials in workdir whose record says they completed or failed."""
  trials = os.path.join(workdir, TRIALS_DIR)
  finished = []
  for trial_id in sorted(os.listdir(trials)) if os.path.isdir(trials) else []:
    record = _read_record(os.path.join(trials, trial_id))
    if record and record.get("status") in ("COMPLETED", "FAILED"):
      finished.append(trial_id)
  return finished


def _remove_search(workdir: str) -> None:
  """Removes a search's state (oracle, trials, reports), leaving the workdir and its lock."""
  for name in (SEARCH_DIR, TRIALS_DIR, HPARAMS_DIR):
    shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
  for name in (SEARCH_FILE, TABLE_CSV, BEST_CONFIG):
    try:
      os.remove(os.path.join(workdir, name))
    except FileNotFoundError:
      pass


# --- Reporting ------------------------------------------------------------------------------


def trial_rows(tuner_obj: ConfigTuner) -> List[Dict]:
  """One row per trial: id, status, objective, epochs, seconds, tuner, hyperparameters, error."""
  names = sorted(tuner_obj.base_config.tuning.space)
  defaults = {hp.name: hp.default for hp in tuner_obj.oracle.hyperparameters.space}
  rows = []
  for trial_id in sorted(tuner_obj.oracle.trials, key=int):
    trial = tuner_obj.oracle.trials[trial_id]
    record = _read_record(tuner_obj.trial_workdir(trial_id)) or {}
    values = trial.hyperparameters.values
    status = str(trial.status)
    if status == "RUNNING":
      status = "INTERRUPTED"  # It resumes from its checkpoint when the search starts again.
    row = {"trial": trial_id, "status": status,
           # keras-tuner's score of the trial, when tfgen's record of it is lost.
           "objective": record.get("objective", trial.score) if status == "COMPLETED" else None,
           "epochs": record.get("epochs", values.get("tuner/epochs")),
           "seconds": record.get("seconds"),
           # The tuner (worker) that trained it: tuner0 in a search in one process.
           "tuner": record.get("tuner"),
           "defaults": all(values.get(k) == v for k, v in defaults.items())}
    row.update({name: values.get(name) for name in names})
    row["continues"] = values.get("tuner/trial_id")
    error = record.get("error", "")
    if not error and trial.message and status != "COMPLETED":
      # An unexpected exception: keras-tuner kept its traceback; its last line names it.
      error = [line for line in trial.message.splitlines() if line.strip()][-1]
    row["error"] = error
    rows.append(row)
  return rows


def _fmt(value) -> str:
  if value is None:
    return "-"
  if isinstance(value, bool):
    return "yes" if value else ""
  if isinstance(value, float):
    return f"{value:.4g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4f}".rstrip(
        "0").rstrip(".")
  return str(value)


def format_table(rows: List[Dict], objective: str) -> str:
  """The trials as an aligned text table, best objective first."""
  if not rows:
    return "(no trials)"
  # The tuner column only where several tuners (workers) trained the trials.
  several = len({r.get("tuner") for r in rows if r.get("tuner")}) > 1
  columns = [c for c in rows[0] if c not in ("error", "continues") and (c != "tuner" or several)]
  header = [objective if c == "objective" else c for c in columns]
  order = sorted(rows, key=lambda r: (r["objective"] is None, r["objective"] or 0, r["trial"]))
  body = [[_fmt(r[c]) for c in columns] for r in order]
  widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(header)]
  lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
  lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths)) for line in body]
  for r in order:
    if r["error"]:
      lines.append(f"trial {r['trial']} {r['status'].lower()}: {r['error']}")
  return "\n".join(lines)


def write_table(rows: List[Dict], path: str) -> None:
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
  writer.writeheader()
  writer.writerows(rows)
  files.write_text(path, buffer.getvalue())


def write_hparams(rows: List[Dict], config: ml_collections.ConfigDict, logdir: str) -> None:
  """A TensorBoard HParams view of every trial (rewritten whole, so reruns add no duplicates)."""
  shutil.rmtree(logdir, ignore_errors=True)
  space = config.tuning.space
  hparams = {}
  for name in sorted(space):
    spec = space[name]
    if spec.kind == "float":
      domain = hp_api.RealInterval(float(spec.min), float(spec.max))
    elif spec.kind == "int":
      domain = hp_api.IntInterval(int(spec.min), int(spec.max))
    else:
      domain = hp_api.Discrete(list(spec["values"]))
    hparams[name] = hp_api.HParam(name, domain)
  hparams["status"] = hp_api.HParam("status", hp_api.Discrete(
      ["COMPLETED", "FAILED", "INVALID", "INTERRUPTED"]))
  metric = objective_name(config)
  with tf.summary.create_file_writer(logdir).as_default():
    hp_api.hparams_config(hparams=list(hparams.values()), metrics=[
        hp_api.Metric(metric, display_name=f"{metric} (nats, lower is better)"),
        hp_api.Metric("epochs"), hp_api.Metric("seconds", display_name="wall seconds")])
  for row in rows:
    with tf.summary.create_file_writer(os.path.join(logdir, f"trial_{row['trial']}")).as_default():
      values = {hparams[n]: row[n] for n in hparams if row.get(n) is not None}
      hp_api.hparams(values, trial_id=row["trial"])
      step = int(row["epochs"] or 0)
      if row["objective"] is not None:
        tf.summary.scalar(metric, row["objective"], step=step)
      if row["seconds"] is not None:
        tf.summary.scalar("seconds", row["seconds"], step=step)
      tf.summary.scalar("epochs", step, step=step)


def _tuples(value):
  """JSON lists back to the tuples tfgen configs hold."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def write_best_config(best: Dict, config: ml_collections.ConfigDict, tuner: str,
                      workdir: str) -> str:
  """Writes the best trial's full config as a config file for tfgen-train; returns its path."""
  trial_dir = os.path.join(workdir, TRIALS_DIR, best["trial"])
  trained = config_lib.load_from_workdir(trial_dir)
  for field in ("manual_dir", "data_dir"):  # Runnable from any directory.
    if trained.data[field]:
      trained.data[field] = os.path.abspath(trained.data[field])
  literal = pprint.pformat(_tuples(trained.to_dict()), indent=2, width=96, sort_dicts=True)
  values = ", ".join(f"{k}={_fmt(best[k])}" for k in sorted(config.tuning.space))
  path = os.path.join(workdir, BEST_CONFIG)
  text = f'''r"""The best trial of a tfgen-tune search ({tuner}) in {os.path.abspath(workdir)}.

Trial {best["trial"]}: {values}
{objective_name(config)} = {best["objective"]:.4f} nats after {best["epochs"]} epochs
(trials.csv holds every trial). Run it as it is:

  tfgen-train --config={os.path.abspath(path)} --workdir=/tmp/best
"""

import ml_collections


def get_config():
  return ml_collections.ConfigDict(
{literal})
'''
  files.write_text(path, text)
  return path
