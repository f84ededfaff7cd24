"""Early stopping: keep the weights of the best validation epoch and stop when they stop improving.

With `config.train.early_stopping_epochs = N` (> 0) the training loop, at every validation, compares
the validation figure the model declares (`model.selection_metrics`: the first of its names that
the validation bounds hold, e.g. `log_prob` for exact models, `iwae_bound` for latent-variable
ones; higher is better) with the best so far. A better one writes the model's weights to
`WORKDIR/best/` with `best.json` ({metric, value, epoch, step}); the run stops once N epochs have
passed since the best one, as in the MADE authors' code (`look_ahead`). Evaluation,
sampling and export then read `best/` (`workdir.restore_model`).

The state lives in the workdir, not in the training checkpoint, so a run saved before early
stopping existed resumes unchanged, and a resumed run keeps its best epoch: the loop replays an
epoch after a checkpoint exactly, so a replayed validation is never counted twice as better.
"""

import math
import os
from typing import Dict, Optional, Sequence

from absl import logging
import tensorflow as tf

from tfgen import errors
from tfgen import files
from tfgen import workdir as workdir_lib

STATE_FILE = "best.json"


def selection_metric(declared: Sequence[str], validation_metrics: Dict[str, float]) -> str:
  """The first of the model's declared selection metrics that validation measured.

  Raises:
    ConfigError: validation measured none of them.
  """
  for name in declared:
    if name in validation_metrics:
      return name
  raise errors.ConfigError(
      f"early stopping selects on one of {', '.join(declared)}, but validation measured only "
      f"{', '.join(sorted(validation_metrics)) or 'nothing'}")


def read_state(workdir: str) -> Optional[Dict]:
  """The run's best.json ({metric, value, epoch, step}), or None when it has none.

  Raises:
    files.DamagedFileError: best.json is damaged. Going on without it would let the next
      validation, however bad, count as the best and replace the best epoch's weights, so the
      run is refused until a person decides.
  """
  best = os.path.join(workdir, workdir_lib.BEST_DIR)
  state = files.read_json(os.path.join(best, STATE_FILE), dict, ("metric", "value", "epoch"),
                          advice=(f"it records early stopping's best validation epoch, whose "
                                  f"weights are in {best}/. Restore it, or delete {best}/ to "
                                  "track the best epoch afresh from the next validation"))
  if state is not None:
    try:
      float(state["value"]), int(state["epoch"])
    except (TypeError, ValueError) as e:
      raise files.DamagedFileError(os.path.join(best, STATE_FILE),
                                   f"value or epoch not a number: {e}") from e
  return state


class EarlyStopping:
  """Tracks the best validation epoch of a run, keeps its weights and says when to stop.

  Args:
    model: the model being trained.
    workdir: the run's working directory (best.json is read from and written to it).
    write_dir: where this process writes checkpoints (workdir on the chief, a temporary folder on
      the other workers of a multi-worker run, which must write too).
    patience: epochs without a better validation figure after which the run stops (> 0).
    declared: the model's selection metrics, in order of preference.
    chief: whether this process writes best.json.
  """

  def __init__(self, model, workdir: str, write_dir: str, patience: int,
               declared: Sequence[str], chief: bool = True):
    self.workdir, self.patience, self.declared, self.chief = workdir, patience, declared, chief
    self._manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), os.path.join(write_dir, workdir_lib.BEST_DIR),
        max_to_keep=1)
    self.state = read_state(workdir)

  @property
  def best_epoch(self) -> Optional[int]:
    return None if self.state is None else int(self.state["epoch"])

  def should_stop(self, epochs_done: int) -> bool:
    """Whether `patience` epochs have passed since the best one (False before any validation)."""
    return self.best_epoch is not None and epochs_done - self.best_epoch >= self.patience

  def update(self, epoch: int, step: int, validation_metrics: Dict[str, float]) -> bool:
    """Records the validation of the first `epoch` epochs; keeps the weights if they are better.

    Returns:
      Whether this validation is the best so far.
    """
    metric = selection_metric(self.declared, validation_metrics)
    value = float(validation_metrics[metric])
    if not math.isfinite(value):
      return False
    if self.state is not None and self.state["metric"] == metric:
      # A replayed epoch (after resuming from an older checkpoint) measures the same value again.
      if value <= float(self.state["value"]) or epoch <= int(self.state["epoch"]):
        return False
    path = self._manager.save(checkpoint_number=step)
    self.state = {"metric": metric, "value": value, "epoch": int(epoch), "step": int(step)}
    if self.chief:
      # After the weights: a best.json always names weights that are there.
      files.write_json(os.path.join(self.workdir, workdir_lib.BEST_DIR, STATE_FILE), self.state)
      logging.info("best validation %s so far: %.3f after epoch %d; weights in %s", metric,
                   value, epoch, path)
    else:
      tf.io.gfile.rmtree(self._manager.directory)
    return True

  def stop_message(self, epochs_done: int) -> str:
    state = self.state
    return (f"stopped early after epoch {epochs_done}: no better validation {state['metric']} "
            f"than epoch {state['epoch']}'s {state['value']:.3f} in {self.patience} epochs; "
            f"its weights are in {os.path.join(self.workdir, workdir_lib.BEST_DIR)}")
