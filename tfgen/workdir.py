"""A training run's working directory: its lock, its checkpoints and restoring them."""

import contextlib
import fcntl
import glob
import json
import os
import re
import shutil
import time
from typing import List, Optional

from absl import logging
from google.protobuf import text_format
import tensorflow as tf

from tfgen import errors
from tfgen import files

CHECKPOINT_DIR = "checkpoints"
# The index file TensorFlow keeps beside the checkpoints (which exist, which is newest).
INDEX_FILE = "checkpoint"
# The weights of the best validation epoch of a run trained with early stopping
# (tfgen/early_stopping.py); evaluation, sampling and export prefer them.
BEST_DIR = "best"
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = ".lock"
DATA_INFO_FILE = "data_info.json"
# The image files a source skipped as unreadable (config.data.on_bad_image="skip").
SKIPPED_FILES_FILE = "skipped_images.txt"
# One entry per invocation of the training loop, interrupted ones included.
SESSIONS_FILE = "training_sessions.json"


@contextlib.contextmanager
def locked(workdir: str):
  """Holds an exclusive lock on workdir for the duration of a run.

  The operating system drops the lock when the process ends, however it ends, so a crashed run
  never leaves a stale lock behind.

  Raises:
    WorkdirError: workdir cannot be a folder (a file is there, or it cannot be created or
      written), or another process holds the lock.
  """
  make_workdir(workdir)
  try:
    lock = open(os.path.join(workdir, LOCK_FILE), "a+", encoding="utf-8")  # pylint: disable=consider-using-with
  except OSError as e:
    raise errors.WorkdirError(f"cannot use {workdir!r} as a workdir: "
                              f"{e.strerror or type(e).__name__}") from e
  with lock as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
      f.seek(0)
      holder = f.read().strip() or "another process"
      raise errors.WorkdirError(f"workdir {workdir!r} is in use by {holder}; wait for that run "
                                "to finish or use another --workdir") from e
    f.seek(0)
    f.truncate()
    f.write(f"process {os.getpid()}\n")
    f.flush()
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def check_can_be_workdir(workdir: str) -> None:
  """Refuses a workdir path that names a file, or has a file where a parent folder should be.

  Raises:
    WorkdirError: with one line saying which.
  """
  if not workdir:
    raise errors.WorkdirError("--workdir is empty; give a folder")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise errors.WorkdirError(f"--workdir {workdir!r} is a file, not a folder; give a folder "
                              "(a new one starts a new run)")
  parent = os.path.dirname(os.path.abspath(workdir))
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if parent and not os.path.isdir(parent):
    raise errors.WorkdirError(f"cannot use {workdir!r} as a workdir: {parent!r} is a file, "
                              "not a folder")


def make_workdir(workdir: str) -> None:
  """Creates workdir (and its parents) if needed.

  Raises:
    WorkdirError: one line when it cannot be a folder (see check_can_be_workdir) or cannot be
      created (a read-only or virtual file system, no permission).
  """
  check_can_be_workdir(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise errors.WorkdirError(f"cannot use {workdir!r} as a workdir: "
                              f"{e.strerror or type(e).__name__}") from e


def checkpoint_manager(checkpoint: tf.train.Checkpoint, workdir: str,
                       max_to_keep: int = 3) -> tf.train.CheckpointManager:
  return tf.train.CheckpointManager(checkpoint, os.path.join(workdir, CHECKPOINT_DIR),
                                    max_to_keep=max_to_keep)


def checkpoints_on_disk(directory: str) -> List[str]:
  """The checkpoints in `directory`, oldest first: those whose `.index` file is there, and those
  the index file (`checkpoint`) lists.

  The index file is a small text file that backup tools, partial copies (`rsync` of
  `*.index`/`*.data*` only) and hand cleaning lose or leave stale; the checkpoint files
  themselves are what a run owns. Checkpoint numbers are training steps, so the order by number
  is the order in which they were written.

  Returns:
    Checkpoint paths (prefixes, `DIR/ckpt-N`); partial writes (`*_temp*`) are left out.
  """
  paths = {p[:-len(".index")] for p in glob.glob(os.path.join(glob.escape(directory), "*.index"))
           if "_temp" not in os.path.basename(p)}
  state = tf.train.get_checkpoint_state(directory) if os.path.isdir(directory) else None
  if state:
    for path in list(state.all_model_checkpoint_paths) + [state.model_checkpoint_path]:
      paths.add(path if os.path.isabs(path) else os.path.join(directory, path))
  return sorted(paths, key=_checkpoint_order)


def _checkpoint_order(path: str):
  """Sort key of a checkpoint path: its number (the step), then its name."""
  match = re.search(r"-(\d+)$", path)
  return (int(match.group(1)) if match else -1, os.path.basename(path))


def newest_checkpoint(workdir: str) -> Optional[str]:
  """The path of workdir's newest checkpoint on disk (readable or not), or None when it has none.

  Found from the files themselves, so a run whose index file was lost still counts as a run.
  """
  paths = [p for p in checkpoints_on_disk(os.path.join(workdir, CHECKPOINT_DIR))
           if os.path.exists(p + ".index")]
  return paths[-1] if paths else None


def _checkpoint_files(path: str) -> List[str]:
  """The files that make up checkpoint `path` (its `.index` and `.data-*` shards)."""
  return sorted(glob.glob(glob.escape(path) + ".index") +
                glob.glob(glob.escape(path) + ".data-*"))


def _describe(path: str) -> str:
  """`ckpt-16 (ckpt-16.index 1.2 kB, ckpt-16.data-00000-of-00001 12.0 kB)`: what is on disk."""
  found = _checkpoint_files(path)
  if not found:
    return f"{os.path.basename(path)} (listed in the index file; no files on disk)"
  sizes = ", ".join(f"{os.path.basename(f)} {_size(os.path.getsize(f))}" for f in found)
  return f"{os.path.basename(path)} ({sizes})"


def _size(num_bytes: float) -> str:
  if num_bytes < 1000:
    return f"{num_bytes:.0f} B"
  for unit in ("kB", "MB"):
    num_bytes /= 1000
    if num_bytes < 1000:
      return f"{num_bytes:.1f} {unit}"
  return f"{num_bytes / 1000:.1f} GB"


def remove_partial_checkpoints(workdir: str) -> List[str]:
  """Deletes the `ckpt-N_temp*` files and folders that a killed checkpoint write leaves behind
  (in CHECKPOINT_DIR and BEST_DIR).

  TensorFlow writes a checkpoint under a temporary name and renames it when complete, so these
  never hold a usable checkpoint; call it only while holding the workdir's lock.

  Returns:
    The paths removed.
  """
  removed = []
  for path in [p for folder in (CHECKPOINT_DIR, BEST_DIR)
               for p in glob.glob(os.path.join(glob.escape(os.path.join(workdir, folder)),
                                               "*_temp*"))]:
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)
    removed.append(path)
  if removed:
    logging.info("removed %d partial checkpoint(s) left by an earlier run: %s", len(removed),
                 ", ".join(os.path.basename(p) for p in removed))
  return removed


def restore_newest(checkpoint: tf.train.Checkpoint, workdir: str, partial: bool = False,
                   folder: str = CHECKPOINT_DIR, repair: bool = False) -> Optional[str]:
  """Restores the newest checkpoint of workdir that loads, trying older ones after a bad one.

  The checkpoints are found from the files on disk as well as from the index file
  (`checkpoints_on_disk`), so a lost or stale index never makes a run look new. TensorFlow
  renames a checkpoint into place only once it is written and updates the index afterwards, so a
  crash mid-write leaves the previous ones intact; a checkpoint damaged some other way is skipped
  with a warning.

  Args:
    checkpoint: what to restore into.
    workdir: a run's working directory.
    partial: restore only the objects `checkpoint` holds (e.g. the model without its optimizer).
    folder: the folder of workdir that holds the checkpoints.
    repair: (for the one process that trains there, holding the lock) after a restore, move
      newer checkpoints that could not be restored into `FOLDER/unreadable/`, so that training on
      never writes over them, and rewrite the index file to list what is on disk.

  Returns:
    The path restored, or None when workdir has no checkpoint.

  Raises:
    WorkdirError: checkpoints exist but none loads; nothing is written or moved then.
  """
  directory = os.path.join(workdir, folder)
  candidates = checkpoints_on_disk(directory)
  failures = []
  for path in reversed(candidates):
    try:
      # restore() (not read()) also takes back the manager's save counter.
      status = checkpoint.read(path) if partial else checkpoint.restore(path)
      status.assert_existing_objects_matched()
      if partial:
        # What the checkpoint holds beyond the objects asked for (e.g. the optimizer) stays
        # unread on purpose.
        status.expect_partial()
    except Exception as e:  # A damaged file raises OpError, IndexError, ValueError, ...; pylint: disable=broad-except
      logging.warning("checkpoint %s cannot be restored (%s); trying an older one", path,
                      errors.first_line(e))
      failures.append((path, e))
      continue
    if repair:
      _set_aside([p for p, _ in failures], directory)
      _rewrite_index(directory, [p for p in candidates if _checkpoint_order(p) <=
                                 _checkpoint_order(path) and _checkpoint_files(p)])
    return path
  if failures:
    raise errors.WorkdirError(_unrestorable_message(directory, failures))
  return None


def _unrestorable_message(directory: str, failures) -> str:
  """One line saying what is in `directory` and why none of it restores.

  A checkpoint whose files cannot be read (truncated, damaged, missing) is a different fault
  from one that reads but holds another model (a changed config); the line says which.
  """
  unreadable = [(p, e) for p, e in failures if not _is_mismatch(e)]
  what = "; ".join(_describe(p) for p, _ in failures)
  if unreadable:
    path, error = unreadable[0]
    return (f"{directory!r} holds checkpoints but none can be restored: their files are "
            f"unreadable (first: {os.path.basename(path)}: {errors.first_line(error)}). On disk: "
            f"{what}. Nothing was written; restore them from a backup, or move them away (or "
            "use a new --workdir) to start afresh")
  return (f"{directory!r} holds checkpoints that do not fit this model "
          f"({errors.first_line(failures[0][1])}). On disk: {what}. Was the config changed? "
          "Use a new --workdir")


def _is_mismatch(error: BaseException) -> bool:
  """Whether a restore failed because the checkpoint holds another model, not because its
  files are damaged."""
  if isinstance(error, (tf.errors.OpError, IndexError, UnicodeDecodeError)):
    return False  # Its files could not be read.
  text = str(error).lower()
  return isinstance(error, (AssertionError, ValueError)) and any(
      word in text for word in ("shape", "unresolved object", "matched"))


UNREADABLE_DIR = "unreadable"


def _set_aside(paths: List[str], directory: str) -> None:
  """Moves the files of checkpoints that could not be restored into DIR/unreadable/, so a run
  that resumes from an older one never writes over them when it reaches their step."""
  moved = []
  for path in paths:
    found = _checkpoint_files(path)
    if not found:
      continue
    aside = os.path.join(directory, UNREADABLE_DIR)
    os.makedirs(aside, exist_ok=True)
    for f in found:
      target = os.path.join(aside, os.path.basename(f))
      if os.path.exists(target):  # Set aside before: keep both.
        target += time.strftime(".%Y%m%d-%H%M%S")
      os.replace(f, target)
    moved.append(os.path.basename(path))
  if moved:
    logging.warning("resumed from an older checkpoint; the newer ones that cannot be restored "
                    "(%s) were moved to %s so that nothing writes over them", ", ".join(moved),
                    os.path.join(directory, UNREADABLE_DIR))


def _rewrite_index(directory: str, paths: List[str]) -> None:
  """Writes the index file (`checkpoint`) to list `paths` (oldest first), the newest last.

  Does nothing when it already says so; relative names keep a copied workdir usable.
  """
  if not paths:
    return
  names = [os.path.basename(p) for p in paths]
  state = tf.train.get_checkpoint_state(directory)
  if state and [os.path.basename(p) for p in state.all_model_checkpoint_paths] == names and (
      os.path.basename(state.model_checkpoint_path) == names[-1]):
    return
  timestamps = [os.path.getmtime(p + ".index") for p in paths]
  # The manager rotates (max_to_keep) only checkpoints newer than last_preserved_timestamp.
  proto = tf.compat.v1.train.generate_checkpoint_state_proto(
      directory, names[-1], names, all_model_checkpoint_timestamps=timestamps,
      last_preserved_timestamp=min(timestamps) - 1)
  files.write_text(os.path.join(directory, INDEX_FILE), text_format.MessageToString(proto))
  logging.warning("the index file of %s was %s; rewritten from the checkpoint files on disk "
                  "(%s)", directory, "stale" if state else "missing", ", ".join(names))


def restore_model(model, workdir: str, prefer_best: bool = True) -> str:
  """Restores a model's weights (only): those of the best validation epoch when the run was
  trained with early stopping (BEST_DIR) and `prefer_best`, else those of the newest checkpoint.

  Raises:
    WorkdirError: workdir has no checkpoint, or none that fits the model.
  """
  if prefer_best:
    path = restore_newest(tf.train.Checkpoint(model=model), workdir, partial=True,
                          folder=BEST_DIR)
    if path is not None:
      return path
  path = restore_newest(tf.train.Checkpoint(model=model), workdir, partial=True)
  if path is None:
    raise errors.WorkdirError(f"{workdir!r} has no checkpoint under {CHECKPOINT_DIR}/")
  return path


def save_data_info(info, workdir: str) -> None:
  """Records what the model was built for, so it can be rebuilt without the data set."""
  files.write_text(os.path.join(workdir, DATA_INFO_FILE), info.to_json())


def save_skipped_files(skipped: List[str], workdir: str) -> str:
  """Lists the image files the data source left out as unreadable, one per line with the reason.

  Returns:
    The file's path.
  """
  path = os.path.join(workdir, SKIPPED_FILES_FILE)
  files.write_text(path, "".join(f"{line}\n" for line in skipped))
  logging.warning("%d image file(s) could not be read and were skipped; listed in %s",
                  len(skipped), path)
  return path


def load_data_info(workdir: str):
  """The DataInfo a run saved, or None for a run that saved none.

  A damaged file (a disk crash, a hand edit) counts as none, with a warning line: the data
  description is then taken from the data set, and the run's next tfgen-train writes the file
  again.
  """
  from tfgen import data  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, DATA_INFO_FILE)
  consequence = ("ignored: the data description is taken from the data set, and the run's next "
                 "tfgen-train writes the file again")
  fields = files.read_json_or_warn(path, dict, ("name", "image_shape", "binarization",
                                                "num_examples"), consequence=consequence)
  if fields is None:
    return None
  try:
    return data.DataInfo.from_json(json.dumps(fields))
  except (TypeError, ValueError) as e:
    logging.warning("%r is damaged (not a data description: %s); %s", path, e, consequence)
    return None


def record_session(workdir: str, **facts) -> None:
  """Appends one invocation of the training loop (its epochs, wall time, outcome) to the run's
  SESSIONS_FILE, so that the time of every invocation, also a stopped one, is known later.

  A damaged record (a disk crash, a hand edit) is kept as SESSIONS_FILE.damaged, not overwritten.
  """
  path = os.path.join(workdir, SESSIONS_FILE)
  sessions = files.read_json_or_set_aside(path, list) or []
  sessions.append(facts)
  files.write_json(path, sessions)


def load_sessions(workdir: str) -> List[dict]:
  """The run's recorded training invocations, oldest first ([] when none; a damaged record gives
  [] with a warning line)."""
  sessions = files.read_json_or_warn(
      os.path.join(workdir, SESSIONS_FILE), list,
      consequence="ignored: the time of the run's earlier training sessions is not counted")
  return [s for s in sessions or [] if isinstance(s, dict)]
