"""Image grids as PNG files and TensorBoard images."""

import math
import os

import numpy as np
import tensorflow as tf


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


def write_png(path: str, grid: np.ndarray) -> str:
  """Writes a uint8 [H, W, C] picture as PNG, atomically; returns the path."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = path + ".tmp"
  tf.io.write_file(tmp, tf.io.encode_png(grid))
  os.replace(tmp, path)
  return path


def reconstruction_pairs(originals, reconstructions, num_columns: int = 8) -> np.ndarray:
  """Rows alternate originals and their reconstructions, num_columns images each."""
  originals, reconstructions = np.asarray(originals), np.asarray(reconstructions)
  rows = []
  for start in range(0, len(originals), num_columns):
    rows.append(originals[start:start + num_columns])
    rows.append(reconstructions[start:start + num_columns])
  return image_grid(np.concatenate(rows), num_columns)
