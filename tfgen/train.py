"""The one training loop that drives every tfgen model.

The model owns its loss (`model.loss(batch, seed, training)` returns per-example values); this
loop averages it over the global batch with `tf.nn.compute_average_loss`, so the update is the
same on one device and on several replicas. Around the compiled train step it handles the
strategy, learning-rate schedule, checkpoints (every N epochs and at exit; a run resumes from its
newest good checkpoint by itself), `--init_from`, early stopping on a validation figure
(tfgen/early_stopping.py), TensorBoard, image grids, a progress bar, the workdir lock and
non-finite losses.
"""

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import socket
import time
from typing import Dict, Optional

from absl import logging
import keras
import ml_collections
import numpy as np
import tensorflow as tf

from tfgen import config as config_lib
from tfgen import data as data_lib
from tfgen import early_stopping
from tfgen import errors
from tfgen import models
from tfgen import optimizers
from tfgen import schedules
from tfgen import seeding
from tfgen import signals
from tfgen import viz
from tfgen import workdir as workdir_lib
from tfgen.models import fitting

SAMPLES_PNG = "samples.png"
RECONSTRUCTIONS_PNG = "reconstructions.png"


STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def num_workers_in_tf_config() -> int:
  """Number of tasks (chief and workers) the TF_CONFIG environment variable names; 0 without it."""
  text = os.environ.get("TF_CONFIG", "")
  if not text:
    return 0
  try:
    cluster = json.loads(text).get("cluster", {})
  except (ValueError, AttributeError) as e:
    raise errors.ConfigError(f"TF_CONFIG is not a JSON object: {text!r}") from e
  return sum(len(cluster.get(kind, ())) for kind in ("chief", "worker"))


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
  """The tf.distribute strategy called `name`; build it before any other TensorFlow work.

  Args:
    name: "auto": MultiWorkerMirroredStrategy when TF_CONFIG names several workers, else
      MirroredStrategy when several GPUs are visible, else the default strategy (one device).
      "one_device": the first GPU, or the CPU. "mirrored": every local GPU, or every logical CPU
      device when there is no GPU (see tfgen-train --cpu_devices). "multi_worker":
      MultiWorkerMirroredStrategy configured by TF_CONFIG (one worker without it).

  Raises:
    ConfigError: an unknown name or an unreadable TF_CONFIG.
  """
  if name not in STRATEGIES:
    raise errors.ConfigError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
  if name == "auto":
    if num_workers_in_tf_config() > 1:
      name = "multi_worker"
    elif len(tf.config.list_logical_devices("GPU")) > 1:
      name = "mirrored"
    else:
      return tf.distribute.get_strategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")
  return tf.distribute.MirroredStrategy(gpus or [d.name for d in
                                                 tf.config.list_logical_devices("CPU")])


@contextlib.contextmanager
def compute_precision(precision: str = "float32"):
  """Keras layers made inside compute in `precision` ("float32", "mixed_bfloat16" or
  "mixed_float16"); their weights stay float32. Models cast what enters their likelihoods and
  priors back to float32 (tfgen/distributions/parameters.py)."""
  previous = keras.config.dtype_policy()
  if previous.name == precision:
    yield
    return
  keras.config.set_dtype_policy(precision)
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)


def default_strategy() -> tf.distribute.Strategy:
  """What `make_strategy("auto")` gives when TF_CONFIG is absent: Mirrored on several GPUs."""
  if len(tf.config.list_logical_devices("GPU")) > 1:
    return tf.distribute.MirroredStrategy()
  return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's checkpoints, TensorBoard events and PNGs."""
  return bool(strategy.extended.should_checkpoint)


def _is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def _task_id(strategy: tf.distribute.Strategy) -> int:
  resolver = getattr(strategy, "cluster_resolver", None)
  return int(resolver.task_id or 0) if resolver is not None else 0


@dataclasses.dataclass
class TrainResult:
  """What a finished (or resumed and already finished) run reached."""

  epoch: int
  step: int
  train_metrics: Dict[str, float]
  validation_metrics: Dict[str, float]
  checkpoint: Optional[str]
  # The trained model as this process holds it (on every worker of a multi-worker run): the
  # last epoch's weights, also when early stopping kept an earlier epoch's in WORKDIR/best/.
  model: Optional[models.GenerativeModel] = None
  # Whether early stopping ended the run before its num_epochs (also on a later start).
  stopped_early: bool = False
  # With early stopping: {metric, value, epoch, step} of the best validation so far.
  best: Optional[Dict] = None


class Trainer:
  """Holds a model, its optimizer and the compiled functions that train and evaluate it.

  Args:
    model: a tfgen GenerativeModel, built inside `strategy.scope()`.
    optimizer: a Keras optimizer, built inside `strategy.scope()`.
    strategy: the tf.distribute strategy the variables live under.
    global_batch_size: examples per step summed over replicas.
    seed: base of the per-step stateless seeds.
    steps_per_epoch: train steps per epoch, which turn steps into the epochs the model's
      schedules are given in.
  """

  def __init__(self, model, optimizer, strategy, global_batch_size: int, seed: int,
               steps_per_epoch: int = 1, jit_compile: bool = False):
    self.model, self.optimizer, self.strategy = model, optimizer, strategy
    self.global_batch_size = global_batch_size
    self.steps_per_epoch = float(max(steps_per_epoch, 1))
    self.base_seed = seeding.as_seed(seed)
    self.jit_compile = bool(jit_compile)
    self.first_call_logged = False
    # XLA compiles the per-replica computation, not the loop around it (the data iterator stays
    # outside). On one replica that is the whole update, so the optimizer's many small per-weight
    # ops fuse too; on several, the optimizer's cross-replica update stays outside and XLA
    # compiles the loss, gradients and statistics.
    one_replica = strategy.num_replicas_in_sync == 1 and not _is_multi_worker(strategy)
    self._gradients, self._update = self._gradients_fn, self._update_fn
    self._compiled_steps = None
    if self.jit_compile and one_replica:
      self._update = tf.function(self._update_fn, jit_compile=True)
      # Fed from batches that can be taken a call's worth at a time (in-graph batches), XLA
      # compiles the whole multi-step call, loop included: launching one compiled step per
      # batch costs a small model as much as the step (docs/speed.md).
      self._compiled_steps = tf.function(self._block_steps_fn, jit_compile=True)
    elif self.jit_compile:
      self._gradients = tf.function(self._gradients_fn, jit_compile=True)
    self._train_steps = tf.function(self._train_steps_fn)
    self._eval_step = tf.function(self._eval_step_fn, jit_compile=self.jit_compile or None)

  def _gradients_fn(self, batch, seed):
    """(global-mean metrics, state statistics, gradients) of one replica's batch: the step
    `model.fit` takes too (tfgen/models/fitting.py); `_one_step` sums the statistics over the
    replicas and applies them."""
    return fitting.replica_gradients(self.model, self.optimizer, batch, seed,
                                     self.global_batch_size)

  def _update_fn(self, batch, seed):
    averages, statistics, gradients = self._gradients(batch, seed)
    self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
    return averages, statistics

  def _replica_step(self, batch, step_seed, global_batch=False):
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    if global_batch and self.strategy.num_replicas_in_sync > 1:
      # Every replica (on every worker) got the whole global batch; it keeps its own slice, in
      # replica order, as tf.data's distributed iterator would hand it out.
      size = self.global_batch_size // self.strategy.num_replicas_in_sync
      batch = {k: v[replica * size:(replica + 1) * size] for k, v in batch.items()}
    return self._update(batch, seeding.fold_in(step_seed, replica))

  def _one_step(self, batch, global_batch=False):
    """One train step on every replica; returns (global mean metrics, step number)."""
    step = tf.cast(self.optimizer.iterations, tf.int64)
    self.model.update_schedules(tf.cast(step, tf.float32) / self.steps_per_epoch)
    step_seed = seeding.fold_in(self.base_seed, step)
    per_replica, statistics = self.strategy.run(
        functools.partial(self._replica_step, global_batch=global_batch),
        args=(batch, step_seed))
    metrics = {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
               for k, v in per_replica.items()}
    if statistics:
      # In cross-replica context: one update of the (mirrored) state from the global batch.
      self.model.apply_step_statistics(
          {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
           for k, v in statistics.items()})
    return metrics, step

  def _steps(self, batch_of_step, num_steps, global_batch=False):
    """Runs num_steps train steps on `batch_of_step(i)`; returns their mean metrics and the
    first non-finite step (-1 if none)."""

    def first_bad(metrics, step, so_far):
      bad = tf.logical_not(tf.math.is_finite(metrics["loss"]))
      return tf.where(bad & (so_far < 0), step, so_far)

    # The first step outside the loop gives the loop its metric names.
    totals, step = self._one_step(batch_of_step(0), global_batch)
    first_bad_step = first_bad(totals, step, tf.constant(-1, tf.int64))
    for i in tf.range(1, num_steps):
      metrics, step = self._one_step(batch_of_step(i), global_batch)
      first_bad_step = first_bad(metrics, step, first_bad_step)
      totals = {k: totals[k] + metrics[k] for k in totals}
    return {k: v / tf.cast(num_steps, tf.float32) for k, v in totals.items()}, first_bad_step

  def _block_steps_fn(self, block, num_steps):
    """`_steps` over a block of num_steps batches, [num_steps * batch, ...] per tensor."""
    by_step = {k: tf.reshape(v, tf.concat([[num_steps, self.global_batch_size],
                                           tf.shape(v)[1:]], 0)) for k, v in block.items()}
    return self._steps(lambda i: {k: tf.gather(v, i) for k, v in by_step.items()}, num_steps)

  def _train_steps_fn(self, iterator, num_steps):
    """Runs num_steps train steps; returns their mean metrics and the first non-finite step."""
    take = getattr(iterator, "take", None)
    if self._compiled_steps is not None and take is not None:
      return self._compiled_steps(take(num_steps), tf.cast(num_steps, tf.int32))
    global_batch = getattr(iterator, "yields_global_batches", False)
    return self._steps(lambda i: next(iterator), num_steps, global_batch)

  def train_steps(self, iterator, num_steps: int):
    """Runs num_steps steps; returns ({name: mean value}, first non-finite step or -1)."""
    metrics, bad_step = self._train_steps(iterator, tf.constant(num_steps, tf.int64))
    return {k: float(v) for k, v in metrics.items()}, int(bad_step)

  def _eval_step_fn(self, batch, seed):
    return self.model.bounds(batch, seed)

  def evaluate_bounds(self, dataset: tf.data.Dataset, seed: int) -> Dict[str, float]:
    """Means of the model's per-example bounds over a dataset."""
    sums, count = {}, 0
    for i, batch in enumerate(dataset):
      values = self._eval_step(batch, seeding.as_seed([seed, i]))
      for k, v in values.items():
        sums[k] = sums.get(k, 0.0) + float(tf.reduce_sum(v))
      count += int(tf.shape(batch["image"])[0])
    return {k: v / max(count, 1) for k, v in sums.items()}


class CallSizer:
  """How many train steps the next compiled call runs.

  At most `max_steps` (fewer Python round trips for fast models), and for slow models the power
  of two of steps that lasts at most `seconds` by the step time measured so far (at least one
  step). A stop (Ctrl-C, SIGTERM) waits for the call in flight, so this bounds the time a stop
  takes whatever the model's speed. Powers of two keep the distinct call sizes few: with XLA
  each size is compiled once.

  Args:
    max_steps: config.train.steps_per_execution.
    seconds: config.train.seconds_per_call; 0 always runs max_steps.
  """

  def __init__(self, max_steps: int, seconds: float):
    self.max_steps = max(int(max_steps), 1)
    self.seconds = float(seconds)
    # One step until a step has been timed: a slow model's first call must not be a long one.
    self.size = 1 if self.seconds > 0 else self.max_steps
    self._sizes_run = set()

  def next_call(self, steps_left: int) -> int:
    return max(min(self.size, steps_left), 1)

  def record(self, num_steps: int, seconds: float) -> None:
    """Takes the wall time of a call of num_steps steps into the next size."""
    if self.seconds <= 0:
      return
    if num_steps not in self._sizes_run:
      # The first call of a size may include tracing and XLA compilation: not a step time.
      self._sizes_run.add(num_steps)
      return
    fit = int(self.seconds * num_steps / max(seconds, 1e-9))
    self.size = min(1 << (max(fit, 1).bit_length() - 1), self.max_steps)


def write_image_grids(model, images, workdir: str, seed: int, step: int,
                      writer: Optional[tf.summary.SummaryWriter] = None) -> None:
  """Writes the pictures the model declares (`training_pictures`: samples, reconstructions, ...)
  as NAME.png and TensorBoard images."""
  for name, picture in model.training_pictures(images, seed).items():
    viz.write_png(os.path.join(workdir, f"{name}.png"), picture)
    if writer is not None:
      with writer.as_default():
        tf.summary.image(name, picture[None], step=step)


def _first_images(dataset: tf.data.Dataset, num: int) -> np.ndarray:
  return next(iter(dataset.unbatch().batch(num).take(1)))["image"].numpy()


def check_names(config: ml_collections.ConfigDict) -> None:
  """Fails on an unknown model, data set, optimizer or schedule before any slow work."""
  models.MODELS.get(config.model.name)
  data_lib.SOURCES.get(config.data.name)
  optimizers.OPTIMIZERS.get(config.train.optimizer)
  schedules.SCHEDULES.get(config.train.schedule)


def train(config: ml_collections.ConfigDict, workdir: str, init_from: Optional[str] = None,
          strategy: Optional[tf.distribute.Strategy] = None,
          show_progress: bool = True) -> TrainResult:
  """Trains `config`'s model in `workdir`, resuming from its newest checkpoint if there is one.

  Args:
    config: a full tfgen config (see tfgen/config.py and configs/).
    workdir: where checkpoints, TensorBoard events, PNGs and the config are written.
    init_from: another run's workdir to take the initial model weights from (ignored when
      workdir already holds a checkpoint, which takes precedence).
    strategy: a tf.distribute strategy; default: `default_strategy()`. Under
      MultiWorkerMirroredStrategy every worker passes the same workdir (a file system they
      share): the chief writes checkpoints, events, PNGs and the config there, the other workers
      write their copies of the checkpoints into a temporary folder beside them that is deleted
      after each save, and every worker restores from the chief's checkpoints.
    show_progress: draw a progress bar on stdout.

  Returns:
    A TrainResult.

  Raises:
    ConfigError, DataError, WorkdirError: bad config, data or workdir; nothing saved is lost.
    NonFiniteLossError: the loss became NaN or infinite; the last good checkpoint is kept.
  """
  config_lib.validate(config)
  check_names(config)
  strategy = strategy or default_strategy()
  replicas = strategy.num_replicas_in_sync
  if config.train.batch_size % replicas:
    raise errors.ConfigError(f"config.train.batch_size ({config.train.batch_size}) must be a "
                             f"multiple of the {replicas} replicas in sync, so that every "
                             "replica gets the same per-replica batch")
  if is_chief(strategy):
    with workdir_lib.locked(workdir):
      deferred = _record_config(config, workdir)
      return _train_locked(config, workdir, workdir, init_from, strategy, show_progress,
                           save_config_after_restore=deferred)
  # A non-chief worker: its checkpoint writes (which every worker must make) go to a folder of
  # its own that is deleted afterwards; the chief's files are the run's.
  write_dir = os.path.join(workdir, f"worker_{_task_id(strategy)}_tmp")
  try:
    with workdir_lib.locked(write_dir):
      return _train_locked(config, workdir, write_dir, init_from, strategy, show_progress)
  finally:
    shutil.rmtree(write_dir, ignore_errors=True)


def _record_config(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Writes the run's config.json; a run that has checkpoints keeps the config it trained with.

  Resuming may change only the fields of `config_lib.RESUMABLE_FIELDS` (more epochs, other
  checkpoint or evaluation frequencies, a moved data folder); those changes are appended to the
  run's config history. Anything else is refused before a file is touched.

  Returns:
    True when the workdir holds checkpoints but no config.json: the config is then written only
    once a checkpoint has restored into the model it builds (it may be another model's).

  Raises:
    ConfigError: the config differs from the run's in a field that shapes its training.
  """
  newest = workdir_lib.newest_checkpoint(workdir)
  if newest is not None and not os.path.exists(os.path.join(workdir, config_lib.CONFIG_FILE)):
    return True
  if newest is not None:
    saved = config_lib.load_from_workdir(workdir)
    changes = config_lib.check_resume(saved, config, workdir)
    if not changes:
      return False
    config_lib.append_history(workdir, changes, resumed_from=os.path.basename(newest))
  config_lib.save(config, workdir)
  return False


def _train_locked(config, workdir, write_dir, init_from, strategy, show_progress,
                  save_config_after_restore: bool = False) -> TrainResult:
  """Trains; `write_dir` is workdir on the chief, a temporary folder on other workers."""
  invoked = time.perf_counter()
  chief = write_dir == workdir
  train_cfg = config.train
  # Before the pipelines are built: their shuffle seeds combine with the global seed.
  keras.utils.set_random_seed(config.seed)
  data = data_lib.load(config.data, train_cfg.batch_size, config.eval.batch_size,
                       seed=config.seed)
  # Again: preparing a data set (TFDS's builders, a folder) may draw from the global generators,
  # and a run's initial weights must not depend on whether its data were prepared by this
  # process or an earlier one.
  keras.utils.set_random_seed(config.seed)
  precision = train_cfg.get("precision", "float32")
  with strategy.scope(), compute_precision(precision):
    model = models.build(config.model, data.info)
    model.build_for_images()
    optimizer = optimizers.build(train_cfg, precision)
    optimizer.build(model.trainable_variables)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
  if chief:
    workdir_lib.remove_partial_checkpoints(workdir)
  # Every worker restores from the chief's checkpoints, found from the files on disk; the chief
  # also mends a lost or stale index file and sets aside newer checkpoints that did not restore,
  # before the manager (which reads the index) is made, so that it never writes over them.
  restored = workdir_lib.restore_newest(checkpoint, workdir, repair=chief)
  # Only now: a workdir whose checkpoints do not restore keeps the files that describe them.
  if chief:
    workdir_lib.save_data_info(data.info, workdir)
    if data.skipped_files:
      workdir_lib.save_skipped_files(data.skipped_files, workdir)
    if save_config_after_restore:
      config_lib.save(config, workdir)
  manager = workdir_lib.checkpoint_manager(checkpoint, write_dir,
                                           train_cfg.max_checkpoints_to_keep)
  if restored:
    logging.info("resumed from %s at epoch %d, step %d", restored, _read_int(epoch_var),
                 _read_int(optimizer.iterations))
  elif init_from:
    logging.info("initial weights from %s", workdir_lib.restore_model(model, init_from))
    # Saved at once so that a resumed run continues from these weights, not from init_from's.
    _save(manager, 0, chief)
    restored = True

  trainer = Trainer(model, optimizer, strategy, train_cfg.batch_size, config.seed,
                    data.steps_per_epoch, jit_compile=train_cfg.get("jit_compile", False))
  # Workers of a multi-worker run must run calls of the same size, and their step times differ:
  # they keep the fixed size (docs/scaling.md).
  sizer = CallSizer(train_cfg.steps_per_execution,
                    0.0 if _is_multi_worker(strategy) else train_cfg.get("seconds_per_call", 0.0))
  writer = (tf.summary.create_file_writer(os.path.join(workdir, workdir_lib.TENSORBOARD_DIR))
            if chief else tf.summary.create_noop_writer())
  in_graph = train_batches_in_graph(data, config)
  grid_images = _first_images(data.validation, 32)
  train_metrics, validation_metrics = {}, {}
  saved_step = _read_int(optimizer.iterations) if restored else -1
  # A run stopped mid-epoch resumes at the batch it reached: an epoch's batches depend only on
  # the seed and the epoch number, so skipping the ones already trained on gives the steps an
  # uninterrupted run would take, and the run ends at the same step.
  steps_done = min(max(_read_int(optimizer.iterations)
                       - _read_int(epoch_var) * data.steps_per_epoch, 0),
                   data.steps_per_epoch)
  patience = train_cfg.get("early_stopping_epochs", 0)
  stopper = (early_stopping.EarlyStopping(model, workdir, write_dir, patience,
                                          model.selection_metrics, chief) if patience else None)
  stopped_early = False
  finished_cleanly = nonfinite = False
  epochs_before = _read_int(epoch_var)
  stop_after = train_cfg.get("stop_after_epochs", 0)
  end_epoch = min(stop_after, train_cfg.num_epochs) if stop_after else train_cfg.num_epochs
  # A SIGTERM or Ctrl-C stops the loop between compiled train calls (tfgen/signals.py).
  with signals.deferred():
    try:
      for epoch in range(_read_int(epoch_var), end_epoch):
        if stopper and stopper.should_stop(epoch):  # A run that stopped early, started again.
          stopped_early = True
          break
        signals.raise_if_requested()
        learning_rate = schedules.learning_rate(epoch, train_cfg)
        optimizer.learning_rate.assign(learning_rate)
        if in_graph:
          train_iterable = in_graph.start_epoch(epoch, steps_done)
        else:
          epoch_data = data.train_epoch(epoch).skip(steps_done)
          train_iterable = strategy.experimental_distribute_dataset(_sharded_by_data(epoch_data))
        num_steps = data.steps_per_epoch - steps_done
        train_metrics, seconds = _run_epoch(trainer, train_iterable, num_steps, sizer, epoch,
                                            train_cfg, show_progress, first_step=steps_done)
        steps_done = 0
        epoch_var.assign(epoch + 1)
        step = _read_int(optimizer.iterations)
        examples_per_second = num_steps * train_cfg.batch_size / max(seconds, 1e-9)
        last = epoch + 1 == end_epoch
        validated = bool(train_cfg.eval_every_epochs) and (
            (epoch + 1) % train_cfg.eval_every_epochs == 0 or last)
        if validated:
          validation_metrics = trainer.evaluate_bounds(data.validation, config.seed)
        with writer.as_default():
          for name, value in train_metrics.items():
            tf.summary.scalar(f"train/{name}", value, step=step)
          # Only at the steps where they were measured: repeating the last ones every epoch
          # would draw a flat curve between evaluations.
          for name, value in (validation_metrics.items() if validated else ()):
            tf.summary.scalar(f"validation/{name}", value, step=step)
          tf.summary.scalar("train/learning_rate", learning_rate, step=step)
          tf.summary.scalar("train/examples_per_second", examples_per_second, step=step)
        logging.info("epoch %d/%d step %d: %s | validation %s | %.0f examples/s", epoch + 1,
                     train_cfg.num_epochs, step, _fmt(train_metrics), _fmt(validation_metrics),
                     examples_per_second)
        if stopper and validated:
          stopper.update(epoch + 1, step, validation_metrics)
          stopped_early = stopper.should_stop(epoch + 1)
        if (epoch + 1) % train_cfg.checkpoint_every_epochs == 0 or last or stopped_early:
          saved_step = _save(manager, step, chief)
          if chief:
            write_image_grids(model, grid_images, workdir, config.seed, step, writer)
        if stopped_early:
          break
      if stopped_early:
        logging.info("%s", stopper.stop_message(_read_int(epoch_var)))
      finished_cleanly = True
    except errors.NonFiniteLossError:
      nonfinite = True
      raise
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM from a scheduler.
      if chief:  # The checkpoint of this step is written below, on the way out.
        e.add_note(f"checkpoint at step {_read_int(optimizer.iterations)} "
                   f"(epoch {_read_int(epoch_var) + 1}) in "
                   f"{os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)}; the same command "
                   "resumes from it")
      raise
    finally:
      # At exit (also after an error) save progress made since the last checkpoint, except
      # after a non-finite loss: then the last good checkpoint must stay the newest.
      step = _read_int(optimizer.iterations)
      if not finished_cleanly and not nonfinite and step != saved_step:
        saved_step = _save(manager, step, chief)
      writer.flush()
      if chief:
        outcome = ("stopped early" if stopped_early else "finished" if finished_cleanly
                   else "non-finite loss" if nonfinite else "stopped")
        workdir_lib.record_session(
            workdir, date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), host=socket.gethostname(),
            epochs_before=epochs_before, epochs_after=_read_int(epoch_var), step=step,
            seconds=round(time.perf_counter() - invoked, 1), outcome=outcome)
  if chief and not os.path.exists(os.path.join(workdir, SAMPLES_PNG)):
    write_image_grids(model, grid_images, workdir, config.seed, _read_int(optimizer.iterations),
                      writer)
  newest = manager.latest_checkpoint
  if newest and not chief:  # This worker's copy is deleted; name the chief's.
    newest = os.path.join(workdir, workdir_lib.CHECKPOINT_DIR, os.path.basename(newest))
  return TrainResult(_read_int(epoch_var), _read_int(optimizer.iterations), train_metrics,
                     validation_metrics, newest, model, stopped_early=stopped_early,
                     best=stopper.state if stopper else None)


def train_batches_in_graph(data: data_lib.Data, config: ml_collections.ConfigDict):
  """The training set as `InGraphBatches` where config and data allow it, else None."""
  if not config.data.get("in_graph", False) or data.train_in_graph is None:
    return None
  batches = data.train_in_graph()
  if batches is not None:
    logging.info("training batches built in the train call from %d examples held in memory",
                 batches.num_examples)
  return batches


def _sharded_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Sets tf.data auto-sharding to split every global batch between the workers.

  Each worker reads the same shuffled stream (same seed) and keeps its part of every global batch,
  so a step sees the same examples on any number of workers; sharding by file would give each
  worker different files (and fails when there are fewer files than workers).
  """
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return dataset.with_options(options)


def _run_epoch(trainer, train_iterable, num_steps_left, sizer: CallSizer, epoch, train_cfg,
               show_progress, first_step: int = 0):
  """Trains the rest of an epoch, `num_steps_left` steps from step `first_step` of it, in calls
  of the sizes `sizer` gives.

  Returns:
    ({name: mean over the steps run}, wall seconds).
  """
  progbar = keras.utils.Progbar(first_step + num_steps_left, verbose=1 if show_progress else 0,
                                stateful_metrics=None, unit_name="step")
  if show_progress:
    resumed = f" (resumed at step {first_step + 1})" if first_step else ""
    print(f"Epoch {epoch + 1}/{train_cfg.num_epochs}{resumed}", flush=True)
  iterator = iter(train_iterable)
  done, sums = 0, {}
  start = time.perf_counter()
  while done < num_steps_left:
    num_steps = sizer.next_call(num_steps_left - done)
    call_start = time.perf_counter()
    metrics, bad_step = trainer.train_steps(iterator, num_steps)
    sizer.record(num_steps, time.perf_counter() - call_start)
    if not trainer.first_call_logged:
      # bench/loop_speed.py reads this line to time the start-up (launch to first train call).
      trainer.first_call_logged = True
      logging.info("first train call finished at %.3f (unix time)", time.time())
    if bad_step >= 0:
      raise errors.NonFiniteLossError(
          f"the loss became NaN or infinite at step {bad_step} (epoch {epoch + 1}); training "
          "stopped and the last good checkpoint is kept. Try a lower learning rate.")
    done += num_steps
    signals.raise_if_requested()
    for k, v in metrics.items():
      sums[k] = sums.get(k, 0.0) + v * num_steps
    progbar.update(first_step + done,
                   [(k, metrics[k]) for k in ("loss", "elbo") if k in metrics])
  seconds = time.perf_counter() - start
  return {k: v / max(num_steps_left, 1) for k, v in sums.items()}, seconds


def _read_int(variable) -> int:
  """The value of an integer Keras or tf.Variable, mirrored or not, as a Python int."""
  if isinstance(variable, keras.Variable):  # Keras 3 variables wrap a tf.Variable.
    variable = variable.value
  return int(tf.convert_to_tensor(variable).numpy())


def _save(manager, step: int, chief: bool = True) -> int:
  path = manager.save(checkpoint_number=step)
  if chief:
    logging.info("saved %s", path)
  else:
    shutil.rmtree(manager.directory, ignore_errors=True)
  return step


def _fmt(metrics: Dict[str, float]) -> str:
  return " ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items())) or "-"
