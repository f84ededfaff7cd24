"""Turns a source's raw splits into cached, prefetched `tf.data` pipelines of dict batches.

Binarization protocol (say which one every result used):
  * "fixed": the images are stored binarized (binarized MNIST); nothing is drawn.
  * "dynamic": a fresh Bernoulli draw of every training image each time it is seen (the IWAE
    paper's protocol). Validation and test images are binarized once, with a seed fixed per
    example index, so they are the same whatever the batch size and however often they are read.
  * "none": 8-bit intensities scaled to [0, 1].

Semi-supervised training (`config.data.num_labels` > 0): only a fixed subset of the training
labels is kept, num_labels / classes images of each class, chosen with `config.data.label_seed`.
Every training batch then holds `labelled_per_batch` images of that subset (drawn again and again,
reshuffled at every pass: the subset is small) followed by images of the whole training split
whose labels are hidden. Batches carry `labelled` (bool [B]); hidden labels read -1, so a model
cannot see more labels than configured.
"""

import dataclasses
import functools
import json
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfgen import errors
from tfgen.data import in_graph
from tfgen.data import sources

BINARIZATIONS = ("fixed", "dynamic", "none")

# The seed of the one binarization of validation and test sets: part of the evaluation protocol,
# so it is a constant, not a config value.
EVAL_BINARIZATION_SEED = 20160201


@dataclasses.dataclass
class DataInfo:
  """What models and the training loop need to know about a data set.

  Attributes:
    name: the config name of the data set.
    image_shape: (H, W, C).
    binarization: "fixed", "dynamic" or "none" (see the module docstring).
    num_examples: split name to number of examples (after config.data.limit).
    num_classes: number of label classes, None where there are no labels.
    class_names: the name of each label where the source knows them (a folder's classes).
  """

  name: str
  image_shape: Tuple[int, int, int]
  binarization: str
  num_examples: Dict[str, int]
  num_classes: Optional[int] = None
  class_names: Optional[List[str]] = None

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "DataInfo":
    fields = json.loads(text)
    fields["image_shape"] = tuple(fields["image_shape"])
    return cls(**fields)

  @property
  def binary(self) -> bool:
    """Whether images take values in {0, 1}."""
    return self.binarization != "none"

  @property
  def num_levels(self) -> int:
    """Number of intensity levels a pixel can take (2 for binary images, else 256)."""
    return 2 if self.binary else 256


@dataclasses.dataclass
class Data:
  """Batched pipelines of dicts with `image` (float32 [B, H, W, C]) and maybe `label` (int32 [B]).

  Attributes:
    train: the training batches of the first epoch (`train_epoch(0)`).
    validation, test: every example once, in order.
    info: what models need to know about the data set.
    steps_per_epoch: full training batches per epoch.
    train_epoch: epoch number to that epoch's training batches. An epoch's order (and dynamic
      binarization) depends only on the seed and the epoch number, so a run resumed mid-epoch
      can skip exactly the batches it has already trained on.
    train_in_graph: builds the training set as `InGraphBatches` (tfgen/data/in_graph.py), batched
      inside the train call; None where it cannot be (semi-supervised batches) or when the
      factory finds the set too large.
  """

  train: tf.data.Dataset
  validation: tf.data.Dataset
  test: tf.data.Dataset
  info: DataInfo
  steps_per_epoch: int
  train_epoch: Optional[Callable[[int], tf.data.Dataset]] = None
  train_in_graph: Optional[Callable[[], Optional[in_graph.InGraphBatches]]] = None
  # Files the source left out as unreadable (config.data.on_bad_image="skip"), with reasons.
  skipped_files: List[str] = dataclasses.field(default_factory=list)

  def split(self, name: str) -> tf.data.Dataset:
    if name not in ("train", "validation", "test"):
      raise errors.ConfigError(f"unknown split {name!r}; known: train, validation, test")
    return getattr(self, name)


def epoch_seed(seed: int, epoch: int) -> int:
  """The shuffle and binarization seed of one training epoch (epoch 0 keeps `seed`)."""
  return seed + 1_000_003 * epoch


def _check_shape(name: str, split: str, ds: tf.data.Dataset, expected) -> None:
  shape = ds.element_spec["image"].shape
  if shape.rank != 3 or (shape.is_fully_defined() and tuple(shape) != tuple(expected)):
    raise errors.DataError(
        f"data set {name!r}, split {split!r}: images have shape {shape}, expected {expected}")


def _to_float(image: tf.Tensor, binarization: str) -> tf.Tensor:
  image = tf.cast(image, tf.float32)
  return image if binarization == "fixed" else image / 255.0


def _binarize(intensity: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Bernoulli draw of {0, 1} pixels with probabilities `intensity`, from a stateless seed."""
  uniform = tf.random.stateless_uniform(tf.shape(intensity), seed=seed)
  return tf.cast(uniform < intensity, tf.float32)


def _shape_checked(name: str, expected) -> callable:
  """A map function that fails with a clear message on an image of the wrong shape."""

  def check(example):
    tf.debugging.assert_equal(
        tf.shape(example["image"]), tf.constant(expected),
        message=f"data set {name!r}: an image does not have shape {expected}")
    return example

  return check


def _common(example):
  out = {"image": example["image"]}
  if "label" in example:
    out["label"] = tf.cast(example["label"], tf.int32)
  return out


def data_config(name_or_path: str, **fields):
  """config.data for a data set name or the path of an image folder or .npz file.

  Raises:
    ConfigError: a field that config.data does not have.
  """
  import os  # pylint: disable=g-import-not-at-top
  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config().data
  path = os.path.expanduser(name_or_path)
  if name_or_path not in sources.SOURCES and (os.path.isdir(path) or path.endswith(".npz")):
    config.name, config.path = ("folder" if os.path.isdir(path) else "arrays"), path
    # Binary-pixel models read user images dynamically binarized; others as 8-bit intensities.
    config.binarization = fields.pop("binarization", "none")
  else:
    config.name = name_or_path
  unknown = sorted(set(fields) - set(config.keys()))
  if unknown:
    raise errors.ConfigError(f"config.data has no field {unknown[0]!r}; its fields: "
                             f"{', '.join(sorted(config.keys()))}")
  for key, value in fields.items():
    config[key] = tuple(value) if isinstance(value, list) else value
  return config


def load(config, batch_size: int = 100, eval_batch_size: Optional[int] = None, seed: int = 0,
         splits=("train", "validation", "test"), train_for_eval: bool = False,
         **fields) -> Data:
  """Builds the train / validation / test pipelines of the data set `config.name`.

  From Python: `tfgen.data.load("binarized_mnist", batch_size=100, manual_dir=DIR)`,
  `tfgen.data.load("~/pictures", image_size=28)` (a folder of images), `load("mine.npz")`,
  `load("tfds:cifar10")`.

  Args:
    config: `config.data` of a tfgen config (name, manual_dir, data_dir, binarization,
      num_validation, limit), or a data set's name (`tfgen.data.SOURCES.names()`, "tfds:NAME"),
      or the path of an image folder or an .npz file; then `fields` set config.data's fields.
    **fields: with a name or path: config.data fields (manual_dir, binarization, image_size,
      limit, ...), with the defaults of tfgen's configs.
    batch_size: global training batch size; the last incomplete batch is dropped so every step
      sees a full batch.
    eval_batch_size: batch size of validation and test pipelines (defaults to batch_size).
    seed: seeds the training shuffle and the dynamic binarization.
    splits: which splits to build (the others are left None), so evaluation need not touch train.
    train_for_eval: build `train` like the evaluation splits (every example once, in order,
      binarized once), for reading codes or statistics off the training set.

  Returns:
    A `Data` with batched datasets of dicts: `image` float32 [B, H, W, C] in [0, 1] ({0, 1} for
    binarized sets) and `label` int32 [B] where the set has labels.

  Raises:
    ConfigError: unknown data set or binarization, or invalid sizes.
    DataError: the data cannot be had, are corrupt, or have the wrong image shape.
  """
  if isinstance(config, str):
    config = data_config(config, **fields)
  elif fields:
    raise errors.ConfigError(f"fields {sorted(fields)} are given with a data name, not a config")
  source = sources.SOURCES.get(config.name)
  if config.binarization and config.binarization not in BINARIZATIONS:
    raise errors.ConfigError(f"unknown config.data.binarization {config.binarization!r}; "
                             f"known: {', '.join(BINARIZATIONS)}")
  if batch_size <= 0:
    raise errors.ConfigError(f"batch size must be positive, got {batch_size}")
  raw = source(config)
  if raw.binarization == "fixed" and config.binarization not in ("", "fixed"):
    raise errors.ConfigError(f"data set {config.name!r} is stored binarized; "
                             f"binarization {config.binarization!r} is not available for it")
  eval_batch_size = eval_batch_size or batch_size
  counts = dict(raw.num_examples)
  datasets, train_epoch, train_in_graph = {}, None, None
  for split in ("train", "validation", "test"):
    if split not in splits:
      datasets[split] = None
      continue
    ds = raw.splits[split]
    _check_shape(config.name, split, ds, raw.image_shape)
    if config.limit:
      ds = ds.take(config.limit)
      counts[split] = min(counts[split], config.limit)
    ds = ds.map(_shape_checked(config.name, raw.image_shape))
    ds = ds.map(_common, num_parallel_calls=tf.data.AUTOTUNE)
    # A split larger than memory (a big folder) streams from its source at every pass.
    fits = counts[split] * int(np.prod(raw.image_shape)) <= in_graph.MAX_BYTES
    if split == "train" and not train_for_eval:
      train_unbatched = ds
      train_epoch = _train_epochs(ds, counts[split], raw.binarization, batch_size, seed,
                                  cache=fits, example_bytes=int(np.prod(raw.image_shape)))
      train_in_graph = functools.partial(in_graph.InGraphBatches.from_dataset, ds,
                                         counts[split], batch_size, raw.binarization, seed)
    else:
      datasets[split] = _eval_pipeline(ds, raw.binarization, eval_batch_size, cache=fits)
  if "train" in splits and counts["train"] < batch_size:
    raise errors.ConfigError(f"batch size {batch_size} exceeds the {counts['train']} training "
                             f"examples of {config.name!r}; set a smaller "
                             "--config.train.batch_size, or add images")
  steps_per_epoch = counts["train"] // batch_size
  num_labels = config.get("num_labels", 0)
  if num_labels and "train" in splits and not train_for_eval:
    train_epoch, steps_per_epoch = _semi_supervised_pipeline(
        train_unbatched, counts["train"], raw, num_labels, config.labelled_per_batch,
        config.label_seed, batch_size, seed)
    train_in_graph = None  # Its batches mix a labelled and an unlabelled stream.
  if train_epoch is not None:
    datasets["train"] = train_epoch(0)
  info = DataInfo(config.name, tuple(raw.image_shape), raw.binarization, counts, raw.num_classes,
                  list(raw.class_names) if raw.class_names else None)
  return Data(datasets["train"], datasets["validation"], datasets["test"], info,
              steps_per_epoch=steps_per_epoch, train_epoch=train_epoch,
              train_in_graph=train_in_graph, skipped_files=list(raw.skipped_files))


# The shuffle buffer of a training set holds at most this many bytes of 8-bit images.
SHUFFLE_BUFFER_BYTES = 256 << 20


def _train_epochs(ds, num_examples, binarization, batch_size, seed, cache: bool = True,
                  example_bytes: int = 784):
  """Epoch number -> that epoch's shuffled, batched training pipeline over one shared cache
  (`cache`: where the set fits in memory; a larger one is read from its source each epoch)."""
  # Cache the 8-bit images: 4x smaller than floats, and dynamic binarization must come after.
  # Every epoch's pipeline reads this one cache, so the source is decoded only once.
  cached = ds.cache() if cache else ds
  buffer = min(num_examples, 70000, max(1024, SHUFFLE_BUFFER_BYTES // max(example_bytes, 1)))

  def train_epoch(epoch: int) -> tf.data.Dataset:
    epoch_s = epoch_seed(seed, epoch)
    shuffled = cached.shuffle(buffer, seed=epoch_s, reshuffle_each_iteration=True)
    return _to_float_batches(shuffled.batch(batch_size, drop_remainder=True), binarization,
                             epoch_s)

  return train_epoch


def _to_float_batches(ds, binarization, seed):
  """Batches of 8-bit images to floats, binarized afresh at every pass when dynamic."""
  if binarization == "dynamic":
    # One stateless seed per batch, drawn anew each pass, so every pass binarizes differently
    # while a run stays reproducible from config.seed.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds).map(
        lambda ex, s: {**ex, "image": _binarize(_to_float(ex["image"], "dynamic"), s)},
        num_parallel_calls=tf.data.AUTOTUNE)
  else:
    ds = ds.map(lambda ex: {**ex, "image": _to_float(ex["image"], binarization)},
                num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)


def choose_labelled(labels: np.ndarray, num_labels: int, num_classes: int,
                    seed: int) -> np.ndarray:
  """Indices of num_labels examples, num_labels / num_classes of each class, chosen with seed.

  Raises:
    ConfigError: num_labels is not a multiple of num_classes, or a class has too few examples.
  """
  if num_labels % num_classes:
    raise errors.ConfigError(f"config.data.num_labels ({num_labels}) must be a multiple of the "
                             f"{num_classes} classes, so that every class has as many labels")
  per_class = num_labels // num_classes
  rng = np.random.RandomState(seed)
  chosen = []
  for label in range(num_classes):
    members = np.flatnonzero(labels == label)
    if len(members) < per_class:
      raise errors.ConfigError(f"config.data.num_labels={num_labels} asks for {per_class} "
                               f"labelled images of class {label}; the training split has "
                               f"{len(members)}")
    chosen.append(rng.choice(members, per_class, replace=False))
  return np.sort(np.concatenate(chosen))


def _semi_supervised_pipeline(ds, num_examples, raw, num_labels, labelled_per_batch, label_seed,
                              batch_size, seed):
  """Batches of labelled_per_batch labelled images then unlabelled ones; see the module doc.

  Returns:
    (epoch number -> that epoch's training batches, steps per epoch).
  """
  if "label" not in ds.element_spec or not raw.num_classes:
    raise errors.DataError("semi-supervised training (config.data.num_labels > 0) needs a data "
                           "set with labels")
  if not 0 < labelled_per_batch < batch_size:
    raise errors.ConfigError(f"config.data.labelled_per_batch must lie in (0, {batch_size}), "
                             f"got {labelled_per_batch}")
  labels = np.concatenate([b.numpy() for b in ds.map(lambda ex: ex["label"]).batch(10000)])
  chosen = tf.constant(choose_labelled(labels, num_labels, raw.num_classes, label_seed),
                       tf.int64)
  is_chosen = lambda i, _: tf.reduce_any(tf.equal(i, chosen))
  labelled = ds.enumerate().filter(is_chosen).map(
      lambda _, ex: {**ex, "labelled": tf.constant(True)}).cache()
  unlabelled = ds.map(lambda ex: {"image": ex["image"], "label": tf.constant(-1, tf.int32),
                                  "labelled": tf.constant(False)}).cache()
  num_unlabelled = batch_size - labelled_per_batch

  def train_epoch(epoch: int) -> tf.data.Dataset:
    epoch_s = epoch_seed(seed, epoch)
    # The labelled subset is small: drawn again and again, reshuffled at every pass.
    labelled_stream = labelled.shuffle(num_labels, seed=epoch_s + 1,
                                       reshuffle_each_iteration=True).repeat()
    unlabelled_stream = unlabelled.shuffle(min(num_examples, 70000), seed=epoch_s,
                                           reshuffle_each_iteration=True)
    batches = tf.data.Dataset.zip(
        labelled_stream.batch(labelled_per_batch, drop_remainder=True),
        unlabelled_stream.batch(num_unlabelled, drop_remainder=True))
    batches = batches.map(lambda a, b: {k: tf.concat([a[k], b[k]], 0) for k in a})
    return _to_float_batches(batches, raw.binarization, epoch_s)

  return train_epoch, num_examples // num_unlabelled


def _eval_pipeline(ds, binarization, batch_size, cache: bool = True):
  if binarization == "dynamic":
    def binarize_once(index, ex):
      seed = tf.stack([tf.constant(EVAL_BINARIZATION_SEED, tf.int64), index])
      return {**ex, "image": _binarize(_to_float(ex["image"], "dynamic"), seed)}
    ds = ds.enumerate().map(binarize_once, num_parallel_calls=tf.data.AUTOTUNE)
  else:
    ds = ds.map(lambda ex: {**ex, "image": _to_float(ex["image"], binarization)},
                num_parallel_calls=tf.data.AUTOTUNE)
  # Floats are cached only where the 8-bit images fit in memory (4x their size).
  return (ds.cache() if cache else ds).batch(batch_size).prefetch(tf.data.AUTOTUNE)
