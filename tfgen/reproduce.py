"""Paper protocols as one command: tables of (config, evaluation protocol, paper's number).

A TABLE is a named list of entries, declared as data in `TABLES` below. An entry names a config
file with its variant and field overrides, the evaluation protocol (k importance samples or the
exact NLL, the split, model fields changed for evaluation only) and the paper's number with its
source. `run` trains every missing entry with `tfgen.train.train` in ROOT/ENTRY/ (which resumes
from the entry's newest checkpoint), evaluates it with `tfgen.evaluate.evaluate` and writes
ROOT/ENTRY/result.json; `report` renders the table of results in Markdown, optionally between
marker comments in docs/results.md. See docs/reproduce.md.

Several processes or hosts may run the same table on a shared ROOT at once: an entry is claimed
by creating ROOT/ENTRY/claim exclusively (O_CREAT | O_EXCL, so exactly one creator wins, also on
a shared file system), and the others skip it. A claim whose process has died on this host is
stale and taken over; the workdir lock of the training loop (`tfgen.workdir.locked`) serializes
the take-over, so two processes cannot both take over the same claim.

This module imports TensorFlow only when it trains, evaluates or loads a config file, so that
`tfgen-reproduce list` and a mistyped table name answer at once.
"""

import ast
import dataclasses
import datetime
import json
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import ml_collections

import tfgen
from tfgen import config as config_lib
from tfgen import errors
from tfgen import files

# The source checkout that holds configs/ (tfgen-reproduce needs `pip install -e .`).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_FILE = "result.json"
CLAIM_FILE = "claim"
RESULT_FORMAT = 1
# A claim file that cannot be read (its writer died between creating and writing it) counts as
# stale after this long; younger, it may still be being written.
UNREADABLE_CLAIM_STALE_S = 600
# Overrides that say where data lives, not what is trained: not shown as protocol changes.
LOCATION_FIELDS = ("data.manual_dir", "data.data_dir")


class ReproduceError(errors.TfgenError):
  """An unknown table or entry, a damaged result file, a results file without its markers."""


@dataclasses.dataclass(frozen=True)
class Reference:
  """A published number to compare with.

  Attributes:
    nll_nats: the test NLL in nats, or None where this repository records none.
    source: where the number comes from (paper, table, and where the repository quotes it).
    note: what differs from the entry's protocol (binarization, bound, ...).
    missing: what a report shows when nll_nats is None.
  """

  nll_nats: Optional[float]
  source: str = ""
  note: str = ""
  missing: str = "not recorded"


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How an entry is evaluated.

  Attributes:
    num_importance_samples: k of the IWAE estimate; None keeps the config's `eval` value (models
      with an exact likelihood draw nothing whatever k is).
    exact: the model's likelihood is exact (autoregressive models); an entry whose evaluation
      turns out to be an estimate fails rather than report it as exact.
    split: the split evaluated.
    model_overrides: model fields changed for the evaluation only (MADE's ensemble of masks);
      only for entries that evaluate another entry's training (`Entry.trained_by`).
    description: what the protocol adds in words ("ensemble of 32 masks").
  """

  num_importance_samples: Optional[int] = None
  exact: bool = False
  split: str = "test"
  model_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  description: str = ""

  def requested(self) -> Dict[str, Any]:
    """The protocol as result.json records it; a result with another one is evaluated again."""
    return {"num_importance_samples": self.num_importance_samples, "exact": self.exact,
            "split": self.split, "model_overrides": dict(self.model_overrides)}

  def text(self) -> str:
    if self.exact:
      return "exact"
    k = self.num_importance_samples
    return f"IWAE bound, k={k}" if k else "the config's k"


@dataclasses.dataclass(frozen=True)
class Entry:
  """One row of a table.

  Attributes:
    name: the row's name, also its folder under ROOT.
    config: config file (relative to the repository) and variant, "configs/iwae.py:k=5".
    protocol: how it is evaluated.
    paper: the number to compare with.
    overrides: config fields set after the variant, {"model.num_eval_masks": 1}.
    trained_by: the name of an earlier entry of the same table whose trained model this entry
      evaluates under its own protocol, instead of training one (no training of its own).
  """

  name: str
  config: str
  protocol: Protocol
  paper: Reference
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  trained_by: str = ""


@dataclasses.dataclass(frozen=True)
class Table:
  name: str
  title: str
  entries: Tuple[Entry, ...]
  notes: str = ""

  def entry(self, name: str) -> Entry:
    for entry in self.entries:
      if entry.name == name:
        return entry
    raise ReproduceError(f"table {self.name!r} has no entry {name!r}; its entries: "
                         f"{', '.join(e.name for e in self.entries)}")


# ----------------------------------------------------------------------------------------------
# The tables.

_IWAE_SOURCE = "Burda, Grosse & Salakhutdinov 2016, Table 1"
_IWAE_NOTE = ("dynamically binarized MNIST; this table trains on the fixed binarization, so the "
              "gap includes that difference")
# Table 1 of the paper, test NLL in nats (k=5000). At k=1 the VAE and IWAE objectives coincide.
_IWAE_PAPER = {("vae", 1, 1): 86.76, ("vae", 1, 5): 86.47, ("vae", 1, 50): 86.35,
               ("vae", 2, 1): 85.33, ("vae", 2, 5): 85.01, ("vae", 2, 50): 84.78,
               ("iwae", 1, 1): 86.76, ("iwae", 1, 5): 85.54, ("iwae", 1, 50): 84.78,
               ("iwae", 2, 1): 85.33, ("iwae", 2, 5): 83.89, ("iwae", 2, 50): 82.90}

IWAE_TABLE1_FIXED = Table(
    name="iwae_table1_fixed",
    title="VAE and IWAE, 1 and 2 stochastic layers, k = 1, 5, 50 (Burda et al. 2016, Table 1), "
          "on fixed binarized MNIST",
    notes="The paper's schedule (`schedule=paper`: 3,280 epochs, batch 20, 1e-3·10^(-i/7) for "
          "3^i epochs); test NLL = −IWAE bound with k=5000. The paper's numbers are on "
          "dynamically binarized MNIST.",
    entries=tuple(
        Entry(name=f"{model}_l{layers}_k{k}",
              config=f"configs/iwae.py:model={model},k={k},layers={layers},schedule=paper",
              protocol=Protocol(num_importance_samples=5000),
              paper=Reference(_IWAE_PAPER.get((model, layers, k)),
                              _IWAE_SOURCE if (model, layers, k) in _IWAE_PAPER else "",
                              _IWAE_NOTE if (model, layers, k) in _IWAE_PAPER else ""))
        for model in ("vae", "iwae") for layers in (1, 2) for k in (1, 5, 50)))


def _made_mask_and_ensemble(name: str, config: str) -> Tuple[Entry, Entry]:
  """A 32-mask MADE's two rows: `name` trains it and evaluates its first mask alone, and
  `name`_ensemble evaluates the ensemble of its 32 masks, which the paper's figure compares with."""
  return (
      Entry(name, config, Protocol(exact=True, description="first mask alone"),
            Reference(None, "", "the paper reports its 32-mask models by the ensemble of the "
                      f"masks only (the {name}_ensemble row)")),
      Entry(f"{name}_ensemble", config,
            Protocol(exact=True, model_overrides={"num_eval_masks": 32},
                     description="ensemble of the 32 trained masks"),
            Reference(88.04, "Germain et al. 2015, Table 6, as quoted in configs/made.py",
                      "1 hidden layer, 32 masks, fixed binarization; the paper's best, 86.64, "
                      "has 2 hidden layers"),
            trained_by=name))


AUTOREGRESSIVE = Table(
    name="autoregressive",
    title="NADE, MADE, PixelCNN, Gated PixelCNN on fixed binarized MNIST, exact test NLL",
    notes="Each config's own schedule (Adam 1e-3 decayed to 1e-4 by the last epoch).",
    entries=(
        Entry("nade", "configs/nade.py", Protocol(exact=True),
              Reference(88.86, "Larochelle & Murray 2011, as quoted in configs/nade.py",
                        "fixed binarization, 500 hidden units")),
        # The authors' code reports a model trained on several connectivities by the ensemble
        # of its masks (github.com/mgermain/MADE, trainMADE.py: the log of the mean of the
        # masks' likelihoods), so the paper's 32-mask figures compare with the ensemble rows.
        # One mask overfits within 15 epochs; the authors stop early (30 epochs of patience).
        Entry("made_one_mask", "configs/made.py:masks=1,patience=30", Protocol(exact=True),
              Reference(88.40, "Germain et al. 2015, Table 6, as quoted in configs/made.py "
                        "(not re-checked)", "1 hidden layer, 1 mask, fixed binarization")),
        # The same with the authors' optimizer (Adagrad at a constant 0.01) and initialization.
        Entry("made_one_mask_adagrad",
              "configs/made.py:masks=1,patience=30,optimizer=adagrad,init=orthogonal,epochs=300",
              Protocol(exact=True),
              Reference(88.40, "Germain et al. 2015, Table 6, as quoted in configs/made.py "
                        "(not re-checked)", "1 hidden layer, 1 mask, fixed binarization")),
        *_made_mask_and_ensemble("made", "configs/made.py"),
        # The two structural choices of the authors' best command (github.com/mgermain/MADE):
        # an ordering drawn with each connectivity and a direct input-to-output connection.
        *_made_mask_and_ensemble("made_reordered", "configs/made.py:reorder=true,direct=true"),
        # The direct connection alone: how much of the difference it makes.
        *_made_mask_and_ensemble("made_direct", "configs/made.py:direct=true"),
        Entry("pixelcnn", "configs/pixelcnn.py", Protocol(exact=True),
              Reference(81.30, "van den Oord et al. 2016, as quoted in configs/pixelcnn.py")),
        Entry("gated_pixelcnn", "configs/gated_pixelcnn.py", Protocol(exact=True),
              Reference(None, "", "configs/gated_pixelcnn.py quotes only a PyTorch zoo's 81.50 "
                        "(dynamic binarization), not a paper's number")),
    ))

MATNET = Table(
    name="matnet",
    title="Matryoshka Networks (Bachman 2016) on fixed binarized MNIST",
    notes="Test NLL = −IWAE bound with k=2500, the paper's k.",
    entries=(
        Entry("matnet_conv", "configs/matnet.py:conv", Protocol(num_importance_samples=2500),
              Reference(78.5, "Bachman 2016, as quoted in configs/matnet.py (not re-checked)",
                        "an upper bound (≤ 78.5) on dynamically binarized MNIST")),
        Entry("matnet_fc", "configs/matnet.py:fc", Protocol(num_importance_samples=2500),
              Reference(None)),
    ))

_NO_PAPER = Reference(None, missing="—")

TINY = Table(
    name="tiny",
    title="Tiny CPU models: tfgen-reproduce's own check (seconds; no paper)",
    notes="The `tiny` config variants (256 images of each split, 2 epochs) that the tests use.",
    entries=(
        Entry("tiny_vae", "configs/iwae.py:tiny", Protocol(num_importance_samples=10), _NO_PAPER),
        Entry("tiny_made", "configs/made.py:tiny",
              Protocol(exact=True, description="first mask alone"), _NO_PAPER,
              overrides={"model.num_eval_masks": 1}),
        Entry("tiny_made_ensemble", "configs/made.py:tiny",
              Protocol(exact=True, model_overrides={"num_eval_masks": 4},
                       description="ensemble of the 4 trained masks"),
              _NO_PAPER, overrides={"model.num_eval_masks": 1}, trained_by="tiny_made"),
    ))

# Entry names are unique across tables, so that every table can share one ROOT.
TABLES: Dict[str, Table] = {t.name: t for t in (IWAE_TABLE1_FIXED, AUTOREGRESSIVE, MATNET, TINY)}


def get_table(name: str) -> Table:
  if name not in TABLES:
    raise ReproduceError(f"unknown table {name!r}; tables: {', '.join(sorted(TABLES))}")
  return TABLES[name]


def select(table: Table, names: Optional[Sequence[str]] = None) -> List[Entry]:
  """The entries called `names` (all when None or empty), in the table's order."""
  if not names:
    return list(table.entries)
  wanted = {table.entry(name).name for name in names}
  return [e for e in table.entries if e.name in wanted]


# ----------------------------------------------------------------------------------------------
# Configs and overrides.


def load_config(spec: str) -> ml_collections.ConfigDict:
  """get_config(VARIANT) of "FILE[:VARIANT]", FILE relative to the repository."""
  path, _, variant = spec.partition(":")
  full = path if os.path.isabs(path) else os.path.join(REPO, path)
  if not os.path.isfile(full):
    raise ReproduceError(f"config file {full!r} does not exist (tfgen-reproduce reads the "
                         "configs/ of a source checkout installed with pip install -e .)")
  return config_lib.load_file(f"{full}:{variant}" if variant else full)


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def parse_overrides(items: Sequence[str]) -> Dict[str, str]:
  """["train.batch_size=20", ...] as {field: text}; the text is typed when applied."""
  overrides = {}
  for item in items or ():
    field, sep, value = item.partition("=")
    if not sep or not field.strip():
      raise ReproduceError(f"override {item!r} is not FIELD=VALUE (e.g. train.batch_size=20)")
    overrides[field.strip()] = value.strip()
  return overrides


def _typed(field: str, value: Any, old: Any) -> Any:
  """`value` converted to the type of the field's current value `old`."""
  if isinstance(value, str) and not isinstance(old, str):
    if isinstance(old, bool):
      if value.lower() not in _TRUE + _FALSE:
        raise ReproduceError(f"override {field}={value!r} must be true or false")
      return value.lower() in _TRUE
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError) as e:
      raise ReproduceError(f"override {field}={value!r} is not of type "
                           f"{type(old).__name__}") from e
  if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(old, tuple) and isinstance(value, list):
    value = tuple(value)
  if old is not None and not isinstance(value, type(old)):
    raise ReproduceError(f"override {field}={value!r} must be of type {type(old).__name__}, "
                         f"like its current value {old!r}")
  return value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
  """Sets dotted fields of config, each converted to the type of the value it replaces."""
  for field, value in overrides.items():
    message = config_lib.missing_field(config, field)
    if message:
      raise ReproduceError(message)
    *parents, key = field.split(".")
    node = config
    for part in parents:
      node = node[part]
    node[key] = _typed(field, value, node[key])


def entry_config(entry: Entry, overrides: Optional[Mapping[str, Any]] = None):
  """(the entry's config with its own and then the user's overrides, its planned epochs)."""
  config = load_config(entry.config)
  apply_overrides(config, entry.overrides)
  planned = int(config.train.num_epochs)
  apply_overrides(config, overrides or {})
  return config, planned


# ----------------------------------------------------------------------------------------------
# result.json.


def result_path(root: str, name: str) -> str:
  return os.path.join(root, name, RESULT_FILE)


def read_result(root: str, name: str, table: str) -> Optional[Dict]:
  """The result.json of entry `name` of `table`, or None when it has none.

  Raises:
    ReproduceError: the file exists but is not a complete result of this entry.
  """
  path = result_path(root, name)
  try:
    with open(path, encoding="utf-8") as f:
      result = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    raise ReproduceError(f"{path} is damaged ({type(e).__name__}: {str(e).splitlines()[0]}); "
                         "delete it and run the entry again (its checkpoints are kept)") from e
  problem = _result_problem(result, name, table)
  if problem:
    raise ReproduceError(f"{path} is not a complete tfgen-reproduce result ({problem}); delete "
                         "it and run the entry again (its checkpoints are kept)")
  return result


def _result_problem(result, name: str, table: str) -> str:
  if not isinstance(result, dict):
    return "not a JSON object"
  if result.get("format") != RESULT_FORMAT:
    return f"format {result.get('format')!r}, expected {RESULT_FORMAT}"
  if (result.get("table"), result.get("entry")) != (table, name):
    return (f"it is the result of entry {result.get('entry')!r} of table "
            f"{result.get('table')!r}")
  checks = (("epochs.done", int), ("epochs.planned", int), ("numbers.nll_nats", (int, float)),
            ("protocol.requested", dict), ("wall_seconds.train", (int, float)))
  for field, kind in checks:
    node = result
    for part in field.split("."):
      node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, kind) or isinstance(node, bool):
      return f"no valid {field}"
  return ""


def _finished(result: Optional[Dict], entry: Entry, target: int) -> bool:
  """Whether a result already covers `target` epochs under the entry's protocol."""
  return (result is not None and _trained_to(result["epochs"], target)
          and result["protocol"]["requested"] == entry.protocol.requested())


def _trained_to(epochs: Dict, target: int) -> bool:
  """Whether a result's training reached `target` epochs or ended earlier by early stopping."""
  return epochs["done"] >= target or bool(epochs.get("stopped_early"))


# ----------------------------------------------------------------------------------------------
# Claims.


@dataclasses.dataclass
class Claim:
  path: str
  text: str


def _pid_start(pid: int) -> Optional[str]:
  """The start time of process `pid` (Linux /proc), which tells a reused pid from its holder."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _claim_text(command: str) -> str:
  return json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                     "pid_start": _pid_start(os.getpid()), "time": _now(), "command": command})


def _read_claim(path: str) -> Tuple[Optional[Dict], str]:
  """(the claim's fields or None when unreadable, its raw text)."""
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except FileNotFoundError:
    return None, ""
  try:
    holder = json.loads(text)
    return (holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int)
            else None), text
  except ValueError:
    return None, text


def describe_claim(holder: Optional[Dict]) -> str:
  if holder is None:
    return "an unreadable claim"
  return f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('time')}"


def stale_reason(path: str, holder: Optional[Dict]) -> str:
  """Why the claim at `path` may be taken over, or "" while its holder may still be running.

  Only a holder on this host can be checked; a claim from another host stays until that host
  releases it (or a person deletes the file).
  """
  if holder is None:
    try:
      age = time.time() - os.path.getmtime(path)
    except FileNotFoundError:
      return "it is gone"
    return f"it is unreadable and {age:.0f} s old" if age > UNREADABLE_CLAIM_STALE_S else ""
  if holder.get("host") != socket.gethostname():
    return ""
  pid = holder["pid"]
  if not files.process_alive(pid):
    return f"process {pid} is no longer running"
  if holder.get("pid_start") and _pid_start(pid) not in (None, holder["pid_start"]):
    return f"process {pid} is no longer running (its pid was reused)"
  return ""


def acquire_claim(workdir: str, command: str = "") -> Tuple[Optional[Claim], str]:
  """Claims an entry's folder for this process.

  Returns:
    (the claim, "") or (None, why the entry is someone else's).
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CLAIM_FILE)
  text = _claim_text(command)
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return _take_over(workdir, path, text)
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    f.write(text)
  return Claim(path, text), ""


def _take_over(workdir: str, path: str, text: str) -> Tuple[Optional[Claim], str]:
  holder, seen = _read_claim(path)
  why = stale_reason(path, holder)
  if not why:
    return None, f"claimed by {describe_claim(holder)}"
  from tfgen import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  try:
    # The training loop's lock: held by whoever trains here (then the entry is busy) and, for
    # the few lines below, by one of several processes taking over the same stale claim.
    with workdir_lib.locked(workdir):
      if _read_claim(path)[1] != seen:  # Someone else took it over first.
        return None, f"claimed by {describe_claim(_read_claim(path)[0])}"
      if os.path.exists(path):
        os.remove(path)
      try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:  # Claimed afresh by a process on another host.
        return None, f"claimed by {describe_claim(_read_claim(path)[0])}"
      with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
  except errors.WorkdirError:
    return None, "its workdir is locked by a running process"
  return Claim(path, text), f"took over a stale claim ({why})"


def release_claim(claim: Optional[Claim]) -> None:
  """Deletes the claim file if it is still this claim."""
  if claim is not None and _read_claim(claim.path)[1] == claim.text:
    os.remove(claim.path)


# ----------------------------------------------------------------------------------------------
# What a result records besides the numbers.


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown"


def hardware() -> Dict[str, Any]:
  """The host, its CPU and the GPUs TensorFlow sees."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  gpus = []
  for device in tf.config.list_physical_devices("GPU"):
    try:
      details = tf.config.experimental.get_device_details(device)
    except (ValueError, RuntimeError):
      details = {}
    gpus.append(details.get("device_name", device.name))
  usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return {"host": socket.gethostname(), "cpu": _cpu_model(), "cpu_cores": os.cpu_count(),
          "cpu_cores_usable": usable, "gpus": gpus, "platform": platform.platform()}


def git_commit() -> Tuple[str, Optional[bool]]:
  """(`git rev-parse HEAD` of the checkout tfgen runs from, or "unknown"; whether tracked files
  differ from it, or None when unknown)."""
  def git(*args):
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30,
                          check=True).stdout.strip()
  try:
    commit = git("rev-parse", "HEAD")
  except (OSError, subprocess.SubprocessError):
    return "unknown", None
  try:
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
  except (OSError, subprocess.SubprocessError):
    dirty = None
  return commit, dirty


def versions() -> Dict[str, str]:
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {"tfgen": tfgen.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
          "python": platform.python_version()}


# ----------------------------------------------------------------------------------------------
# Running a table.


@dataclasses.dataclass
class Outcome:
  """What `run` did with one entry: status "done", "skipped" or "failed"."""

  entry: str
  status: str
  detail: str
  result: Optional[Dict] = None


def run(table_name: str, root: str, entries: Optional[Sequence[str]] = None,
        max_epochs: Optional[int] = None, overrides: Optional[Mapping[str, Any]] = None,
        command: Optional[str] = None, show_progress: bool = True,
        on_outcome: Optional[Callable[[Outcome], None]] = None) -> List[Outcome]:
  """Trains and evaluates the missing entries of a table in ROOT/ENTRY/.

  Args:
    table_name: a name of `TABLES`.
    root: the folder of the entries' workdirs; may be shared by several processes and hosts.
    entries: names of the entries to run (default: all), in the table's order.
    max_epochs: train at most this many epochs of each entry's schedule (recorded as done /
      planned); a later run without it continues the same workdirs.
    overrides: config fields set in every entry, {"data.manual_dir": "/data"}; they are
      recorded in result.json.
    command: the command line recorded in result.json (default: this process's).
    show_progress: progress bars while training and evaluating.
    on_outcome: called with each entry's Outcome as soon as it is known.

  Returns:
    One Outcome per selected entry.

  Raises:
    ReproduceError: an unknown table or entry, a bad override or cap, a damaged result.json,
      or (after every entry was tried) the entries that failed, each with its error.
  """
  table = get_table(table_name)
  selected = select(table, entries)
  if max_epochs is not None and max_epochs < 1:
    raise ReproduceError(f"--max_epochs must be >= 1, got {max_epochs}")
  overrides = dict(overrides or {})
  command = command or " ".join(shlex.quote(a) for a in sys.argv)
  # Every config is built before anything trains, so that a typo fails at once.
  configs = {e.name: entry_config(e, overrides) for e in selected}
  for e in selected:
    read_result(root, e.name, table.name)  # A damaged result.json fails before any work too.
  os.makedirs(root, exist_ok=True)
  outcomes = []
  for entry in selected:
    outcome = _run_entry(table, entry, root, configs[entry.name], max_epochs, overrides,
                         command, show_progress)
    outcomes.append(outcome)
    if on_outcome is not None:
      on_outcome(outcome)
  failed = [o for o in outcomes if o.status == "failed"]
  if failed:
    raise ReproduceError(f"{len(failed)} of {len(outcomes)} entries failed: "
                         + "; ".join(f"{o.entry}: {o.detail}" for o in failed))
  return outcomes


def _run_entry(table, entry, root, config_and_planned, max_epochs, overrides, command,
               show_progress) -> Outcome:
  config, planned = config_and_planned
  target = int(config.train.num_epochs)
  if max_epochs is not None:
    target = min(target, max_epochs)
  previous = read_result(root, entry.name, table.name)
  if _finished(previous, entry, target):
    return Outcome(entry.name, "skipped", f"finished ({_epochs_text(previous)})")
  if entry.trained_by:
    trainer = read_result(root, entry.trained_by, table.name)
    if trainer is None or not _trained_to(trainer["epochs"], target):
      done = ("has not run" if trainer is None
              else f"has {trainer['epochs']['done']} of the {target} epochs asked for")
      return Outcome(entry.name, "skipped", f"evaluates the model of {entry.trained_by!r}, "
                     f"which {done}; run that entry first")
  workdir = os.path.join(root, entry.name)
  claim, why = acquire_claim(workdir, command)
  if claim is None:
    return Outcome(entry.name, "skipped", why)
  try:
    # Another process may have finished it meanwhile.
    previous = read_result(root, entry.name, table.name)
    if _finished(previous, entry, target):
      return Outcome(entry.name, "skipped", f"finished ({_epochs_text(previous)})")
    if entry.trained_by:
      result = _evaluate_trained_by(table, entry, root, workdir, show_progress)
    else:
      result = _train_and_evaluate(entry, workdir, config, planned, target, show_progress)
    # What ran first, then the numbers, then where and how.
    result = {"format": RESULT_FORMAT, "table": table.name, "entry": entry.name,
              "config": entry.config, **result,
              **_provenance(entry, overrides, max_epochs, command)}
    files.write_json(result_path(root, entry.name), result)
    taken = f"; {why}" if why else ""
    return Outcome(entry.name, "done", f"{_numbers_text(result)}, {_epochs_text(result)}"
                   f"{taken}", result)
  except errors.TfgenError as e:
    return Outcome(entry.name, "failed", str(e).splitlines()[0] if str(e) else type(e).__name__)
  finally:
    release_claim(claim)


def _train_and_evaluate(entry, workdir, config, planned, target, show_progress):
  from tfgen import train as train_lib  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  # The schedule still runs to the planned num_epochs; the loop stops after `target`.
  config.train.stop_after_epochs = target
  from tfgen import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  trained = train_lib.train(config, workdir, show_progress=show_progress)
  # The loop records every invocation in the workdir, also those stopped by a signal before
  # they reached this function's end, so the time of interrupted runs is counted too.
  runs = [{"date": s.get("date"), "host": s.get("host"), "epochs_before": s.get("epochs_before"),
           "epochs_after": s.get("epochs_after"), "train_seconds": s.get("seconds", 0.0),
           "outcome": s.get("outcome")}
          for s in workdir_lib.load_sessions(workdir)]
  train_total = sum(float(r["train_seconds"] or 0.0) for r in runs)
  evaluation, eval_seconds = _evaluate(entry, workdir, show_progress)
  return _result(entry, evaluation, done=trained.epoch, planned=planned, step=trained.step,
                 train_seconds=train_total, eval_seconds=eval_seconds,
                 runs=runs, stopped_early=trained.stopped_early, best=trained.best)


def _evaluate_trained_by(table, entry, root, workdir, show_progress):
  """Evaluates `entry.trained_by`'s model under this entry's protocol from a folder that holds
  its config (with the protocol's model overrides), data description and checkpoints."""
  from tfgen import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  trainer_dir = os.path.join(root, entry.trained_by)
  trainer = read_result(root, entry.trained_by, table.name)
  config = config_lib.load_from_workdir(trainer_dir)
  apply_overrides(config, {f"model.{k}": v for k, v in entry.protocol.model_overrides.items()})
  config_lib.save(config, workdir)
  with open(os.path.join(trainer_dir, workdir_lib.DATA_INFO_FILE), encoding="utf-8") as f:
    info = f.read()
  with open(os.path.join(workdir, workdir_lib.DATA_INFO_FILE), "w", encoding="utf-8") as f:
    f.write(info)
  # Relative links, so that ROOT can be moved or mounted elsewhere; the best epoch's weights
  # too where the trainer stopped early (evaluation prefers them).
  for folder in (workdir_lib.CHECKPOINT_DIR, workdir_lib.BEST_DIR):
    link = os.path.join(workdir, folder)
    target = os.path.join(os.pardir, entry.trained_by, folder)
    if os.path.islink(link) and os.readlink(link) != target:
      os.remove(link)
    if not os.path.islink(link) and os.path.isdir(os.path.join(trainer_dir, folder)):
      os.symlink(target, link)
  evaluation, eval_seconds = _evaluate(entry, workdir, show_progress)
  epochs = trainer["epochs"]
  result = _result(entry, evaluation, done=epochs["done"], planned=epochs["planned"],
                   step=trainer.get("step"), train_seconds=trainer["wall_seconds"]["train"],
                   eval_seconds=eval_seconds, runs=trainer.get("runs", []),
                   stopped_early=bool(epochs.get("stopped_early")), best=epochs.get("best"))
  result["trained_in"] = entry.trained_by
  return result


def _evaluate(entry, workdir, show_progress):
  from tfgen import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  # Latent-code classification is no part of these papers' protocols.
  evaluation = evaluate_lib.evaluate(
      workdir, num_importance_samples=entry.protocol.num_importance_samples,
      split=entry.protocol.split, show_progress=show_progress, classify_codes=False)
  return evaluation, time.perf_counter() - start


def _result(entry, evaluation, done, planned, step, train_seconds, eval_seconds,
            runs, stopped_early=False, best=None) -> Dict:
  nll = float(evaluation["nll_nats"])
  paper = entry.paper.nll_nats
  k = evaluation.get("num_importance_samples")
  if entry.protocol.exact and k is not None:
    raise ReproduceError(f"entry {entry.name!r} is declared with an exact NLL, but its model "
                         f"estimates it with k={k}; fix the table")
  numbers = {"nll_nats": nll, "nll_bits_per_dim": float(evaluation["nll_bits_per_dim"]),
             "elbo": float(evaluation["elbo"]) if "elbo" in evaluation else None}
  return {
      "numbers": numbers,
      "paper": {"nll_nats": paper, "source": entry.paper.source, "note": entry.paper.note},
      "gap_nats": nll - paper if paper is not None else None,
      "protocol": {
          "requested": entry.protocol.requested(),
          "nll": f"IWAE bound, k={k}" if k else "exact",
          "num_importance_samples": k,
          "split": evaluation["split"],
          "num_examples": evaluation["num_examples"],
          "data": evaluation["data"],
          "binarization": evaluation["binarization"],
          "description": entry.protocol.description,
      },
      # With early stopping the evaluated weights are those of `best` ({metric, value, epoch,
      # step}: the best validation), and a run that stopped early is complete.
      "epochs": {"done": int(done), "planned": int(planned),
                 "complete": done >= planned or stopped_early,
                 "stopped_early": bool(stopped_early), "best": best},
      "step": step,
      "wall_seconds": {"train": round(train_seconds, 1), "evaluate": round(eval_seconds, 1)},
      # Everything tfgen-evaluate reported, minus its paths.
      "evaluation": {k: v for k, v in evaluation.items()
                     if k not in ("workdir", "checkpoint", "json")},
      "runs": runs,
  }


def _provenance(entry, overrides, max_epochs, command) -> Dict:
  commit, dirty = git_commit()
  return {"entry_overrides": dict(entry.overrides), "overrides": dict(overrides),
          "max_epochs": max_epochs, "command": command, "git_commit": commit,
          "git_dirty": dirty, "versions": versions(), "hardware": hardware(), "date": _now()}


def _numbers_text(result: Dict) -> str:
  protocol = result["protocol"]
  return (f"{protocol['split']} NLL {result['numbers']['nll_nats']:.2f} nats "
          f"({protocol['nll']})")


def _epochs_text(result: Dict) -> str:
  epochs = result["epochs"]
  return f"{epochs['done']} / {epochs['planned']} epochs"


# ----------------------------------------------------------------------------------------------
# Reports.


def markers(table_name: str) -> Tuple[str, str]:
  return (f"<!-- tfgen-reproduce {table_name} begin -->",
          f"<!-- tfgen-reproduce {table_name} end -->")


def _duration(seconds: Optional[float]) -> str:
  if seconds is None:
    return "—"
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds} s"
  if seconds < 3600:
    return f"{seconds // 60} min {seconds % 60:02d} s"
  return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _hardware_text(result: Dict) -> str:
  hw = result.get("hardware") or {}
  gpus = hw.get("gpus") or []
  if gpus:
    names = sorted(set(gpus))
    return ", ".join(f"{gpus.count(n)} × {n}" for n in names)
  return f"{hw.get('cpu', 'unknown CPU')}, {hw.get('cpu_cores_usable', '?')} cores, no GPU"


def _protocol_text(entry: Entry, result: Optional[Dict]) -> str:
  if result is not None:
    p = result["protocol"]
    text = f"{p['nll']}, {p['split']}, {p['binarization']}"
  else:
    text = f"{entry.protocol.text()}, {entry.protocol.split}"
  if entry.protocol.description:
    text += f", {entry.protocol.description}"
  changed = {f: v for f, v in ((result or {}).get("overrides") or {}).items()
             if f not in LOCATION_FIELDS}
  if changed:
    text += "; overrides " + ", ".join(f"`{f}={v}`" for f, v in sorted(changed.items()))
  return text


_OURS_COLUMN = 3
_COLUMNS = 9


def _previous_rows(block: Optional[str]) -> Dict[str, List[str]]:
  """Entry name to the cells of its row in a previously rendered table, for the entries that
  had a result there."""
  rows = {}
  for line in (block or "").splitlines():
    if not line.startswith("| `"):
      continue
    cells = [c.strip().replace("\\|", "|")
             for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
    if len(cells) == _COLUMNS and cells[_OURS_COLUMN] != "not run":
      rows[cells[0].strip("`")] = cells
  return rows


def render(table_name: str, root: str, planned_epochs: Optional[Mapping[str, int]] = None,
           previous: Optional[str] = None) -> str:
  """The table as Markdown, from ROOT/ENTRY/result.json; entries without one are "not run".

  Args:
    table_name: a name of `TABLES`.
    root: the folder `run` wrote the entries to.
    planned_epochs: entry name to its schedule's epochs, shown for entries not run (default:
      read from their configs).
    previous: the table as rendered before (the block between its markers in results.md). An
      entry without a result.json in ROOT keeps its row from there, with the gap recomputed
      from the table's reference, so that a report from a new ROOT does not erase what earlier
      runs measured; the footer names those rows.
  """
  table = get_table(table_name)
  results = {e.name: read_result(root, e.name, table.name) for e in table.entries}
  kept_rows = {name: cells for name, cells in _previous_rows(previous).items()
               if name in results and results[name] is None}
  if planned_epochs is None:
    planned_epochs = {e.name: entry_config(e)[1] for e in table.entries
                      if results[e.name] is None and e.name not in kept_rows}
  sources = []
  rows = []
  for entry in table.entries:
    result = results[entry.name]
    paper = entry.paper
    paper_cell = paper.missing if paper.nll_nats is None else f"{paper.nll_nats:.2f}"
    label = "; ".join(part for part in (paper.source, paper.note) if part)
    if label:
      if label not in sources:
        sources.append(label)
      paper_cell += f" [{sources.index(label) + 1}]"
    config_cell = f"`{entry.config}`" + "".join(
        f" `{f}={v}`" for f, v in entry.overrides.items())
    if entry.trained_by:
      config_cell = f"model of `{entry.trained_by}`"
    if result is None and entry.name in kept_rows:
      kept = kept_rows[entry.name]
      number = re.match(r"\*\*(-?[0-9.]+)\*\*", kept[_OURS_COLUMN])
      gap = ("—" if paper.nll_nats is None or number is None
             else f"{float(number.group(1)) - paper.nll_nats:+.2f}")
      rows.append([f"`{entry.name}`", config_cell, paper_cell, kept[_OURS_COLUMN], gap,
                   *kept[_OURS_COLUMN + 2:]])
      continue
    if result is None:
      rows.append([f"`{entry.name}`", config_cell, paper_cell, "not run", "—",
                   f"0 / {planned_epochs.get(entry.name, '?')}", _protocol_text(entry, None),
                   "—", "—"])
      continue
    numbers, epochs = result["numbers"], result["epochs"]
    ours = f"**{numbers['nll_nats']:.2f}** ({numbers['nll_bits_per_dim']:.4f} bits/dim)"
    # From the table's reference as it stands, not the one recorded when the entry ran: a
    # corrected reference re-renders without retraining.
    gap = "—" if paper.nll_nats is None else f"{numbers['nll_nats'] - paper.nll_nats:+.2f}"
    notes = []
    if epochs.get("stopped_early"):
      notes.append("stopped early")
    elif not epochs["complete"]:
      notes.append("capped" if result.get("max_epochs") else "unfinished")
    if epochs.get("best"):  # The evaluated weights are the best validation epoch's.
      notes.append(f"best epoch {epochs['best']['epoch']}")
    epochs_cell = f"{epochs['done']} / {epochs['planned']}" + (
        f" ({'; '.join(notes)})" if notes else "")
    wall = f"train {_duration(result['wall_seconds']['train'])}, evaluation " \
           f"{_duration(result['wall_seconds'].get('evaluate'))}"
    rows.append([f"`{entry.name}`", config_cell, paper_cell, ours, gap, epochs_cell,
                 _protocol_text(entry, result), wall, _hardware_text(result)])
  header = ["entry", "config", "paper (nats)", "ours: test NLL (nats)", "gap", "epochs done / "
            "planned", "protocol", "wall time", "hardware"]
  run_count = sum(r is not None for r in results.values()) + len(kept_rows)
  lines = [f"**{table.title}** (`{table.name}`: {run_count} of {len(table.entries)} entries "
           "run)", ""]
  if table.notes:
    lines += [table.notes, ""]
  lines.append("| " + " | ".join(header) + " |")
  lines.append("|" + " --- |" * len(header))
  lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
  lines.append("")
  if sources:
    lines += [f"[{i}] {s}." for i, s in enumerate(sources, 1)]
    lines.append("")
  commits = sorted({(r["git_commit"][:10] + ("+changes" if r.get("git_dirty") else ""))
                    for r in results.values() if r is not None})
  provenance = f" at commit {', '.join(commits)}" if commits else ""
  lines.append(f"Generated by `tfgen-reproduce report {table.name} --workdir={root}` from the "
               f"entries' result.json{provenance}; entries run with `tfgen-reproduce run "
               f"{table.name} --workdir={root}`.")
  if kept_rows:
    names = ", ".join(f"`{e.name}`" for e in table.entries if e.name in kept_rows)
    kept_commits = _previous_commits(previous, list(kept_rows))
    at = f" (result.json at commit {', '.join(kept_commits)})" if kept_commits else ""
    lines[-1] += (f" The rows of {names} are kept from earlier reports{at}: {root} has no "
                  "result.json for them.")
  return "\n".join(lines)


def _previous_commits(previous: Optional[str], kept: Sequence[str]) -> List[str]:
  """The commits a previous footer names for the rows a new report keeps (`kept`): those of
  the rows it kept itself, and those of its own results where some row in `kept` was one of
  them."""
  commits = set()
  footer = re.search(r"from the entries' result\.json(?: at commit ([^;]+))?;", previous or "")
  kept_clause = re.search(r"The rows of (.+?) are kept from earlier reports"
                          r"(?: \(result\.json at commit ([^)]+)\))?:", previous or "")
  kept_before = set(re.findall(r"`([^`]+)`", kept_clause.group(1))) if kept_clause else set()
  if kept_clause and kept_clause.group(2):
    commits.update(kept_clause.group(2).split(", "))
  if footer and footer.group(1) and set(kept) - kept_before:
    commits.update(footer.group(1).split(", "))
  return sorted(commits)


def report(table_name: str, root: str, results_md: Optional[str] = None,
           keep_previous: bool = True) -> str:
  """Renders a table; with results_md, also writes it between the table's markers there.

  Args:
    table_name: a name of `TABLES`.
    root: the folder `run` wrote the entries to.
    results_md: a Markdown file with the table's markers.
    keep_previous: entries without a result.json in ROOT keep the row they have between the
      markers in results_md (see `render`); False renders them "not run".

  Returns:
    The rendered Markdown.

  Raises:
    ReproduceError: an unknown table, a damaged result.json, missing markers.
  """
  previous = None
  if results_md and keep_previous:
    try:
      previous = files.read_between_markers(results_md, *markers(table_name))
    except OSError as e:
      raise ReproduceError(f"cannot read {results_md!r}: {e.strerror or e}") from e
    except ValueError as e:
      raise ReproduceError(f"{e} ({table_name})") from e
  block = render(table_name, root, previous=previous)
  if results_md:
    try:
      files.replace_between_markers(results_md, *markers(table_name), block)
    except OSError as e:
      raise ReproduceError(f"cannot rewrite {results_md!r}: {e.strerror or e}") from e
    except ValueError as e:
      raise ReproduceError(f"{e} ({table_name})") from e
  return block


def describe(table_name: Optional[str] = None) -> str:
  """The tables, or one table's entries, as text for `tfgen-reproduce list`."""
  if not table_name:
    return "\n".join(f"{t.name:<20} {len(t.entries):>2} entries  {t.title}"
                     for t in TABLES.values())
  table = get_table(table_name)
  lines = [f"{table.name}: {table.title}"]
  for e in table.entries:
    protocol = e.protocol.text()
    paper = e.paper.missing if e.paper.nll_nats is None else f"{e.paper.nll_nats:.2f}"
    what = f"model of {e.trained_by}" if e.trained_by else e.config
    extra = "".join(f" {f}={v}" for f, v in e.overrides.items()) if not e.trained_by else ""
    lines.append(f"  {e.name:<16} {what}{extra} | {protocol}, {e.protocol.split}"
                 f"{', ' + e.protocol.description if e.protocol.description else ''} | paper "
                 f"{paper}")
  return "\n".join(lines)
