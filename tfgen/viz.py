"""Image grids as PNG files and TensorBoard images."""

import math
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from tfgen import errors


def image_grid(images, num_columns: int = 0, padding: int = 1) -> np.ndarray:
  """Tiles images into one picture.

  Args:
    images: [N, H, W, C] with values in [0, 1].
    num_columns: columns of the grid; 0 picks ceil(sqrt(N)).
    padding: pixels of grey between images.

  Returns:
    uint8 [rows·(H+p)+p, cols·(W+p)+p, C].
  """
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  n, h, w, c = images.shape
  cols = num_columns or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / cols))
  grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), 0.5,
                 np.float32)
  for i, image in enumerate(images):
    r, col = divmod(i, cols)
    top, left = padding + r * (h + padding), padding + col * (w + padding)
    grid[top:top + h, left:left + w] = image
  return np.round(grid * 255).astype(np.uint8)


def _write_via_tmp(path: str, content: Optional[bytes]) -> None:
  """Writes `content` to PATH.tmp and renames it to `path`; with None only tries, then cleans up.

  Raises:
    OutputError: `path` is a folder, or its folder cannot be created or written; nothing is left
      behind.
  """
  if not path or path.endswith(os.sep) or os.path.isdir(path):
    raise errors.OutputError(f"--out {path!r} is a folder; give a file name such as "
                             f"{os.path.join(path or '.', 'samples.png')!r}")
  tmp = path + ".tmp"
  try:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(tmp, "wb") as f:
      f.write(content or b"")
    if content is not None:
      os.replace(tmp, path)
  except OSError as e:
    raise errors.OutputError(f"cannot write {path!r}: {e.strerror or e}") from e
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def check_writable(path: str) -> str:
  """Fails fast, before any slow work, when a file cannot be written at `path`.

  Creates the missing parent folders and writes (then removes) an empty temporary file beside
  `path`, so that what is refused here would also fail when writing for real.

  Raises:
    OutputError: `path` is a folder, or its folder cannot be created or written.
  """
  _write_via_tmp(path, None)
  return path


def write_png(path: str, grid: np.ndarray) -> str:
  """Writes a uint8 [H, W, C] picture as PNG, atomically; returns the path.

  Raises:
    OutputError: the file cannot be written; nothing is left behind.
  """
  _write_via_tmp(path, tf.io.encode_png(grid).numpy())
  return path


def reconstruction_pairs(originals, reconstructions, num_columns: int = 8) -> np.ndarray:
  """Rows alternate originals and their reconstructions, num_columns images each."""
  originals, reconstructions = np.asarray(originals), np.asarray(reconstructions)
  rows = []
  for start in range(0, len(originals), num_columns):
    rows.append(originals[start:start + num_columns])
    rows.append(reconstructions[start:start + num_columns])
  return image_grid(np.concatenate(rows), num_columns)
