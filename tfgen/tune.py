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
any point and started again repeats no finished trial and resumes an interrupted one from its
newest checkpoint. A trial whose loss becomes NaN or that runs out of memory is recorded as
failed and the search goes on. At the end the search writes `trials.csv`, a TensorBoard HParams
view under `hparams/`, and `best_config.py`, which `tfgen-train --config=` runs as it is.
"""

import copy
import csv
import gc
import io
import json
import math
import os
import pprint
import shutil
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


class _RandomOracle(_DefaultsFirst, keras_tuner.oracles.RandomSearchOracle):
  pass


class _BayesianOracle(_DefaultsFirst, keras_tuner.oracles.BayesianOptimizationOracle):
  pass


class _HyperbandOracle(_DefaultsFirst, keras_tuner.oracles.HyperbandOracle):
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
    super().__init__(oracle=oracle, directory=workdir, project_name=SEARCH_DIR, **kwargs)

  def trial_workdir(self, trial_id: str) -> str:
    return os.path.join(self.search_workdir, TRIALS_DIR, trial_id)

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
              "epochs": config.train.num_epochs}
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
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)


def _read_json(path: str) -> Optional[Dict]:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def make_tuner(config: ml_collections.ConfigDict, workdir: str, tuner: str, max_trials: int,
               seed: int = 0, max_consecutive_failed_trials: int = 3) -> ConfigTuner:
  """A ConfigTuner over config.tuning.space, reloading the search in workdir if there is one."""
  if tuner not in TUNERS:
    raise errors.ConfigError(f"unknown tuner {tuner!r}; known: {', '.join(TUNERS)}")
  if max_trials < 1:
    raise errors.ConfigError(f"max_trials must be >= 1, got {max_trials}")
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
  result = ConfigTuner(oracle, config, workdir, overwrite=False)
  # A reload restores the previous max_trials; the one asked for now decides.
  result.oracle.max_trials = max_trials
  return result


def search(config: ml_collections.ConfigDict, workdir: str, tuner: str = "bayesian",
           max_trials: int = 10, seed: int = 0,
           max_consecutive_failed_trials: int = 3) -> List[Dict]:
  """Runs (or continues) a search and writes its table, HParams view and best config.

  Args:
    config: a tfgen config with a non-empty `tuning.space`.
    workdir: the search's directory; one holding a search of the same config and tuner is
      continued (finished trials are not repeated), raising max_trials extends it.
    tuner: "random", "bayesian" or "hyperband".
    max_trials: the number of trials in all (including those of earlier starts).
    seed: the oracle's random seed.
    max_consecutive_failed_trials: stop after this many failed trials in a row.

  Returns:
    The rows of the trials table (see `trial_rows`).

  Raises:
    ConfigError, DataError, WorkdirError: bad config, data or workdir.
    TuningError: no trial completed, or too many failed in a row.
  """
  config_lib.validate(config)
  train.check_names(config)
  hyperparameters(config)  # Fails on a bad space before anything is written.
  with workdir_lib.locked(workdir):
    _check_same_search(config, workdir, tuner)
    tuner_obj = make_tuner(config, workdir, tuner, max_trials, seed,
                           max_consecutive_failed_trials)
    try:
      tuner_obj.search()
    except _Fatal as e:
      raise e.error from None
    except RuntimeError as e:
      if "consecutive failures" not in str(e):
        raise
      raise errors.TuningError(f"the search stopped: {str(e).splitlines()[0]} (see "
                               f"{TABLE_CSV}); the space may hold settings that cannot train"
                               ) from None
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


def _check_same_search(config, workdir: str, tuner: str) -> None:
  """Refuses to continue a search of another config or tuner in the same workdir.

  A search none of whose trials finished (it crashed or was stopped before its first result)
  holds nothing worth keeping, so another tuner or config starts afresh there instead.
  """
  path = os.path.join(workdir, SEARCH_FILE)
  current = {"tuner": tuner, "config": json.loads(config.to_json_best_effort())}
  saved = _read_json(path)
  if saved is not None and saved != current:
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


def _finished_trials(workdir: str) -> List[str]:
  """Ids of the trials in workdir whose record says they completed or failed."""
  trials = os.path.join(workdir, TRIALS_DIR)
  finished = []
  for trial_id in sorted(os.listdir(trials)) if os.path.isdir(trials) else []:
    try:
      record = _read_json(os.path.join(trials, trial_id, RECORD_FILE))
    except (OSError, ValueError):  # A half-written record: that trial did not finish.
      record = None
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
  """One row per trial: id, status, objective, epochs, seconds, hyperparameters, error."""
  names = sorted(tuner_obj.base_config.tuning.space)
  defaults = {hp.name: hp.default for hp in tuner_obj.oracle.hyperparameters.space}
  rows = []
  for trial_id in sorted(tuner_obj.oracle.trials, key=int):
    trial = tuner_obj.oracle.trials[trial_id]
    record = _read_json(os.path.join(tuner_obj.trial_workdir(trial_id), RECORD_FILE)) or {}
    values = trial.hyperparameters.values
    status = str(trial.status)
    if status == "RUNNING":
      status = "INTERRUPTED"  # It resumes from its checkpoint when the search starts again.
    row = {"trial": trial_id, "status": status,
           "objective": record.get("objective") if status == "COMPLETED" else None,
           "epochs": record.get("epochs", values.get("tuner/epochs")),
           "seconds": record.get("seconds"),
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
  columns = [c for c in rows[0] if c not in ("error", "continues")]
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
  with open(path + ".tmp", "w", encoding="utf-8", newline="") as f:
    f.write(buffer.getvalue())
  os.replace(path + ".tmp", path)


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
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(path + ".tmp", path)
  return path
