"""Data pipelines: real binarized MNIST through TFDS's manual_dir, dynamic binarization, errors."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfgen import config as config_lib
from tfgen import data
from tfgen import errors
from tfgen.data import sources
from tests.conftest import data_config as _data_config
from tests.conftest import shared_data


def _images(ds):
  return np.concatenate([b["image"].numpy() for b in ds])


def test_binarized_mnist_from_manual_dir(binarized_mnist_dir, tfds_data_dir):
  config = _data_config("binarized_mnist", manual_dir=str(binarized_mnist_dir),
                        data_dir=tfds_data_dir)
  loaded = data.load(config, batch_size=1000, eval_batch_size=5000)
  assert loaded.info.num_examples == {"train": 50000, "validation": 10000, "test": 10000}
  assert loaded.info.binarization == "fixed" and loaded.steps_per_epoch == 50
  for split in ("validation", "test"):
    images = _images(loaded.split(split))
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.float32
    assert set(np.unique(images)) == {0.0, 1.0}
  train_count = sum(int(b["image"].shape[0]) for b in loaded.train)
  assert train_count == 50000
  # Fixed binarization: the same test images on every pass.
  np.testing.assert_array_equal(_images(loaded.test), _images(loaded.test))


def test_manual_dir_from_environment(binarized_mnist_dir, tfds_data_dir, monkeypatch):
  monkeypatch.setenv(data.MANUAL_DIR_ENV, str(binarized_mnist_dir))
  loaded = data.load(_data_config("binarized_mnist", data_dir=tfds_data_dir, limit=10), 5)
  assert loaded.info.num_examples["test"] == 10


def test_dynamic_binarization_redraws_train_and_keeps_test_fixed(tmp_path):
  config = _data_config("mnist", data_dir=str(tmp_path), num_validation=40)
  with tfds.testing.mock_data(num_examples=120):
    loaded = data.load(config, batch_size=20, eval_batch_size=7, seed=3)
    first, second = _images(loaded.train), _images(loaded.train)
    assert set(np.unique(first)) <= {0.0, 1.0}
    # Different draws on each pass (and shuffled): the passes differ, their means do not.
    assert np.mean(first != second) > 0.1
    assert abs(first.mean() - second.mean()) < 0.02
    test_a = _images(loaded.test)
    test_b = _images(data.load(config, batch_size=20, eval_batch_size=50, seed=99).test)
  assert set(np.unique(test_a)) <= {0.0, 1.0}
  np.testing.assert_array_equal(test_a, test_b)  # Whatever the batch size or training seed.
  assert loaded.info.num_examples == {"train": 80, "validation": 40, "test": 120}


def test_iwae_split_is_59600_400(tmp_path):
  config = _data_config("mnist", data_dir=str(tmp_path), num_validation=400)
  with tfds.testing.mock_data(num_examples=60000):
    loaded = data.load(config, batch_size=100, splits=("validation",))
  assert loaded.info.num_examples["train"] == 59600
  assert loaded.info.num_examples["validation"] == 400


def test_omniglot_from_original_zips():
  folder = shared_data("omniglot")
  images, labels = sources.read_omniglot_zips(
      sorted(str(folder / f) for f in os.listdir(folder) if f.endswith(".zip")))
  assert images.shape == (2862 + 3282 - _folder_entries(folder), 28, 28, 1)
  assert images.dtype == np.uint8
  # Strokes are bright on a dark background after the inversion, and cover a minority of pixels.
  assert 0.03 < (images > 127).mean() < 0.3
  assert labels.min() == 0 and len(np.unique(labels)) == labels.max() + 1


def _folder_entries(folder):
  import zipfile  # pylint: disable=g-import-not-at-top
  count = 0
  for name in os.listdir(folder):
    with zipfile.ZipFile(folder / name) as archive:
      count += sum(1 for n in archive.namelist() if not n.endswith(".png"))
  return count


def test_omniglot_pipeline_reads_local_zips(tmp_path):
  folder = shared_data("omniglot")
  config = _data_config("omniglot", manual_dir=str(folder), data_dir=str(tmp_path))
  loaded = data.load(config, batch_size=64)
  counts = loaded.info.num_examples
  assert counts["validation"] == counts["test"] > 500
  batch = next(iter(loaded.train))
  assert batch["image"].shape == (64, 28, 28, 1) and batch["label"].dtype == tf.int32


def test_missing_files_name_the_data_set_the_files_and_manual_dir(tmp_path):
  config = _data_config("binarized_mnist", manual_dir=str(tmp_path), data_dir=str(tmp_path / "d"))
  with pytest.raises(errors.DataError) as info:
    data.load(config, 10)
  message = str(info.value)
  assert "binarized_mnist" in message and "binarized_mnist_test.amat" in message
  assert "manual_dir" in message


def test_truncated_file_gives_a_data_error(truncated_manual_dir, tmp_path):
  config = _data_config("binarized_mnist", manual_dir=str(truncated_manual_dir),
                        data_dir=str(tmp_path / "d"))
  with pytest.raises(errors.DataError, match="corrupt or truncated"):
    data.load(config, 10)


def test_unknown_names_and_bad_values():
  with pytest.raises(errors.ConfigError, match="unknown data set 'nope'"):
    data.load(_data_config("nope"), 10)
  with pytest.raises(errors.ConfigError, match="binarization"):
    data.load(_data_config("mnist", binarization="sometimes"), 10)


def test_wrong_image_shape_is_reported(monkeypatch):
  def wrong_shape(config):
    del config
    images = np.zeros((10, 27, 28, 1), np.uint8)
    ds = tf.data.Dataset.from_tensor_slices({"image": images})
    return sources.RawData({s: ds for s in ("train", "validation", "test")},
                           {s: 10 for s in ("train", "validation", "test")}, (28, 28, 1), "fixed")

  monkeypatch.setitem(sources.SOURCES._entries, "wrong_shape", wrong_shape)
  with pytest.raises(errors.DataError, match=r"shape \(27, 28, 1\), expected \(28, 28, 1\)"):
    data.load(_data_config("wrong_shape"), 5)


@pytest.mark.parametrize("name,shape,binarization,has_label", [
    ("fashion_mnist", (28, 28, 1), "dynamic", True),
    ("omniglot", (28, 28, 1), "dynamic", True),
    ("celeb_a", (64, 64, 3), "none", False),
])
def test_other_tfds_sets_through_the_same_path(name, shape, binarization, has_label, tmp_path):
  config = _data_config(name, data_dir=str(tmp_path), num_validation=10)
  with tfds.testing.mock_data(num_examples=30):
    loaded = data.load(config, batch_size=5)
    batch = next(iter(loaded.train))
  assert loaded.info.image_shape == shape and loaded.info.binarization == binarization
  assert batch["image"].shape == (5,) + shape and batch["image"].dtype == tf.float32
  assert 0.0 <= float(tf.reduce_min(batch["image"])) <= float(tf.reduce_max(batch["image"])) <= 1.0
  assert ("label" in batch) == has_label


def test_celeb_a_is_centre_cropped_then_resized():
  image = np.zeros((218, 178, 3), np.uint8)
  image[39:179, 19:159] = 255  # Exactly the 140x140 centre.
  small = sources.celeb_a_to_64(tf.constant(image)).numpy()
  assert small.shape == (64, 64, 3) and small.min() == 255
