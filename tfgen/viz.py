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


# Literal codes between two LZW clear codes of `write_gif`: the decoder's table then never reaches
# 511 entries, so every code keeps 9 bits (GIF's "uncompressed" LZW, which any decoder reads).
_GIF_CODES_PER_CLEAR = 250


def _gif_palette_indices(frames: np.ndarray):
  """uint8 [F, H, W, C] (C = 1 or 3) -> (palette [256, 3] uint8, indices [F, H, W] uint8).

  Grey frames keep all 256 levels; colour frames are rounded to a uniform 6×7×6 colour cube (252
  colours, 7 levels of green, to which the eye is most sensitive).
  """
  if frames.shape[-1] == 1:
    levels = np.arange(256, dtype=np.uint8)
    return np.stack([levels] * 3, -1), frames[..., 0]
  steps = np.array([5, 6, 5])
  quantized = np.round(frames[..., :3].astype(np.float32) / 255 * steps).astype(np.int32)
  indices = quantized[..., 0] * 42 + quantized[..., 1] * 6 + quantized[..., 2]
  cube = np.stack(np.meshgrid(np.arange(6), np.arange(7), np.arange(6), indexing="ij"), -1)
  palette = np.zeros((256, 3), np.uint8)
  palette[:252] = np.round(cube.reshape(-1, 3) / steps * 255).astype(np.uint8)
  return palette, indices.astype(np.uint8)


def _gif_image_data(indices: np.ndarray) -> bytes:
  """LZW image data (min code size 8) of palette indices, as 255-byte sub-blocks."""
  clear, end = 256, 257
  pixels = indices.ravel().astype(np.int32)
  codes = []
  for start in range(0, len(pixels), _GIF_CODES_PER_CLEAR):
    codes.append([clear])
    codes.append(pixels[start:start + _GIF_CODES_PER_CLEAR])
  codes.append([end])
  codes = np.concatenate(codes).astype(np.int32)
  bits = ((codes[:, None] >> np.arange(9)) & 1).astype(np.uint8).ravel()  # LSB first.
  bits = np.concatenate([bits, np.zeros((-len(bits)) % 8, np.uint8)])
  data = np.packbits(bits.reshape(-1, 8), axis=1, bitorder="little").tobytes()
  blocks = b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255]
                    for i in range(0, len(data), 255))
  return bytes([8]) + blocks + b"\x00"


def gif_bytes(frames, frame_ms: int = 100) -> bytes:
  """An animated GIF, looping forever, of uint8 frames [F, H, W, C] (C = 1 or 3).

  No imaging library is needed: the LZW stream is written with 9-bit literal codes only (about
  9/8 of a byte per pixel, no compression). Colour frames use a fixed 252-colour palette.
  """
  frames = np.asarray(frames, np.uint8)
  num_frames, height, width, _ = frames.shape
  if max(height, width) > 65535:
    raise errors.OutputError(f"a GIF's sides are at most 65535 pixels, got {width}x{height}")
  palette, indices = _gif_palette_indices(frames)
  le16 = lambda n: int(n).to_bytes(2, "little")
  delay = le16(max(1, round(frame_ms / 10)))  # In hundredths of a second.
  out = [b"GIF89a", le16(width), le16(height), bytes([0xF7, 0, 0]), palette.tobytes(),
         b"\x21\xFF\x0BNETSCAPE2.0\x03\x01" + le16(0) + b"\x00"]  # Loop forever.
  for frame in range(num_frames):
    out.append(b"\x21\xF9\x04\x04" + delay + b"\x00\x00")  # Keep each frame until the next.
    out.append(b"\x2C" + le16(0) + le16(0) + le16(width) + le16(height) + b"\x00")
    out.append(_gif_image_data(indices[frame]))
  out.append(b"\x3B")
  return b"".join(out)


def write_gif(path: str, frames, frame_ms: int = 100) -> str:
  """Writes uint8 frames [F, H, W, C] as a looping animated GIF, atomically; returns the path.

  Raises:
    OutputError: the file cannot be written; nothing is left behind.
  """
  _write_via_tmp(path, gif_bytes(frames, frame_ms))
  return path
