"""The user's own images: any TFDS image set (`tfds:NAME`) and .npz arrays (`arrays`)."""

import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core import naming
from tensorflow_datasets.core import splits as tfds_splits

from tfgen import config as config_lib
from tfgen import data
from tfgen import errors
from tfgen import train
from tfgen.data import generic
from tfgen.data import sources
from tests.conftest import data_config as _data_config
from tests.conftest import load_config
from tests.conftest import shared_data

# Example ids per TFDS split, so a test can tell which examples a split received.
SPLIT_OFFSET = {"train": 0, "validation": 20000, "test": 40000, "extra": 60000}
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


def _one_line(excinfo):
  message = str(excinfo.value)
  assert "\n" not in message, message
  return message


# TFDS: a prepared data_dir holding only dataset_info.json (the split sizes TFDS infers splits
# from), and examples made up by the mock from the split instructions it is asked for.


def _prepare_metadata(name, data_dir, splits, class_names=None):
  builder = tfds.builder(name, data_dir=data_dir)
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0,
                          filename_template=naming.ShardedFileTemplate(
                              data_dir=builder.data_dir, dataset_name=builder.name, split=s,
                              filetype_suffix="tfrecord"))
      for s, n in splits.items()]))
  if class_names:
    builder.info.features["label"].names = class_names
  os.makedirs(builder.data_dir, exist_ok=True)
  builder.info.write_to_directory(builder.data_dir)


def _image_of(example_id, shape):
  """uint8 image whose first pixels encode example_id; a varying size depends on the id."""
  h, w, c = (d if d is not None else 30 + 7 * (example_id % 3) for d in shape)
  image = np.full((h, w, c), 100, np.uint8)
  image[0, 0], image[0, 1] = example_id % 256, example_id // 256  # Grey or colour.
  return image


def _fake_as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
  """Examples of the instructed slice of each split: image and ClassLabel features from ids."""
  del decoders, read_config, shuffle_files
  instruction = tfds_splits.AbstractSplit.from_spec(split) if isinstance(split, str) else split
  ids = np.concatenate([
      np.arange(a.from_ or 0, self.info.splits[a.splitname].num_examples if a.to is None else a.to)
      + SPLIT_OFFSET[a.splitname] for a in instruction.to_absolute(self.info.splits)])
  features = self.info.features
  images = [k for k in features.keys() if isinstance(features[k], tfds.features.Image)]
  labels = [k for k in features.keys() if isinstance(features[k], tfds.features.ClassLabel)]

  def generate():
    for i in ids:
      example = {k: _image_of(int(i), features[k].shape) for k in images}
      example.update({k: int(i) % features[k].num_classes for k in labels})
      yield example

  signature = {k: tf.TensorSpec(features[k].shape, tf.uint8) for k in images}
  signature.update({k: tf.TensorSpec((), tf.int64) for k in labels})
  ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
  return ds.apply(tf.data.experimental.assert_cardinality(len(ids)))


def _ids(ds):
  """The example ids of a batched pipeline of 8-bit images (binarization none)."""
  images = np.concatenate([np.round(b["image"].numpy() * 255) for b in ds]).astype(int)
  return images[:, 0, 0, 0] + 256 * images[:, 0, 1, 0]


@pytest.fixture
def tfds_dir(tmp_path):
  """A TFDS data_dir with metadata of cifar10, mnist, celeb_a, svhn_cropped and oxford_iiit_pet,
  and TFDS mocked to read made-up examples from it."""
  data_dir = str(tmp_path / "tfds")
  _prepare_metadata("cifar10", data_dir, {"train": 50, "test": 20}, CIFAR10_NAMES)
  _prepare_metadata("mnist", data_dir, {"train": 60, "test": 20})
  _prepare_metadata("celeb_a", data_dir, {"train": 30, "validation": 10, "test": 12})
  _prepare_metadata("svhn_cropped", data_dir, {"train": 40, "test": 15, "extra": 30})
  _prepare_metadata("oxford_iiit_pet", data_dir, {"train": 20})
  with tfds.testing.mock_data(data_dir=data_dir, as_dataset_fn=_fake_as_dataset):
    yield data_dir


def test_registry_finds_a_family_by_its_prefix():
  assert data.SOURCES.get("tfds:cifar10") is generic.tfds_source
  assert data.SOURCES.get("tfds:imagenette/160px-v2") is generic.tfds_source
  assert data.SOURCES.get("arrays") is generic.arrays_source
  assert "tfds:svhn_cropped" in data.SOURCES and "mnist:extra" not in data.SOURCES
  with pytest.raises(errors.ConfigError) as info:
    data.SOURCES.get("mnist:extra")
  assert "known:" in _one_line(info) and "tfds:NAME" in str(info.value)


def test_infer_tfds_splits(capsys):
  assert generic.infer_tfds_splits({"train": 50000, "test": 10000}, 10000, "tfds:cifar10") == {
      "train": "train[:40000]", "validation": "train[40000:50000]", "test": "test"}
  assert generic.infer_tfds_splits({"train": 9, "valid": 2, "test": 3, "extra": 5}, 4, "n") == {
      "train": "train", "validation": "valid", "test": "test"}
  assert capsys.readouterr().err == ""
  # No test split (imagenette): carved after validation, and said so.
  assert generic.infer_tfds_splits({"train": 100, "validation": 20}, 10, "tfds:x") == {
      "train": "train[:90]", "validation": "validation", "test": "train[90:100]"}
  assert "tfds:x has no test split" in capsys.readouterr().err
  assert generic.infer_tfds_splits({"train": 100}, 10, "tfds:y") == {
      "train": "train[:80]", "validation": "train[80:90]", "test": "train[90:100]"}
  with pytest.raises(errors.ConfigError) as info:
    generic.infer_tfds_splits({"train": 3670}, 10000, "tfds:tf_flowers")
  message = _one_line(info)
  assert "num_validation=10000" in message and "3670 training examples" in message
  assert "test=train[90%:]" in message
  with pytest.raises(errors.DataError, match=r"no 'train' split \(its splits: test, unlabeled\)"):
    generic.infer_tfds_splits({"test": 5, "unlabeled": 5}, 1, "tfds:z")


def test_parse_tfds_splits():
  assert generic.parse_tfds_splits(" train=train[:90%], validation=train[90%:],test=test+extra") \
      == {"train": "train[:90%]", "validation": "train[90%:]", "test": "test+extra"}
  for bad, problem in [("train=train,test=test", "validation is missing"),
                       ("train=train,validation=x,test=t,train=y", "train is given twice"),
                       ("train=train,valid=x,test=t", "'valid' is not train"),
                       ("train,validation=x,test=t", "'train' is not SPLIT=TFDS_SPLIT")]:
    with pytest.raises(errors.ConfigError) as info:
      generic.parse_tfds_splits(bad)
    assert problem in _one_line(info)


def test_tfds_cifar10_holds_out_validation_and_keeps_labels(tfds_dir):
  config = _data_config("tfds:cifar10", data_dir=tfds_dir, num_validation=10)
  loaded = data.load(config, batch_size=8, eval_batch_size=7)
  info = loaded.info
  assert info.num_examples == {"train": 40, "validation": 10, "test": 20}
  assert info.image_shape == (32, 32, 3) and info.binarization == "none"
  assert info.num_classes == 10 and info.class_names == CIFAR10_NAMES
  # The last num_validation training examples, in order; the test split as it is.
  np.testing.assert_array_equal(_ids(loaded.validation), np.arange(40, 50))
  np.testing.assert_array_equal(_ids(loaded.test), 40000 + np.arange(20))
  batch = next(iter(loaded.train))
  assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == tf.float32
  assert batch["label"].dtype == tf.int32
  np.testing.assert_array_equal(batch["label"].numpy(), _ids([batch]) % 10)
  assert sorted(_ids(loaded.train)) == list(range(40))


def test_tfds_mnist_splits_like_the_mnist_source(tfds_dir):
  mine = data.load(_data_config("tfds:mnist", data_dir=tfds_dir, num_validation=12,
                                binarization="none"), batch_size=6)
  theirs = data.load(_data_config("mnist", data_dir=tfds_dir, num_validation=12,
                                  binarization="none"), batch_size=6)
  assert mine.info.num_examples == theirs.info.num_examples == {
      "train": 48, "validation": 12, "test": 20}
  for split in ("validation", "test"):
    np.testing.assert_array_equal(_ids(mine.split(split)), _ids(theirs.split(split)))
  assert mine.info.image_shape == (28, 28, 1) and mine.info.num_classes == 10


def test_tfds_validation_split_no_labels_and_image_size(tfds_dir):
  """celeb_a: its own validation split, no ClassLabel, 218x178 images cropped to squares."""
  config = _data_config("tfds:celeb_a", data_dir=tfds_dir, image_size="16")
  loaded = data.load(config, batch_size=5)
  assert loaded.info.num_examples == {"train": 30, "validation": 10, "test": 12}
  assert loaded.info.image_shape == (16, 16, 3) and loaded.info.num_classes is None
  batch = next(iter(loaded.validation))
  assert batch["image"].shape == (5, 16, 16, 3) and "label" not in batch
  config.image_size = ""
  assert data.load(config, batch_size=5).info.image_shape == (218, 178, 3)


def test_tfds_explicit_splits_and_grey(tfds_dir):
  config = _data_config("tfds:svhn_cropped", data_dir=tfds_dir, channels=1,
                        tfds_splits="train=train[:75%]+extra,validation=train[75%:],test=test")
  loaded = data.load(config, batch_size=10)
  assert loaded.info.num_examples == {"train": 60, "validation": 10, "test": 15}
  assert loaded.info.image_shape == (32, 32, 1)
  assert sorted(_ids(loaded.train)) == list(range(30)) + list(60000 + np.arange(30))
  np.testing.assert_array_equal(_ids(loaded.validation), np.arange(30, 40))
  config.tfds_splits = "train=train,validation=valid,test=test"
  with pytest.raises(errors.ConfigError) as info:
    data.load(config, batch_size=10)
  assert _one_line(info) == ("config.data.tfds_splits: validation='valid' is not a split of "
                             "tfds:svhn_cropped: Unknown split 'valid'. Should be one of "
                             "['train', 'test', 'extra'].")


def test_tfds_key_inference_and_overrides(tfds_dir):
  """oxford_iiit_pet: images and masks of varying size; labels `label` (37) and `species` (2)."""
  config = _data_config("tfds:oxford_iiit_pet", data_dir=tfds_dir, num_validation=4)
  with pytest.raises(errors.ConfigError) as info:
    data.load(config, batch_size=4)
  assert _one_line(info) == (
      "tfds:oxford_iiit_pet has images of varying size ('image': ?x?x3); set "
      "--config.data.image_size=H or HxW (e.g. 64) to resize and centre-crop them to one size")
  config.image_size = "12x20"
  loaded = data.load(config, batch_size=4)
  assert loaded.info.image_shape == (12, 20, 3) and loaded.info.num_classes == 37
  assert loaded.info.num_examples == {"train": 12, "validation": 4, "test": 4}
  config.image_key, config.label_key = "segmentation_mask", "species"
  loaded = data.load(config, batch_size=4)
  assert loaded.info.image_shape == (12, 20, 1) and loaded.info.num_classes == 2
  assert set(np.concatenate([b["label"].numpy() for b in loaded.test])) <= {0, 1}

  config.image_key = "mask"
  with pytest.raises(errors.ConfigError) as info:
    data.load(config, batch_size=4)
  assert _one_line(info).startswith(
      "config.data.image_key 'mask' is not a feature of tfds:oxford_iiit_pet; its features: "
      "file_name (Text), head_bbox (BBoxFeature), image (Image ?x?x3 uint8), label (ClassLabel, "
      "37 classes), segmentation_mask (Image ?x?x1 uint8), species (ClassLabel, 2 classes)")
  config.image_key, config.label_key = "", "file_name"
  with pytest.raises(errors.ConfigError) as info:
    data.load(config, batch_size=4)
  assert _one_line(info).startswith("config.data.label_key 'file_name' is Text, not a ClassLabel "
                                    "feature of tfds:oxford_iiit_pet; its ClassLabel features: "
                                    "label, species")


def test_tfds_unknown_names_are_one_line(tfds_dir):
  with pytest.raises(errors.ConfigError) as info:
    data.load(_data_config("tfds:cifar1", data_dir=tfds_dir), batch_size=4)
  message = _one_line(info)
  assert message.startswith("unknown TFDS data set 'cifar1' in config.data.name 'tfds:cifar1' "
                            "(did you mean tfds:cifar10")
  assert "tfds.list_builders()" in message
  with pytest.raises(errors.ConfigError) as info:
    data.load(_data_config("tfds:imagenette/tiny", data_dir=tfds_dir), batch_size=4)
  assert "its configs: full-size-v2, 320px-v2, 160px-v2" in _one_line(info)
  with pytest.raises(errors.ConfigError, match="names no TFDS data set; use tfds:NAME"):
    data.load(_data_config("tfds:", data_dir=tfds_dir), batch_size=4)
  with pytest.raises(errors.ConfigError, match="image_size must be"):
    data.load(_data_config("tfds:cifar10", data_dir=tfds_dir, image_size="32by32"), batch_size=4)


def test_tfds_offline_without_files_is_one_line(tmp_path, monkeypatch):
  """Not mocked: an unprepared set and an empty manual_dir fail at once, naming what is missing."""
  monkeypatch.setattr(sources, "why_unreachable", lambda *args, **kwargs: "offline in this test")
  config = _data_config("tfds:cifar10", data_dir=str(tmp_path / "d"), manual_dir=str(tmp_path))
  with pytest.raises(errors.DataError) as info:
    data.load(config, batch_size=4)
  assert _one_line(info) == (
      f"data set 'tfds:cifar10' cannot be prepared (manual_dir '{tmp_path}'): missing "
      "cifar-10-binary.tar.gz. It needs the files cifar-10-binary.tar.gz in a folder given as "
      "--config.data.manual_dir=DIR (or $TFGEN_MANUAL_DIR=DIR), or network access for "
      "tensorflow-datasets to download them.")


def test_tfds_fashion_mnist_prepared_from_manual_dir(tfds_data_dir):
  """Not mocked: real TFDS prepares the raw files offline, then its own splits and slices."""
  config = _data_config("tfds:fashion_mnist", manual_dir=str(shared_data("fashion_mnist")),
                        data_dir=tfds_data_dir)
  loaded = data.load(config, batch_size=100, splits=("validation", "test"))
  info = loaded.info
  assert info.num_examples == {"train": 50000, "validation": 10000, "test": 10000}
  assert info.image_shape == (28, 28, 1) and info.num_classes == 10
  assert info.class_names[0] == "T-shirt/top" and info.class_names[-1] == "Ankle boot"
  config.image_size, config.channels = "32", 3
  config.tfds_splits = "train=train[:10%],validation=test[:50%],test=test[50%:]"
  loaded = data.load(config, batch_size=100)
  assert loaded.info.num_examples == {"train": 6000, "validation": 5000, "test": 5000}
  batch = next(iter(loaded.train))
  assert batch["image"].shape == (100, 32, 32, 3) and batch["label"].dtype == tf.int32


# Shared image helpers.


def test_parse_image_size():
  assert generic.parse_image_size("") is None
  assert generic.parse_image_size("64") == (64, 64)
  assert generic.parse_image_size("28x32") == (28, 32)
  assert generic.parse_image_size(" 28 X 32 ") == (28, 32)
  assert generic.parse_image_size(16) == (16, 16)
  for bad in ("0", "64x", "x64", "6.4", "-3", "28x0"):
    with pytest.raises(errors.ConfigError, match="must be \"H\" or \"HxW\""):
      generic.parse_image_size(bad)


def test_resize_and_crop_keeps_the_centre_and_aspect():
  tall = np.zeros((40, 20, 1), np.uint8)
  tall[10:30] = 255  # Exactly the centred 20x20 square.
  out = generic.resize_and_crop(tf.constant(tall), (10, 10)).numpy()
  assert out.shape == (10, 10, 1) and out.min() == 255
  wide = np.zeros((2, 20, 60, 3), np.uint8)  # A batch; the centre 20x30 of a 2:3 crop.
  wide[:, :, 15:45] = 200
  out = generic.resize_and_crop(tf.constant(wide), (8, 12)).numpy()
  assert out.shape == (2, 8, 12, 3) and out.min() == 200
  same = np.random.RandomState(0).randint(0, 256, (9, 7, 3)).astype(np.uint8)
  np.testing.assert_array_equal(generic.resize_and_crop(tf.constant(same), (9, 7)), same)
  # Enlarging works the same way: a 5x5 image to 15x15, its mean kept.
  small = np.full((5, 5, 1), 77, np.uint8)
  assert np.all(generic.resize_and_crop(tf.constant(small), (15, 15)).numpy() == 77)


def test_convert_channels():
  rgb = tf.constant([[[255, 0, 0], [10, 20, 30]]], tf.uint8)  # [1, 2, 3]
  grey = generic.convert_channels(rgb, 1).numpy()
  assert grey.shape == (1, 2, 1) and grey[0, 0, 0] == 76  # 0.2989 * 255.
  assert generic.convert_channels(rgb, 3) is rgb and generic.convert_channels(rgb, 0) is rgb
  np.testing.assert_array_equal(generic.convert_channels(tf.constant(grey), 3).numpy(),
                                np.repeat(grey, 3, axis=-1))
  rgba = tf.concat([rgb, tf.fill([1, 2, 1], tf.constant(9, tf.uint8))], -1)
  np.testing.assert_array_equal(generic.convert_channels(rgba, 0), rgb)
  assert generic.output_channels(0, 4) == 3 and generic.output_channels(0, 2) == 1


# Arrays.


def _npz(path, compressed=False, **arrays):
  (np.savez_compressed if compressed else np.savez)(path, **arrays)
  return str(path)


def _grey(n, h=6, w=5, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (n, h, w)).astype(np.uint8)


def test_arrays_grey_with_labels(tmp_path):
  path = _npz(tmp_path / "d.npz", train=_grey(20), validation=_grey(6, seed=1),
              test=_grey(8, seed=2), train_labels=np.arange(20) % 4,
              validation_labels=np.full(6, 6, np.uint8), test_labels=np.arange(8) % 2)
  images, labels = generic.read_arrays(path)
  assert isinstance(images["train"], np.memmap)  # np.savez stores: memory-mapped, not read.
  loaded = data.load(_data_config("arrays", path=path), batch_size=5, eval_batch_size=6)
  info = loaded.info
  assert info.num_examples == {"train": 20, "validation": 6, "test": 8}
  assert info.image_shape == (6, 5, 1) and info.binarization == "none"
  assert info.num_classes == 7  # The largest label over the splits, plus one.
  validation = next(iter(loaded.validation))
  np.testing.assert_allclose(validation["image"].numpy()[..., 0] * 255, _grey(6, seed=1),
                             atol=1e-3)
  np.testing.assert_array_equal(validation["label"].numpy(), np.full(6, 6))
  assert next(iter(loaded.train))["label"].dtype == tf.int32
  assert labels["test"].dtype == np.int32


def test_arrays_rgb_compressed_resized_and_grey(tmp_path):
  rgb = np.random.RandomState(0).randint(0, 256, (12, 10, 14, 3)).astype(np.uint8)
  path = _npz(tmp_path / "c.npz", compressed=True, train=rgb, validation=rgb[:4], test=rgb[:5])
  loaded = data.load(_data_config("arrays", path=path, image_size="8"), batch_size=4)
  assert loaded.info.image_shape == (8, 8, 3) and loaded.info.num_classes is None
  assert next(iter(loaded.train))["image"].shape == (4, 8, 8, 3)
  loaded = data.load(_data_config("arrays", path=path, image_size="5x7", channels=1),
                     batch_size=4)
  assert next(iter(loaded.test))["image"].shape == (4, 5, 7, 1)


def test_arrays_missing_splits_are_held_out(tmp_path, capsys):
  path = _npz(tmp_path / "t.npz", train=_grey(30), train_labels=np.arange(30) % 3)
  loaded = data.load(_data_config("arrays", path=path, num_validation=5), batch_size=5)
  assert loaded.info.num_examples == {"train": 20, "validation": 5, "test": 5}
  test = next(iter(loaded.test))
  np.testing.assert_allclose(test["image"].numpy()[..., 0] * 255, _grey(30)[25:], atol=1e-3)
  np.testing.assert_array_equal(test["label"].numpy(), np.arange(25, 30) % 3)
  assert f"file '{path}' has no test split" in capsys.readouterr().err
  with pytest.raises(errors.ConfigError, match="num_validation=10000 for each"):
    data.load(_data_config("arrays", path=path), batch_size=5)


def test_arrays_grey_and_colour_splits_become_colour(tmp_path):
  rgb = np.random.RandomState(0).randint(0, 256, (4, 6, 5, 3)).astype(np.uint8)
  path = _npz(tmp_path / "m.npz", train=_grey(10), validation=rgb, test=_grey(4)[..., None])
  loaded = data.load(_data_config("arrays", path=path), batch_size=2)
  assert loaded.info.image_shape == (6, 5, 3)
  test = next(iter(loaded.test))["image"].numpy()
  np.testing.assert_array_equal(test[..., 0], test[..., 2])


def test_arrays_binary_images(tmp_path):
  binary = (_grey(10) > 127).astype(np.uint8)
  path = _npz(tmp_path / "b.npz", train=binary, test=binary[:4], validation=binary[:3])
  loaded = data.load(_data_config("arrays", path=path), batch_size=2)
  assert loaded.info.binarization == "fixed"
  assert set(np.unique(next(iter(loaded.train))["image"])) <= {0.0, 1.0}
  with pytest.raises(errors.DataError) as info:
    data.load(_data_config("arrays", path=path, binarization="dynamic"), batch_size=2)
  assert "holds binary images (only 0s and 1s)" in _one_line(info)
  eight_bit = _npz(tmp_path / "e.npz", train=_grey(10), test=_grey(4))
  with pytest.raises(errors.DataError) as info:
    data.load(_data_config("arrays", path=eight_bit, binarization="fixed", num_validation=2), 2)
  assert "'fixed' needs images of 0s and 1s, found values in [0, 25" in _one_line(info)


def _corrupt(path):
  """Flips a byte in the middle of the first array's data."""
  with zipfile.ZipFile(path) as archive:
    info = archive.infolist()[0]
  with open(path, "r+b") as f:
    f.seek(info.header_offset + 30 + len(info.filename) + 200)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 0xFF]))
  return path


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
  return path


@pytest.mark.parametrize("case", [
    "float", "too_large", "negative", "ndim", "two_channels", "label_count", "label_negative",
    "float_labels", "some_labels", "labels_without_images", "no_train", "unknown_key", "sizes",
    "not_npz", "npy", "corrupt", "corrupt_compressed", "truncated", "missing", "folder", "empty"])
def test_arrays_bad_inputs_are_one_line(case, tmp_path):
  good = dict(train=_grey(10), validation=_grey(3), test=_grey(4))
  labels = dict(train_labels=np.arange(10) % 3, validation_labels=np.zeros(3, np.int64),
                test_labels=np.ones(4, np.int64))
  f = tmp_path / "x.npz"
  path, error, expected = {
      "float": (lambda: _npz(f, **{**good, "test": _grey(4) / 255.0}), errors.DataError,
                f"file '{f}', key 'test': expected uint8 images 0..255 of shape [N, H, W] or "
                "[N, H, W, C] with C 1 or 3, found float64 with values in [0.00392157, "
                "0.996078], shape (4, 6, 5)"),
      "too_large": (lambda: _npz(f, **{**good, "train": _grey(10).astype(np.int16) + 100}),
                    errors.DataError, f"file '{f}', key 'train': expected uint8 images 0..255"),
      "negative": (lambda: _npz(f, **{**good, "train": _grey(10).astype(np.int32) - 1}),
                   errors.DataError, "found int32 with values in [-1, 25"),
      "ndim": (lambda: _npz(f, **{**good, "train": _grey(10)[:, 0]}), errors.DataError,
               f"file '{f}', key 'train': expected uint8 images"),
      "two_channels": (lambda: _npz(f, **{**good, "test": np.zeros((4, 6, 5, 2), np.uint8)}),
                       errors.DataError, "found uint8 with values in [0, 0], shape (4, 6, 5, 2)"),
      "label_count": (lambda: _npz(f, **good, **{**labels, "test_labels": np.ones(5, np.int64)}),
                      errors.DataError, f"file '{f}', key 'test_labels': expected 4 integer "
                      "labels 0..2 (one per image), found int64 with values in [1, 1], "
                      "shape (5,)"),
      "label_negative": (lambda: _npz(f, **good, **{**labels, "test_labels": -np.ones(4, int)}),
                         errors.DataError, "found int64 labels with the values -1 (4 labels)"),
      "float_labels": (lambda: _npz(f, **good, **{**labels, "train_labels": np.ones(10)}),
                       errors.DataError, f"file '{f}', key 'train_labels': expected 10 integer "
                       "labels"),
      "some_labels": (lambda: _npz(f, **good, train_labels=labels["train_labels"]),
                      errors.DataError, f"file '{f}' has train_labels but no validation_labels, "
                      "test_labels: give labels for every split or none"),
      "labels_without_images": (lambda: _npz(f, train=_grey(10), test=_grey(4), **labels),
                                errors.DataError, "has 'validation_labels' but no images "
                                "'validation'"),
      "no_train": (lambda: _npz(f, x_train=_grey(10), x_test=_grey(4)), errors.DataError,
                   f"file '{f}' has no key 'train'; its keys: x_train, x_test; expected train, "
                   "validation, test"),
      "unknown_key": (lambda: _npz(f, **good, valdation=_grey(3)), errors.DataError,
                      f"file '{f}' has keys tfgen does not read (valdation); its keys:"),
      "sizes": (lambda: _npz(f, **{**good, "test": _grey(4, 7, 5)}), errors.DataError,
                f"file '{f}': the splits hold images of different sizes (train 6x5, "
                "validation 6x5, test 7x5); give them one size or set "
                "--config.data.image_size=H or HxW"),
      "not_npz": (lambda: f.write_text("train,test\n1,2\n") and str(f), errors.DataError,
                  f"file '{f}' is not an .npz archive (a zip of .npy arrays, as np.savez "
                  "writes), or is truncated"),
      "npy": (lambda: np.save(f, _grey(3)) or str(f) + ".npy", errors.DataError,
              "is not an .npz archive"),
      "corrupt": (lambda: _corrupt(_npz(f, **good)), errors.DataError,
                  f"file '{f}', key 'train' cannot be read: Bad CRC-32"),
      "corrupt_compressed": (lambda: _corrupt(_npz(f, compressed=True, **good)),
                             errors.DataError, f"file '{f}', key 'train' cannot be read"),
      "truncated": (lambda: _truncate(_npz(f, **good)), errors.DataError,
                    f"file '{f}' is not an .npz archive"),
      "missing": (lambda: str(tmp_path / "nope.npz"), errors.DataError,
                  f"file '{tmp_path / 'nope.npz'}' (config.data.path) does not exist"),
      "folder": (lambda: str(tmp_path), errors.DataError, "is a folder, not an .npz file"),
      "empty": (lambda: "", errors.ConfigError, "data set 'arrays' needs "
                "--config.data.path=FILE.npz"),
  }[case]
  path = path()
  with pytest.raises(error) as info:
    data.load(_data_config("arrays", path=path, num_validation=2), batch_size=2)
  assert expected in _one_line(info)


# Models train on them.


@pytest.mark.parametrize("variant,channels", [("tiny,data=arrays,binarize", 0),
                                              ("tiny,data=arrays", 3)])
def test_conv_vae_trains_on_an_npz_of_28x28_images(variant, channels, tmp_path):
  """Binarized (Bernoulli pixels) and 8-bit colour (discretized logistic), as configs set them."""
  rng = np.random.RandomState(0)
  digits = (rng.rand(160, 28, 28) < np.linspace(0.1, 0.6, 28)).astype(np.uint8) * 255
  path = _npz(tmp_path / "mine.npz", train=digits[:96], validation=digits[96:128],
              test=digits[128:])
  config = load_config("conv_vae", variant)
  config.data.path, config.data.channels = path, channels
  config.train.num_epochs = 1
  result = train.train(config, str(tmp_path / "run"), show_progress=False)
  assert result.epoch == 1 and result.step == 96 // config.train.batch_size
  assert np.isfinite(result.validation_metrics["elbo"])
  info = data.DataInfo.from_json(open(tmp_path / "run" / "data_info.json").read())
  assert info.image_shape == (28, 28, channels or 1)


def test_iwae_trains_on_tfds_mnist(tfds_dir, tmp_path):
  config = load_config("iwae", "tiny,data=tfds:mnist")
  config.data.data_dir, config.data.num_validation = tfds_dir, 10
  config.train.num_epochs, config.train.batch_size, config.train.jit_compile = 1, 10, False
  result = train.train(config, str(tmp_path / "run"), show_progress=False)
  assert result.epoch == 1 and result.step == 5
  assert np.isfinite(result.validation_metrics["elbo"])
