"""The user's own images: any TFDS image data set (`tfds:NAME`) and arrays in an .npz (`arrays`).

Both bring images to one shape (config.data.image_size, config.data.channels) with the public
helpers `parse_image_size`, `convert_channels` and `resize_and_crop`, which other sources may
share, and both fill the splits the set lacks the same way: a missing validation or test split
is held out from the end of the training examples, `config.data.num_validation` each, in the
order train | validation | test (so `tfds:mnist` splits 59,600 / 400 like `mnist` does).

`tfds:NAME` and `tfds:NAME/CONFIG` (docs/data.md):
  * image: the one `Image` feature (or the one called "image"), else config.data.image_key;
  * label: the `ClassLabel` called "label" or "labels", else the only `ClassLabel`, else none;
    config.data.label_key picks another; class names come from the ClassLabel;
  * splits: "train", "validation" (or "valid", "val"), "test"; config.data.tfds_splits maps all
    three explicitly in TFDS's split syntax ("train=train[:90%],validation=train[90%:],test=test").

`arrays` reads config.data.path, an .npz with uint8 `train`, `test` and optional `validation`
([N, H, W] grey or [N, H, W, C], C 1 or 3), and optional integer `train_labels`,
`validation_labels`, `test_labels` (0..K-1, one per image; every split or none).
"""

import contextlib
import difflib
import os
import re
import struct
import sys
import zipfile
import zlib
from typing import Dict, List, Optional, Tuple

from absl import logging as absl_logging
import numpy as np
import tensorflow as tf

from tfgen import errors
from tfgen.data import sources

# sources.py's helpers (_tfds_builder, _cardinality, _value_range) belong to this package.
# pylint: disable=protected-access

SPLITS = ("train", "validation", "test")
# TFDS names of a validation split, in order of preference.
TFDS_VALIDATION_NAMES = ("validation", "valid", "val")
TFDS_LABEL_NAMES = ("label", "labels")
TFDS_SPLITS_EXAMPLE = "train=train[:90%],validation=train[90%:],test=test"
LIST_BUILDERS = ('python -c "import tensorflow_datasets as tfds; '
                 'print(tfds.list_builders())"')

ARRAY_LABEL_KEYS = tuple(f"{s}_labels" for s in SPLITS)
ARRAY_KEYS = SPLITS + ARRAY_LABEL_KEYS


# Shared image helpers ----------------------------------------------------------------------------


def parse_image_size(value) -> Optional[Tuple[int, int]]:
  """config.data.image_size to (H, W): "64" -> (64, 64), "28x32" -> (28, 32), "" -> None.

  Raises:
    ConfigError: anything else, or a size that is not positive.
  """
  if value in ("", None, 0):
    return None
  match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(value))
  if not match or int(match.group(1)) <= 0 or int(match.group(2) or 1) <= 0:
    raise errors.ConfigError(f"config.data.image_size must be \"H\" or \"HxW\" in pixels (e.g. "
                             f"\"64\" or \"28x32\"), or \"\" to keep the images' size; got "
                             f"{value!r}")
  height = int(match.group(1))
  return height, int(match.group(2) or height)


def check_channels(channels) -> int:
  """config.data.channels, checked: 0 (keep the images'), 1 (grey) or 3 (RGB).

  Raises:
    ConfigError: any other value.
  """
  if channels not in (0, 1, 3):
    raise errors.ConfigError(f"config.data.channels must be 0 (keep the images'), 1 (grey) or 3 "
                             f"(RGB), got {channels!r}")
  return int(channels)


def output_channels(channels: int, image_channels: int) -> int:
  """The channels convert_channels(image, channels) gives an image of image_channels (1 to 4)."""
  return channels or {1: 1, 2: 1, 3: 3, 4: 3}[image_channels]


def convert_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
  """Brings uint8 images to `channels` channels.

  Args:
    image: uint8 [..., H, W, C] with a static C of 1 (grey), 2 (grey, alpha), 3 (RGB) or 4
      (RGB, alpha).
    channels: 1 (grey: the luma of RGB, as tf.image.rgb_to_grayscale weighs it), 3 (RGB: grey
      repeated) or 0 (keep grey or RGB). An alpha channel is dropped: the models see no
      transparency, and the colour under it is what the image shows.

  Returns:
    uint8 [..., H, W, channels] (or C without alpha for channels 0).
  """
  have = image.shape[-1]
  if have not in (1, 2, 3, 4):
    raise ValueError(f"images must have 1 to 4 channels, not {have}")
  if have in (2, 4):
    image, have = image[..., :have - 1], have - 1
  channels = channels or have
  if channels == have:
    return image
  if channels == 3:
    return tf.repeat(image, 3, axis=-1)
  grey = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))
  return tf.cast(tf.round(tf.clip_by_value(grey, 0.0, 255.0)), tf.uint8)


def resize_and_crop(image: tf.Tensor, size: Tuple[int, int]) -> tf.Tensor:
  """Resizes uint8 images with their aspect ratio kept to cover (H, W), then centre-crops them.

  Done as the equivalent, cheaper order: the largest centred crop with the aspect ratio of
  (H, W), resized to (H, W) (bilinear, antialiased when shrinking). An image already of size
  (H, W) comes back unchanged.

  Args:
    image: uint8 [..., H0, W0, C] (one image or a batch), any H0, W0.
    size: (H, W).

  Returns:
    uint8 [..., H, W, C].
  """
  height, width = size
  static = tuple(image.shape[-3:-1])
  if static == (height, width):
    return image
  shape = tf.shape(image)
  h0, w0 = shape[-3], shape[-2]
  # Rounded to the nearest pixel; one of the two is the full side.
  crop_h = tf.minimum(h0, (w0 * height + width // 2) // width)
  crop_w = tf.minimum(w0, (h0 * width + height // 2) // height)
  top, left = (h0 - crop_h) // 2, (w0 - crop_w) // 2
  crop = image[..., top:top + crop_h, left:left + crop_w, :]
  small = tf.image.resize(tf.cast(crop, tf.float32), (height, width), method="bilinear",
                          antialias=True)
  return tf.cast(tf.round(tf.clip_by_value(small, 0.0, 255.0)), tf.uint8)


def image_transform(size: Optional[Tuple[int, int]], channels: int, image_channels: int,
                    shape: Tuple[Optional[int], Optional[int]]):
  """The map from a source's uint8 [H0, W0, C0] image to tfgen's [H, W, C], and (H, W, C).

  Args:
    size: (H, W) from parse_image_size, or None to keep the images' size `shape`.
    channels: from check_channels.
    image_channels: C0.
    shape: (H0, W0), None where it varies (then size must be given).
  """
  out_channels = output_channels(channels, image_channels)
  out_shape = tuple(size or shape) + (out_channels,)

  def transform(image: tf.Tensor) -> tf.Tensor:
    # Resized first: fewer pixels to convert whichever way the channels go.
    if size is not None:
      image = resize_and_crop(image, size)
    return tf.ensure_shape(convert_channels(image, channels), out_shape)

  return transform, out_shape


def _held_out(total: int, missing: List[str], num_validation: int, name: str, suggestion: str):
  """(train size, {split: (start, stop)}) for splits cut from the end of train, in SPLITS order.

  Raises:
    ConfigError: too few training examples to hold out num_validation for each missing split.
  """
  keep = total - len(missing) * num_validation
  if num_validation <= 0 or keep <= 0:
    raise errors.ConfigError(
        f"{name} has no {' or '.join(missing)} split and {total} training examples, too few to "
        f"hold out config.data.num_validation={num_validation} for each; set "
        f"--config.data.num_validation to at most {(total - 1) // len(missing)}"
        + (f" or {suggestion}" if suggestion else ""))
  parts, start = {}, keep
  for split in missing:
    parts[split] = (start, start + num_validation)
    start += num_validation
  return keep, parts


def _note_held_out(name: str, parts: Dict[str, Tuple[int, int]]) -> None:
  # A test set cut from train is not the set's own: say so once, where the run's output shows it.
  if "test" in parts:
    start, stop = parts["test"]
    print(f"{name} has no test split: its test set is training examples {start}..{stop - 1} "
          f"(config.data.num_validation={stop - start}), left out of training", file=sys.stderr,
          flush=True)


# tfds:NAME -------------------------------------------------------------------------------------


def infer_tfds_splits(available: Dict[str, int], num_validation: int,
                      name: str) -> Dict[str, str]:
  """TFDS split specs for train, validation and test from the splits a set has.

  Args:
    available: the set's split names to their numbers of examples.
    num_validation: examples held out from the end of train for each missing validation / test.
    name: the config name, for messages.

  Returns:
    {"train": ..., "validation": ..., "test": ...} in TFDS's split syntax, e.g. "train[:40000]".

  Raises:
    DataError: no train split.
    ConfigError: too few training examples to hold out the missing splits.
  """
  listed = ", ".join(sorted(available)) or "none"
  if "train" not in available:
    raise errors.DataError(f"{name} has no 'train' split (its splits: {listed}); map its splits "
                           f"with --config.data.tfds_splits='{TFDS_SPLITS_EXAMPLE}'")
  validation = next((v for v in TFDS_VALIDATION_NAMES if v in available), None)
  specs = {"train": "train", "validation": validation,
           "test": "test" if "test" in available else None}
  missing = [s for s in SPLITS if specs[s] is None]
  if not missing:
    return specs
  suggestion = {("validation",): "train=train[:90%],validation=train[90%:],test=test",
                ("test",): f"train=train[:90%],validation={validation},test=train[90%:]",
                ("validation", "test"):
                    "train=train[:80%],validation=train[80%:90%],test=train[90%:]"}[tuple(missing)]
  keep, parts = _held_out(available["train"], missing, num_validation, name,
                          f"--config.data.tfds_splits='{suggestion}'")
  specs["train"] = f"train[:{keep}]"
  for split, (start, stop) in parts.items():
    specs[split] = f"train[{start}:{stop}]"
  _note_held_out(name, parts)
  return specs


def parse_tfds_splits(text: str) -> Dict[str, str]:
  """config.data.tfds_splits, "train=SPEC,validation=SPEC,test=SPEC", to {split: SPEC}.

  Raises:
    ConfigError: not that form, or a split missing, repeated or unknown.
  """
  specs, problem = {}, ""
  for part in (p.strip() for p in text.split(",")):
    key, equals, spec = (s.strip() for s in part.partition("="))
    if not equals or not spec:
      problem = f"{part!r} is not SPLIT=TFDS_SPLIT"
    elif key not in SPLITS:
      problem = f"{key!r} is not train, validation or test"
    elif key in specs:
      problem = f"{key} is given twice"
    else:
      specs[key] = spec
      continue
    break
  missing = [s for s in SPLITS if s not in specs]
  if not problem and missing:
    problem = f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"
  if problem:
    raise errors.ConfigError(f"config.data.tfds_splits must map train, validation and test to "
                             f"TFDS splits, e.g. '{TFDS_SPLITS_EXAMPLE}'; in {text!r}, {problem}")
  return specs


def _tfds_name(config_name: str) -> str:
  tfds_name = config_name.partition(":")[2].strip()
  if not tfds_name:
    raise errors.ConfigError(f"config.data.name {config_name!r} names no TFDS data set; use "
                             f"tfds:NAME or tfds:NAME/CONFIG (e.g. tfds:cifar10); {LIST_BUILDERS} "
                             "lists the names")
  return tfds_name


def _describe(feature) -> str:
  kind = type(feature).__name__
  if kind == "ClassLabel":
    return f"ClassLabel, {feature.num_classes} classes"
  shape = getattr(feature, "shape", None)
  if kind in ("Image", "Tensor") and shape is not None:
    dims = "x".join("?" if d is None else str(d) for d in shape)
    return f"{kind} {dims} {np.dtype(feature.np_dtype).name}"
  return kind


def _features_listed(features) -> str:
  return ", ".join(f"{k} ({_describe(features[k])})" for k in sorted(features.keys()))


def _is_image(feature, tfds) -> bool:
  shape = getattr(feature, "shape", None)
  return (isinstance(feature, (tfds.features.Image, tfds.features.Tensor)) and shape is not None
          and len(shape) in (2, 3) and np.dtype(feature.np_dtype) == np.uint8
          and (len(shape) == 2 or shape[-1] in (1, 2, 3, 4)))


def _tfds_image_key(features, image_key: str, name: str, tfds) -> str:
  """The image feature: config.data.image_key, else the one Image feature or the one "image"."""
  if image_key:
    if image_key not in features.keys():
      raise errors.ConfigError(f"config.data.image_key {image_key!r} is not a feature of {name}; "
                               f"its features: {_features_listed(features)}")
    if not _is_image(features[image_key], tfds):
      raise errors.ConfigError(f"config.data.image_key {image_key!r} of {name} is "
                               f"{_describe(features[image_key])}, not uint8 images "
                               f"[H, W] or [H, W, C] (C 1 to 4); its features: "
                               f"{_features_listed(features)}")
    return image_key
  images = sorted(k for k in features.keys() if isinstance(features[k], tfds.features.Image))
  if len(images) > 1 and "image" in images:
    images = ["image"]
  if len(images) != 1:
    which = "several image features" if images else "no Image feature"
    raise errors.ConfigError(f"{name} has {which}; choose one with --config.data.image_key=KEY "
                             f"(its features: {_features_listed(features)})")
  if not _is_image(features[images[0]], tfds):
    raise errors.DataError(f"{name}: its image feature {images[0]!r} is "
                           f"{_describe(features[images[0]])}; tfgen reads 8-bit (uint8) images "
                           "of 1 to 4 channels")
  return images[0]


def _tfds_label_key(features, label_key: str, name: str, tfds) -> Optional[str]:
  """The label feature: config.data.label_key, else "label" / "labels" / the only ClassLabel."""
  labels = sorted(k for k in features.keys() if isinstance(features[k], tfds.features.ClassLabel))
  if label_key:
    if label_key not in labels:
      what = ("is not a feature" if label_key not in features.keys() else
              f"is {_describe(features[label_key])}, not a ClassLabel feature")
      raise errors.ConfigError(f"config.data.label_key {label_key!r} {what} of {name}; its "
                               f"ClassLabel features: {', '.join(labels) or 'none'} (all "
                               f"features: {_features_listed(features)})")
    return label_key
  named = [k for k in TFDS_LABEL_NAMES if k in labels]
  if named:
    return named[0]
  if len(labels) > 1:
    print(f"{name} has several ClassLabel features ({', '.join(labels)}) and none called label: "
          "its images are used without labels; --config.data.label_key=KEY picks one",
          file=sys.stderr, flush=True)
  return labels[0] if len(labels) == 1 else None


@contextlib.contextmanager
def _absl_quiet():
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.WARNING)
  try:
    yield
  finally:
    absl_logging.set_verbosity(verbosity)


def _prepared_builder(tfds, tfds_name: str, config):
  """The prepared builder of tfds_name; ConfigError for an unknown name or builder config."""
  name = config.name
  base = re.split(r"[/:]", tfds_name, maxsplit=1)[0]
  try:
    # TFDS logs at INFO that an unknown name has no prepared files before it raises, which
    # would precede the one-line error.
    with _absl_quiet():
      probe = tfds.builder(tfds_name, data_dir=config.get("data_dir") or None)
  except tfds.core.registered.DatasetNotFoundError:
    close = difflib.get_close_matches(base, tfds.list_builders(with_community_datasets=False), 3)
    hint = f" (did you mean {', '.join('tfds:' + c for c in close)}?)" if close else ""
    raise errors.ConfigError(f"unknown TFDS data set {base!r} in config.data.name {name!r}{hint}; "
                             f"{LIST_BUILDERS} lists the names") from None
  except Exception as e:  # An unknown builder config or version, a builder that cannot load.
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "BuilderConfig" in message:
      try:
        configs = ", ".join(tfds.builder_cls(base).builder_configs) or "none"
      except Exception:  # pylint: disable=broad-except
        configs = "see its catalog page"
      wanted = tfds_name.partition("/")[2] or "(none given)"
      raise errors.ConfigError(f"{name}: TFDS data set {base!r} has no builder config "
                               f"{wanted!r}; its configs: {configs} (use tfds:{base}/CONFIG)"
                               ) from None
    raise errors.DataError(f"{name}: tensorflow-datasets cannot build it: {message}") from e
  # The files it downloads are known exactly only for a builder of one config: the checksums of
  # one with several list every config's files.
  infos = type(probe).url_infos or {}
  files = sorted({i.filename for i in infos.values()}) if len(probe.BUILDER_CONFIGS) < 2 else []
  return sources._tfds_builder(name, tfds_name, [] if None in files else files, config)


@sources.SOURCES.register("tfds", family=True)
def tfds_source(config) -> sources.RawData:
  """Any TFDS image data set, `config.name` = "tfds:NAME" or "tfds:NAME/CONFIG" (module doc).

  Images are brought to config.image_size and config.channels; 8-bit intensities unless
  config.binarization says otherwise.
  """
  import tensorflow_datasets as tfds  # Imported lazily: it is slow and not every path needs it.

  name = config.name
  tfds_name = _tfds_name(name)
  size = parse_image_size(config.get("image_size", ""))
  channels = check_channels(config.get("channels", 0))
  split_text = config.get("tfds_splits", "")
  explicit = parse_tfds_splits(split_text) if split_text else None
  builder = _prepared_builder(tfds, tfds_name, config)
  info = builder.info
  features = info.features
  image_key = _tfds_image_key(features, config.get("image_key", ""), name, tfds)
  label_key = _tfds_label_key(features, config.get("label_key", ""), name, tfds)
  feature_shape = tuple(features[image_key].shape)
  image_channels = feature_shape[2] if len(feature_shape) == 3 else 1
  if size is None and None in feature_shape[:2]:
    dims = "x".join("?" if d is None else str(d) for d in feature_shape)
    raise errors.ConfigError(f"{name} has images of varying size ({image_key!r}: {dims}); set "
                             "--config.data.image_size=H or HxW (e.g. 64) to resize and "
                             "centre-crop them to one size")
  transform, image_shape = image_transform(size, channels, image_channels, feature_shape[:2])

  available = {s: info.splits[s].num_examples for s in info.splits.keys()}
  if explicit is not None:
    specs = explicit
    for split, spec in specs.items():
      if not available:  # Splits unknown (a mocked TFDS): nothing to check them against.
        continue
      try:
        count = info.splits[spec].num_examples
      except (ValueError, KeyError, AssertionError) as e:
        raise errors.ConfigError(f"config.data.tfds_splits: {split}={spec!r} is not a split of "
                                 f"{name}: {str(e).splitlines()[0]}") from None
      if not count:
        raise errors.ConfigError(f"config.data.tfds_splits: {split}={spec!r} of {name} holds no "
                                 "examples")
  else:
    if not available:
      raise errors.DataError(f"{name} lists no splits in its dataset_info.json; map them with "
                             f"--config.data.tfds_splits='{TFDS_SPLITS_EXAMPLE}'")
    specs = infer_tfds_splits(available, config.num_validation, name)

  keys = [image_key] + ([label_key] if label_key else [])
  # Decode only the image (and label): a set's other images (masks) would cost as much again.
  decoders = tfds.decode.PartialDecoding({k: True for k in keys})

  def example(ex):
    image = ex[image_key]
    if image.shape.rank == 2:
      image = image[..., None]
    out = {"image": transform(image)}
    if label_key:
      out["label"] = tf.cast(ex[label_key], tf.int32)
    return out

  splits = {s: builder.as_dataset(split=spec, shuffle_files=False, decoders=decoders).map(
      example, num_parallel_calls=tf.data.AUTOTUNE) for s, spec in specs.items()}
  counts = {s: sources._cardinality(ds) for s, ds in splits.items()}
  label = features[label_key] if label_key else None
  return sources.RawData(splits, counts, image_shape, config.binarization or "none",
                         num_classes=label.num_classes if label else None,
                         class_names=list(label.names) if label else None)


# arrays ----------------------------------------------------------------------------------------


def _npz_member_memmap(path: str, archive: zipfile.ZipFile, key: str) -> Optional[np.ndarray]:
  """The array `key` of an uncompressed .npz as a read-only memory map, or None where it cannot
  be one (compressed, object or Fortran-order arrays, a header numpy's public API cannot read).

  Reads the member once to check its CRC, as zipfile would: a flipped byte in uint8 pixels is
  still a valid image, and would otherwise train unnoticed.

  Raises:
    zipfile.BadZipFile: a damaged member.
  """
  info = archive.getinfo(key + ".npy")
  if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
    return None
  with open(path, "rb") as f:
    f.seek(info.header_offset)
    local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
      raise zipfile.BadZipFile(f"bad local header of {key}.npy")
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    start = info.header_offset + 30 + name_length + extra_length
    if start + info.file_size > os.path.getsize(path):
      raise zipfile.BadZipFile(f"{key}.npy is truncated")
    raw = np.memmap(path, np.uint8, "r", offset=start, shape=(info.file_size,))
    crc, chunk = 0, 1 << 26
    for i in range(0, info.file_size, chunk):
      crc = zlib.crc32(raw[i:i + chunk], crc)
    if crc != info.CRC:
      raise zipfile.BadZipFile(f"Bad CRC-32 for file {key}.npy")
    f.seek(start)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
      shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
      return None
    if dtype.hasobject or fortran:
      return None
    offset = f.tell()
  if offset - start + int(np.prod(shape)) * dtype.itemsize > info.file_size:
    raise zipfile.BadZipFile(f"{key}.npy holds fewer bytes than its shape {shape} needs")
  if not np.prod(shape):
    return np.zeros(shape, dtype)
  return np.memmap(path, dtype, "r", offset=offset, shape=shape)


def _check_array_images(images: np.ndarray, where: str) -> np.ndarray:
  """uint8 [N, H, W, C] (C 1 or 3) from an integer [N, H, W] or [N, H, W, C] array of 0..255.

  Floats are refused, as check_images in sources.py refuses them: whether they mean [0, 1] or
  [0, 255] is a guess. A uint8 array is returned as it is (a memory map stays one).

  Raises:
    DataError: one line naming `where` and what was found.
  """
  expected = "expected uint8 images 0..255 of shape [N, H, W] or [N, H, W, C] with C 1 or 3"
  good_shape = (images.ndim == 3 or (images.ndim == 4 and images.shape[3] in (1, 3))) and all(
      images.shape[:3])
  integer = np.issubdtype(images.dtype, np.integer)
  in_range = images.dtype == np.uint8 or (
      integer and images.size and images.min() >= 0 and images.max() <= 255)
  if not (good_shape and integer and in_range):
    found = f"found {images.dtype} with {sources._value_range(images)}, shape {images.shape}"
    raise errors.DataError(f"{where}: {expected}, {found}")
  if images.dtype != np.uint8:
    images = images.astype(np.uint8)
  return images.reshape(images.shape[:3] + (images.shape[3] if images.ndim == 4 else 1,))


def read_arrays(path: str) -> Tuple[Dict[str, np.ndarray], Optional[Dict[str, np.ndarray]]]:
  """Reads and checks the splits of an .npz for the `arrays` source, once, when read.

  Uncompressed members (np.savez) are memory-mapped; compressed ones (np.savez_compressed) are
  read into memory.

  Args:
    path: the .npz file.

  Returns:
    images: split name to uint8 [N, H, W, C] (C 1 or 3) for `train`, `test` and, where the file
      has it, `validation`; labels: split name to int32 [N] in 0..K-1 with K = the largest label
      + 1, or None where the file has no labels.

  Raises:
    DataError: one line naming the file (and key) for a missing, unreadable or corrupt file,
      missing, unknown or badly formed keys, or labels that do not match their images.
  """
  if not os.path.exists(path):
    raise errors.DataError(f"file {path!r} (config.data.path) does not exist")
  if os.path.isdir(path):
    raise errors.DataError(f"{path!r} (config.data.path) is a folder, not an .npz file")
  if not zipfile.is_zipfile(path):
    raise errors.DataError(f"file {path!r} is not an .npz archive (a zip of .npy arrays, as "
                           "np.savez writes), or is truncated")
  arrays = {}
  try:
    with zipfile.ZipFile(path) as archive, np.load(path, allow_pickle=False) as npz:
      keys = list(npz.files)
      unknown = [k for k in keys if k not in ARRAY_KEYS]
      missing = [k for k in ("train",) if k not in keys]
      if unknown or missing:
        problem = (f"no key {missing[0]!r}" if missing else
                   f"keys tfgen does not read ({', '.join(unknown)})")
        raise errors.DataError(f"file {path!r} has {problem}; its keys: {', '.join(keys) or 'none'}"
                               f"; expected {', '.join(SPLITS)} (validation and test may be "
                               f"left out) and optional {', '.join(ARRAY_LABEL_KEYS)}")
      for key in keys:
        try:
          arrays[key] = _npz_member_memmap(path, archive, key)
          if arrays[key] is None:
            arrays[key] = npz[key]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
          cause = str(e).splitlines()[0] if str(e) else type(e).__name__
          raise errors.DataError(f"file {path!r}, key {key!r} cannot be read: {cause}") from None
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    cause = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise errors.DataError(f"file {path!r} is not a readable .npz archive: {cause}") from None

  images = {s: _check_array_images(arrays[s], f"file {path!r}, key {s!r}")
            for s in SPLITS if s in arrays}
  label_keys = [k for k in ARRAY_LABEL_KEYS if k in arrays]
  if not label_keys:
    return images, None
  for key in label_keys:
    if key[:-len("_labels")] not in images:
      raise errors.DataError(f"file {path!r} has {key!r} but no images {key[:-len('_labels')]!r} "
                             "for them")
  unlabelled = [s for s in images if f"{s}_labels" not in arrays]
  if unlabelled:
    raise errors.DataError(f"file {path!r} has {', '.join(label_keys)} but no "
                           f"{', '.join(s + '_labels' for s in unlabelled)}: give labels for "
                           "every split or none")
  numeric = [arrays[k] for k in label_keys
             if arrays[k].size and np.issubdtype(arrays[k].dtype, np.number)]
  num_classes = max([int(np.max(a)) + 1 for a in numeric] + [1])
  labels = {s: sources.check_labels(np.asarray(arrays[f"{s}_labels"]), len(images[s]),
                                    num_classes, f"file {path!r}, key '{s}_labels'")
            for s in images}
  return images, labels


@sources.SOURCES.register("arrays")
def arrays_source(config) -> sources.RawData:
  """Images (and labels) from the .npz file config.path; see read_arrays and the module doc.

  Splits the file leaves out (validation, test) are held out from the end of train. Images are
  brought to config.image_size and config.channels (0: grey only if every split is grey).
  Binarization: config.binarization, else "fixed" for images that are all 0s and 1s, else
  "none" (8-bit intensities); images of only 0s and 1s must be "fixed".
  """
  path = os.path.expanduser(config.get("path", ""))
  if not path:
    raise errors.ConfigError("data set 'arrays' needs --config.data.path=FILE.npz (key train, "
                             "optional validation, test, train_labels, validation_labels, "
                             "test_labels; docs/data.md)")
  size = parse_image_size(config.get("image_size", ""))
  channels = check_channels(config.get("channels", 0))
  images, labels = read_arrays(path)

  sizes = {s: a.shape[1:3] for s, a in images.items()}
  if size is None and len(set(sizes.values())) > 1:
    shown = ", ".join(f"{s} {h}x{w}" for s, (h, w) in sizes.items())
    raise errors.DataError(f"file {path!r}: the splits hold images of different sizes ({shown}); "
                           "give them one size or set --config.data.image_size=H or HxW")
  image_channels = max(a.shape[3] for a in images.values())  # Colour if any split is.
  missing = [s for s in SPLITS if s not in images]
  if missing:
    keep, parts = _held_out(len(images["train"]), missing, config.num_validation,
                            f"file {path!r}", "add the missing keys to the file")
    for split, (start, stop) in parts.items():
      images[split] = images["train"][start:stop]
      if labels:
        labels[split] = labels["train"][start:stop]
    images["train"] = images["train"][:keep]
    if labels:
      labels["train"] = labels["train"][:keep]
    _note_held_out(f"file {path!r}", parts)

  binary = {s: int(a.max()) <= 1 for s, a in images.items()}
  binarization = config.binarization or ("fixed" if all(binary.values()) else "none")
  if binarization == "fixed" and not all(binary.values()):
    split = next(s for s in SPLITS if not binary[s])
    raise errors.DataError(f"file {path!r}, split {split!r}: config.data.binarization 'fixed' "
                           f"needs images of 0s and 1s, found values in "
                           f"[0, {int(images[split].max())}]")
  if binarization != "fixed" and all(binary.values()):
    # As 8-bit intensities, 0s and 1s are black images (0 and 1/255), whatever a model draws.
    raise errors.DataError(f"file {path!r} holds binary images (only 0s and 1s), which "
                           f"config.data.binarization {binarization!r} would read as 8-bit "
                           "intensities 0 and 1/255; set --config.data.binarization=fixed, or "
                           "store them as 0 and 255")

  # Channels 0 keeps grey only where every split is grey: a grey split of a colour file is RGB.
  channels = channels or image_channels
  splits = {}
  for split in SPLITS:
    transform, image_shape = image_transform(size, channels, images[split].shape[3],
                                             sizes["train"])
    ds = tf.data.Dataset.from_tensor_slices(
        {"image": images[split], **({"label": labels[split]} if labels else {})})
    splits[split] = ds.map(lambda ex, f=transform: {**ex, "image": f(ex["image"])},
                           num_parallel_calls=tf.data.AUTOTUNE)
  num_classes = max(int(l.max()) + 1 for l in labels.values()) if labels else None
  return sources.RawData(splits, {s: len(images[s]) for s in SPLITS}, image_shape, binarization,
                         num_classes=num_classes)
