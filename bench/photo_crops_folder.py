r"""Writes the `photo_crops` data set (32x32 crops of the two photographs in ../shared/data/photos)
as a folder of PNG files with train/, validation/ and test/ sub-folders: the same crops and split
as tfgen's `photo_crops` source, for the folder source's proof run (docs/results.md).

  python bench/photo_crops_folder.py --photos_dir=../shared/data/photos --out=/tmp/photo_folder
  tfgen-train --config=configs/gated_pixelcnn.py:data=folder --config.data.path=/tmp/photo_folder \
      --workdir=/tmp/gated_photo_folder

Not a test: it writes 520 files.
"""

import os

from absl import app
from absl import flags
import tensorflow as tf

from tfgen.data import sources

_PHOTOS_DIR = flags.DEFINE_string("photos_dir", "../shared/data/photos",
                                  "Folder holding china.jpg and flower.jpg.")
_OUT = flags.DEFINE_string("out", None, "Folder to write (must not exist).")
flags.mark_flag_as_required("out")


def write_folder(crops, out: str) -> None:
  """Writes {split: uint8 [N, H, W, 3]} as OUT/SPLIT/NNNNN.png (names keep the source's order)."""
  for split, images in crops.items():
    folder = os.path.join(out, split)
    os.makedirs(folder)
    for i, image in enumerate(images):
      tf.io.write_file(os.path.join(folder, f"{i:05d}.png"), tf.io.encode_png(image))


def main(argv):
  del argv
  if os.path.exists(_OUT.value):
    raise app.UsageError(f"--out {_OUT.value!r} exists")
  paths = [os.path.join(_PHOTOS_DIR.value, f) for f in sources.PHOTO_FILES]
  crops = sources.read_photo_crops(paths)
  write_folder(crops, _OUT.value)
  print(", ".join(f"{split}: {len(images)}" for split, images in crops.items()),
        f"crops of {crops['train'].shape[1:]} written to {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
