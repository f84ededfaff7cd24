"""Raw data sources: each returns unbatched splits of uint8 images (and labels) plus facts about them.

A source knows where its data come from (a TFDS builder, a local folder) and how to bring images
to the shape tfgen models see; `tfgen.data.pipeline` turns its splits into training and evaluation
pipelines. Every source is registered by the name configs use (`config.data.name`).
"""

import contextlib
import dataclasses
import io
import os
import re
import socket
import sys
import threading
import urllib.parse
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
    class_names: the name of each label (e.g. a folder's class sub-folders, sorted), where known.
    skipped_files: files left out of the set because they could not be read (with the reason,
      one per entry), which the training run lists in its workdir.
  """

  splits: Dict[str, tf.data.Dataset]
  num_examples: Dict[str, int]
  image_shape: Tuple[int, int, int]
  binarization: str
  num_classes: Optional[int] = None
  class_names: Optional[List[str]] = None
  skipped_files: List[str] = dataclasses.field(default_factory=list)


def resolve_manual_dir(manual_dir: str) -> Optional[str]:
  """The manual_dir from the config, else from $TFGEN_MANUAL_DIR, else None."""
  manual_dir = manual_dir or os.environ.get(MANUAL_DIR_ENV, "")
  return os.path.expanduser(manual_dir) if manual_dir else None


def _missing_data_message(name: str, expected: List[str], manual_dir: Optional[str],
                          cause: str) -> str:
  where = f"manual_dir {manual_dir!r}" if manual_dir else "no manual_dir"
  files = f"the files {', '.join(expected)}" if expected else "its original files"
  return (f"data set {name!r} cannot be prepared ({where}): {cause}. It needs {files} "
          f"in a folder given as --config.data.manual_dir=DIR "
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
  source = f"from {manual_dir}" if manual_dir else "by downloading its files"
  # Preparing takes a while and TFDS's own output is silenced below, so say what is going on.
  print(f"preparing {name} {source} into {builder.data_dir} (once; later runs reuse it)",
        file=sys.stderr, flush=True)
  try:
    with _quiet_tfds(tfds), _fail_fast_offline():
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


@contextlib.contextmanager
def _quiet_tfds(tfds):
  """Hides TFDS's progress bars and prints while it prepares.

  They would otherwise precede (and bury) the one-line DataError of a preparation that fails,
  and "Downloading and preparing dataset" misleads when nothing is downloaded.
  """
  try:
    from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=g-import-not-at-top
    was_shown = getattr(tqdm_utils, "_active", True)
  except ImportError:
    was_shown = True
  tfds.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tfds.display_progress_bar(was_shown)


# How long a download host may take to accept a connection before it counts as unreachable.
PROBE_TIMEOUT_S = 10.0
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "socks5": 1080, "socks5h": 1080}


class HostUnreachableError(OSError):
  """A host TFDS needs to download from cannot be reached."""


def _connect_address(url: str) -> Optional[Tuple[str, int]]:
  """The (host, port) a download of url connects to (its proxy where one applies), or None.

  None for URLs that are not fetched over the network by host name (local or gs:// paths).
  """
  parts = urllib.parse.urlsplit(url)
  if parts.scheme not in ("http", "https", "ftp") or not parts.hostname:
    return None
  try:
    # TFDS downloads with requests, which honours $HTTP(S)_PROXY, $ALL_PROXY and $NO_PROXY: a
    # machine that reaches the web only through a proxy must not be judged offline.
    import requests  # pylint: disable=g-import-not-at-top
    proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
  except Exception:  # No requests, or odd proxy settings: probe the host itself.
    proxy = None
  if proxy:
    proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    if proxy_parts.hostname:
      return proxy_parts.hostname, proxy_parts.port or _DEFAULT_PORTS.get(proxy_parts.scheme, 80)
  try:
    port = parts.port
  except ValueError:
    port = None
  return parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


def why_unreachable(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> Optional[str]:
  """None when a TCP connection to host:port opens within timeout, else why it did not."""
  outcome = []

  def connect():
    try:
      socket.create_connection((host, port), timeout=timeout).close()
      outcome.append(None)
    except OSError as e:
      outcome.append(e.strerror or str(e) or type(e).__name__)

  # The name lookup ignores socket timeouts, so the attempt runs in a thread we stop waiting
  # for: a resolver that hangs must not hang the run.
  thread = threading.Thread(target=connect, name=f"probe {host}", daemon=True)
  thread.start()
  thread.join(timeout)
  return outcome[0] if outcome else f"no answer within {timeout:g} s"


@contextlib.contextmanager
def _fail_fast_offline():
  """While TFDS prepares, a download from a host that cannot be reached fails at once.

  TFDS retries a failed connection 10 times with exponential backoff, about 3.5 minutes,
  before it gives up, which is how long an offline run without manual_dir used to wait for its
  error. Each host is probed once, with one connection of at most PROBE_TIMEOUT_S, right before
  TFDS would download from it: only files that are neither in manual_dir nor already
  downloaded, so preparing from manual_dir never touches the network. A host that answers is
  downloaded from as before, with TFDS's retries against a flaky network.
  """
  try:
    # pylint: disable-next=g-import-not-at-top
    from tensorflow_datasets.core.download import download_manager
    manager = download_manager.DownloadManager
    original = manager.__dict__["_download"]
  except (ImportError, AttributeError, KeyError):  # Another TFDS layout: keep its behaviour.
    yield
    return
  verdicts = {}

  def download(self, resource):
    url = str(getattr(resource, "url", resource))
    address = _connect_address(url)
    if address is not None:
      if address not in verdicts:
        verdicts[address] = why_unreachable(*address)
      if verdicts[address]:
        raise HostUnreachableError(
            f"cannot reach {address[0]}:{address[1]} ({verdicts[address]}) to download "
            f"{os.path.basename(urllib.parse.urlsplit(url).path) or url}")
    return original(self, resource)

  manager._download = download  # pylint: disable=protected-access
  try:
    yield
  finally:
    manager._download = original  # pylint: disable=protected-access


def _is_prepared(builder) -> bool:
  try:
    return tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json"))
  except Exception:  # A data_dir that cannot be read is reported when preparing it.
    return False


def _tfds_split(builder, split: str, keys: Dict[str, str]) -> tf.data.Dataset:
  ds = _one_file_split(builder, split)
  if ds is None:
    ds = builder.as_dataset(split=split, shuffle_files=False)
  return ds.map(lambda ex: {k: ex[v] for k, v in keys.items()},
                num_parallel_calls=tf.data.AUTOTUNE)


# Records parsed and decoded per step of _one_file_split's pipeline.
_RECORDS_PER_BLOCK = 1000


def _one_file_split(builder, split: str) -> Optional[tf.data.Dataset]:
  """A prepared TFDS split stored in one file, read in blocks; None where TFDS must read it.

  TFDS parses and decodes example by example, each a step of its tf.data pipeline: for the 50,000
  training images of binarized MNIST that took 2-3 s of `tfgen-train`'s start-up, twice what
  parsing blocks of records and decoding them in one op per block takes. The examples, and their
  order, are TFDS's own: one file is read in order (as TFDS reads it with shuffle_files=False),
  and each example is decoded by TFDS's feature. Only flat features of one scalar value each in
  the file (an encoded image, a label) are read here; anything else, a split spread over several
  files (which TFDS interleaves), or a builder whose reading is replaced (tfds.testing.mock_data)
  goes through `builder.as_dataset`.
  """
  try:
    from tensorflow_datasets.core import dataset_builder  # pylint: disable=g-import-not-at-top
    # TFDS's own reading, not a subclass's or a mock's.
    if not isinstance(builder, dataset_builder.FileReaderBuilder) or any(
        getattr(getattr(type(builder), name), "__module__", None) != dataset_builder.__name__
        for name in ("as_dataset", "_as_dataset")):
      return None
    instructions = builder.info.splits[split].file_instructions
    features = builder.info.features
    stored = features.get_serialized_info()
    decoded = features.get_tensor_info()
  except Exception:  # Another TFDS layout: TFDS reads it.  pylint: disable=broad-except
    return None
  if (len(instructions) != 1 or not tf.io.gfile.exists(instructions[0].filename)
      or set(stored) != set(decoded)
      or any(info.shape != () or info.sequence_rank for info in stored.values())):  # pylint: disable=g-explicit-bool-comparison
    return None
  instruction = instructions[0]
  spec = {k: tf.io.FixedLenFeature([], info.dtype) for k, info in stored.items()}
  signature = {k: tf.TensorSpec(info.shape, info.dtype) for k, info in decoded.items()}

  def parse_and_decode(records):
    return tf.map_fn(features.decode_example, tf.io.parse_example(records, spec),
                     fn_output_signature=signature, parallel_iterations=_RECORDS_PER_BLOCK)

  count = (instruction.take if instruction.take >= 0
           else instruction.examples_in_shard - instruction.skip)
  records = tf.data.TFRecordDataset(instruction.filename).skip(instruction.skip).take(count)
  examples = (records.batch(_RECORDS_PER_BLOCK)
              .map(parse_and_decode, num_parallel_calls=tf.data.AUTOTUNE).unbatch())
  # As TFDS's own: the pipeline sizes the splits from their cardinality.
  return examples.apply(tf.data.experimental.assert_cardinality(count))


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
  images, characters = [], []
  for path in paths:
    try:
      with zipfile.ZipFile(path) as archive:
        for name in sorted(archive.namelist()):
          if name.endswith(".png"):
            parts = name.split("/")
            characters.append("/".join(parts[-3:-1]))
            images.append(_decode_omniglot_png(archive.read(name), path, name))
    except (zipfile.BadZipFile, OSError) as e:  # Also a damaged entry (CRC error).
      raise errors.DataError(f"Omniglot file {path!r} is not a readable zip: {e}") from e
  if not images:
    raise errors.DataError(f"no Omniglot PNGs found in {', '.join(paths)}")
  index = {c: i for i, c in enumerate(sorted(set(characters)))}
  labels = np.array([index[c] for c in characters], np.int32)
  return np.stack(images), labels


def _decode_omniglot_png(png: bytes, path: str, name: str) -> np.ndarray:
  """One PNG of a zip to uint8 [28, 28, 1]; DataError naming the zip and entry when unusable."""
  try:
    # Decoding to uint8 and resizing bounds the values, so no range check is needed after.
    return omniglot_to_28(tf.io.decode_png(png, channels=1)).numpy()
  except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
    # TF wraps the cause in "{{function_node ...}} CAUSE [Op:DecodePng]"; keep the cause.
    cause = re.sub(r"^\{\{.*?\}\}\s*|\s*\[Op:\w+\]$", "",
                   (e.message or type(e).__name__).splitlines()[0])
    raise errors.DataError(f"Omniglot file {path!r}, entry {name!r} is not a readable PNG: "
                           f"{cause}") from None


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


MNIST_5K_CLASSES = 10


def _value_range(array: np.ndarray) -> str:
  if not array.size:
    return "no values"
  if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
    return "values that are not numbers"
  low, high = array.min(), array.max()
  return f"values in [{low:g}, {high:g}]" if np.issubdtype(
      array.dtype, np.floating) else f"values in [{int(low)}, {int(high)}]"


def check_images(images: np.ndarray, where: str, shape: Tuple[int, int]) -> np.ndarray:
  """uint8 [N, H, W, 1] images from an integer [N, H, W] or [N, H, W, 1] array of 0..255.

  Floats are refused, even integral ones: [0, 1] intensities cast to uint8 would train on blank
  images, and whether a float array means [0, 1] or [0, 255] is a guess. Wider integers must
  lie in 0..255, which a cast would otherwise wrap around.

  Args:
    images: the array read from a file.
    where: names the file and key in the message, e.g. "file 'x.npz', key 'images'".
    shape: (H, W).

  Raises:
    DataError: one line naming `where` and what was found.
  """
  expected = (f"expected uint8 0..255, shape [N, {shape[0]}, {shape[1]}] or "
              f"[N, {shape[0]}, {shape[1]}, 1]")
  found = f"found {images.dtype} with {_value_range(images)}, shape {images.shape}"
  good_shape = (images.ndim in (3, 4) and images.shape[1:3] == tuple(shape)
                and images.shape[3:] in ((), (1,)) and len(images) > 0)
  integer = np.issubdtype(images.dtype, np.integer)
  if not (good_shape and integer and images.min() >= 0 and images.max() <= 255):
    raise errors.DataError(f"{where}: {expected}, {found}")
  return images.astype(np.uint8).reshape(images.shape[:3] + (1,))


def check_labels(labels: np.ndarray, num_images: int, num_classes: int, where: str) -> np.ndarray:
  """int32 [N] labels from an integer [N] array of values 0..num_classes-1.

  Raises:
    DataError: one line naming `where` and what was found (dtype, shape, bad values).
  """
  expected = f"expected {num_images} integer labels 0..{num_classes - 1} (one per image)"
  if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (num_images,):
    raise errors.DataError(f"{where}: {expected}, found {labels.dtype} with "
                           f"{_value_range(labels)}, shape {labels.shape}")
  bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
  if bad.size:
    shown = ", ".join(str(int(v)) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
    raise errors.DataError(f"{where}: {expected}, found {labels.dtype} labels with the values "
                           f"{shown} ({int(np.isin(labels, bad).sum())} labels)")
  return labels.astype(np.int32)


def read_mnist_5k(path: str) -> Tuple[np.ndarray, np.ndarray]:
  """Reads `images` and `labels` from an npz, checked once here so bad files fail early.

  Returns:
    images: uint8 [N, 28, 28, 1]; labels: int32 [N] in 0..9.

  Raises:
    DataError: a file that cannot be read, or whose arrays have the wrong dtype, range or shape
      (see check_images and check_labels).
  """
  try:
    with np.load(path) as archive:
      images, labels = archive["images"], archive["labels"]
  except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
    raise errors.DataError(f"mnist_5k file {path!r} is not a readable npz with `images` and "
                           f"`labels`: {e}") from e
  images = check_images(images, f"mnist_5k file {path!r}, key 'images'", (28, 28))
  labels = check_labels(labels, len(images), MNIST_5K_CLASSES,
                        f"mnist_5k file {path!r}, key 'labels'")
  return images, labels


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
                 config.binarization or "dynamic", num_classes=MNIST_5K_CLASSES)


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


PHOTO_FILES = ("china.jpg", "flower.jpg")
PHOTO_CROP = 32
# Columns of each photo's grid of crops, by column index modulo 10: stripes across the whole
# photo, so every split sees both photos and most of their content, and no crop is in two splits.
PHOTO_SPLIT_COLUMNS = {"train": tuple(range(8)), "validation": (8,), "test": (9,)}


def read_photo_crops(paths: List[str]) -> Dict[str, np.ndarray]:
  """Cuts each photo into the non-overlapping 32x32 crops of a grid from its top-left corner
  (the rest of the last row and column dropped) and splits them by grid column.

  Args:
    paths: JPEG files, in a fixed order.

  Returns:
    split name to uint8 [N, 32, 32, 3], crops in the order photo, grid row, grid column.

  Raises:
    DataError: a file that cannot be read as a JPEG, or is smaller than one crop.
  """
  parts = {s: [] for s in PHOTO_SPLIT_COLUMNS}
  for path in paths:
    try:
      # The exact integer DCT: the same pixels from every libjpeg build, so the crops repeat.
      photo = tf.io.decode_jpeg(tf.io.read_file(path), channels=3,
                                dct_method="INTEGER_ACCURATE").numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
      cause = (e.message or type(e).__name__).splitlines()[0]
      raise errors.DataError(f"photo {path!r} is not a readable JPEG: {cause}") from None
    rows, columns = photo.shape[0] // PHOTO_CROP, photo.shape[1] // PHOTO_CROP
    if not rows or not columns:
      raise errors.DataError(f"photo {path!r} is {photo.shape[0]}x{photo.shape[1]}, smaller than "
                             f"one {PHOTO_CROP}x{PHOTO_CROP} crop")
    # [grid rows, grid columns, 32, 32, 3]
    grid = photo[:rows * PHOTO_CROP, :columns * PHOTO_CROP].reshape(
        rows, PHOTO_CROP, columns, PHOTO_CROP, 3).transpose(0, 2, 1, 3, 4)
    for split, stripes in PHOTO_SPLIT_COLUMNS.items():
      keep = [j for j in range(columns) if j % 10 in stripes]
      parts[split].append(grid[:, keep].reshape(-1, PHOTO_CROP, PHOTO_CROP, 3))
  return {s: np.concatenate(p) for s, p in parts.items()}


@SOURCES.register("photo_crops")
def photo_crops(config) -> RawData:
  """A tiny real colour set: 32x32 RGB crops of two photographs (china.jpg and flower.jpg, the
  427x640 sample images scikit-learn ships) in manual_dir.

  A grid of non-overlapping crops, 13 x 20 per photo; grid columns 0-7 and 10-17 are training
  crops, 8 and 18 validation, 9 and 19 test: 416 / 52 / 52. 8-bit intensities unless
  config.data.binarization says otherwise.
  """
  manual_dir = resolve_manual_dir(config.manual_dir)
  paths = [os.path.join(manual_dir, f) for f in PHOTO_FILES] if manual_dir else []
  missing = [p for p in paths if not os.path.exists(p)]
  if not paths or missing:
    raise errors.DataError(
        f"data set 'photo_crops' needs {' and '.join(PHOTO_FILES)} in a folder given as "
        f"--config.data.manual_dir=DIR (or ${MANUAL_DIR_ENV}=DIR); "
        + (f"{missing[0]!r} does not exist" if missing else "no manual_dir was given"))
  crops = read_photo_crops(paths)
  splits = {s: tf.data.Dataset.from_tensor_slices({"image": c}) for s, c in crops.items()}
  return RawData(splits, {s: len(c) for s, c in crops.items()}, (PHOTO_CROP, PHOTO_CROP, 3),
                 config.binarization or "none")
