r"""The `folder` data source: a folder of image files as a tfgen data set.

  tfgen-train --config=configs/conv_vae.py:data=folder --config.data.path=DIR \
      --config.data.image_size=28 --workdir=W

What is read. PNG, JPEG, BMP and GIF files (the first frame of an animation), found by their
extension (keras.utils.image_dataset_from_directory's list: .bmp .gif .jpeg .jpg .png, any case)
anywhere below DIR; hidden files and folders (".name") are left out, symbolic links followed.
Other files are not images and are ignored. Every image becomes grey or RGB
(`config.data.channels`: 1, 3, or 0 for 3 when any image has colour, i.e. pixels whose R, G and B
differ; an alpha channel is dropped, as Keras does; colour becomes grey with
tf.image.rgb_to_grayscale's weights), and is resized to `config.data.image_size` ("H" or "HxW";
"" keeps the images' own size, which must then be the same for all) keeping its aspect ratio: the
largest centred crop of the target's aspect ratio is scaled with an antialiased bilinear filter,
as keras.utils.image_dataset_from_directory(crop_to_aspect_ratio=True) and tfgen's tfds:NAME and
arrays sources (generic.resize_and_crop) do, to within rounding. JPEG EXIF orientation is
applied, so photos from phones stand upright.

Binarization: "none" (8-bit intensities) unless config.data.binarization is "dynamic" (a fresh
Bernoulli draw at every pass) or "fixed" (one draw per image, seeded by its relative path, the
same for every run; returned as stored {0, 1} images).

Splits. When DIR holds `train/`, `validation/` (or `valid/`) and `test/` they are the splits,
as in TFDS's ImageFolder. Otherwise each file goes to train, validation or test by a hash of its
path relative to DIR mapped to [0, 1) (`hash_fraction`) and compared with
`config.data.split_fractions`: a file's split depends on its path alone, so adding files never
moves existing ones between splits. With `train/` and only some of the other split folders, the
missing splits are taken from `train/` by the same rule (fractions renormalized).

Labels. Sub-folders of DIR (of each split folder) holding images are classes, named by the folder
and numbered in sorted order (Keras's convention; the same class set across splits); an image
anywhere below one is of that class. Images directly in DIR when there are class folders are left
out (and counted in the summary). Without class folders the set has no labels.

Preparation, once. The images are decoded in parallel (one process per core), converted, resized
and written per split as uint8 .npy files [N, H, W, C] (memory-mapped, so the set need not fit in
memory) with their labels, in a folder of `config.data.cache_dir` (default `tfgen_folders/` in
TFDS's data folder) named by a fingerprint of the folder's content (relative paths, sizes,
modification times) and of the preparation parameters: an unchanged folder is never prepared
again, a changed one always is. Preparation writes into a temporary folder renamed into place
when complete, so an interrupted one (Ctrl-C, kill, a full disk) never leaves a cache that looks
complete; a folder that changes while it is being prepared is refused. A set of up to
IN_MEMORY_MAX_BYTES per split is loaded into memory; a larger one streams from its .npy file.

Layout of one prepared folder (CACHE/NAME-FINGERPRINT/):
  info.json                 shape, split sizes, class names, skipped files, counts, parameters
  SPLIT_images.npy          uint8 [N, H, W, C]
  SPLIT_labels.npy          int32 [N] (only with class folders)
  SPLIT_files.json          the N paths relative to DIR, in order
"""

import collections
import contextlib
import dataclasses
import errno
import gc
import hashlib
import io
import json
import math
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import time
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError
import tensorflow as tf

from tfgen import errors
from tfgen import files as files_lib
from tfgen.data import generic
from tfgen.data import in_graph
from tfgen.data import sources

# keras.utils.image_dataset_from_directory's ALLOWLIST_FORMATS.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
# What Pillow may take a file for: others it can identify (TGA, ...) would read garbage files as
# images.
_PIL_FORMATS = ("PNG", "JPEG", "BMP", "GIF")
SPLITS = ("train", "validation", "test")
# tf.image.rgb_to_grayscale's weights of R, G, B.
_LUMA = (0.2989, 0.5870, 0.1140)
SPLIT_FOLDERS = {"train": ("train",), "validation": ("validation", "valid"), "test": ("test",)}
BAD_IMAGE_CHOICES = ("fail", "skip")

# A split of at most this many bytes of images is loaded into memory (where in-graph batches can
# take it); a larger one streams from its memory-mapped .npy file.
IN_MEMORY_MAX_BYTES = in_graph.MAX_BYTES
# Below this many files decoding stays in this process: starting workers costs more.
PARALLEL_MIN_FILES = 1000
# Files a worker decodes per task: large enough to amortize the hand-over, small enough for a
# progress bar that moves.
CHUNK_FILES = 256
# Changes whenever what a preparation stores changes, so older caches are not read.
CACHE_VERSION = 1
CACHE_SUBDIR = "tfgen_folders"
_PARTIAL_PREFIX = ".partial-"
# A partial preparation this old, whatever process wrote it, was abandoned.
STALE_PARTIAL_S = 24 * 3600.0
# config.data.binarization="fixed": each image is binarized once, seeded by this and its path.
FIXED_BINARIZATION_SEED = 20161017
# How many unreadable files a failing preparation names.
MAX_BAD_NAMED = 3
_PROGRESS_INTERVAL_S = 0.25
_PROGRESS_LOG_INTERVAL_S = 30.0


@dataclasses.dataclass(frozen=True)
class Options:
  """The validated config.data fields of a folder.

  Attributes:
    path: the folder, as given (user-expanded).
    size: (H, W) every image is brought to, or None to keep the images' own (equal) size.
    channels: 1, 3 or 0 (inferred).
    fractions: (train, validation, test) fractions of the hash split.
    on_bad_image: "fail" or "skip".
    cache_root: the folder prepared folders are kept in.
  """

  path: str
  size: Optional[Tuple[int, int]]
  channels: int
  fractions: Tuple[float, float, float]
  on_bad_image: str
  cache_root: str


@dataclasses.dataclass(frozen=True)
class ImageFile:
  """One image file of the folder: relpath ("/"-separated, relative to the folder), size in
  bytes, modification time in ns."""

  relpath: str
  size: int
  mtime_ns: int


@dataclasses.dataclass
class Listing:
  """What a folder holds.

  Attributes:
    images: the image files, sorted by relative path.
    others: extension ("" for none) to the number of other files.
  """

  images: List[ImageFile]
  others: collections.Counter


@dataclasses.dataclass
class Assignment:
  """The files of each split and their classes.

  Attributes:
    splits: split name to the relative paths of its files, sorted.
    labels: split name to each file's class index (None entries where there are no classes).
    class_names: sorted class folder names, or None where there are no class folders.
    rule: how the splits were made, for messages ("split folders", "path hash 0.8/0.1/0.1").
    folders: split name to the split folder it is (train, validation or valid, test), for the
      splits that are folders.
    hashed: whether any file's split came from the hash rule (then the fractions matter).
    ignored: images left out: directly in a folder that has class folders, or outside the split
      folders.
  """

  splits: Dict[str, List[str]]
  labels: Dict[str, List[Optional[int]]]
  class_names: Optional[List[str]]
  rule: str
  folders: Dict[str, str]
  hashed: bool
  ignored: int


@dataclasses.dataclass
class Prepared:
  """A prepared folder: where it is cached and what it holds (its info.json)."""

  cache: str
  info: dict
  reused: bool


def _error(message: str) -> errors.DataError:
  return errors.DataError(message)


# ----------------------------------------------------------------------------------------------
# Options.


def check_fractions(value) -> Tuple[float, float, float]:
  """The (train, validation, test) fractions: 3 non-negative numbers summing to 1.

  Raises:
    ConfigError: anything else.
  """
  try:
    numbers = tuple(float(v) for v in value if not isinstance(v, (bool, str)))
    ok = (len(numbers) == len(tuple(value)) == 3 and all(math.isfinite(v) and v >= 0
                                                          for v in numbers)
          and abs(sum(numbers) - 1.0) < 1e-6)
  except (TypeError, ValueError):
    ok = False
  if not ok:
    shown = tuple(value) if isinstance(value, (list, tuple)) else value
    raise errors.ConfigError(
        "config.data.split_fractions must be 3 non-negative numbers (train, validation, test) "
        f"summing to 1, e.g. (0.8, 0.1, 0.1); got {shown!r}")
  return numbers


def default_cache_root(data_dir: str = "") -> str:
  """`tfgen_folders/` in TFDS's data folder: data_dir, else $TFDS_DATA_DIR, else
  ~/tensorflow_datasets (TFDS's own default)."""
  base = data_dir or os.environ.get("TFDS_DATA_DIR", "") or "~/tensorflow_datasets"
  return os.path.join(os.path.expanduser(base), CACHE_SUBDIR)


def options(config) -> Options:
  """Validates the folder fields of `config.data`.

  Raises:
    ConfigError: an invalid image_size, channels, split_fractions or on_bad_image.
    DataError: no path, or a path that is not an existing folder.
  """
  # The same checks and messages as the other sources of the user's own images.
  size = generic.parse_image_size(config.get("image_size", ""))
  channels = generic.check_channels(config.get("channels", 0))
  fractions = check_fractions(config.get("split_fractions", (0.8, 0.1, 0.1)))
  on_bad_image = config.get("on_bad_image", "fail")
  if on_bad_image not in BAD_IMAGE_CHOICES:
    raise errors.ConfigError("config.data.on_bad_image must be 'fail' (stop, naming the files) "
                             f"or 'skip' (leave them out, listed); got {on_bad_image!r}")
  path = os.path.expanduser(config.get("path", "") or "")
  if not path:
    raise _error("data set 'folder' reads the images of a folder: set "
                 "--config.data.path=DIR (config.data.path is empty)")
  if not os.path.exists(path):
    raise _error(f"config.data.path {path!r} does not exist")
  if not os.path.isdir(path):
    raise _error(f"config.data.path {path!r} is a file, not a folder of images")
  cache_root = os.path.expanduser(config.get("cache_dir", "") or "") or default_cache_root(
      config.get("data_dir", ""))
  return Options(path, size, int(channels), fractions, on_bad_image, cache_root)


# ----------------------------------------------------------------------------------------------
# Listing, splits and classes.


def _is_image(name: str) -> bool:
  return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def scan(root: str) -> Listing:
  """Every image file below root (symbolic links followed, hidden entries left out), sorted.

  Raises:
    DataError: a folder below root cannot be read.
  """
  images, others = [], collections.Counter()
  visited = set()  # (device, inode) of folders seen: a link back up must not loop forever.
  pending = [""]
  while pending:
    rel = pending.pop()
    folder = os.path.join(root, rel) if rel else root
    try:
      stat = os.stat(folder)
      if (stat.st_dev, stat.st_ino) in visited:
        continue
      visited.add((stat.st_dev, stat.st_ino))
      with os.scandir(folder) as entries:
        entries = list(entries)
    except OSError as e:
      raise _error(f"cannot read the folder {folder!r}: {e.strerror or e}") from e
    for entry in entries:
      if entry.name.startswith("."):
        continue
      relpath = f"{rel}/{entry.name}" if rel else entry.name
      try:
        is_dir = entry.is_dir()
      except OSError:
        is_dir = False
      if is_dir:
        pending.append(relpath)
      elif _is_image(entry.name):
        try:
          stat = entry.stat()
          images.append(ImageFile(relpath, stat.st_size, stat.st_mtime_ns))
        except OSError:  # A broken link: an image file that cannot be read, reported as such.
          images.append(ImageFile(relpath, -1, -1))
      else:
        others[os.path.splitext(entry.name)[1].lower()] += 1
  images.sort(key=lambda f: f.relpath)
  return Listing(images, others)


def hash_fraction(relpath: str) -> float:
  """A number in [0, 1) fixed by a file's path relative to the folder (the first 64 bits of
  the SHA-1 of its UTF-8 bytes), which picks its split."""
  digest = hashlib.sha1(relpath.encode("utf-8", "surrogateescape")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def _hash_split(relpath: str, names: Sequence[str], weights: Sequence[float]) -> str:
  total = sum(weights)
  if total <= 0:
    return names[0]
  u, edge = hash_fraction(relpath), 0.0
  for name, weight in zip(names, weights):
    edge += weight / total
    if u < edge:
      return name
  return names[-1]  # u within rounding of 1.


def _split_folders(root: str) -> Dict[str, str]:
  """Split name to the split folder of root that stands for it (train/, validation/ or valid/,
  test/)."""
  found = {}
  for split, names in SPLIT_FOLDERS.items():
    present = [n for n in names if os.path.isdir(os.path.join(root, n))]
    if len(present) > 1:
      raise _error(f"{root!r} has both {present[0]}/ and {present[1]}/ folders; keep one as the "
                   "validation split")
    if present:
      found[split] = present[0]
  return found


def assign(root: str, listing: Listing, fractions: Sequence[float]) -> Assignment:
  """Puts every image file into its split and class (see the module docstring).

  Raises:
    DataError: split folders without train/, or splits that disagree on having classes.
  """
  split_folders = _split_folders(root)
  by_split = {s: [] for s in SPLITS}  # (relpath, class name or None, loose in its folder)
  ignored = 0
  if split_folders:
    if "train" not in split_folders:
      shown = ", ".join(f"{n}/" for n in split_folders.values())
      raise _error(f"{root!r} has {shown} but no train/ folder; add one (a folder with "
                   "split folders uses train/, validation/ or valid/, and test/)")
    folder_split = {name: split for split, name in split_folders.items()}
    missing = [s for s in SPLITS if s not in split_folders]
    carve_names = ["train"] + missing
    carve_weights = [fractions[SPLITS.index(s)] for s in carve_names]
    for image in listing.images:
      parts = image.relpath.split("/")
      if parts[0] not in folder_split:
        ignored += 1
        continue
      split = folder_split[parts[0]]
      if split == "train" and missing:
        split = _hash_split(image.relpath, carve_names, carve_weights)
      rest = parts[1:]
      by_split[split].append((image.relpath, rest[0] if len(rest) > 1 else None))
    if missing:
      rule = (f"split folders, with {' and '.join(missing)} taken from train/ by path hash "
              f"({'/'.join(f'{w:g}' for w in carve_weights)} of it)")
    else:
      rule = "split folders"
    hashed = bool(missing)
  else:
    for image in listing.images:
      parts = image.relpath.split("/")
      split = _hash_split(image.relpath, SPLITS, fractions)
      by_split[split].append((image.relpath, parts[0] if len(parts) > 1 else None))
    rule = f"path hash {'/'.join(f'{f:g}' for f in fractions)}"
    hashed = True
  classes = sorted({c for entries in by_split.values() for _, c in entries if c is not None})
  splits, labels = {}, {}
  if classes:
    index = {c: i for i, c in enumerate(classes)}
    for split, entries in by_split.items():
      kept = [(p, c) for p, c in entries if c is not None]
      if entries and not kept and split_folders and split in split_folders:
        raise _error(
            f"{os.path.join(root, split_folders[split])!r} holds its images directly, while "
            f"other splits have class folders ({_names(classes)}); give every split the same "
            "class folders, or none")
      ignored += len(entries) - len(kept)
      splits[split] = [p for p, _ in kept]
      labels[split] = [index[c] for _, c in kept]
  else:
    for split, entries in by_split.items():
      splits[split] = [p for p, _ in entries]
      labels[split] = [None] * len(entries)
  return Assignment(splits, labels, classes or None, rule, split_folders, hashed, ignored)


def _names(names: Sequence[str], shown: int = 4) -> str:
  text = ", ".join(names[:shown])
  return text + (f", ... ({len(names)} in all)" if len(names) > shown else "")


def _count(n: int, noun: str, plural: str = "") -> str:
  return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


# ----------------------------------------------------------------------------------------------
# Fingerprint and cache folders.


def parameters(opts: Options, assignment: Assignment) -> dict:
  """The preparation parameters that shape a prepared folder (part of its fingerprint)."""
  return {"version": CACHE_VERSION, "image_size": list(opts.size) if opts.size else None,
          "channels": opts.channels, "split_folders": assignment.folders,
          "split_fractions": list(opts.fractions) if assignment.hashed else None,
          "on_bad_image": opts.on_bad_image}


def content_hash(listing: Listing) -> str:
  """SHA-1 of the image files' relative paths, sizes and modification times."""
  digest = hashlib.sha1()
  for image in listing.images:
    digest.update(f"{image.relpath}\0{image.size}\0{image.mtime_ns}\n".encode(
        "utf-8", "surrogateescape"))
  return digest.hexdigest()


def fingerprint(listing: Listing, params: dict) -> str:
  """The name part of a prepared folder: content and parameters together."""
  digest = hashlib.sha1(content_hash(listing).encode())
  digest.update(json.dumps(params, sort_keys=True).encode())
  return digest.hexdigest()[:20]


def _cache_name(root: str, key: str) -> str:
  base = os.path.basename(os.path.normpath(os.path.abspath(root))) or "root"
  base = "".join(c if c.isalnum() or c in "-_" else "_" for c in base)[:40]
  return f"{base}-{key}"


def _remove_abandoned_partials(cache_root: str) -> None:
  """Removes partial preparations whose process is gone (this machine) or that are old."""
  host = socket.gethostname()
  try:
    names = os.listdir(cache_root)
  except OSError:
    return
  now = time.time()
  for name in names:
    if not name.startswith(_PARTIAL_PREFIX):
      continue
    path = os.path.join(cache_root, name)
    # .partial-NAME.PID@HOST (NAME holds no "." or "@").
    owner, _, owner_host = name.rpartition("@")
    pid = owner.rpartition(".")[2]
    try:
      dead = owner_host == host and pid.isdigit() and not files_lib.process_alive(int(pid))
      if dead or now - os.path.getmtime(path) > STALE_PARTIAL_S:
        shutil.rmtree(path, ignore_errors=True)
    except OSError:
      pass


def _read_info(cache: str) -> Optional[dict]:
  """The info.json of a complete prepared folder whose files are all there, else None."""
  try:
    info = files_lib.read_json(os.path.join(cache, "info.json"), dict,
                               keys=("version", "image_shape", "splits"))
  except files_lib.DamagedFileError:
    return None
  if info is None or info["version"] != CACHE_VERSION:
    return None
  shape = tuple(info["image_shape"])
  for split, count in info["splits"].items():
    try:
      images = np.load(os.path.join(cache, f"{split}_images.npy"), mmap_mode="r")
    except (OSError, ValueError):
      return None
    if images.shape != (count,) + shape or images.dtype != np.uint8:
      return None
    needed = [f"{split}_files.json"] + ([f"{split}_labels.npy"] if info.get("class_names") else [])
    if not all(os.path.exists(os.path.join(cache, name)) for name in needed):
      return None
  return info if set(info["splits"]) == set(SPLITS) else None


# ----------------------------------------------------------------------------------------------
# Decoding (in worker processes; nothing here may touch TensorFlow).


def _grey_or_rgb(image):
  """A decoded PIL image as mode L or RGB, and whether it has colour (R, G, B not all equal).

  A colour-mode image whose pixels are all grey comes back as L: it is grey.
  """
  mode = image.mode
  if mode == "I" or mode.startswith("I;16"):
    values = np.asarray(image).astype(np.float64)
    if mode != "I" or values.max() > 255:  # 16-bit samples.
      values = values / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L"), False
  if mode in ("1", "L", "LA", "La", "F"):
    return image.convert("L"), False
  rgb = image.convert("RGB")
  pixels = np.asarray(rgb)
  if (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all():
    return rgb.getchannel(0), False
  return rgb, True


def _luma(image):
  """RGB to grey weighed as tf.image.rgb_to_grayscale weighs it (generic.convert_channels)."""
  grey = np.asarray(image, np.float32) @ np.asarray(_LUMA, np.float32)
  return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L")


def _fit(image, size: Tuple[int, int]):
  """The largest centred crop of size's aspect ratio (whole pixels), scaled to size (H, W) with
  an antialiased bilinear filter; also whether the image changed.

  The crop and filter of tfgen/data/generic.py `resize_and_crop` (tfds:NAME, arrays), so a set
  comes out alike from a folder or from TFDS, done by Pillow here (TensorFlow has no place in a
  forked worker).
  """
  width, height = image.size
  target_h, target_w = size
  if (height, width) == (target_h, target_w):
    return image, False
  crop_h = min(height, (width * target_h + target_w // 2) // target_w)
  crop_w = min(width, (height * target_w + target_h // 2) // target_h)
  top, left = (height - crop_h) // 2, (width - crop_w) // 2
  # Cropped first: resize(box=...) would also weigh pixels just outside the box.
  crop = image.crop((left, top, left + crop_w, top + crop_h))
  return crop.resize((target_w, target_h), Image.Resampling.BILINEAR), True


def decode_image(path: str, size: Optional[Tuple[int, int]], channels: int):
  """Reads one image file.

  Args:
    path: the file.
    size: (H, W) to fit it to, or None to keep its size.
    channels: 1 to make colour grey; 0 or 3 keep grey images grey (the store makes them RGB).

  Returns:
    (pixels, colour, resized, error): pixels uint8 [H, W] (grey) or [H, W, 3] (RGB), whether
    the image has colour, whether it was resized, and None; or (None, False, False, reason) when
    the file cannot be read as an image.
  """
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # Pillow's remarks on palettes, EXIF, sizes.
      with open(path, "rb") as f:
        data = f.read()
      if not data:
        return None, False, False, "empty file"
      with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as image:
        image.load()  # The first frame of an animation.
        if image.format == "JPEG":
          image = ImageOps.exif_transpose(image)
        image, colour = _grey_or_rgb(image)
      resized = False
      if size is not None:
        image, resized = _fit(image, size)
      # After resizing, as generic.image_transform does: fewer pixels, the same grey.
      if colour and channels == 1:
        image = _luma(image)
      return np.asarray(image, np.uint8), colour, resized, None
  except Exception as e:  # pylint: disable=broad-except  # Any file may hold anything.
    if isinstance(e, UnidentifiedImageError):  # Its message shows a BytesIO object.
      reason = "not a PNG, JPEG, BMP or GIF image"
    elif isinstance(e, OSError) and e.strerror:
      reason = e.strerror
    else:
      reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return None, False, False, reason


def _decode_chunk(task):
  """decode_image over a list of paths (one worker task)."""
  paths, size, channels = task
  return [decode_image(p, size, channels) for p in paths]


def _worker_init():
  # Ctrl-C and SIGTERM are the parent's to handle: it stops the workers and cleans up.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _workers() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


@contextlib.contextmanager
def _decoded(paths: List[str], size, channels) -> Iterator[Iterator[tuple]]:
  """The decode_image results of paths, in order, from worker processes where that pays."""
  tasks = [(paths[i:i + CHUNK_FILES], size, channels)
           for i in range(0, len(paths), CHUNK_FILES)]
  workers = min(_workers(), len(tasks))
  # Forked workers start at once and never touch TensorFlow (only Pillow and numpy), so the
  # threads TensorFlow runs in this process do not matter to them.
  can_fork = "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin"
  if workers < 2 or len(paths) < PARALLEL_MIN_FILES or not can_fork:
    yield (r for task in tasks for r in _decode_chunk(task))
    return
  # Frozen, this process's objects stay out of the workers' garbage collections, which would
  # otherwise write to (and so copy) every page of them.
  gc.freeze()
  try:
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_init)
  finally:
    gc.unfreeze()
  try:
    yield (r for chunk in pool.imap(_decode_chunk, tasks) for r in chunk)
    pool.close()
  finally:
    pool.terminate()
    pool.join()


class _Progress:
  """A one-line progress report on stderr while preparing (redrawn on a terminal, a line every
  half minute otherwise)."""

  def __init__(self, total: int, what: str):
    self.total, self.what = total, what
    self.start = self.last = time.perf_counter()
    self.tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    self.drawn = False

  def update(self, done: int) -> None:
    now = time.perf_counter()
    interval = _PROGRESS_INTERVAL_S if self.tty else _PROGRESS_LOG_INTERVAL_S
    if now - self.last < interval and done < self.total:
      return
    self.last = now
    rate = done / max(now - self.start, 1e-9)
    left = (self.total - done) / rate if rate > 0 else 0.0
    line = (f"preparing {self.what}: {done:,}/{self.total:,} images "
            f"({100 * done / max(self.total, 1):.0f}%, {rate:,.0f}/s, {left:.0f} s left)")
    if self.tty:
      sys.stderr.write("\r" + line + "\x1b[K")
      self.drawn = True
    elif done < self.total:
      sys.stderr.write(line + "\n")
    sys.stderr.flush()

  def close(self) -> None:
    if self.drawn:
      sys.stderr.write("\r\x1b[K")
      sys.stderr.flush()
      self.drawn = False


# ----------------------------------------------------------------------------------------------
# Writing the prepared arrays.


class _Store:
  """The .npy files of the splits being prepared, growing from grey to RGB when colour appears.

  Every image must have the size of the first (images of another size are refused: only with
  image_size "" do they reach the store unresized).
  """

  def __init__(self, folder: str, capacities: Dict[str, int], channels: int, root: str):
    self.folder, self.capacities, self.root = folder, capacities, root
    self.channels = channels or None  # None: grey until a colour image arrives.
    self.size = None  # (H, W) and the file that set it.
    self.first = None
    self.arrays, self.counts = {}, {s: 0 for s in capacities}
    self.grey = self.colour = self.resized = 0

  def _path(self, split: str) -> str:
    return os.path.join(self.folder, f"{split}_images.npy")

  def _open(self, split: str, channels: int):
    return np.lib.format.open_memmap(self._path(split), "w+", np.uint8,
                                     (self.capacities[split],) + self.size + (channels,))

  def add(self, split: str, pixels: np.ndarray, colour: bool, resized: bool,
          relpath: str) -> None:
    if self.size is None:
      self.size, self.first = pixels.shape[:2], relpath
    elif pixels.shape[:2] != self.size:
      raise _error(
          f"the images of {self.root!r} differ in size ({self.first!r} is "
          f"{self.size[0]}x{self.size[1]}, {relpath!r} is {pixels.shape[0]}x{pixels.shape[1]}); "
          "set --config.data.image_size=H or HxW to resize and centre-crop them all")
    if pixels.ndim == 3 and self.channels in (None, 1):
      self._to_rgb()
    channels = self.channels or 1
    if split not in self.arrays:
      self.arrays[split] = self._open(split, channels)
    self.arrays[split][self.counts[split]] = pixels if pixels.ndim == 3 else pixels[..., None]
    self.counts[split] += 1
    self.colour += colour
    self.grey += not colour
    self.resized += resized

  def _to_rgb(self) -> None:
    """Rewrites the grey images stored so far as RGB (once, when the first colour one comes)."""
    self.channels = 3
    for split, grey in list(self.arrays.items()):
      grey.flush()
      rgb_path = self._path(split) + ".rgb"
      rgb = np.lib.format.open_memmap(rgb_path, "w+", np.uint8, grey.shape[:3] + (3,))
      for start in range(0, self.counts[split], 4096):
        rgb[start:start + 4096] = grey[start:start + 4096]
      del grey
      self.arrays[split] = rgb
      os.replace(rgb_path, self._path(split))

  def finish(self) -> Dict[str, int]:
    """Flushes the arrays, cut to the images written (fewer than capacity after skips)."""
    for split, array in self.arrays.items():
      count = self.counts[split]
      array.flush()
      if count < len(array):
        short_path = self._path(split) + ".short"
        short = np.lib.format.open_memmap(short_path, "w+", np.uint8, (count,) + array.shape[1:])
        for start in range(0, count, 4096):
          stop = min(start + 4096, count)
          short[start:stop] = array[start:stop]
        short.flush()
        del short
        os.replace(short_path, self._path(split))
      self.arrays[split] = None
    return dict(self.counts)

  @property
  def converted(self) -> int:
    """Images whose colour kind was changed: grey ones stored as RGB, colour ones as grey."""
    return self.grey if self.channels == 3 else self.colour


def _write_json(path: str, value) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(value, f)


def _display(root: str, relpath: str) -> str:
  return os.path.join(root, *relpath.split("/"))


def _prepare(opts: Options, listing: Listing, assignment: Assignment, params: dict,
             cache: str) -> dict:
  """Decodes every image into a temporary folder and renames it to `cache` when complete.

  Returns:
    The prepared folder's info.json.

  Raises:
    DataError: unreadable files (on_bad_image "fail"), images of different sizes without
      image_size, a split left empty, the folder changed meanwhile, or the cache unwritable.
  """
  root, cache_root = opts.path, os.path.dirname(cache)
  start = time.perf_counter()
  try:
    os.makedirs(cache_root, exist_ok=True)
  except OSError as e:
    raise _cache_error(cache_root, e) from e
  _remove_abandoned_partials(cache_root)
  partial = os.path.join(cache_root, f"{_PARTIAL_PREFIX}{os.path.basename(cache)}."
                         f"{os.getpid()}@{socket.gethostname()}")
  shutil.rmtree(partial, ignore_errors=True)
  entries = [(split, i, relpath) for split in SPLITS
             for i, relpath in enumerate(assignment.splits[split])]
  progress = _Progress(len(entries), root)
  try:
    os.makedirs(partial)
    store = _Store(partial, {s: len(assignment.splits[s]) for s in SPLITS}, opts.channels, root)
    kept = {s: [] for s in SPLITS}  # Index into assignment.splits[s] of every stored image.
    bad, stopped = [], False
    paths = [_display(root, relpath) for _, _, relpath in entries]
    with _decoded(paths, opts.size, opts.channels) as results:
      for done, ((split, i, relpath), (pixels, colour, resized, reason)) in enumerate(
          zip(entries, results), 1):
        if reason is not None:
          bad.append(f"{_display(root, relpath)}: {reason}")
          if opts.on_bad_image == "fail" and len(bad) >= MAX_BAD_NAMED:
            stopped = True
            break
        else:
          store.add(split, pixels, colour, resized, relpath)
          kept[split].append(i)
        progress.update(done)
    progress.close()
    _check_unchanged(root, listing)  # Before blaming files that were just removed or replaced.
    if bad and opts.on_bad_image == "fail":
      raise _bad_files_error(root, bad, stopped)
    counts = store.finish()
    for split in SPLITS:
      if not counts[split]:
        raise _empty_split_error(root, split, assignment, bool(bad))
      names = [assignment.splits[split][i] for i in kept[split]]
      _write_json(os.path.join(partial, f"{split}_files.json"), names)
      if assignment.class_names:
        labels = np.asarray([assignment.labels[split][i] for i in kept[split]], np.int32)
        np.save(os.path.join(partial, f"{split}_labels.npy"), labels)
    seconds = time.perf_counter() - start
    info = {
        "version": CACHE_VERSION, "source": os.path.abspath(root),
        "content": content_hash(listing), "parameters": params,
        "image_shape": list(store.size) + [store.channels or 1], "splits": counts,
        "class_names": assignment.class_names, "split_rule": assignment.rule,
        "skipped_files": bad, "resized": store.resized, "converted": store.converted,
        "ignored": assignment.ignored, "seconds": round(seconds, 3),
        "prepared": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    # Last, after every array: a folder with info.json is complete.
    _write_json(os.path.join(partial, "info.json"), info)
    # A last look: a file changed while the arrays were written is caught too.
    _check_unchanged(root, listing)
    try:
      os.rename(partial, cache)
    except OSError:
      if _read_info(cache) is None:  # Not another process's complete preparation: a failure.
        raise
      shutil.rmtree(partial, ignore_errors=True)  # Another process finished first; theirs.
  except OSError as e:
    raise _cache_error(cache_root, e) from e
  finally:
    progress.close()
    if os.path.exists(partial):
      shutil.rmtree(partial, ignore_errors=True)
  return info


def _check_unchanged(root: str, listing: Listing) -> None:
  if content_hash(scan(root)) != content_hash(listing):
    raise _error(f"the folder {root!r} changed while being prepared (image files added, "
                 "removed or modified); run again to prepare it as it is then")


def _cache_error(cache_root: str, e: OSError) -> errors.DataError:
  advice = "free some, or set" if e.errno == errno.ENOSPC else "set"
  return _error(f"cannot write the prepared folder into {cache_root!r}: "
                f"{e.strerror or e}; {advice} --config.data.cache_dir=DIR to a writable folder "
                "with room")


def _bad_files_error(root: str, bad: List[str], stopped: bool) -> errors.DataError:
  shown = "; ".join(bad[:MAX_BAD_NAMED])
  count = f"{len(bad)} or more image files" if stopped else _count(len(bad), "image file")
  return _error(f"{count} in {root!r} cannot be read ({shown}); fix or remove them, or set "
                "--config.data.on_bad_image=skip to leave them out")


def _empty_split_error(root: str, split: str, assignment: Assignment,
                       skipped: bool) -> errors.DataError:
  total = sum(len(p) for p in assignment.splits.values())
  unreadable = " (its files were unreadable)" if skipped and assignment.splits[split] else ""
  if split in assignment.folders:
    return _error(f"the {split} split of {root!r} is empty: {assignment.folders[split]}/ holds "
                  f"no readable images{unreadable}; put images in it")
  return _error(f"the {split} split of {root!r} is empty{unreadable}: its "
                f"{_count(total, 'image')} split by {assignment.rule}; add images, or change "
                "--config.data.split_fractions, e.g. (0.8,0.1,0.1)")


# ----------------------------------------------------------------------------------------------
# The source.


def _no_images_error(root: str, listing: Listing) -> errors.DataError:
  wanted = " ".join(IMAGE_EXTENSIONS)
  if not listing.others:
    return _error(f"the folder {root!r} is empty: put image files ({wanted}) in it, in class "
                  "sub-folders for labels")
  kinds = ", ".join(f"{n} {ext or '(no extension)'}"
                    for ext, n in sorted(listing.others.items(), key=lambda e: (-e[1], e[0]))[:4])
  more = ", ..." if len(listing.others) > 4 else ""
  return _error(f"found no image files ({wanted}) in {root!r}; it holds "
                f"{_count(sum(listing.others.values()), 'other file')} ({kinds}{more}), which "
                "are not read as images")


def prepare(config) -> Prepared:
  """Prepares the folder of `config.data` (config.data.path) once, or finds it prepared.

  Prints one summary line on stderr (and a progress line while preparing).

  Args:
    config: `config.data`: path, image_size, channels, split_fractions, on_bad_image, cache_dir,
      data_dir.

  Returns:
    The prepared folder.

  Raises:
    ConfigError: invalid folder options.
    DataError: see the module docstring; one line each.
  """
  opts = options(config)
  listing = scan(opts.path)
  if not listing.images:
    raise _no_images_error(opts.path, listing)
  assignment = assign(opts.path, listing, opts.fractions)
  for split in SPLITS:
    if not assignment.splits[split]:
      raise _empty_split_error(opts.path, split, assignment, False)
  params = parameters(opts, assignment)
  cache = os.path.join(opts.cache_root, _cache_name(opts.path, fingerprint(listing, params)))
  info = _read_info(cache) if os.path.isdir(cache) else None
  if info is not None:
    print(f"folder {opts.path}: using its preparation in {cache}: {_summary(info)}",
          file=sys.stderr, flush=True)
    return Prepared(cache, info, reused=True)
  if os.path.isdir(cache):  # Damaged (a disk crash, a hand edit): prepared afresh.
    shutil.rmtree(cache, ignore_errors=True)
  info = _prepare(opts, listing, assignment, params, cache)
  removed = _remove_superseded(opts.cache_root, cache, info)
  total = sum(info["splits"].values())
  print(f"folder {opts.path}: prepared {_summary(info)} in {info['seconds']:.1f} s "
        f"({total / max(info['seconds'], 1e-9):,.0f} images/s) into {cache}"
        + (f"; removed {_count(removed, 'older preparation')} of it" if removed else ""),
        file=sys.stderr, flush=True)
  return Prepared(cache, info, reused=False)


def _remove_superseded(cache_root: str, cache: str, info: dict) -> int:
  """Deletes preparations of the same folder with the same parameters but older content."""
  removed = 0
  for name in os.listdir(cache_root):
    other = os.path.join(cache_root, name)
    if name.startswith(".") or other == cache or not os.path.isdir(other):
      continue
    other_info = files_lib.read_json_or_warn(os.path.join(other, "info.json"), dict,
                                             consequence="left as it is")
    if (other_info and other_info.get("source") == info["source"]
        and other_info.get("parameters") == info["parameters"]
        and other_info.get("content") != info["content"]):
      shutil.rmtree(other, ignore_errors=True)
      removed += 1
  return removed


def _summary(info: dict) -> str:
  height, width, channels = info["image_shape"]
  counts = info["splits"]
  text = (f"{_count(sum(counts.values()), 'image')} of {height}x{width}x{channels} (train "
          f"{counts['train']:,}, validation {counts['validation']:,}, test {counts['test']:,}; "
          f"{info.get('split_rule', '')}), ")
  classes = info.get("class_names")
  text += (f"{_count(len(classes), 'class', 'classes')} ({_names(classes)})" if classes
           else "no labels")
  notes = []
  if info.get("resized"):
    notes.append(f"{info['resized']:,} resized")
  if info.get("converted"):
    notes.append(f"{info['converted']:,} converted to {'RGB' if channels == 3 else 'grey'}")
  if info.get("skipped_files"):
    notes.append(f"{len(info['skipped_files']):,} unreadable skipped")
  if info.get("ignored"):
    notes.append(f"{info['ignored']:,} outside the class or split folders ignored")
  return text + (f"; {', '.join(notes)}" if notes else "")


def _records(path: str, count: int, shape: Tuple[int, int, int]) -> tf.data.Dataset:
  """The images of a .npy file streamed from disk: uint8 [H, W, C] each."""
  record = int(np.prod(shape))
  offset = os.path.getsize(path) - count * record  # The .npy header; the rows follow it.
  ds = tf.data.FixedLengthRecordDataset(path, record, header_bytes=offset,
                                        buffer_size=max(record * 256, 1 << 20))
  ds = ds.map(lambda r: tf.reshape(tf.io.decode_raw(r, tf.uint8), shape),
              num_parallel_calls=tf.data.AUTOTUNE)
  return ds.take(count).apply(tf.data.experimental.assert_cardinality(count))


def _fixed_binarization(example):
  """{0, 1} pixels drawn once with probabilities intensity / 255, seeded by the image's path."""
  # A new dict, not example.pop(): tf.data may trace this function more than once with the
  # same input structure, which must not change between traces.
  seed = tf.stack([tf.constant(FIXED_BINARIZATION_SEED, tf.int64), example["key"]])
  uniform = tf.random.stateless_uniform(tf.shape(example["image"]), seed=seed)
  probability = tf.cast(example["image"], tf.float32) / 255.0
  return {**{k: v for k, v in example.items() if k != "key"},
          "image": tf.cast(uniform < probability, tf.uint8)}


def _path_keys(names: List[str]) -> np.ndarray:
  return np.asarray([int(hash_fraction(n) * 2**62) for n in names], np.int64)


def split_dataset(prepared: Prepared, split: str, binarization: str) -> tf.data.Dataset:
  """One split of a prepared folder: dicts of `image` uint8 [H, W, C] and maybe `label` int32.

  In memory up to IN_MEMORY_MAX_BYTES, streamed from the .npy file beyond.
  """
  info, cache = prepared.info, prepared.cache
  shape = tuple(info["image_shape"])
  count = info["splits"][split]
  images_path = os.path.join(cache, f"{split}_images.npy")
  columns = {}
  if info.get("class_names"):
    columns["label"] = np.load(os.path.join(cache, f"{split}_labels.npy")).astype(np.int32)
  if binarization == "fixed":
    with open(os.path.join(cache, f"{split}_files.json"), encoding="utf-8") as f:
      columns["key"] = _path_keys(json.load(f))
  if count * int(np.prod(shape)) <= IN_MEMORY_MAX_BYTES:
    ds = tf.data.Dataset.from_tensor_slices({"image": np.load(images_path), **columns})
  else:
    ds = tf.data.Dataset.zip({"image": _records(images_path, count, shape),
                              **{k: tf.data.Dataset.from_tensor_slices(v)
                                 for k, v in columns.items()}})
  if binarization == "fixed":
    ds = ds.map(_fixed_binarization, num_parallel_calls=tf.data.AUTOTUNE)
  return ds


@sources.SOURCES.register("folder")
def folder(config) -> sources.RawData:
  """A folder of images (config.data.path), prepared once and cached; see the module docstring.

  Binarization: "none" unless config.data.binarization says "dynamic" (a fresh draw each pass)
  or "fixed" (one draw per image, seeded by its path, for every run).
  """
  prepared = prepare(config)
  binarization = config.get("binarization", "") or "none"
  info = prepared.info
  splits = {s: split_dataset(prepared, s, binarization) for s in SPLITS}
  classes = info.get("class_names")
  return sources.RawData(
      splits, {s: int(info["splits"][s]) for s in SPLITS}, tuple(info["image_shape"]),
      binarization, num_classes=len(classes) if classes else None,
      class_names=list(classes) if classes else None,
      skipped_files=list(info.get("skipped_files", [])))
