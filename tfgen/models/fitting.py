"""Keras' own conventions on every tfgen model: compile, fit, evaluate, predict, save and load.

The base class (`GenerativeModel`) inherits this mixin, so every registered model keeps the
habits of a Keras user without a line of its own:

    model = tfgen.build("nade", image_shape=(28, 28, 1))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x_train, batch_size=100, epochs=5, validation_data=x_valid)
    model.evaluate(x_test, batch_size=100)      # {"loss", "nll", "bits_per_dim", bounds...}
    model.save("nade.keras"); keras.saving.load_model("nade.keras")

The model owns its loss: `compile` takes an optimizer but no `loss` or `metrics`. One train step
is the step of tfgen's own loop (tfgen/train.py): both call `replica_gradients` below, with the
same stateless seed (the compile seed folded with the optimizer's step, then with the replica),
the same average over the global batch and the same schedule update, so from the same weights
and batch both make the same update (tests/test_fitting.py). What is logged are Keras metrics:
`loss` and the per-example metrics the model's `loss` returns (ELBO, rate, distortion, ...).

`evaluate` measures what tfgen-evaluate measures: the model's `evaluation_terms` with
`num_importance_samples` (the protocol's k; compile argument, default config.eval's), averaged
over the images, as `nll` (−log p(x) in nats), `bits_per_dim` and the model's bounds. It seeds
batch i as tfgen-evaluate does (seed + 1, i), so on the same images in the same batches it gives
the same NLL. The validation of `fit` instead measures the model's `bounds` (cheap, as tfgen's
loop validates), reported as `val_loss`, `val_elbo`, `val_log_prob`, ... `predict` gives
per-image `log_prob` and `bits_per_dim`.

Inputs, everywhere: a NumPy array or tensor of images [N, H, W, C] in [0, 1] ([N, H, W] for
one channel), a `tf.data.Dataset` of image batches, of (images, labels) pairs or of batch dicts
(`{"image", "label"}`, what `tfgen.data.load` yields), or a `tfgen.data.Data` (its `train`).

Saving: `get_config` is the constructor's arguments (captured when the model is made) and the
data description the model was built for; `build_from_config` creates the weights, so
`keras.saving.load_model` restores them, and the optimizer's with them.
"""

import math
from typing import Dict, Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from tfgen import seeding

# Added to the batch dicts of `evaluate` and `predict`: batch i is seeded from i, as in
# tfgen-evaluate. Removed before the model sees the batch.
BATCH_INDEX = "batch_index"


def replica_gradients(model, optimizer, batch: Dict[str, tf.Tensor], seed: tf.Tensor,
                      global_batch_size):
  """One replica's share of a train step: (global-mean metrics, state statistics, gradients).

  The one definition of a step's loss, which tfgen's loop (tfgen/train.py) and `fit` both use.
  The per-example loss is summed and divided by the global batch size, so the replicas' shares
  add up to the global mean (`tf.nn.compute_average_loss`).

  Args:
    model: a GenerativeModel.
    optimizer: its Keras optimizer (scales the loss for float16 compute).
    batch: this replica's batch dict.
    seed: int32 [2], this replica's seed for the step.
    global_batch_size: examples of the step over all replicas (int or int32 scalar).
  """
  with tf.GradientTape() as tape:
    per_example_loss, metrics = model.loss(batch, seed=seed, training=True)
    loss = tf.nn.compute_average_loss(per_example_loss, global_batch_size=global_batch_size)
    if model.losses:
      loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
    # A loss-scaling optimizer (float16 compute) scales here and unscales in apply_gradients.
    scaled_loss = optimizer.scale_loss(loss)
  # Statistics for state outside the gradient (an EMA codebook), from the weights the loss saw.
  statistics = model.step_statistics(batch, seed)
  gradients = tape.gradient(scaled_loss, model.trainable_variables)
  averages = {name: tf.nn.compute_average_loss(tf.cast(value, tf.float32),
                                               global_batch_size=global_batch_size)
              for name, value in metrics.items()}
  averages["loss"] = tf.cast(loss, tf.float32)
  return averages, statistics, gradients


def default_importance_samples() -> int:
  """config.eval.num_importance_samples of the base config: the evaluation protocol's k."""
  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  return int(config_lib.base_config().eval.num_importance_samples)


class _Untracked:
  """Holds the metric trackers out of Keras' and tf.train.Checkpoint's attribute tracking, so
  compiling a model adds nothing to its checkpoints or .keras files."""

  def __init__(self, trackers):
    self.trackers = trackers


class KerasConventions:
  """compile / fit / evaluate / predict / save for GenerativeModel (see the module docstring)."""

  # --- compile ----------------------------------------------------------------------------------

  def compile(self, optimizer="adam", loss=None, metrics=None, *, seed: int = 0,
              num_importance_samples: Optional[int] = None, **kwargs):
    """Configures the model for `fit`, `evaluate` and `predict`.

    Args:
      optimizer: a Keras optimizer or its name.
      loss, metrics: must be None: the model owns its loss and declares its metrics.
      seed: base of the stateless seeds of the train steps (tfgen's `config.seed`).
      num_importance_samples: k of the importance-sampled log p(x) of latent-variable models in
        `evaluate` and `predict` (default: config.eval's, 5000). Exact models ignore it.
      **kwargs: Keras' own (`steps_per_execution`, `jit_compile`, `run_eagerly`, ...).
    """
    if loss is not None or metrics is not None or kwargs.get("weighted_metrics") is not None:
      raise ValueError(f"{type(self).__name__} owns its loss and metrics: compile it with an "
                       "optimizer only (compile(optimizer=...))")
    if not isinstance(seed, (int, np.integer)):
      raise ValueError(f"seed must be an int, got {seed!r}")
    k = default_importance_samples() if num_importance_samples is None else num_importance_samples
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
      raise ValueError(f"num_importance_samples must be a whole number >= 1, got {k!r}")
    super().compile(optimizer=optimizer, **kwargs)
    self._fit_seed, self._evaluation_k = int(seed), int(k)
    self._fit_steps_per_epoch = 1.0
    self._validating = False
    self._keras_compile_kwargs = {key: kwargs[key] for key in ("steps_per_execution",
                                                                "jit_compile", "run_eagerly")
                                  if key in kwargs}
    if not self.built:
      self.build_for_images()
    # Its slots now, not at the first step: a model saved before training then holds the
    # optimizer state that load_model restores into.
    self.optimizer.build(self.trainable_variables)
    self._make_trackers()

  def _make_trackers(self):
    """Keras Mean metrics for every name the model's loss, bounds and evaluation report.

    The names are read off one eager call on a dummy batch of two images, so the trackers
    exist before the train and test functions are traced.
    """
    batch = self._dummy_batch()
    seed = seeding.as_seed(0)
    _, train_metrics = self.loss(batch, seed=seed, training=False)
    bounds = self.bounds(batch, seed)
    terms, _ = self.evaluation_terms(batch, seed, 1)
    self._train_names = ["loss"] + [n for n in train_metrics if n != "loss"]
    self._validation_names = ["loss"] + [n for n in bounds if n != "loss"]
    self._evaluation_names = (["loss", "nll", "bits_per_dim"]
                              + [n for n in terms if n not in ("loss", "nll", "bits_per_dim")])
    names = dict.fromkeys(self._train_names + self._validation_names + self._evaluation_names)
    names.pop("loss")  # Keras' own loss tracker.
    self._trackers = _Untracked({name: keras.metrics.Mean(name=name) for name in names})

  def _dummy_batch(self):
    return {"image": tf.zeros((2,) + self.image_shape), "label": tf.zeros([2], tf.int32)}

  @property
  def metrics(self):
    trackers = getattr(self, "_trackers", None)
    return super().metrics + (list(trackers.trackers.values()) if trackers else [])

  def get_compile_config(self):
    if not self.compiled:
      return {}
    return {"optimizer": keras.saving.serialize_keras_object(self.optimizer),
            "seed": self._fit_seed, "num_importance_samples": self._evaluation_k,
            **self._keras_compile_kwargs}

  def compile_from_config(self, config):
    config = dict(config)
    config["optimizer"] = keras.optimizers.get(
        keras.saving.deserialize_keras_object(config["optimizer"]))
    self.compile(**config)  # Builds the optimizer: load_model restores its state into it.

  # --- The steps --------------------------------------------------------------------------------

  def _as_batch(self, data) -> Dict[str, tf.Tensor]:
    """The batch dict of whatever Keras hands a step (see the module docstring)."""
    labels = None
    if isinstance(data, (tuple, list)):
      data = [d for d in data if d is not None]
      if len(data) > 1:
        labels = data[1]
      data = data[0]
    batch = dict(data) if isinstance(data, dict) else {"image": data}
    image = tf.convert_to_tensor(batch["image"])
    if image.shape.rank == 3 and self.image_shape[-1] == 1:
      image = image[..., None]  # [N, H, W]: one channel.
    batch["image"] = tf.cast(image, tf.float32)
    if labels is not None:
      batch["label"] = labels
    if "label" in batch:
      batch["label"] = tf.cast(tf.reshape(batch["label"], [-1]), tf.int32)
    return batch

  def train_step(self, data):
    batch = self._as_batch(data)
    context = tf.distribute.get_replica_context()
    step = tf.cast(self.optimizer.iterations, tf.int64)
    epoch = tf.cast(step, tf.float32) / self._fit_steps_per_epoch
    # Schedules and the EMA state are mirrored: set once, in cross-replica context.
    context.merge_call(lambda _: self.update_schedules(epoch))
    seed = seeding.fold_in(seeding.fold_in(seeding.as_seed(self._fit_seed), step),
                           context.replica_id_in_sync_group)
    local_batch_size = tf.shape(batch["image"])[0]
    averages, statistics, gradients = replica_gradients(
        self, self.optimizer, batch, seed, local_batch_size * context.num_replicas_in_sync)
    self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
    if statistics:
      context.merge_call(lambda strategy, values: self.apply_step_statistics(
          {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
           for k, v in values.items()}), args=(statistics,))
    # `averages` are this replica's share of the global means; the trackers weigh each
    # replica's own mean by its examples.
    share = tf.cast(context.num_replicas_in_sync, tf.float32)
    weight = tf.cast(local_batch_size, tf.float32)
    self._loss_tracker.update_state(averages.pop("loss") * share, sample_weight=weight)
    for name, value in averages.items():
      self._trackers.trackers[name].update_state(value * share, sample_weight=weight)
    return self._results(self._train_names)

  def _results(self, names):
    trackers = dict(self._trackers.trackers, loss=self._loss_tracker)
    return {name: trackers[name].result() for name in names}

  def _batch_seed(self, batch, offset: int):
    index = batch.pop(BATCH_INDEX, None)
    index = tf.zeros([], tf.int64) if index is None else tf.reshape(index, [-1])[0]
    seed = seeding.as_seed([tf.constant(self._fit_seed + offset, tf.int64), index])
    context = tf.distribute.get_replica_context()
    if context.num_replicas_in_sync == 1:
      return seed  # tfgen-evaluate's seed of batch i.
    return seeding.fold_in(seed, context.replica_id_in_sync_group)

  def test_step(self, data):
    batch = self._as_batch(data)
    if self._validating:
      # As tfgen's loop validates: the model's bounds, seeded (seed, i).
      seed = self._batch_seed(batch, 0)
      terms, names = dict(self.bounds(batch, seed)), self._validation_names
    else:
      # As tfgen-evaluate: evaluation_terms with the protocol's k, seeded (seed + 1, i).
      seed = self._batch_seed(batch, 1)
      terms, _ = self.evaluation_terms(batch, seed, self._evaluation_k)
      terms = dict(terms)
      terms["nll"] = -terms["log_prob"]
      terms["bits_per_dim"] = self.bits_per_dim(terms["log_prob"])
      names = self._evaluation_names
    per_example_loss, _ = self.loss(batch, seed=seeding.fold_in(seed, 2), training=False)
    self._loss_tracker.update_state(per_example_loss)
    for name, value in terms.items():
      if name in self._trackers.trackers:
        self._trackers.trackers[name].update_state(tf.cast(value, tf.float32))
    return self._results(names)

  def predict_step(self, data):
    batch = self._as_batch(data)
    # The log p(x) evaluate averages: the same draws as tfgen-evaluate's for batch i.
    terms, _ = self.evaluation_terms(batch, self._batch_seed(batch, 1), self._evaluation_k)
    return self.scores(terms["log_prob"])

  def call(self, inputs, training=False):
    """log p(x) [B] of images [B, H, W, C] (k importance samples for latent-variable models)."""
    del training
    batch = self._as_batch(inputs)
    return self.log_prob(batch, seeding.as_seed(getattr(self, "_fit_seed", 0)))

  # --- fit, evaluate, predict -------------------------------------------------------------------

  def _require_compiled(self, method: str):
    if not self.compiled:
      raise RuntimeError(f"{type(self).__name__}.{method} needs compile(optimizer=...) first")

  def fit(self, x=None, y=None, batch_size=None, epochs=1, validation_data=None,
          steps_per_epoch=None, validation_batch_size=None, **kwargs):
    """keras.Model.fit on images, batches or a tfgen data set (see the module docstring).

    Schedules given in epochs (KL warm-up, ...) take their epoch from the step and the number of
    steps per epoch: `steps_per_epoch`, else the data's own.
    """
    self._require_compiled("fit")
    x = _unwrap(x, "train")
    if isinstance(x, tf.data.Dataset):
      kwargs.setdefault("shuffle", False)  # A dataset shuffles itself (tfgen's do, per epoch).
    steps = steps_per_epoch or _num_batches(x, batch_size)
    if steps is None:
      logging.warning("fit: the data's number of batches is unknown, so schedules given in "
                      "epochs count every step as an epoch; pass steps_per_epoch=")
    steps = float(steps or 1)
    if steps != self._fit_steps_per_epoch:
      self._fit_steps_per_epoch = steps
      self.train_function = None  # Traced with the old value.
    if validation_data is not None:
      validation_data = self._indexed(_unwrap(validation_data, "validation"),
                                      validation_batch_size or batch_size)
    self._validating = True
    self.test_function = None
    try:
      return super().fit(x, y, batch_size=batch_size, epochs=epochs,
                         validation_data=validation_data, steps_per_epoch=steps_per_epoch,
                         validation_batch_size=validation_batch_size, **kwargs)
    finally:
      self._validating = False
      self.test_function = None

  def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
    """keras.Model.evaluate: the test NLL under the evaluation protocol (module docstring)."""
    self._require_compiled("evaluate")
    if kwargs.get("_use_cached_eval_dataset"):
      return super().evaluate(x, y, batch_size=batch_size, **kwargs)
    return super().evaluate(self._indexed(_unwrap(x, "test"), batch_size, y), **kwargs)

  def predict(self, x, batch_size=None, **kwargs):
    """Per-image {"log_prob" (nats), "bits_per_dim"} as NumPy arrays [N]."""
    self._require_compiled("predict")
    return super().predict(self._indexed(_unwrap(x, "test"), batch_size), **kwargs)

  def _indexed(self, x, batch_size, y=None) -> tf.data.Dataset:
    """x as a dataset of batch dicts, batch i carrying its index i (for its seed)."""
    if not isinstance(x, tf.data.Dataset):
      if isinstance(x, dict):
        elements = dict(x)
      else:
        elements = {"image": x}
      if y is not None:
        elements["label"] = y
      x = tf.data.Dataset.from_tensor_slices(elements).batch(batch_size or 32)
    elif y is not None:
      raise ValueError("give labels inside the dataset, not as y")

    def add_index(i, data):
      batch = self._as_batch(data)
      batch[BATCH_INDEX] = tf.fill(tf.shape(batch["image"])[:1], i)
      return batch

    return x.enumerate().map(add_index)

  # --- Saving -----------------------------------------------------------------------------------

  def get_config(self):
    """The constructor's arguments and the data description: `from_config` rebuilds the model."""
    config = {"name": self.name}
    config.update(_plain(self.constructor_arguments()))
    info = getattr(self, "data_info", None)
    if info is not None:
      config["data_info"] = info.to_json()
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    info = config.pop("data_info", None)
    fields = {k: as_tuples(v) for k, v in config.items()}
    model = cls(**fields)
    if info is not None:
      from tfgen.data import pipeline  # pylint: disable=g-import-not-at-top
      model.data_info = pipeline.DataInfo.from_json(info)
    return model

  def get_build_config(self):
    return {"image_shape": list(self.image_shape)}

  def build_from_config(self, config):
    del config
    self.build_for_images()

  def export(self, filepath, format="tf_saved_model", verbose=None, **kwargs):
    """Writes the SavedModel tfgen-export writes (every declared signature, with its limits).

    Args:
      filepath: a new or empty folder.
      format: only "tf_saved_model".
      verbose: unused (Keras' argument).
      **kwargs: `max_batch_size`, `max_samples`, `max_importance_samples` (tfgen.export.Limits).
    """
    del verbose
    from tfgen import export as export_lib  # pylint: disable=g-import-not-at-top
    if format != "tf_saved_model":
      raise ValueError(f"tfgen models export as a TensorFlow SavedModel only, not {format!r}")
    return export_lib.export_model(self, filepath, **kwargs)


def _unwrap(x, split: str):
  """A tfgen.data.Data gives its `split` dataset; anything else is returned as it is."""
  from tfgen.data import pipeline  # pylint: disable=g-import-not-at-top
  return x.split(split) if isinstance(x, pipeline.Data) else x


def _num_batches(x, batch_size) -> Optional[int]:
  if isinstance(x, tf.data.Dataset):
    n = int(x.cardinality())
    return n if n > 0 else None
  if x is None:
    return None
  first = next(iter(x.values())) if isinstance(x, dict) else x
  return math.ceil(len(first) / (batch_size or 32))


def _plain(value):
  """Config values Keras can write as JSON: mappings as dicts, sequences as lists."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value


def as_tuples(value):
  """Lists read back from JSON as the tuples the constructors were given."""
  if isinstance(value, (list, tuple)):
    return tuple(as_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: as_tuples(v) for k, v in value.items()}
  return value

