r"""Writes Fashion-MNIST as a folder of PNGs, in the layout the `folder` data source reads.

  python bench/fashion_mnist_folder.py --fashion_mnist_dir=../shared/data/fashion_mnist \
      --out=/tmp/fmnist_folder
  tfgen-train --config=configs/conv_vae.py:data=folder --config.data.path=/tmp/fmnist_folder \
      --workdir=/tmp/conv_vae_fmnist_folder

Layout: OUT/{train,validation,test}/CLASS/SOURCE_INDEX.png, 28x28 grey PNGs, with CLASS one of
0_t-shirt_top, 1_trouser, ..., 9_ankle_boot: the digit first, so that sorting the folder names (the
folder source's class order) gives TFDS's label ids 0..9.

The splits are those of tfgen's TFDS route (`data.name=fashion_mnist`,
tfgen/data/sources.py `_train_validation_from_train` with num_validation=10000): validation is the
last 10,000 images of TFDS's train split, train the first 50,000, test the official test set.
TFDS's train split is not in the order of the idx file: its writer sorts the examples by the MD5 of
the split name followed by the example key, and the fashion_mnist builder's key is the image's
index in the idx file; `tfds_order` reproduces that. `--verify_with_tfds` prepares TFDS's
fashion_mnist from the same files (offline, a minute) and checks the three splits against it.

SOURCE_INDEX is the image's index in its idx file (train-images or t10k-images), prefixed by
"train_" or "test_", so every PNG can be traced back.
"""

import gzip
import hashlib
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import numpy as np

# TFDS's fashion_mnist label names, in label id order.
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def class_folder(label: int) -> str:
  """'3_dress' for label 3: the id first, so sorted folder names keep the ids."""
  name = "".join(c if c.isalnum() or c == "-" else "_" for c in CLASS_NAMES[label].lower())
  return f"{label}_{name}"


def read_idx(images_path: str, labels_path: str):
  """uint8 [N, 28, 28] images and uint8 [N] labels of an idx pair (gzipped)."""
  with gzip.open(images_path, "rb") as f:
    raw = f.read()
  count, rows, columns = np.frombuffer(raw[4:16], ">u4")
  images = np.frombuffer(raw[16:], np.uint8).reshape(count, rows, columns)
  with gzip.open(labels_path, "rb") as f:
    labels = np.frombuffer(f.read()[8:], np.uint8)
  if len(labels) != count:
    raise ValueError(f"{images_path} holds {count} images, {labels_path} {len(labels)} labels")
  return images, labels


def read_fashion_mnist(folder: str):
  """split ("train", "test") to (images uint8 [N, 28, 28], labels uint8 [N]) in idx order."""
  return {split: read_idx(*(os.path.join(folder, f) for f in names))
          for split, names in FILES.items()}


def tfds_order(split: str, count: int) -> np.ndarray:
  """The idx indices in the order of TFDS's split: sorted by MD5(split name + str(index)).

  (tensorflow_datasets/core/hashing.py Hasher(salt=split name), applied by its writer to the
  keys the mnist builder yields, which are the indices.)
  """
  salted = hashlib.md5(split.encode())
  keys = []
  for index in range(count):
    md5 = salted.copy()
    md5.update(str(index).encode())
    keys.append(int(md5.hexdigest(), 16))
  return np.asarray(sorted(range(count), key=keys.__getitem__), np.int64)


def tfgen_splits(data, num_validation: int):
  """split name to (source name, idx indices) in tfgen's TFDS route's order."""
  train_order = tfds_order("train", len(data["train"][0]))
  cut = len(train_order) - num_validation
  return {"train": ("train", train_order[:cut]), "validation": ("train", train_order[cut:]),
          "test": ("test", tfds_order("test", len(data["test"][0])))}


def verify_with_tfds(data, splits, fashion_mnist_dir: str, num_validation: int) -> None:
  """Prepares TFDS's fashion_mnist through tfgen's source and compares every split's images."""
  import tempfile  # pylint: disable=g-import-not-at-top
  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfgen.data import sources  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config().data
  config.name = "fashion_mnist"
  config.manual_dir = os.path.abspath(fashion_mnist_dir)
  config.data_dir = tempfile.mkdtemp(prefix="tfds_fashion_mnist_")
  config.num_validation = num_validation
  raw = sources.SOURCES.get("fashion_mnist")(config)
  for split, (source, order) in splits.items():
    images = np.concatenate([b["image"].numpy() for b in raw.splits[split].batch(10000)])
    labels = np.concatenate([b["label"].numpy() for b in raw.splits[split].batch(10000)])
    np.testing.assert_array_equal(images[..., 0], data[source][0][order], err_msg=split)
    np.testing.assert_array_equal(labels, data[source][1][order], err_msg=split)
    print(f"{split}: {len(order)} images and labels identical to tfgen's TFDS route")


def write_folder(data, splits, out: str) -> int:
  """Writes the PNGs under out (into out.partial, renamed when complete)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  partial = out.rstrip("/") + ".partial"
  if os.path.exists(partial):
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(partial)
  written = 0
  for split, (source, order) in splits.items():
    images, labels = data[source]
    for label in range(len(CLASS_NAMES)):
      os.makedirs(os.path.join(partial, split, class_folder(label)))
    for index in order:
      path = os.path.join(partial, split, class_folder(int(labels[index])),
                          f"{source}_{index:05d}.png")
      Image.fromarray(images[index], "L").save(path)
      written += 1
  os.rename(partial, out)
  return written


def main(argv):
  del argv
  if os.path.exists(_OUT.value):
    sys.exit(f"{_OUT.value} exists; remove it or choose another --out")
  start = time.perf_counter()
  data = read_fashion_mnist(_FASHION_MNIST_DIR.value)
  splits = tfgen_splits(data, _NUM_VALIDATION.value)
  if _VERIFY.value:
    verify_with_tfds(data, splits, _FASHION_MNIST_DIR.value, _NUM_VALIDATION.value)
  written = write_folder(data, splits, _OUT.value)
  print(f"wrote {written} PNGs into {_OUT.value} (train {len(splits['train'][1])}, validation "
        f"{len(splits['validation'][1])}, test {len(splits['test'][1])}; classes "
        f"{', '.join(class_folder(i) for i in range(len(CLASS_NAMES)))}) in "
        f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
  # Defined only when run: bench/folder_prepare.py imports the readers above.
  _FASHION_MNIST_DIR = flags.DEFINE_string(
      "fashion_mnist_dir", "../shared/data/fashion_mnist",
      "Folder of train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-*.")
  _OUT = flags.DEFINE_string("out", "/tmp/fmnist_folder", "Folder to write (must not exist).")
  _NUM_VALIDATION = flags.DEFINE_integer("num_validation", 10000,
                                         "Last images of TFDS's train split used as validation.")
  _VERIFY = flags.DEFINE_bool("verify_with_tfds", False,
                              "Prepare TFDS's fashion_mnist from the same files and check the "
                              "splits match it.")
  app.run(main)
