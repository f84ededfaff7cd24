"""A training run's working directory: its lock, its checkpoints and restoring them."""

import contextlib
import fcntl
import glob
import json
import os
import shutil
from typing import List, Optional

from absl import logging
import tensorflow as tf

from tfgen import errors
from tfgen import files

CHECKPOINT_DIR = "checkpoints"
# The weights of the best validation epoch of a run trained with early stopping
# (tfgen/early_stopping.py); evaluation, sampling and export prefer them.
BEST_DIR = "best"
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = ".lock"
DATA_INFO_FILE = "data_info.json"
# One entry per invocation of the training loop, interrupted ones included.
SESSIONS_FILE = "training_sessions.json"


@contextlib.contextmanager
def locked(workdir: str):
  """Holds an exclusive lock on workdir for the duration of a run.

  The operating system drops the lock when the process ends, however it ends, so a crashed run
  never leaves a stale lock behind.

  Raises:
    WorkdirError: another process holds the lock.
  """
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, LOCK_FILE), "a+", encoding="utf-8") as f:
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


def checkpoint_manager(checkpoint: tf.train.Checkpoint, workdir: str,
                       max_to_keep: int = 3) -> tf.train.CheckpointManager:
  return tf.train.CheckpointManager(checkpoint, os.path.join(workdir, CHECKPOINT_DIR),
                                    max_to_keep=max_to_keep)


def newest_checkpoint(workdir: str) -> Optional[str]:
  """The path of workdir's newest checkpoint, or None when it has none."""
  return tf.train.latest_checkpoint(os.path.join(workdir, CHECKPOINT_DIR))


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
                   folder: str = CHECKPOINT_DIR) -> Optional[str]:
  """Restores the newest checkpoint of workdir that loads, trying older ones after a bad one.

  TensorFlow renames a checkpoint into place only once it is written and updates the list of
  checkpoints afterwards, so a crash mid-write leaves the previous ones intact; a checkpoint
  damaged some other way is skipped with a warning.

  Args:
    checkpoint: what to restore into.
    workdir: a run's working directory.
    partial: restore only the objects `checkpoint` holds (e.g. the model without its optimizer).
    folder: the folder of workdir that holds the checkpoints.

  Returns:
    The path restored, or None when workdir has no checkpoint.

  Raises:
    WorkdirError: checkpoints exist but none loads (e.g. the config changed the model's shape);
      nothing is overwritten then.
  """
  directory = os.path.join(workdir, folder)
  state = tf.train.get_checkpoint_state(directory)
  candidates = list(state.all_model_checkpoint_paths) if state else []
  if state and state.model_checkpoint_path not in candidates:
    candidates.append(state.model_checkpoint_path)
  first_error = None
  for path in reversed(candidates):
    try:
      # restore() (not read()) also takes back the manager's save counter.
      status = checkpoint.read(path) if partial else checkpoint.restore(path)
      status.assert_existing_objects_matched()
      if partial:
        # What the checkpoint holds beyond the objects asked for (e.g. the optimizer) stays
        # unread on purpose.
        status.expect_partial()
      return path
    except Exception as e:  # A damaged file raises OpError, IndexError, ValueError, ...; pylint: disable=broad-except
      logging.warning("checkpoint %s cannot be restored (%s); trying an older one", path,
                      str(e).splitlines()[0])
      first_error = first_error or e
  if first_error is not None:
    raise errors.WorkdirError(
        f"{directory!r} holds checkpoints but none can be restored into this model: "
        f"{str(first_error).splitlines()[0]}. Was the config changed? Use a new --workdir.")
  return None


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


def load_data_info(workdir: str):
  """The DataInfo a run saved, or None for a run that saved none."""
  from tfgen import data  # pylint: disable=g-import-not-at-top
  try:
    with open(os.path.join(workdir, DATA_INFO_FILE), encoding="utf-8") as f:
      return data.DataInfo.from_json(f.read())
  except FileNotFoundError:
    return None


def record_session(workdir: str, **facts) -> None:
  """Appends one invocation of the training loop (its epochs, wall time, outcome) to the run's
  SESSIONS_FILE, so that the time of every invocation, also a stopped one, is known later."""
  sessions = load_sessions(workdir)
  sessions.append(facts)
  files.write_json(os.path.join(workdir, SESSIONS_FILE), sessions)


def load_sessions(workdir: str) -> List[dict]:
  """The run's recorded training invocations, oldest first ([] when none or unreadable)."""
  try:
    with open(os.path.join(workdir, SESSIONS_FILE), encoding="utf-8") as f:
      sessions = json.load(f)
  except (OSError, ValueError):
    return []
  return sessions if isinstance(sessions, list) else []
