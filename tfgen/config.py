"""Fields every tfgen config shares, their validation, and configs saved in a workdir.

Every config file under `configs/` starts from `base_config()` so that every model is driven the
same way: `config.seed`, `config.data.*`, `config.model.name`, `config.train.*`, `config.eval.*`.
"""

import difflib
import importlib.util
import json
import os
import time
from typing import Optional

import ml_collections

from tfgen import errors
from tfgen import files

CONFIG_FILE = "config.json"
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def load_file(spec: str) -> ml_collections.ConfigDict:
  """get_config(VARIANT) of the config file in "FILE[:VARIANT]" (get_config() without one)."""
  path, _, variant = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("tfgen_config_file", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


def base_config() -> ml_collections.ConfigDict:
  """The shared fields with their defaults; a model's config file fills in `model`."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.name = "binarized_mnist"
  # Folder of the data set's original files, handed to TFDS as DownloadConfig(manual_dir=...);
  # empty means $TFGEN_MANUAL_DIR, else let TFDS download.
  config.data.manual_dir = ""
  # Where TFDS keeps prepared data sets; empty means TFDS's default (~/tensorflow_datasets).
  config.data.data_dir = ""
  # "" keeps the data set's own protocol: fixed for binarized_mnist, dynamic for grey-scale sets.
  config.data.binarization = ""
  # Validation images held out of `train` for sets without a validation split.
  config.data.num_validation = 10000
  # Use only the first `limit` examples of every split (0: all); for tests and smoke runs.
  config.data.limit = 0
  # Semi-supervised training (tfgen/data/pipeline.py): keep the labels of only `num_labels`
  # training images (0: every label is kept), num_labels / classes per class, chosen with
  # `label_seed`; every training batch holds `labelled_per_batch` of them.
  config.data.num_labels = 0
  config.data.labelled_per_batch = 10
  config.data.label_seed = 0
  # Hold the training set in variables and build each batch inside the compiled train call
  # (tfgen/data/in_graph.py) instead of a tf.data iterator: faster where the set fits (up to
  # 1 GiB); semi-supervised batches always use tf.data. The two draw different example orders.
  config.data.in_graph = True
  # Your own images (docs/data.md): data.name "folder" (a folder of image files), "arrays" (an
  # .npz file) or "tfds:NAME" / "tfds:NAME/CONFIG" (any TFDS image data set).
  # The folder or .npz file.
  config.data.path = ""
  # Every image resized (aspect kept) and centre-cropped to "H" or "HxW" pixels; "" keeps the
  # images' own size, which must then be the same for all.
  config.data.image_size = ""
  # 1 (grey) or 3 (RGB); 0 infers it from the images (3 if any is in colour).
  config.data.channels = 0
  # A folder without train/, validation/ (or valid/) and test/ sub-folders is split by a hash of
  # each file's path relative to the folder, in these fractions of train, validation, test.
  config.data.split_fractions = (0.8, 0.1, 0.1)
  # An unreadable, truncated or non-image file: "fail" (naming it) or "skip" (counted, and listed
  # in WORKDIR/skipped_images.txt).
  config.data.on_bad_image = "fail"
  # Where a prepared folder is cached; "" is tfgen_folders/ in TFDS's data folder
  # (config.data.data_dir, or ~/tensorflow_datasets).
  config.data.cache_dir = ""
  # tfds:NAME: the image and label features and the split of each of train, validation, test
  # ("train=train[:90%],validation=train[90%:],test=test"); "" infers them from TFDS's info.
  config.data.image_key = ""
  config.data.label_key = ""
  config.data.tfds_splits = ""

  config.model = ml_collections.ConfigDict()
  config.model.name = ""

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 100
  config.train.num_epochs = 100
  # Stop after this many epochs (0: train all num_epochs) while every schedule still runs to
  # num_epochs: a long schedule trained in parts, resumed later with a larger value or 0.
  config.train.stop_after_epochs = 0
  config.train.optimizer = "adam"
  config.train.learning_rate = 1e-3
  # "constant", "exponential" (decays to learning_rate * final_learning_rate_factor by the last
  # epoch), "cosine", or "iwae" (the IWAE paper's 3^i epochs at 1e-3 * 10^(-i/7), i = 0..7).
  config.train.schedule = "constant"
  config.train.final_learning_rate_factor = 0.1
  config.train.adam_beta_1 = 0.9
  config.train.adam_beta_2 = 0.999
  config.train.adam_epsilon = 1e-4
  config.train.momentum = 0.9  # RMSprop with Nesterov momentum.
  config.train.adagrad_initial_accumulator = 0.0
  config.train.adagrad_epsilon = 1e-6
  config.train.rho = 0.9
  config.train.checkpoint_every_epochs = 10
  config.train.max_checkpoints_to_keep = 3
  # Train steps run per call of the compiled train function (fewer Python round trips): at most
  # this many, and fewer when the steps are slow, so that a call lasts about
  # `seconds_per_call` (measured as the run goes; 0: always steps_per_execution). Ctrl-C and
  # SIGTERM stop the run after the call in flight, so this bounds the time a stop takes, within
  # a scheduler's grace period (30 s for Kubernetes and Slurm) before its SIGKILL.
  config.train.steps_per_execution = 50
  config.train.seconds_per_call = 5.0
  # Validation bounds each this many epochs (0: never).
  config.train.eval_every_epochs = 5
  # Early stopping (0: off): stop once this many epochs pass without a better validation figure
  # (the model's `selection_metrics`) and keep the best epoch's weights in WORKDIR/best/, which
  # evaluation, sampling and export then use (tfgen/early_stopping.py). Needs validation.
  config.train.early_stopping_epochs = 0
  # XLA (`jit_compile`) for the train step's loss and gradients and for the validation bounds.
  # Every registered model compiles (tests/test_xla_precision.py); a config turns it on where
  # bench/loop_speed.py measured it faster.
  config.train.jit_compile = False
  # "float32", or "mixed_bfloat16" / "mixed_float16": layers compute in 16 bits while weights,
  # optimizer state, likelihoods and losses stay float32 (float16 adds dynamic loss scaling).
  config.train.precision = "float32"

  config.eval = ml_collections.ConfigDict()
  config.eval.num_importance_samples = 5000
  config.eval.batch_size = 100
  # Importance samples drawn at once per example; bounds memory whatever num_importance_samples.
  config.eval.chunk_size = 500
  config.eval.split = "test"
  # XLA for tfgen-evaluate's per-batch terms (the k-sample bounds and log_prob).
  config.eval.jit_compile = False

  # tfgen-tune (docs/tuning.md). `space` maps hyperparameter names to the specs that
  # search_float / search_int / search_choice below make, each naming the config field it sets.
  config.tuning = ml_collections.ConfigDict()
  # "nll": validation NLL (exact, or minus the IWAE bound with num_importance_samples for
  # latent-variable models, the same k for every trial); or the name of one of the model's
  # bounds (e.g. "elbo"), minimized as its negative.
  config.tuning.objective = "nll"
  config.tuning.num_importance_samples = 100
  # The first trial trains the config's own values, so every search reports the defaults'
  # objective under the same budget.
  config.tuning.include_defaults = True
  config.tuning.hyperband_factor = 3
  config.tuning.space = ml_collections.ConfigDict()
  return config


def search_float(field: str, low: float, high: float,
                 log: bool = False) -> ml_collections.ConfigDict:
  """A real hyperparameter in [low, high] (log-uniform with log=True) for config field `field`.

  `field` is a dotted path such as "train.learning_rate". Where the field holds a (nested) tuple,
  e.g. model.hidden_sizes = ((200, 200),), the drawn value replaces every number in it.
  """
  return ml_collections.ConfigDict(dict(kind="float", field=field, min=float(low),
                                        max=float(high), log=bool(log)))


def search_int(field: str, low: int, high: int, step: int = 1,
               log: bool = False) -> ml_collections.ConfigDict:
  """An integer hyperparameter in [low, high] for config field `field` (see search_float)."""
  return ml_collections.ConfigDict(dict(kind="int", field=field, min=int(low), max=int(high),
                                        step=int(step), log=bool(log)))


def search_choice(field: str, values) -> ml_collections.ConfigDict:
  """A hyperparameter taking one of `values` for config field `field` (see search_float)."""
  return ml_collections.ConfigDict(dict(kind="choice", field=field, values=tuple(values)))


def decaying_adam(config: ml_collections.ConfigDict, batch_size: int, num_epochs: int,
                  checkpoint_every_epochs: int = 5) -> None:
  """Adam at 1e-3 decayed exponentially to 1e-4 by the last epoch; the configs' common setting."""
  train = config.train
  train.batch_size = batch_size
  train.num_epochs = num_epochs
  train.learning_rate = 1e-3
  train.schedule = "exponential"
  train.final_learning_rate_factor = 0.1
  train.checkpoint_every_epochs = checkpoint_every_epochs
  train.eval_every_epochs = checkpoint_every_epochs


def make_tiny(config: ml_collections.ConfigDict, limit: int = 256,
              steps_per_execution: int = 4) -> None:
  """Shrinks the data and the schedule of a config for tests on a CPU (models shrink themselves)."""
  config.data.limit = limit
  config.data.num_validation = 64
  train = config.train
  train.batch_size = 32
  train.num_epochs = 2
  train.checkpoint_every_epochs = 1
  train.eval_every_epochs = 1
  train.steps_per_execution = steps_per_execution
  # XLA's compile time outweighs its gain on a few hundred tiny steps.
  train.jit_compile = False
  config.eval.jit_compile = False
  config.eval.batch_size = 64


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise errors.ConfigError(message)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the shared fields; models and data sets check their own when they are built.

  Raises:
    ConfigError: naming the first invalid field and what it must be.
  """
  for section in ("data", "model", "train", "eval"):
    _require(section in config, f"config has no `{section}` section")
  _require(isinstance(config.seed, int), f"config.seed must be an integer, got {config.seed!r}")
  train, ev = config.train, config.eval
  _require(bool(config.model.name), "config.model.name is empty")
  _require(train.batch_size > 0, f"config.train.batch_size must be > 0, got {train.batch_size}")
  _require(train.num_epochs > 0, f"config.train.num_epochs must be > 0, got {train.num_epochs}")
  _require(train.get("stop_after_epochs", 0) >= 0,
           f"config.train.stop_after_epochs must be >= 0, got {train.get('stop_after_epochs')}")
  _require(train.learning_rate > 0,
           f"config.train.learning_rate must be > 0, got {train.learning_rate}")
  _require(train.checkpoint_every_epochs > 0, "config.train.checkpoint_every_epochs must be > 0, "
           f"got {train.checkpoint_every_epochs}")
  _require(train.max_checkpoints_to_keep > 0, "config.train.max_checkpoints_to_keep must be > 0")
  _require(train.steps_per_execution > 0, "config.train.steps_per_execution must be > 0")
  _require(train.get("seconds_per_call", 0) >= 0, "config.train.seconds_per_call must be >= 0")
  _require(train.eval_every_epochs >= 0, "config.train.eval_every_epochs must be >= 0")
  patience = train.get("early_stopping_epochs", 0)
  _require(patience >= 0, f"config.train.early_stopping_epochs must be >= 0, got {patience}")
  _require(not patience or train.eval_every_epochs > 0,
           "config.train.early_stopping_epochs needs validation: set "
           "config.train.eval_every_epochs > 0")
  _require(train.get("precision", "float32") in PRECISIONS,
           f"config.train.precision must be one of {', '.join(PRECISIONS)}, got "
           f"{train.get('precision')!r}")
  _require(ev.num_importance_samples > 0, "config.eval.num_importance_samples must be > 0, "
           f"got {ev.num_importance_samples}")
  _require(ev.batch_size > 0, f"config.eval.batch_size must be > 0, got {ev.batch_size}")
  _require(ev.chunk_size > 0, f"config.eval.chunk_size must be > 0, got {ev.chunk_size}")
  _require(config.data.limit >= 0, f"config.data.limit must be >= 0, got {config.data.limit}")
  _validate_model_sizes(config.model)
  num_labels = config.data.get("num_labels", 0)
  _require(num_labels >= 0, f"config.data.num_labels must be >= 0, got {num_labels}")
  if num_labels:
    per_batch = config.data.get("labelled_per_batch", 0)
    _require(0 < per_batch < train.batch_size,
             f"config.data.labelled_per_batch must lie in (0, batch size {train.batch_size}), "
             f"got {per_batch}")


# Model fields that hold sizes or counts: every number in them must be positive. Fields named
# num_*, *_size(s), *_channels, *_filters or *_width are sizes by their name.
_POSITIVE_MODEL_FIELDS = ("channels", "kernel_size", "fc_latent", "fc_modules")
_SIZE_SUFFIXES = ("_size", "_sizes", "_channels", "_filters", "_width")


def _numbers(value) -> list:
  if isinstance(value, (tuple, list)):
    return [n for item in value for n in _numbers(item)]
  return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def _validate_model_sizes(model: ml_collections.ConfigDict) -> None:
  """Refuses zero or negative sizes, counts and k (a model of size 0 cannot train)."""
  for name in model:
    if (name in _POSITIVE_MODEL_FIELDS or name.startswith("num_")
        or name.endswith(_SIZE_SUFFIXES)):
      value = model[name]
      _require(all(n > 0 for n in _numbers(value)),
               f"config.model.{name} must be > 0, got {value}")


def save(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes the config as JSON into the workdir (atomically) and returns its path."""
  path = os.path.join(workdir, CONFIG_FILE)
  files.write_text(path, config.to_json_best_effort(indent=2, sort_keys=True))
  return path


# What a resumed run may change: how long it trains, how often it checkpoints and reports, where
# its data files live, how it is evaluated or tuned. Any other field changes how its epochs are
# trained, so a workdir that holds checkpoints refuses it.
# model.recurrence (NADE) changes how the same numbers are computed, not the numbers.
# data.path is where a folder of images (or .npz) lives: like manual_dir, it may move.
RESUMABLE_FIELDS = ("train.num_epochs", "train.stop_after_epochs", "model.recurrence",
                    "train.checkpoint_every_epochs", "train.eval_every_epochs",
                    "train.steps_per_execution", "train.seconds_per_call", "train.jit_compile",
                    "train.max_checkpoints_to_keep", "data.manual_dir", "data.data_dir",
                    "data.cache_dir", "data.path")
RESUMABLE_SECTIONS = ("eval.", "tuning.")
HISTORY_FILE = "config_history.json"
_ABSENT = "<absent>"


def _flatten(node, prefix: str = "") -> dict:
  if isinstance(node, dict):
    flat = {}
    for key, value in node.items():
      flat.update(_flatten(value, f"{prefix}{key}."))
    return flat
  return {prefix[:-1]: node}


def as_plain(config: ml_collections.ConfigDict) -> dict:
  """The config as the JSON objects config.json holds (tuples become lists)."""
  return json.loads(config.to_json_best_effort())


def differences(saved: ml_collections.ConfigDict,
                new: ml_collections.ConfigDict) -> dict:
  """Dotted field name to (saved value, new value) for every field that differs."""
  old_flat, new_flat = _flatten(as_plain(saved)), _flatten(as_plain(new))
  return {name: (old_flat.get(name, _ABSENT), new_flat.get(name, _ABSENT))
          for name in sorted(set(old_flat) | set(new_flat))
          if old_flat.get(name, _ABSENT) != new_flat.get(name, _ABSENT)}


def resumable(name: str) -> bool:
  return name in RESUMABLE_FIELDS or name.startswith(RESUMABLE_SECTIONS)


def check_resume(saved: ml_collections.ConfigDict, new: ml_collections.ConfigDict,
                 workdir: str) -> dict:
  """The changes a resumed run makes to its saved config, if every one of them is resumable.

  Returns:
    Dotted field name to (saved value, new value), only resumable fields.

  Raises:
    ConfigError: listing the fields that differ and may not change on resume.
  """
  changes = differences(saved, new)
  defaults = _defaults(new)
  # A field added to tfgen after the run was saved, at its default, changes nothing: the run
  # was trained with the behaviour that default keeps.
  changes = {name: (old, value) for name, (old, value) in changes.items()
             if not (old == _ABSENT and name in defaults and defaults[name] == value)}
  refused = [name for name in changes if not resumable(name)]
  if refused:
    shown = ", ".join(f"{name} {changes[name][0]!r} -> {changes[name][1]!r}"
                      for name in refused[:6])
    more = f" and {len(refused) - 6} more" if len(refused) > 6 else ""
    raise errors.ConfigError(
        f"workdir {workdir!r} holds a run trained with another config ({shown}{more}); a "
        "resumed run keeps its config (only train.num_epochs, checkpoint/eval frequency, XLA, data "
        "folders, eval.* and tuning.* may change). Use a new --workdir, with "
        f"--init_from={workdir} to start from its weights")
  return changes


def _defaults(config: ml_collections.ConfigDict) -> dict:
  """Dotted field name to its default: base_config()'s, and the model's constructor's."""
  from tfgen import models  # pylint: disable=g-import-not-at-top  (models imports this module)
  defaults = _flatten(as_plain(base_config()))
  try:
    model = models.model_config(config.model.name)
  except (errors.ConfigError, AttributeError, KeyError):
    return defaults
  defaults.update(_flatten(as_plain(model), "model."))
  return defaults


def append_history(workdir: str, changes: dict, **facts) -> str:
  """Appends one entry (time, facts, the changed fields) to the run's config history."""
  path = os.path.join(workdir, HISTORY_FILE)
  # A damaged history is kept beside the new one rather than overwritten.
  history = files.read_json_or_set_aside(path, list) or []
  entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **facts,
           "changes": {name: {"from": old, "to": new} for name, (old, new) in changes.items()}}
  history.append(entry)
  files.write_json(path, history)
  return path


def load_from_workdir(workdir: str) -> ml_collections.ConfigDict:
  """Reads the config a training run saved in `workdir`.

  Raises:
    WorkdirError: there is no config (no run was started there).
    files.DamagedFileError: the config is damaged (cut short by a crash, or edited by hand).
  """
  path = os.path.join(workdir, CONFIG_FILE)
  # Deleted, the file is written anew by the run's tfgen-train once its checkpoint has loaded
  # into the model of the config given (tfgen/train.py, _record_config).
  saved = files.read_json(path, dict, advice=(
      "delete it and start the run's tfgen-train command again: it writes the config anew once "
      "the run's checkpoint loads into that config's model"))
  if saved is None:
    raise errors.WorkdirError(f"{workdir!r} holds no training run (no {CONFIG_FILE}); "
                              "train there first with tfgen-train --workdir")
  try:
    return ml_collections.ConfigDict(saved)
  except (TypeError, ValueError, KeyError) as e:
    raise files.DamagedFileError(path, f"not a tfgen config: {e}") from e


_TRUE_WORDS = ("", "1", "true", "yes")
_FALSE_WORDS = ("0", "false", "no")


def missing_field(config: ml_collections.ConfigDict, field: str) -> Optional[str]:
  """A one-line message when dotted `field` is not a field of config, with the closest names.

  Returns:
    None when the field exists; else e.g. "unknown config field 'train.batchsize'; did you mean
    'train.batch_size'?".
  """
  node, parts = config, field.split(".")
  for depth, part in enumerate(parts):
    if isinstance(node, ml_collections.ConfigDict) and part in node:
      node = node[part]
      continue
    if not isinstance(node, ml_collections.ConfigDict):
      return (f"unknown config field {field!r}: {'.'.join(parts[:depth])!r} is a value, not a "
              "section")
    prefix = ".".join(parts[:depth] + [""])
    close = difflib.get_close_matches(part, list(node.keys()), n=3, cutoff=0.6)
    hint = (f"; did you mean {' or '.join(repr(prefix + c) for c in close)}?" if close else
            f"; {prefix.rstrip('.') or 'the config'} has: {', '.join(sorted(node.keys()))}")
    return f"unknown config field {field!r}{hint}"
  return None


# The `data=` choices of every config for the user's own images (docs/data.md): a folder of image
# files (--config.data.path=DIR), an .npz file of arrays (--config.data.path=FILE.npz), or any
# TFDS image data set (data=tfds:NAME or tfds:NAME/CONFIG).
USER_DATA = ("folder", "arrays", "tfds:NAME")


def is_user_data(name: str) -> bool:
  """Whether a data set name is one of USER_DATA (a folder, arrays, tfds:NAME)."""
  return name in ("folder", "arrays") or name.startswith("tfds:")


def set_user_data(config: ml_collections.ConfigDict, name: str, binarized: bool) -> None:
  """Sets config.data for USER_DATA `name`: 8-bit intensities, or dynamically binarized images
  for models of binary pixels; `--config.data.binarization` changes it."""
  config.data.name = name
  config.data.binarization = "dynamic" if binarized else "none"


def _is_choice(value, allowed) -> bool:
  """value is one of `allowed`, where "PREFIX:NAME" admits every value starting with "PREFIX:"
  followed by a name."""
  for choice in allowed:
    if isinstance(choice, str) and choice.endswith(":NAME") and isinstance(value, str):
      prefix = choice[:-len("NAME")]
      if value.startswith(prefix) and len(value) > len(prefix):
        return True
    elif value == choice:
      return True
  return False


def parse_variant(arg: str, defaults: dict, choices: Optional[dict] = None) -> dict:
  """Parses a config file's variant string, "k=50,layers=2,tiny", over `defaults`.

  A bare word sets the boolean option of that name; values are converted to the type of the
  default. Every value is checked, so that a typo never silently selects another setting.

  Args:
    arg: the variant string (the part of `--config=FILE:VARIANT` after the colon).
    defaults: option name to default value; its type is the option's type.
    choices: option name to the values it may take (options not named take any value of their
      type; numbers must then be >= 0).

  Raises:
    ConfigError: an unknown option, a value of the wrong type, a boolean that is not one of
      true/false/yes/no/1/0, a value outside `choices`, or a negative number.
  """
  choices = choices or {}
  options = dict(defaults)
  for item in filter(None, (part.strip() for part in (arg or "").split(","))):
    key, _, value = item.partition("=")
    key, value = key.strip(), value.strip()
    if key not in defaults:
      raise errors.ConfigError(f"unknown config variant option {key!r} in {arg!r}; known: "
                               f"{', '.join(sorted(defaults))}")
    kind = type(defaults[key])
    if kind is bool:
      if value.lower() not in _TRUE_WORDS + _FALSE_WORDS:
        raise errors.ConfigError(f"config variant option {key}={value!r} must be true or false "
                                 f"(or a bare {key!r} for true)")
      options[key] = value.lower() in _TRUE_WORDS
      continue
    try:
      options[key] = kind(value)
    except ValueError as e:
      raise errors.ConfigError(f"config variant option {key}={value!r} must be "
                               f"{kind.__name__}") from e
    if key in choices:
      if not _is_choice(options[key], choices[key]):
        allowed = ", ".join(str(c) if c != "" else "'' (the default)" for c in choices[key])
        raise errors.ConfigError(f"config variant option {key}={value!r} is not one of: "
                                 f"{allowed}")
    elif kind in (int, float) and options[key] < 0:
      raise errors.ConfigError(f"config variant option {key}={value!r} must be >= 0")
  return options
