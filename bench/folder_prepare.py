r"""Benchmark: how fast the `folder` data source prepares a folder of small PNGs.

Generates N (default 100,000) 28x28 grey PNGs in --dir (noise blobs, or Fashion-MNIST images
when --fashion_mnist_dir is given), spread over --classes class folders, then times the source's
one-time preparation (decode in parallel, write the .npy cache) into a fresh cache folder, and a
second run that finds the cache (fingerprinting the folder only). Run it on a quiet machine and
record what it prints, with the command, in docs/results.md.

  python bench/folder_prepare.py --dir=/tmp/folder_bench
  python bench/folder_prepare.py --dir=/tmp/folder_bench_fm --num=60000 \
      --fashion_mnist_dir=../shared/data/fashion_mnist

An existing --dir holding exactly the N PNGs this script would write is reused as it is.
"""

import multiprocessing
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import numpy as np

_DIR = flags.DEFINE_string("dir", None, "Folder to generate the PNGs in.")
_NUM = flags.DEFINE_integer("num", 100_000, "Number of PNGs.")
_SIZE = flags.DEFINE_integer("size", 28, "Side of the square PNGs.")
_CLASSES = flags.DEFINE_integer("classes", 10, "Class folders (0: all PNGs directly in --dir).")
_FASHION_MNIST_DIR = flags.DEFINE_string(
    "fashion_mnist_dir", "", "Use Fashion-MNIST's training and test images (its idx .gz files "
    "here, e.g. ../shared/data/fashion_mnist), cycled, instead of noise.")
_IMAGE_SIZE = flags.DEFINE_string("image_size", "", "config.data.image_size of the preparation "
                                  "('' keeps the PNGs' size; e.g. 32 to time resizing too).")
_CACHE_DIR = flags.DEFINE_string("cache_dir", "", "Where to prepare (default: a temporary "
                                 "folder, removed afterwards).")
flags.mark_flag_as_required("dir")


def _relpath(index: int, classes: int) -> str:
  name = f"{index:07d}.png"
  return f"class_{index % classes}/{name}" if classes else name


def _noise_image(index: int, size: int) -> np.ndarray:
  """A smooth random blob on black, so the PNGs compress like real small images."""
  rng = np.random.default_rng(index)
  coarse = rng.random((size // 4 + 1, size // 4 + 1))
  image = np.kron(coarse, np.ones((4, 4)))[:size, :size]
  yy, xx = np.mgrid[:size, :size] / size - 0.5
  return (255 * image * (xx**2 + yy**2 < 0.16)).astype(np.uint8)


_SOURCE = None  # Fashion-MNIST images [N, 28, 28] in the workers, when used.


def _write(job) -> None:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  folder, start, stop, size, classes = job
  for index in range(start, stop):
    if _SOURCE is not None:
      pixels = _SOURCE[index % len(_SOURCE)]
      if pixels.shape[0] != size:
        pixels = np.asarray(Image.fromarray(pixels).resize((size, size)))
    else:
      pixels = _noise_image(index, size)
    Image.fromarray(pixels, "L").save(os.path.join(folder, _relpath(index, classes)))


def generate(folder: str, num: int, size: int, classes: int) -> float:
  """Writes the PNGs (in parallel) unless folder already holds them; returns the seconds taken."""
  start = time.perf_counter()
  expected = {_relpath(i, classes) for i in range(num)}
  if os.path.isdir(folder):
    found = {os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/")
             for d, _, names in os.walk(folder) for f in names}
    if found == expected:
      print(f"reusing the {num:,} PNGs in {folder}")
      return 0.0
    shutil.rmtree(folder)
  for c in range(classes):
    os.makedirs(os.path.join(folder, f"class_{c}"), exist_ok=True)
  os.makedirs(folder, exist_ok=True)
  step = 2000
  jobs = [(folder, i, min(i + step, num), size, classes) for i in range(0, num, step)]
  with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
    pool.map(_write, jobs)
  seconds = time.perf_counter() - start
  print(f"wrote {num:,} PNGs of {size}x{size} into {folder} in {seconds:.1f} s")
  return seconds


def main(argv):
  del argv
  global _SOURCE
  if _FASHION_MNIST_DIR.value:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import fashion_mnist_folder  # pylint: disable=g-import-not-at-top
    data = fashion_mnist_folder.read_fashion_mnist(_FASHION_MNIST_DIR.value)
    _SOURCE = np.concatenate([data["train"][0], data["test"][0]])
  generate(_DIR.value, _NUM.value, _SIZE.value, _CLASSES.value)

  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfgen.data import folders  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config().data
  config.name = "folder"
  config.path = _DIR.value
  config.image_size = _IMAGE_SIZE.value
  cache_dir = _CACHE_DIR.value or tempfile.mkdtemp(prefix="folder_bench_cache_")
  config.cache_dir = cache_dir
  try:
    start = time.perf_counter()
    prepared = folders.prepare(config)
    prepare_s = time.perf_counter() - start
    if prepared.reused:
      print(f"--cache_dir {cache_dir} already held this preparation; nothing was timed")
      return
    start = time.perf_counter()
    folders.prepare(config)
    reuse_s = time.perf_counter() - start
    total = sum(prepared.info["splits"].values())
    print(f"prepared {total:,} images in {prepare_s:.1f} s: {total / prepare_s:,.0f} images/s "
          f"({folders._workers()} workers); "  # pylint: disable=protected-access
          f"finding the cache again took {reuse_s:.2f} s")
  finally:
    if not _CACHE_DIR.value:
      shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
