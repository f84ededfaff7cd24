"""Presets: trained models shipped in the package, each its weights plus a card.

    import tfgen.presets
    model = tfgen.presets.from_preset("vae_binarized_mnist")   # built, weights loaded
    tfgen-presets                                               # the table of presets
    tfgen-sample --preset=vae_binarized_mnist --num=64 --out=x.png
    tfgen-evaluate --preset=vae_binarized_mnist --manual_dir=../shared/data/binarized_mnist

A preset is a folder `tfgen/presets/NAME/` holding `card.json` and `weights.npz`. The card says
what the model is and how it was made and measured: the run's whole config (model, data, eval),
its data description, the exact training command, the data set, binarization and evaluation
protocol (k importance samples, or exact), the test NLL in nats and bits/dim on the whole test
split, the NLL on the first 1,000 test images with the protocol that reproduces it (batch size,
seeds), what rounding the weights to float16 changed on those images, the weights' dtype and
size, the training's wall time, hardware and tfgen commit. Every figure on a card is measured by
`make_preset` (bench/make_preset.py), never typed.

Weights are stored keyed by each variable's path with Keras's automatic layer-name counters
renumbered per model (`dense_7` in one process is `dense_1` in another; see canonical_paths), so
a preset loads into a model built in any process. They are stored in float16 when that changes
the NLL of the first 1,000 test images by less than FLOAT16_TOLERANCE nats, else in float32; they
are loaded as float32.
"""

import datetime
import json
import os
import platform
import re
import subprocess
import time
from typing import Dict, List, Optional

from tfgen import errors

PRESETS_DIR = os.path.dirname(os.path.abspath(__file__))
CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.npz"
# Float16 weights are shipped when they move the NLL of the card's images by less than this.
FLOAT16_TOLERANCE = 0.01
# The card's reproducible check: the NLL of the first this many test images.
CHECK_EXAMPLES = 1000
# All presets together stay within this (issue 33).
SIZE_BUDGET_BYTES = 30 * 1000 * 1000
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def names() -> List[str]:
  """The names of the presets shipped, sorted."""
  if not os.path.isdir(PRESETS_DIR):
    return []
  return sorted(n for n in os.listdir(PRESETS_DIR)
                if os.path.isfile(os.path.join(PRESETS_DIR, n, CARD_FILE)))


def _unknown(name: str) -> errors.ConfigError:
  known = names()
  return errors.ConfigError(f"unknown preset {name!r}; known presets: "
                            f"{', '.join(known) if known else 'none shipped'} (tfgen-presets "
                            "lists them)")


def preset_dir(name: str) -> str:
  """The folder of preset `name`.

  Raises:
    ConfigError: no such preset (the line lists the known ones).
  """
  if not isinstance(name, str) or not _NAME.match(name) or name not in names():
    raise _unknown(name)
  return os.path.join(PRESETS_DIR, name)


def card(name: str) -> Dict:
  """The card of preset `name` (a dict, as stored in its card.json).

  Raises:
    ConfigError: no such preset; WorkdirError: its card is damaged.
  """
  path = os.path.join(preset_dir(name), CARD_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      fields = json.load(f)
  except (OSError, ValueError) as e:
    raise errors.WorkdirError(f"preset {name!r}: its card {path!r} cannot be read "
                              f"({errors.first_line(e)}); reinstall tfgen") from e
  if not isinstance(fields, dict) or not {"config", "data_info"} <= set(fields):
    raise errors.WorkdirError(f"preset {name!r}: its card {path!r} is damaged (no config or "
                              "data_info); reinstall tfgen")
  return fields


def list_presets() -> List[Dict]:
  """The cards of every preset shipped, by name."""
  return [card(n) for n in names()]


def config_of(preset_card: Dict, manual_dir: Optional[str] = None,
              data_dir: Optional[str] = None):
  """The run's config from a card, with the data paths of this machine: `manual_dir` if given
  (else $TFGEN_MANUAL_DIR, the config's empty default) and `data_dir` (else TFDS's default)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(preset_card["config"])
  config.data.manual_dir = manual_dir or ""
  config.data.data_dir = data_dir or ""
  return config


def data_info_of(preset_card: Dict):
  from tfgen import data as data_lib  # pylint: disable=g-import-not-at-top
  return data_lib.DataInfo.from_json(json.dumps(preset_card["data_info"]))


def canonical_paths(variables) -> List[str]:
  """The variables' paths with Keras's automatic name counters renumbered within the model.

  Keras names layers `dense`, `dense_1`, ... with counters shared by the whole process, so the
  same model built after another has other paths. Here each path component's trailing `_N` is
  dropped and the distinct names of one base are numbered again in order of first appearance
  (the variables' order, fixed by the model's code): the first `dense_7` seen is `dense`, the
  next distinct one `dense_1`. Distinct paths stay distinct.
  """
  renamed, counts, out = {}, {}, []
  for variable in variables:
    parts = []
    for part in variable.path.split("/"):
      if part not in renamed:
        base = re.sub(r"_\d+$", "", part)
        n = counts.get(base, 0)
        counts[base] = n + 1
        renamed[part] = base if n == 0 else f"{base}_{n}"
      parts.append(renamed[part])
    out.append("/".join(parts))
  if len(set(out)) != len(out):
    raise errors.ConfigError("the model has two variables with one path; it cannot be a preset")
  return out


def model_weights(model) -> Dict:
  """{canonical path: numpy array} of every variable of the model."""
  return {path: variable.numpy()
          for path, variable in zip(canonical_paths(model.variables), model.variables)}


def assign_weights(model, weights: Dict, what: str) -> None:
  """Assigns each of the model's variables from `weights` (keyed by canonical path), cast to the
  variable's dtype.

  Raises:
    WorkdirError: a variable missing from `weights`, a shape that differs, or stored arrays that
      the model does not have.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  paths = canonical_paths(model.variables)
  missing = [p for p in paths if p not in weights]
  extra = sorted(set(weights) - set(paths))
  if missing or extra:
    raise errors.WorkdirError(
        f"{what} does not fit its model: {len(missing)} variable(s) missing"
        f"{' (first: ' + missing[0] + ')' if missing else ''}, {len(extra)} unknown"
        f"{' (first: ' + extra[0] + ')' if extra else ''}")
  for path, variable in zip(paths, model.variables):
    value = weights[path]
    if tuple(value.shape) != tuple(variable.shape):
      raise errors.WorkdirError(f"{what} does not fit its model: {path} has shape "
                                f"{tuple(value.shape)}, the model's is {tuple(variable.shape)}")
    variable.assign(np.asarray(value).astype(variable.dtype))


def _read_weights(name: str) -> Dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import zipfile  # pylint: disable=g-import-not-at-top
  path = os.path.join(preset_dir(name), WEIGHTS_FILE)
  try:
    with np.load(path, allow_pickle=False) as stored:
      return {key: stored[key] for key in stored.files}
  except FileNotFoundError as e:
    raise errors.WorkdirError(f"preset {name!r}: its weights file {path!r} is missing; "
                              "reinstall tfgen") from e
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
    raise errors.WorkdirError(f"preset {name!r}: its weights file {path!r} is damaged "
                              f"({type(e).__name__}: {errors.first_line(e)}); reinstall "
                              "tfgen") from e


def build_model(config, info, stage1: Optional[Dict] = None):
  """The model of `config.model` for `info`, built (every weight created, untrained).

  A model built on another run's (a VQ-VAE prior, `stage1_workdir`) gets that run rebuilt from
  `stage1` ({"config", "data_info"} as a card records them) in a temporary workdir holding an
  untrained checkpoint: its weights are variables of this model, assigned with the rest.
  """
  from tfgen import models  # pylint: disable=g-import-not-at-top
  if not config.model.get("stage1_workdir"):
    model = models.build(config.model, info)
    model.build_for_images()
    return model
  if not stage1:
    raise errors.WorkdirError("the card of a model built on a stage-1 run records no stage1")
  import tempfile  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfgen import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  stage1_config = ml_collections.ConfigDict(stage1["config"])
  stage1_info = data_info_of(stage1)
  first = build_model(stage1_config, stage1_info)
  with tempfile.TemporaryDirectory(prefix="tfgen_preset_stage1_") as workdir:
    config_lib.save(stage1_config, workdir)
    workdir_lib.save_data_info(stage1_info, workdir)
    workdir_lib.checkpoint_manager(tf.train.Checkpoint(model=first), workdir, 1).save(
        checkpoint_number=1)
    config = ml_collections.ConfigDict(config.to_dict())
    config.model.stage1_workdir = workdir
    model = models.build(config.model, info)
    model.build_for_images()
  return model


def from_preset(name: str):
  """Preset `name`'s model, built and holding the preset's weights (as float32), no training.

  Raises:
    ConfigError: no such preset (the line lists the known ones).
    WorkdirError: its card or weights file is missing, damaged or does not fit the model.
  """
  preset_card = card(name)
  weights = _read_weights(name)
  model = build_model(config_of(preset_card), data_info_of(preset_card),
                      preset_card.get("stage1"))
  assign_weights(model, weights, f"preset {name!r}'s weights file")
  return model


def evaluate(name: str, manual_dir: Optional[str] = None, num_examples: Optional[int] = None,
             data_dir: Optional[str] = None, show_progress: bool = True,
             classify_codes: bool = True, model=None,
             num_importance_samples: Optional[int] = None, split: Optional[str] = None,
             batch_size: Optional[int] = None, chunk_size: Optional[int] = None) -> Dict:
  """Evaluates preset `name` under its card's protocol (config.eval: split, k, batch and chunk
  sizes, seeds) on its data set, read from `manual_dir` as a training run reads it.

  Args:
    name: a preset.
    manual_dir: where the data set's files are (default: $TFGEN_MANUAL_DIR, else TFDS's).
    num_examples: only the first this many examples (the card's check uses CHECK_EXAMPLES).
    data_dir: TFDS's data folder, where the data set is prepared (default: TFDS's).
    show_progress, classify_codes: as for tfgen.evaluate.evaluate.
    model: the preset's model if already loaded (default: from_preset(name)).
    num_importance_samples, split, batch_size, chunk_size: change the card's protocol.

  Returns:
    tfgen.evaluate.evaluate_model's results, with `preset` first.

  Raises:
    ConfigError: unknown preset, a size below 1.
  """
  from tfgen import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  preset_card = card(name)
  config = config_of(preset_card, manual_dir, data_dir)
  config.eval.update(evaluate_lib.check_sizes(
      num_importance_samples=num_importance_samples, batch_size=batch_size,
      chunk_size=chunk_size))
  config.eval.split = split or config.eval.split
  model = model if model is not None else from_preset(name)
  results = {"preset": name}
  results.update(evaluate_lib.evaluate_model(model, config, show_progress=show_progress,
                                             classify_codes=classify_codes,
                                             num_examples=num_examples))
  return results


def sample_grid(name: str, num: int, out: str, seed: int = 0, num_columns: int = 0,
                mean: bool = True, mode: str = "samples", label: int = -1,
                manual_dir: Optional[str] = None) -> str:
  """Draws the picture of `mode` from preset `name`'s model and writes it as a PNG, as
  tfgen-sample does for a run (modes that start from test images read them from manual_dir).

  Raises:
    ConfigError: unknown preset or mode, a --label the mode does not use.
    OutputError: `out` cannot be written (checked before the model is loaded).
  """
  from tfgen import data as data_lib  # pylint: disable=g-import-not-at-top
  from tfgen import viz  # pylint: disable=g-import-not-at-top
  preset_card = card(name)
  viz.check_writable(out)
  model = from_preset(name)
  config = config_of(preset_card, manual_dir)
  chosen = model.sample_modes().get(mode)
  test = None
  if chosen is not None and chosen.needs_test_data:
    test = data_lib.load(config.data, config.train.batch_size, config.eval.batch_size,
                         seed=config.seed, splits=("test",)).test
  return viz.write_png(out, model.picture(mode, num=num, seed=seed, test=test, mean=mean,
                                          label=label, num_columns=num_columns))


def _size(num_bytes: int) -> str:
  return f"{num_bytes / 1e6:.2f} MB" if num_bytes >= 1e5 else f"{num_bytes / 1e3:.1f} kB"


def total_bytes() -> int:
  """The size of every preset's files together."""
  return sum(os.path.getsize(os.path.join(root, f))
             for root, _, found in os.walk(PRESETS_DIR) for f in found
             if os.path.basename(root) in names())


def format_table(cards: Optional[List[Dict]] = None) -> str:
  """The presets as an aligned table: name, model, data, test NLL (nats, bits/dim), size."""
  cards = list_presets() if cards is None else cards
  if not cards:
    return "no presets shipped"
  header = ("name", "model", "data", "test NLL (nats)", "bits/dim", "k", "weights", "size")
  rows = [header]
  for c in cards:
    k = c.get("num_importance_samples")
    rows.append((c["name"], c["config"]["model"]["name"], c["data_info"]["name"],
                 f"{c['test_nll_nats']:.2f}", f"{c['test_nll_bits_per_dim']:.4f}",
                 "exact" if k is None else str(k), c["weights_dtype"],
                 _size(c["weights_bytes"])))
  widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
  lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
  return "\n".join(lines)


def _hardware() -> Dict:
  model_name = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      found = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
      model_name = found.group(1).strip() if found else model_name
  except OSError:
    pass
  affinity = getattr(os, "sched_getaffinity", None)
  cores = len(affinity(0)) if affinity else os.cpu_count()
  return {"cpu": model_name, "cores": cores, "gpu": None}


def _git_commit() -> Optional[str]:
  repo = os.path.dirname(os.path.dirname(PRESETS_DIR))
  try:
    out = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                         text=True, timeout=30, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "tfgen"],
                           capture_output=True, text=True, timeout=30).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return out + ("-dirty" if dirty else "")


def _round_float16(weights: Dict) -> Dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  return {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in weights.items()}


def make_preset(workdir: str, name: str, command: str, description: str = "",
                presets_dir: str = PRESETS_DIR, show_progress: bool = False,
                force_dtype: Optional[str] = None, log=print) -> Dict:
  """Turns a trained run into preset `name`: `presets_dir/NAME/card.json` and `weights.npz`.

  Loads the run's model (best/ weights of a run with early stopping, else its newest checkpoint,
  as tfgen-evaluate does), measures under the run's evaluation protocol (config.eval: k=5000
  importance samples for latent-variable models, exact otherwise) the NLL of the first
  CHECK_EXAMPLES test images with float32 weights and with float16-rounded ones, keeps float16
  when they differ by less than FLOAT16_TOLERANCE nats, then measures the whole test split with
  the weights as shipped and writes the card.

  Args:
    workdir: the trained run.
    name: the preset's name (lower case letters, digits, _).
    command: the exact command that trained the run (the card's record).
    description: one sentence for the card.
    presets_dir: where to write (default: the package's).
    show_progress: progress bars while evaluating.
    force_dtype: "float32" or "float16" regardless of the measured change (it is still measured).
    log: where progress lines go.

  Returns:
    The card.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfgen import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  from tfgen import files  # pylint: disable=g-import-not-at-top
  from tfgen import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  if not _NAME.match(name or ""):
    raise errors.ConfigError(f"a preset name is lower case letters, digits and _, got {name!r}")
  if force_dtype not in (None, "float32", "float16"):
    raise errors.ConfigError(f"force_dtype is float32 or float16, got {force_dtype!r}")
  config = config_lib.load_from_workdir(workdir)
  config.eval.split = "test"
  trained = evaluate_lib.load_trained(workdir, config, splits=("test",))
  model, data = trained.model, trained.data
  stage1 = None
  if config.model.get("stage1_workdir"):  # A VQ-VAE prior: its stage-1 model is part of it.
    first = config.model.stage1_workdir
    first_sessions = workdir_lib.load_sessions(first)
    stage1 = {"config": json.loads(config_lib.load_from_workdir(first).to_json_best_effort()),
              "data_info": json.loads(workdir_lib.load_data_info(first).to_json()),
              "epochs_trained": max([s.get("epochs_after", 0) for s in first_sessions] or [None]),
              "train_wall_seconds": round(sum(s.get("seconds", 0.0) for s in first_sessions),
                                          1) or None}
  weights32 = model_weights(model)

  def measure(weights, num_examples):
    assign_weights(model, weights, "the run's weights")
    return evaluate_lib.evaluate_model(model, config, data, show_progress=show_progress,
                                       classify_codes=False, num_examples=num_examples)

  start = time.perf_counter()
  check32 = measure(weights32, CHECK_EXAMPLES)
  log(f"{name}: float32 NLL of the first {check32['num_examples']} test images "
      f"{check32['nll_nats']:.4f} nats ({check32['seconds']:.0f} s)")
  weights16 = _round_float16(weights32)
  check16 = measure(weights16, CHECK_EXAMPLES)
  delta = check16["nll_nats"] - check32["nll_nats"]
  log(f"{name}: float16 NLL {check16['nll_nats']:.4f} nats, change {delta:+.4f}")
  dtype = force_dtype or ("float16" if abs(delta) < FLOAT16_TOLERANCE else "float32")
  shipped, check = (weights16, check16) if dtype == "float16" else (weights32, check32)
  full = measure(shipped, None)
  log(f"{name}: test NLL {full['nll_nats']:.4f} nats, {full['nll_bits_per_dim']:.4f} bits/dim on "
      f"{full['num_examples']} images ({full['seconds']:.0f} s)")

  folder = os.path.join(presets_dir, name)
  os.makedirs(folder, exist_ok=True)
  weights_path = os.path.join(folder, WEIGHTS_FILE)
  temporary = weights_path + ".tmp.npz"
  np.savez_compressed(temporary, **shipped)
  os.replace(temporary, weights_path)
  sessions = workdir_lib.load_sessions(workdir)
  ev = config.eval
  plain = json.loads(config.to_json_best_effort())
  preset_card = {
      "name": name,
      "description": description,
      "model": config.model.name,
      "config": plain,
      "data_info": json.loads(trained.info.to_json()),
      "stage1": stage1,
      "training_command": command,
      "epochs_trained": max([s.get("epochs_after", 0) for s in sessions] or [None]),
      "training_steps": trained.step,
      "train_wall_seconds": round(sum(s.get("seconds", 0.0) for s in sessions), 1) or None,
      "data": {"name": trained.info.name, "binarization": trained.info.binarization,
               "split": "test", "image_shape": list(trained.info.image_shape)},
      "num_importance_samples": full["num_importance_samples"],
      "test_nll_nats": full["nll_nats"],
      "test_nll_bits_per_dim": full["nll_bits_per_dim"],
      "num_test_examples": full["num_examples"],
      "test_seconds": round(full["seconds"], 1),
      "nll_first_1000": {
          "nll_nats": check["nll_nats"],
          "num_examples": check["num_examples"],
          "float32_nll_nats": check32["nll_nats"],
          "float16_nll_nats": check16["nll_nats"],
          "seconds": round(check["seconds"], 1),
          "protocol": (f"the first {check['num_examples']} images of the test split in order, "
                       f"batches of {ev.batch_size}, batch i evaluated with the stateless seed "
                       f"({config.seed + 1}, i), k={ev.num_importance_samples} drawn "
                       f"{ev.chunk_size} at a time (tfgen.presets.evaluate(name, "
                       f"num_examples={check['num_examples']}))"),
      },
      "float16_delta_nats": delta,
      "weights_dtype": dtype,
      "weights_bytes": os.path.getsize(weights_path),
      "num_parameters": int(sum(int(np.prod(v.shape)) for v in weights32.values())),
      "hardware": _hardware(),
      "tfgen_commit": _git_commit(),
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "make_seconds": round(time.perf_counter() - start, 1),
      "source_checkpoint": os.path.relpath(trained.checkpoint, workdir),
  }
  files.write_json(os.path.join(folder, CARD_FILE), preset_card)
  log(f"{name}: wrote {folder} ({_size(preset_card['weights_bytes'])} of {dtype} weights)")
  return preset_card
