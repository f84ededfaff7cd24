"""Raw data sources: each returns unbatched splits of uint8 images (and labels) plus facts about them.

A source knows where its data come from (a TFDS builder, a local folder) and how to bring images
to the shape tfgen models see; `tfgen.data.pipeline` turns its splits into training and evaluation
pipelines. Every source is registered by the name configs use (`config.data.name`).
"""

import dataclasses
import os
import zipfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfgen import errors
from tfgen import registry

SOURCES = registry.Registry("data set")

MANUAL_DIR_ENV = "TFGEN_MANUAL_DIR"


@dataclasses.dataclass
class RawData:
  """What a source hands the pipeline.

  Attributes:
    splits: split name ("train", "validation", "test") to an unbatched dataset of dicts with
      `image` (uint8 [H, W, C]) and, where the set has labels, `label` (int32 scalar).
    num_examples: split name to its number of examples.
    image_shape: (H, W, C) of every image.
    binarization: "fixed" when the images are already {0, 1} (stored as 0/1 uint8), "dynamic"
      when the pipeline draws a fresh binarization of grey-scale training images at every pass,
      "none" when the pipeline keeps 8-bit intensities.
    num_classes: number of label classes, or None where the set has no labels.
  """

  splits: Dict[str, tf.data.Dataset]
  num_examples: Dict[str, int]
  image_shape: Tuple[int, int, int]
  binarization: str
  num_classes: Optional[int] = None


def resolve_manual_dir(manual_dir: str) -> Optional[str]:
  """The manual_dir from the config, else from $TFGEN_MANUAL_DIR, else None."""
  manual_dir = manual_dir or os.environ.get(MANUAL_DIR_ENV, "")
  return os.path.expanduser(manual_dir) if manual_dir else None


def _missing_data_message(name: str, expected: List[str], manual_dir: Optional[str],
                          cause: str) -> str:
  where = f"manual_dir {manual_dir!r}" if manual_dir else "no manual_dir"
  return (f"data set {name!r} cannot be prepared ({where}): {cause}. It needs the files "
          f"{', '.join(expected)} in a folder given as --config.data.manual_dir=DIR "
          f"(or ${MANUAL_DIR_ENV}=DIR), or network access for tensorflow-datasets to download them.")


def _tfds_builder(name: str, tfds_name: str, expected_files: List[str], config):
  """Returns a prepared TFDS builder, preparing it offline from manual_dir where given."""
  import tensorflow_datasets as tfds  # Imported lazily: it is slow and not every path needs it.

  manual_dir = resolve_manual_dir(config.manual_dir)
  builder = tfds.builder(tfds_name, data_dir=config.data_dir or None)
  if _is_prepared(builder):
    return builder
  if manual_dir is not None:
    if not os.path.isdir(manual_dir):
      raise errors.DataError(_missing_data_message(name, expected_files, manual_dir,
                                                   "that folder does not exist"))
    missing = [f for f in expected_files if not os.path.exists(os.path.join(manual_dir, f))]
    if missing:
      raise errors.DataError(_missing_data_message(name, expected_files, manual_dir,
                                                   f"missing {', '.join(missing)}"))
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except Exception as e:  # TFDS raises many kinds; the user needs one message.
    cause = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "checksum" in str(e).lower():
      cause = ("a file is corrupt or truncated (its checksum does not match the one "
               f"tensorflow-datasets registers): {cause}")
    raise errors.DataError(_missing_data_message(name, expected_files, manual_dir,
                                                 cause)) from e
  return builder


def _is_prepared(builder) -> bool:
  try:
    return tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json"))
  except Exception:  # A data_dir that cannot be read is reported when preparing it.
    return False


def _tfds_split(builder, split: str, keys: Dict[str, str]) -> tf.data.Dataset:
  ds = builder.as_dataset(split=split, shuffle_files=False)
  return ds.map(lambda ex: {k: ex[v] for k, v in keys.items()},
                num_parallel_calls=tf.data.AUTOTUNE)


def _cardinality(ds: tf.data.Dataset) -> int:
  count = int(ds.cardinality())
  if count < 0:  # Unknown: count once (only small or mocked sets get here).
    count = int(ds.reduce(0, lambda n, _: n + 1))
  return count


def _train_validation_from_train(builder, num_validation: int, keys) -> Tuple[dict, dict]:
  """Splits TFDS `train` into its first N−num_validation images (train) and its last ones."""
  full = _tfds_split(builder, "train", keys)
  total = _cardinality(full)
  if not 0 < num_validation < total:
    raise errors.ConfigError(
        f"config.data.num_validation must lie in (0, {total}), got {num_validation}")
  test = _tfds_split(builder, "test", keys)
  splits = {"train": full.take(total - num_validation), "validation": full.skip(total - num_validation),
            "test": test}
  counts = {"train": total - num_validation, "validation": num_validation,
            "test": _cardinality(test)}
  return splits, counts


@SOURCES.register("binarized_mnist")
def binarized_mnist(config) -> RawData:
  """The fixed binarization of MNIST of Larochelle & Murray (2011): 50,000 / 10,000 / 10,000."""
  builder = _tfds_builder(
      "binarized_mnist", "binarized_mnist",
      [f"binarized_mnist_{s}.amat" for s in ("train", "valid", "test")], config)
  keys = {"image": "image"}
  splits = {s: _tfds_split(builder, s, keys) for s in ("train", "validation", "test")}
  counts = {s: _cardinality(ds) for s, ds in splits.items()}
  return RawData(splits, counts, (28, 28, 1), "fixed")


_MNIST_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


@SOURCES.register("mnist")
def mnist(config) -> RawData:
  """Grey-scale MNIST, dynamically binarized unless config.data.binarization says otherwise.

  The validation set is the last `config.data.num_validation` training images (400 in the IWAE
  paper's protocol, which trains on the other 59,600).
  """
  builder = _tfds_builder("mnist", "mnist", _MNIST_FILES, config)
  splits, counts = _train_validation_from_train(builder, config.num_validation,
                                                {"image": "image", "label": "label"})
  return RawData(splits, counts, (28, 28, 1), config.binarization or "dynamic", num_classes=10)


@SOURCES.register("fashion_mnist")
def fashion_mnist(config) -> RawData:
  """Fashion-MNIST (Xiao et al. 2017), 28x28 grey-scale, 10 classes."""
  builder = _tfds_builder("fashion_mnist", "fashion_mnist", _MNIST_FILES, config)
  splits, counts = _train_validation_from_train(builder, config.num_validation,
                                                {"image": "image", "label": "label"})
  return RawData(splits, counts, (28, 28, 1), config.binarization or "dynamic", num_classes=10)


_OMNIGLOT_TFDS_FILES = ["images_background.zip", "images_evaluation.zip",
                        "images_background_small1.zip", "images_background_small2.zip"]


def omniglot_to_28(image: tf.Tensor) -> tf.Tensor:
  """105x105 Omniglot strokes (dark on white) to 28x28 uint8 stroke intensities (strokes high)."""
  image = tf.image.convert_image_dtype(image[..., :1], tf.float32)
  strokes = 1.0 - image
  small = tf.image.resize(strokes, (28, 28), method="area")
  return tf.cast(tf.round(tf.clip_by_value(small, 0.0, 1.0) * 255.0), tf.uint8)


@SOURCES.register("omniglot")
def omniglot(config) -> RawData:
  """Omniglot (Lake et al. 2015) at 28x28, dynamically binarized.

  With the four zips TFDS expects in manual_dir (or network access), the TFDS builder is used:
  `train` is images_background minus the last `num_validation` images, `test` is
  images_evaluation. With only some `images_background*.zip` files in manual_dir (the original
  layout, `ALPHABET/characterNN/*.png`), those are read directly and split by a seeded shuffle
  into 80% train, 10% validation and 10% test; labels are then character indices.
  """
  manual_dir = resolve_manual_dir(config.manual_dir)
  if manual_dir and not all(
      os.path.exists(os.path.join(manual_dir, f)) for f in _OMNIGLOT_TFDS_FILES):
    zips = sorted(f for f in tf.io.gfile.listdir(manual_dir) if f.startswith("images_background")
                  and f.endswith(".zip")) if os.path.isdir(manual_dir) else []
    if zips:
      return _omniglot_from_zips([os.path.join(manual_dir, z) for z in zips], config)
  builder = _tfds_builder("omniglot", "omniglot", _OMNIGLOT_TFDS_FILES, config)
  splits, counts = _train_validation_from_train(builder, config.num_validation,
                                                {"image": "image", "label": "label"})
  splits = {s: ds.map(lambda ex: {"image": omniglot_to_28(ex["image"]),
                                  "label": tf.cast(ex["label"], tf.int32)})
            for s, ds in splits.items()}
  return RawData(splits, counts, (28, 28, 1), config.binarization or "dynamic",
                 num_classes=builder.info.features["label"].num_classes)


def read_omniglot_zips(paths: List[str]) -> Tuple[np.ndarray, np.ndarray]:
  """Reads Omniglot PNGs from zips of the original layout.

  Args:
    paths: zip files holding `*/ALPHABET/characterNN/*.png`.

  Returns:
    images: uint8 [N, 28, 28, 1] stroke intensities; labels: int32 [N] character indices in the
    order of (alphabet, character) names.

  Raises:
    DataError: a file that is not a readable zip, or holds no PNG.
  """
  encoded, characters = [], []
  for path in paths:
    try:
      with zipfile.ZipFile(path) as archive:
        for name in sorted(archive.namelist()):
          if name.endswith(".png"):
            parts = name.split("/")
            characters.append("/".join(parts[-3:-1]))
            encoded.append(archive.read(name))
    except (zipfile.BadZipFile, OSError) as e:
      raise errors.DataError(f"Omniglot file {path!r} is not a readable zip: {e}") from e
  if not encoded:
    raise errors.DataError(f"no Omniglot PNGs found in {', '.join(paths)}")
  index = {c: i for i, c in enumerate(sorted(set(characters)))}
  images = np.stack([omniglot_to_28(tf.io.decode_png(png, channels=1)).numpy()
                     for png in encoded])
  labels = np.array([index[c] for c in characters], np.int32)
  return images, labels


def _omniglot_from_zips(paths: List[str], config) -> RawData:
  images, labels = read_omniglot_zips(paths)
  order = np.random.RandomState(1234).permutation(len(images))
  num_test = num_validation = len(images) // 10
  parts = {"test": order[:num_test], "validation": order[num_test:num_test + num_validation],
           "train": order[num_test + num_validation:]}
  splits = {s: tf.data.Dataset.from_tensor_slices({"image": images[i], "label": labels[i]})
            for s, i in parts.items()}
  return RawData(splits, {s: len(i) for s, i in parts.items()}, (28, 28, 1),
                 config.binarization or "dynamic", num_classes=int(labels.max()) + 1)


MNIST_5K_FILE = "mnist_5k.npz"
# Per class: the 500 images of each digit are split 350 / 50 / 100 with a fixed seed.
MNIST_5K_SPLIT = {"train": 350, "validation": 50, "test": 100}
MNIST_5K_SPLIT_SEED = 5000


def read_mnist_5k(path: str) -> Tuple[np.ndarray, np.ndarray]:
  """Reads `images` (uint8 [N, 28, 28]) and `labels` from an npz; DataError when unusable."""
  try:
    with np.load(path) as archive:
      images, labels = archive["images"], archive["labels"]
  except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
    raise errors.DataError(f"mnist_5k file {path!r} is not a readable npz with `images` and "
                           f"`labels`: {e}") from e
  if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
    raise errors.DataError(f"mnist_5k file {path!r}: images {images.shape} and labels "
                           f"{labels.shape} are not [N, 28, 28] and [N]")
  return images.astype(np.uint8)[..., None], labels.astype(np.int32)


@SOURCES.register("mnist_5k")
def mnist_5k(config) -> RawData:
  """5,000 grey-scale MNIST digits with labels (500 per digit) from `mnist_5k.npz` in manual_dir.

  Split per digit class with a fixed seed into 350 train, 50 validation and 100 test images
  (3,500 / 500 / 1,000 in all), so every split is balanced. Grey-scale: dynamically binarized
  unless config.data.binarization says otherwise ("none" keeps intensities).
  """
  manual_dir = resolve_manual_dir(config.manual_dir)
  path = os.path.join(manual_dir, MNIST_5K_FILE) if manual_dir else None
  if path is None or not os.path.exists(path):
    raise errors.DataError(
        f"data set 'mnist_5k' needs {MNIST_5K_FILE} in a folder given as "
        f"--config.data.manual_dir=DIR (or ${MANUAL_DIR_ENV}=DIR); "
        + (f"{path!r} does not exist" if path else "no manual_dir was given"))
  images, labels = read_mnist_5k(path)
  rng = np.random.RandomState(MNIST_5K_SPLIT_SEED)
  parts = {s: [] for s in MNIST_5K_SPLIT}
  for digit in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == digit))
    start = 0
    for split, size in MNIST_5K_SPLIT.items():
      parts[split].append(members[start:start + size])
      start += size
  parts = {s: np.sort(np.concatenate(i)) for s, i in parts.items()}
  splits = {s: tf.data.Dataset.from_tensor_slices({"image": images[i], "label": labels[i]})
            for s, i in parts.items()}
  return RawData(splits, {s: len(i) for s, i in parts.items()}, (28, 28, 1),
                 config.binarization or "dynamic", num_classes=10)


CELEB_A_CROP = 140


def celeb_a_to_64(image: tf.Tensor) -> tf.Tensor:
  """218x178 aligned CelebA to a 140x140 centre crop resized to 64x64 (uint8 RGB)."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  top, left = (height - CELEB_A_CROP) // 2, (width - CELEB_A_CROP) // 2
  crop = image[top:top + CELEB_A_CROP, left:left + CELEB_A_CROP]
  small = tf.image.resize(tf.cast(crop, tf.float32), (64, 64), method="area")
  return tf.cast(tf.round(tf.clip_by_value(small, 0.0, 255.0)), tf.uint8)


@SOURCES.register("celeb_a")
def celeb_a(config) -> RawData:
  """CelebA (Liu et al. 2015), centre-cropped to 140x140 and resized to 64x64 RGB."""
  builder = _tfds_builder(
      "celeb_a", "celeb_a",
      ["img_align_celeba.zip", "list_eval_partition.txt", "list_attr_celeba.txt",
       "list_landmarks_align_celeba.txt"], config)
  splits = {s: builder.as_dataset(split=s, shuffle_files=False).map(
      lambda ex: {"image": celeb_a_to_64(ex["image"])}, num_parallel_calls=tf.data.AUTOTUNE)
            for s in ("train", "validation", "test")}
  counts = {s: _cardinality(ds) for s, ds in splits.items()}
  return RawData(splits, counts, (64, 64, 3), config.binarization or "none")
