"""Turns a source's raw splits into cached, prefetched `tf.data` pipelines of dict batches.

Binarization protocol (say which one every result used):
  * "fixed": the images are stored binarized (binarized MNIST); nothing is drawn.
  * "dynamic": a fresh Bernoulli draw of every training image each time it is seen (the IWAE
    paper's protocol). Validation and test images are binarized once, with a seed fixed per
    example index, so they are the same whatever the batch size and however often they are read.
  * "none": 8-bit intensities scaled to [0, 1].
"""

import dataclasses
import json
from typing import Dict, Optional, Tuple

import tensorflow as tf

from tfgen import errors
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
  """

  name: str
  image_shape: Tuple[int, int, int]
  binarization: str
  num_examples: Dict[str, int]
  num_classes: Optional[int] = None

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
  """Batched pipelines of dicts with `image` (float32 [B, H, W, C]) and maybe `label` (int32 [B])."""

  train: tf.data.Dataset
  validation: tf.data.Dataset
  test: tf.data.Dataset
  info: DataInfo
  steps_per_epoch: int

  def split(self, name: str) -> tf.data.Dataset:
    if name not in ("train", "validation", "test"):
      raise errors.ConfigError(f"unknown split {name!r}; known: train, validation, test")
    return getattr(self, name)


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


def load(config, batch_size: int, eval_batch_size: Optional[int] = None, seed: int = 0,
         splits=("train", "validation", "test"), train_for_eval: bool = False) -> Data:
  """Builds the train / validation / test pipelines of the data set `config.name`.

  Args:
    config: `config.data` of a tfgen config (name, manual_dir, data_dir, binarization,
      num_validation, limit).
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
  datasets = {}
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
    if split == "train" and not train_for_eval:
      datasets[split] = _train_pipeline(ds, counts[split], raw.binarization, batch_size, seed)
    else:
      datasets[split] = _eval_pipeline(ds, raw.binarization, eval_batch_size)
  if "train" in splits and counts["train"] < batch_size:
    raise errors.ConfigError(f"batch size {batch_size} exceeds the {counts['train']} training "
                             f"examples of {config.name!r}")
  info = DataInfo(config.name, tuple(raw.image_shape), raw.binarization, counts, raw.num_classes)
  return Data(datasets["train"], datasets["validation"], datasets["test"], info,
              steps_per_epoch=counts["train"] // batch_size)


def _train_pipeline(ds, num_examples, binarization, batch_size, seed):
  # Cache the 8-bit images: 4x smaller than floats, and dynamic binarization must come after.
  ds = ds.cache().shuffle(min(num_examples, 70000), seed=seed, reshuffle_each_iteration=True)
  ds = ds.batch(batch_size, drop_remainder=True)
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


def _eval_pipeline(ds, binarization, batch_size):
  if binarization == "dynamic":
    def binarize_once(index, ex):
      seed = tf.stack([tf.constant(EVAL_BINARIZATION_SEED, tf.int64), index])
      return {**ex, "image": _binarize(_to_float(ex["image"], "dynamic"), seed)}
    ds = ds.enumerate().map(binarize_once, num_parallel_calls=tf.data.AUTOTUNE)
  else:
    ds = ds.map(lambda ex: {**ex, "image": _to_float(ex["image"], binarization)},
                num_parallel_calls=tf.data.AUTOTUNE)
  return ds.cache().batch(batch_size).prefetch(tf.data.AUTOTUNE)
