"""The `folder` data source (tfgen/data/folders.py) on small folders of generated image files."""

import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from tfgen import config as config_lib
from tfgen import data
from tfgen import errors
from tfgen import train
from tfgen.data import folders
from tfgen.data import generic
from tfgen.data import in_graph
from tests.conftest import load_config


def _save(path, pixels, **options):
  """Writes uint8 [H, W] (grey) or [H, W, 3] (RGB) pixels; the format from the extension."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.asarray(pixels, np.uint8)).save(path, **options)
  return path


def _noise(seed, shape=(28, 28)):
  return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


def _folder(root, count, classes=(), shape=(28, 28), ext="png", start=0):
  """count noise PNGs directly in root, or count per class folder."""
  for c, name in enumerate(classes or [""]):
    for i in range(start, start + count):
      _save(os.path.join(str(root), name, f"{i:04d}.{ext}"), _noise(1000 * c + i, shape))
  return str(root)


def _config(path, cache_dir, **fields):
  config = config_lib.base_config().data
  config.name = "folder"
  config.path = str(path)
  config.cache_dir = str(cache_dir)
  for key, value in fields.items():
    config[key] = value
  return config


def _arrays(raw, split):
  """(images uint8 [N, H, W, C], labels [N] or None) of a RawData split."""
  batches = list(raw.splits[split].batch(100000))
  images = np.concatenate([b["image"].numpy() for b in batches])
  labels = (np.concatenate([b["label"].numpy() for b in batches])
            if "label" in raw.splits[split].element_spec else None)
  return images, labels


def _files(raw_cache, split):
  with open(os.path.join(raw_cache, f"{split}_files.json"), encoding="utf-8") as f:
    return json.load(f)


def _message(excinfo):
  message = str(excinfo.value)
  assert "\n" not in message, message
  return message


# ------------------------------------------------------------------------------------------------
# Formats, channels, sizes.


def test_each_format_is_read_exactly(tmp_path):
  grey, rgb = _noise(1, (12, 20)), _noise(2, (12, 20, 3))
  for name, pixels in [("g.png", grey), ("c.png", rgb), ("g.bmp", grey), ("c.bmp", rgb)]:
    image, colour, resized, error = folders.decode_image(_save(str(tmp_path / name), pixels),
                                                         None, 0)
    assert error is None and not resized and colour == (pixels.ndim == 3)
    np.testing.assert_array_equal(image, pixels)
  # A palette BMP holds indices into its colours: the colours are what must come out.
  palette = Image.fromarray(rgb).quantize(16)
  palette.save(tmp_path / "p.bmp")
  image, colour, _, _ = folders.decode_image(str(tmp_path / "p.bmp"), None, 0)
  np.testing.assert_array_equal(image, np.asarray(palette.convert("RGB")))
  # JPEG is lossy: close, not equal.
  smooth = np.tile(np.linspace(0, 255, 20, dtype=np.uint8), (12, 1))
  image, colour, _, _ = folders.decode_image(_save(str(tmp_path / "g.jpg"), smooth,
                                                   quality=95), None, 0)
  assert image.shape == (12, 20) and not colour
  assert np.abs(image.astype(int) - smooth).max() <= 4
  # GIF: the first frame of an animation.
  first, second = Image.fromarray(grey), Image.fromarray(255 - grey)
  first.save(tmp_path / "a.gif", save_all=True, append_images=[second])
  image, colour, _, _ = folders.decode_image(str(tmp_path / "a.gif"), None, 0)
  np.testing.assert_array_equal(image, grey)
  # 16-bit grey PNG: scaled to 8 bits, not clipped.
  Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")
  image, _, _, _ = folders.decode_image(str(tmp_path / "g16.png"), None, 0)
  np.testing.assert_array_equal(image, grey)


def test_a_folder_of_mixed_formats_and_nested_class_folders(tmp_path):
  root = tmp_path / "images"
  grey = {f"a/deep/er/{i}.{ext}": _noise(i) for i, ext in enumerate(
      ["png", "PNG", "bmp", "gif", "jpg", "jpeg"] * 6)}
  grey.update({f"b/{i}.png": _noise(100 + i) for i in range(20)})
  for relpath, pixels in grey.items():
    _save(str(root / relpath), pixels)
  (root / "a" / "notes.txt").write_text("not an image")
  (root / ".hidden").mkdir()
  _save(str(root / ".hidden" / "x.png"), _noise(0))
  raw = folders.folder(_config(root, tmp_path / "cache", image_size="28",
                               split_fractions=(1 / 3, 1 / 3, 1 / 3)))
  assert raw.class_names == ["a", "b"] and raw.num_classes == 2
  assert sum(raw.num_examples.values()) == len(grey)
  assert raw.image_shape == (28, 28, 1) and raw.binarization == "none"
  cache = folders.prepare(_config(root, tmp_path / "cache", image_size="28",
                                  split_fractions=(1 / 3, 1 / 3, 1 / 3))).cache
  for split in folders.SPLITS:
    images, labels = _arrays(raw, split)
    for image, label, relpath in zip(images, labels, _files(cache, split)):
      assert label == (0 if relpath.startswith("a/") else 1)
      if not relpath.endswith(("jpg", "jpeg")):
        np.testing.assert_array_equal(image[..., 0], grey[relpath])


def test_channels_inferred_from_colour_and_set_by_config(tmp_path):
  grey_root, mixed_root = tmp_path / "grey", tmp_path / "mixed"
  grey = _noise(3)
  # An RGB file whose pixels are all grey is grey.
  _save(str(grey_root / "rgb_but_grey.png"), np.stack([grey] * 3, -1))
  _folder(grey_root, 9)
  grey_fields = dict(split_fractions=(0.34, 0.33, 0.33))
  cache = tmp_path / "cache"
  assert folders.folder(_config(grey_root, cache, **grey_fields)).image_shape == (28, 28, 1)

  colour = _noise(4, (28, 28, 3))
  _save(str(mixed_root / "colour.png"), colour)
  _save(str(mixed_root / "grey.png"), grey)
  _folder(mixed_root, 8)
  prepared = folders.prepare(_config(mixed_root, cache, **grey_fields))
  assert prepared.info["image_shape"] == [28, 28, 3]
  assert prepared.info["converted"] == 9  # The grey ones, made RGB.
  raw = folders.folder(_config(mixed_root, cache, **grey_fields))
  every = {name: image for split in folders.SPLITS
           for name, image in zip(_files(prepared.cache, split), _arrays(raw, split)[0])}
  np.testing.assert_array_equal(every["colour.png"], colour)
  np.testing.assert_array_equal(every["grey.png"], np.stack([grey] * 3, -1))

  as_grey = folders.prepare(_config(mixed_root, cache, channels=1, **grey_fields))
  assert as_grey.info["image_shape"] == [28, 28, 1] and as_grey.info["converted"] == 1
  raw = folders.folder(_config(mixed_root, cache, channels=1, **grey_fields))
  every = {name: image for split in folders.SPLITS
           for name, image in zip(_files(as_grey.cache, split), _arrays(raw, split)[0])}
  luma = generic.convert_channels(tf.constant(colour), 1).numpy()[..., 0]
  np.testing.assert_array_equal(every["colour.png"][..., 0], luma)
  np.testing.assert_array_equal(every["grey.png"][..., 0], grey)

  as_rgb = folders.folder(_config(grey_root, cache, channels=3, **grey_fields))
  images = _arrays(as_rgb, "train")[0]
  assert images.shape[1:] == (28, 28, 3)
  np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_resized_keeping_aspect_and_centre_cropped_to_a_non_square_size(tmp_path):
  # 40x40: rows 0-9 black, 10-29 mid-grey, 30-39 white. Cut to 2:1 (rows 10-29), then 8x16.
  bands = np.zeros((40, 40), np.uint8)
  bands[10:30], bands[30:] = 128, 255
  image, _, resized, _ = folders.decode_image(_save(str(tmp_path / "bands.png"), bands),
                                              (8, 16), 0)
  assert resized and image.shape == (8, 16)
  np.testing.assert_array_equal(image, np.full((8, 16), 128))
  # The crop and filter of the TFDS and arrays sources (generic.resize_and_crop), to within
  # rounding: a set comes out alike from a folder and from TFDS.
  for shape, size in [((20, 40), (8, 16)), ((37, 23, 3), (8, 16)), ((30, 50), (28, 28)),
                      ((9, 7), (28, 21))]:
    pixels = _noise(sum(shape), shape)
    image, _, _, _ = folders.decode_image(_save(str(tmp_path / "n.png"), pixels), size, 3)
    expected = generic.resize_and_crop(tf.constant(pixels.reshape(shape[:2] + (-1,))),
                                       size).numpy()
    assert np.abs(image.reshape(expected.shape).astype(int) - expected).max() <= 1
  stripes = np.zeros((20, 40), np.uint8)
  stripes[:, 20:] = 200
  _save(str(tmp_path / "stripes.png"), stripes)
  # A tall image to a wide size: the middle rows.
  tall = np.zeros((60, 20), np.uint8)
  tall[25:35] = 90
  image, _, _, _ = folders.decode_image(_save(str(tmp_path / "tall.png"), tall), (5, 10), 0)
  np.testing.assert_array_equal(image, np.full((5, 10), 90))
  # Larger: enlarged.
  image, _, resized, _ = folders.decode_image(str(tmp_path / "stripes.png"), (40, 80), 0)
  assert resized and image.shape == (40, 80)

  root = tmp_path / "mixed_sizes"
  _save(str(root / "a.png"), bands)
  _save(str(root / "b.png"), stripes)
  _folder(root, 8, shape=(8, 16))
  raw = folders.folder(_config(root, tmp_path / "cache", image_size="8x16",
                               split_fractions=(0.34, 0.33, 0.33)))
  assert raw.image_shape == (8, 16, 1)
  prepared = folders.prepare(_config(root, tmp_path / "cache", image_size="8x16",
                                     split_fractions=(0.34, 0.33, 0.33)))
  assert prepared.info["resized"] == 2


# ------------------------------------------------------------------------------------------------
# Splits and labels.


@pytest.mark.parametrize("validation_folder", ["validation", "valid"])
def test_split_folders_are_used_as_they_are(tmp_path, validation_folder):
  root = tmp_path / "split"
  _folder(root / "train", 5, classes=("cat", "dog"))
  _folder(root / validation_folder, 2, classes=("cat", "dog"))
  _folder(root / "test", 3, classes=("dog",))  # Fewer classes: the same class set.
  raw = folders.folder(_config(root, tmp_path / "cache"))
  assert raw.num_examples == {"train": 10, "validation": 4, "test": 3}
  assert raw.class_names == ["cat", "dog"]
  np.testing.assert_array_equal(_arrays(raw, "test")[1], [1, 1, 1])
  np.testing.assert_array_equal(_arrays(raw, "validation")[1], [0, 0, 1, 1])


def test_missing_split_folders_are_taken_from_train_by_hash(tmp_path):
  root = tmp_path / "split"
  _folder(root / "train", 60)
  _folder(root / "test", 5)
  prepared = folders.prepare(_config(root, tmp_path / "cache", split_fractions=(0.5, 0.5, 0.0)))
  counts = prepared.info["splits"]
  assert counts["test"] == 5 and counts["train"] + counts["validation"] == 60
  assert 15 < counts["validation"] < 45
  assert all(p.startswith("train/") for p in _files(prepared.cache, "validation"))


def test_hash_split_is_deterministic_and_stable_when_files_are_added(tmp_path):
  root = tmp_path / "flat"
  _folder(root, 40)
  first = folders.assign(str(root), folders.scan(str(root)), (0.8, 0.1, 0.1))
  again = folders.assign(str(root), folders.scan(str(root)), (0.8, 0.1, 0.1))
  assert first.splits == again.splits and first.class_names is None
  _folder(root, 40, start=40)
  grown = folders.assign(str(root), folders.scan(str(root)), (0.8, 0.1, 0.1))
  for split in folders.SPLITS:
    assert set(first.splits[split]) <= set(grown.splits[split])
  # The rule itself: a fraction of the path hash, whatever else is in the folder.
  assert folders.hash_fraction("0001.png") == folders.hash_fraction("0001.png")
  assert 0 <= folders.hash_fraction("a/b.png") < 1


def test_hash_split_respects_the_fractions(tmp_path):
  listing = folders.Listing([folders.ImageFile(f"c{i % 7}/{i:05d}.png", 1, 1)
                             for i in range(20000)], collections_counter())
  assignment = folders.assign(str(tmp_path), listing, (0.7, 0.2, 0.1))
  shares = [len(assignment.splits[s]) / 20000 for s in folders.SPLITS]
  np.testing.assert_allclose(shares, [0.7, 0.2, 0.1], atol=0.015)


def collections_counter():
  import collections  # pylint: disable=g-import-not-at-top
  return collections.Counter()


def test_labels_from_sorted_class_folders_and_none_without(tmp_path):
  root = tmp_path / "classes"
  _folder(root, 6, classes=("zebra", "Ant", "mole"))
  _save(str(root / "loose.png"), _noise(0))  # Beside class folders: left out, and counted.
  fields = dict(split_fractions=(0.34, 0.33, 0.33))
  prepared = folders.prepare(_config(root, tmp_path / "cache", **fields))
  raw = folders.folder(_config(root, tmp_path / "cache", **fields))
  assert raw.class_names == ["Ant", "mole", "zebra"] and prepared.info["ignored"] == 1
  for split in folders.SPLITS:
    _, labels = _arrays(raw, split)
    names = _files(prepared.cache, split)
    assert [raw.class_names[l] for l in labels] == [n.split("/")[0] for n in names]

  flat = folders.folder(_config(_folder(tmp_path / "flat", 10), tmp_path / "cache", **fields))
  assert flat.num_classes is None and flat.class_names is None
  assert "label" not in flat.splits["train"].element_spec


# ------------------------------------------------------------------------------------------------
# The cache.


def test_cache_is_reused_when_unchanged_and_redone_when_a_file_changes(tmp_path, monkeypatch,
                                                                       capsys):
  root = _folder(tmp_path / "flat", 12)
  config = _config(root, tmp_path / "cache", split_fractions=(0.34, 0.33, 0.33))
  first = folders.prepare(config)
  assert not first.reused and "prepared 12 images of 28x28x1" in capsys.readouterr().err
  real_prepare = folders._prepare

  def must_not_prepare(*args):
    raise AssertionError("prepared again")

  monkeypatch.setattr(folders, "_prepare", must_not_prepare)
  again = folders.prepare(config)
  assert again.reused and again.cache == first.cache
  assert "using its preparation in" in capsys.readouterr().err
  monkeypatch.setattr(folders, "_prepare", real_prepare)

  _save(os.path.join(root, "new.png"), _noise(99))
  added = folders.prepare(config)
  assert not added.reused and sum(added.info["splits"].values()) == 13
  # The preparation of the folder's former content is removed.
  assert not os.path.exists(first.cache)

  path = os.path.join(root, "0003.png")
  _save(path, _noise(77))
  os.utime(path, ns=(1, 1))
  modified = folders.prepare(config)
  assert not modified.reused and modified.cache != added.cache
  # Other preparation parameters: another cache, the first one kept.
  sized = folders.prepare(_config(root, tmp_path / "cache", image_size="14",
                                  split_fractions=(0.34, 0.33, 0.33)))
  assert not sized.reused and os.path.exists(modified.cache)


def test_default_cache_is_in_tfds_data_folder(tmp_path):
  config = _config(_folder(tmp_path / "flat", 12), "", data_dir=str(tmp_path / "tfds"),
                   split_fractions=(0.34, 0.33, 0.33))
  prepared = folders.prepare(config)
  assert os.path.dirname(prepared.cache) == str(tmp_path / "tfds" / "tfgen_folders")


@pytest.mark.parametrize("parallel", [False, True])
def test_interrupted_preparation_leaves_no_cache_and_the_next_run_prepares_afresh(
    tmp_path, monkeypatch, parallel):
  root = _folder(tmp_path / "flat", 12)
  config = _config(root, tmp_path / "cache", split_fractions=(0.34, 0.33, 0.33))
  if parallel:
    monkeypatch.setattr(folders, "PARALLEL_MIN_FILES", 0)
    monkeypatch.setattr(folders, "CHUNK_FILES", 2)
  real_add, calls = folders._Store.add, []

  def interrupted(self, *args):
    calls.append(args)
    if len(calls) == 6:
      raise KeyboardInterrupt()
    return real_add(self, *args)

  monkeypatch.setattr(folders._Store, "add", interrupted)
  with pytest.raises(KeyboardInterrupt):
    folders.prepare(config)
  assert os.listdir(tmp_path / "cache") == []
  monkeypatch.setattr(folders._Store, "add", real_add)
  # A partial folder left by a process that died (kill -9) is removed, never read.
  dead = tmp_path / "cache" / f".partial-flat-0123.999999999@{os.uname().nodename}"
  dead.mkdir()
  (dead / "info.json").write_text("{}")
  prepared = folders.prepare(config)
  assert not prepared.reused and sum(prepared.info["splits"].values()) == 12
  assert os.listdir(tmp_path / "cache") == [os.path.basename(prepared.cache)]


_INTERRUPTED_SCRIPT = """
import os, sys, time
from tfgen import config as config_lib, signals
from tfgen.data import folders
real = folders.decode_image
def slow(*args):
  open(os.path.join(sys.argv[3], str(os.getpid())), "w").close()  # Who decodes.
  time.sleep(0.02)
  return real(*args)
folders.decode_image = slow  # The forked workers decode with it too.
folders.PARALLEL_MIN_FILES = 0
folders.CHUNK_FILES = 4
config = config_lib.base_config().data
config.path, config.cache_dir = sys.argv[1], sys.argv[2]
with signals.handle_signals():
  folders.prepare(config)
"""


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_during_preparation_stops_it_leaving_nothing(tmp_path, signal_name):
  import signal  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  root = _folder(tmp_path / "flat", 400)
  cache, decoders = tmp_path / "cache", tmp_path / "decoders"
  decoders.mkdir()
  process = subprocess.Popen(
      [sys.executable, "-c", _INTERRUPTED_SCRIPT, root, str(cache), str(decoders)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  deadline = time.time() + 120
  while not (cache.exists() and any(n.startswith(".partial-") for n in os.listdir(cache))):
    assert process.poll() is None and time.time() < deadline, process.communicate()
    time.sleep(0.05)
  time.sleep(0.5)  # Mid-way: 400 images at 20 ms on at most 2 workers take 4 s or more.
  process.send_signal(getattr(signal, signal_name))
  _, stderr = process.communicate(timeout=60)
  assert process.returncode != 0 and "prepared 400" not in stderr, stderr
  assert os.listdir(cache) == [], stderr
  # It decoded in worker processes, and none outlives it.
  pids = [int(p) for p in os.listdir(decoders)]
  assert pids and process.pid not in pids
  for pid in pids:
    with pytest.raises(ProcessLookupError):
      os.kill(pid, 0)


def test_a_damaged_cache_is_prepared_again(tmp_path):
  root = _folder(tmp_path / "flat", 6)
  config = _config(root, tmp_path / "cache", split_fractions=(0.34, 0.33, 0.33))
  first = folders.prepare(config)
  with open(os.path.join(first.cache, "train_images.npy"), "r+b") as f:
    f.truncate(100)
  again = folders.prepare(config)
  assert not again.reused and again.cache == first.cache


def test_a_folder_changed_while_being_prepared_is_refused(tmp_path, monkeypatch):
  root = _folder(tmp_path / "flat", 12)
  config = _config(root, tmp_path / "cache", split_fractions=(0.34, 0.33, 0.33))
  real_decode = folders.decode_image

  def decode_and_add(path, *args):
    if not os.path.exists(os.path.join(root, "late.png")):
      _save(os.path.join(root, "late.png"), _noise(5))
    return real_decode(path, *args)

  monkeypatch.setattr(folders, "decode_image", decode_and_add)
  with pytest.raises(errors.DataError, match="changed while being prepared") as excinfo:
    folders.prepare(config)
  assert "run again" in _message(excinfo)
  assert os.listdir(tmp_path / "cache") == []


def test_parallel_decoding_gives_what_one_process_gives(tmp_path, monkeypatch):
  root = _folder(tmp_path / "flat", 40, classes=("a", "b"))
  serial = folders.folder(_config(root, tmp_path / "serial"))
  monkeypatch.setattr(folders, "PARALLEL_MIN_FILES", 0)
  monkeypatch.setattr(folders, "CHUNK_FILES", 7)
  parallel = folders.folder(_config(root, tmp_path / "parallel"))
  for split in folders.SPLITS:
    for a, b in zip(_arrays(serial, split), _arrays(parallel, split)):
      np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# Bad input: one line each.


def test_bad_paths_and_options_give_one_line(tmp_path):
  cache = tmp_path / "cache"
  cases = [
      (_config("", cache), errors.DataError, "set --config.data.path=DIR"),
      (_config(tmp_path / "nowhere", cache), errors.DataError, "does not exist"),
      (_config(_save(str(tmp_path / "one.png"), _noise(1)), cache), errors.DataError,
       "is a file, not a folder"),
      (_config(tmp_path, cache, image_size="28x"), errors.ConfigError, '"H" or "HxW"'),
      (_config(tmp_path, cache, image_size="0x5"), errors.ConfigError, '"H" or "HxW"'),
      (_config(tmp_path, cache, channels=2), errors.ConfigError, r"1 \(grey\) or 3 \(RGB\)"),
      (_config(tmp_path, cache, on_bad_image="ignore"), errors.ConfigError, "'fail'"),
      (_config(tmp_path, cache, split_fractions=(0.5, 0.5)), errors.ConfigError,
       "3 non-negative numbers"),
      (_config(tmp_path, cache, split_fractions=(0.9, 0.2, -0.1)), errors.ConfigError,
       "summing to 1"),
      (_config(tmp_path, cache, split_fractions=(0.5, 0.2, 0.2)), errors.ConfigError,
       "summing to 1"),
  ]
  for config, kind, text in cases:
    with pytest.raises(kind, match=text) as excinfo:
      folders.prepare(config)
    _message(excinfo)


def test_empty_folder_and_folder_without_images(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(errors.DataError, match="is empty: put image files") as excinfo:
    folders.prepare(_config(tmp_path / "empty", tmp_path / "cache"))
  _message(excinfo)
  other = tmp_path / "other"
  (other / "sub").mkdir(parents=True)
  for name in ("a.txt", "b.txt", "sub/c.tif", "README"):
    (other / name).write_text("x")
  with pytest.raises(errors.DataError, match="found no image files") as excinfo:
    folders.prepare(_config(other, tmp_path / "cache"))
  message = _message(excinfo)
  assert "4 other files (2 .txt, 1 (no extension), 1 .tif)" in message, message


def _with_bad_files(root):
  _folder(root, 12)
  (root / "text.png").write_text("this is not an image")
  good = (root / "0000.png").read_bytes()
  (root / "truncated.png").write_bytes(good[:len(good) // 2])
  (root / "empty.jpg").write_bytes(b"")
  return root


def test_unreadable_files_fail_naming_them(tmp_path):
  root = _with_bad_files(tmp_path / "bad")
  with pytest.raises(errors.DataError, match="on_bad_image=skip") as excinfo:
    folders.prepare(_config(root, tmp_path / "cache", split_fractions=(0.34, 0.33, 0.33)))
  message = _message(excinfo)
  for name in ("text.png", "truncated.png", "empty.jpg"):
    assert name in message, message
  assert "text.png: not a PNG, JPEG, BMP or GIF image" in message, message
  assert "empty.jpg: empty file" in message and "truncated" in message
  assert not os.path.exists(tmp_path / "cache") or os.listdir(tmp_path / "cache") == []


def test_unreadable_files_skipped_are_listed_and_counted(tmp_path, capsys):
  root = _with_bad_files(tmp_path / "bad")
  config = _config(root, tmp_path / "cache", on_bad_image="skip",
                   split_fractions=(0.34, 0.33, 0.33))
  raw = folders.folder(config)
  assert sum(raw.num_examples.values()) == 12
  assert sorted(os.path.basename(s.split(":")[0]) for s in raw.skipped_files) == [
      "empty.jpg", "text.png", "truncated.png"]
  assert all(s.startswith(str(root)) for s in raw.skipped_files)
  assert "3 unreadable skipped" in capsys.readouterr().err
  # Reused, the cache still tells which files were skipped (the workdir lists them each run).
  assert folders.folder(config).skipped_files == raw.skipped_files


def test_mixed_sizes_without_image_size_ask_for_it(tmp_path):
  root = tmp_path / "sizes"
  _folder(root, 12)
  _save(str(root / "big.png"), _noise(1, (32, 40)))
  with pytest.raises(errors.DataError, match="--config.data.image_size=H or HxW") as excinfo:
    folders.prepare(_config(root, tmp_path / "cache", split_fractions=(0.34, 0.33, 0.33)))
  message = _message(excinfo)
  assert "'big.png' is 32x40" in message and "28x28" in message
  assert os.listdir(tmp_path / "cache") == []


def test_an_empty_split_says_which_and_what_to_do(tmp_path):
  root = _folder(tmp_path / "few", 3)
  with pytest.raises(errors.DataError, match="--config.data.split_fractions") as excinfo:
    folders.prepare(_config(root, tmp_path / "cache", split_fractions=(1.0, 0.0, 0.0)))
  assert "the validation split" in _message(excinfo)
  split_root = tmp_path / "split"
  _folder(split_root / "train", 3)
  (split_root / "valid").mkdir()
  _folder(split_root / "test", 3)
  with pytest.raises(errors.DataError, match="valid/ holds no readable images") as excinfo:
    folders.prepare(_config(split_root, tmp_path / "cache"))
  _message(excinfo)
  # Every file of a split unreadable and skipped: the split is empty.
  bad = _folder(tmp_path / "bad", 2)
  for name in os.listdir(bad):
    with open(os.path.join(bad, name), "wb") as f:
      f.write(b"junk")
  with pytest.raises(errors.DataError, match="empty") as excinfo:
    folders.prepare(_config(bad, tmp_path / "cache", on_bad_image="skip",
                            split_fractions=(0.5, 0.5, 0.0)))
  _message(excinfo)


def test_split_folders_that_disagree_on_classes(tmp_path):
  root = tmp_path / "split"
  _folder(root / "train", 3, classes=("cat", "dog"))
  _folder(root / "validation", 3)
  _folder(root / "test", 3, classes=("cat",))
  with pytest.raises(errors.DataError, match="same class folders") as excinfo:
    folders.prepare(_config(root, tmp_path / "cache"))
  _message(excinfo)
  both = tmp_path / "both"
  for name in ("train", "validation", "valid", "test"):
    _folder(both / name, 2)
  with pytest.raises(errors.DataError, match="keep one as the validation split") as excinfo:
    folders.prepare(_config(both, tmp_path / "cache"))
  _message(excinfo)


def test_fewer_images_than_one_batch(tmp_path):
  root = _folder(tmp_path / "few", 10)
  with pytest.raises(errors.ConfigError, match="batch size 32 exceeds the") as excinfo:
    data.load(_config(root, tmp_path / "cache", split_fractions=(0.5, 0.3, 0.2)), 32)
  _message(excinfo)


# ------------------------------------------------------------------------------------------------
# Loading: memory or streaming, binarization, the pipeline, training.


def test_a_set_too_large_for_memory_streams_from_its_file(tmp_path, monkeypatch):
  root = _folder(tmp_path / "flat", 30, classes=("a", "b"))
  config = _config(root, tmp_path / "cache")
  in_memory = folders.folder(config)
  monkeypatch.setattr(folders, "IN_MEMORY_MAX_BYTES", 0)
  streamed = folders.folder(config)
  assert "TensorSlice" not in type(streamed.splits["train"]).__name__
  for split in folders.SPLITS:
    for a, b in zip(_arrays(in_memory, split), _arrays(streamed, split)):
      np.testing.assert_array_equal(a, b)
  assert streamed.splits["train"].element_spec["image"].shape == (28, 28, 1)
  assert int(streamed.splits["train"].cardinality()) == streamed.num_examples["train"]
  # In-graph batches decline a set over their limit, and take a streamed one below it.
  count = streamed.num_examples["train"]
  monkeypatch.setattr(in_graph, "MAX_BYTES", 28 * 28 * count)
  assert in_graph.InGraphBatches.from_dataset(streamed.splits["train"], count, 8, "none",
                                              0) is None
  monkeypatch.setattr(in_graph, "MAX_BYTES", 1 << 30)
  batches = in_graph.InGraphBatches.from_dataset(streamed.splits["train"], count, 8, "none", 0)
  assert batches.num_examples == count


def test_load_gives_batches_of_the_folder(tmp_path):
  root = _folder(tmp_path / "classes", 40, classes=("a", "b", "c"), shape=(30, 20))
  config = _config(root, tmp_path / "cache", image_size="16x12", binarization="dynamic")
  loaded = data.load(config, batch_size=8, eval_batch_size=5)
  assert loaded.info.name == "folder" and loaded.info.image_shape == (16, 12, 1)
  assert loaded.info.num_classes == 3 and loaded.info.class_names == ["a", "b", "c"]
  assert sum(loaded.info.num_examples.values()) == 120
  batch = next(iter(loaded.train))
  assert batch["image"].shape == (8, 16, 12, 1) and batch["label"].dtype == tf.int32
  assert set(np.unique(batch["image"].numpy())) <= {0.0, 1.0}
  labels = np.concatenate([b["label"].numpy() for b in loaded.test])
  assert len(labels) == loaded.info.num_examples["test"] and set(labels) <= {0, 1, 2}
  assert loaded.train_in_graph() is not None
  # 8-bit intensities by default.
  plain = data.load(_config(root, tmp_path / "cache", image_size="16x12"), batch_size=8)
  assert plain.info.binarization == "none"
  assert len(np.unique(next(iter(plain.validation))["image"].numpy())) > 2


def test_fixed_binarization_is_drawn_once_per_image(tmp_path):
  root = _folder(tmp_path / "flat", 30)
  config = _config(root, tmp_path / "cache", binarization="fixed")
  first = data.load(config, batch_size=4, seed=1)
  second = data.load(config, batch_size=4, seed=2)
  assert first.info.binarization == "fixed"
  a = np.concatenate([b["image"].numpy() for b in first.test])
  b = np.concatenate([b["image"].numpy() for b in second.test])
  assert set(np.unique(a)) == {0.0, 1.0}
  np.testing.assert_array_equal(a, b)
  # The draw follows the intensities: noise of mean 127.5 gives about half ones.
  assert 0.4 < a.mean() < 0.6


def test_conv_vae_trains_on_a_folder(tmp_path):
  root = _folder(tmp_path / "digits", 50, classes=("0", "1", "2"))
  config = load_config("conv_vae", "data=folder,binarize,tiny")
  config.data.path = root
  config.data.cache_dir = str(tmp_path / "cache")
  config.data.image_size = "28"
  config.train.num_epochs = 1
  config.train.batch_size = 16
  config.eval.batch_size = 16
  result = train.train(config, str(tmp_path / "run"), show_progress=False)
  assert result.epoch == 1 and np.isfinite(result.validation_metrics["elbo"])
  with open(tmp_path / "run" / "data_info.json", encoding="utf-8") as f:
    info = json.load(f)
  assert info["name"] == "folder" and info["class_names"] == ["0", "1", "2"]


def test_a_cache_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
  root = _folder(tmp_path / "flat", 12)
  (tmp_path / "file").write_text("a file where the cache folder should be")
  with pytest.raises(errors.DataError, match="--config.data.cache_dir=DIR") as excinfo:
    folders.prepare(_config(root, tmp_path / "file" / "cache",
                            split_fractions=(0.34, 0.33, 0.33)))
  _message(excinfo)
  real_save = np.save

  def disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(np, "save", disk_full)  # The labels, after the images: the disk fills.
  root = _folder(tmp_path / "classes", 6, classes=("a", "b"))
  with pytest.raises(errors.DataError, match="No space left on device; free some") as excinfo:
    folders.prepare(_config(root, tmp_path / "cache", split_fractions=(0.34, 0.33, 0.33)))
  _message(excinfo)
  monkeypatch.setattr(np, "save", real_save)
  assert os.listdir(tmp_path / "cache") == []
