"""Failures a user can cause with data and searches end in one clear line (issue 13).

Wrong data files that still parse are refused when read, an offline preparation without
manual_dir fails within seconds, TFDS's progress bars do not bury a data error, and a search in
which no trial finished does not lock its workdir to the tuner it named.
"""

import json
import os
import socket
import time
import zipfile

import numpy as np
import pytest

from tests.conftest import load_config
from tfgen import config as config_lib
from tfgen import data
from tfgen import errors
from tfgen import train
from tfgen import tune
from tfgen.data import sources


# --- mnist_5k files that parse but are wrong --------------------------------------------------


def _mnist_5k_config(manual_dir):
  config = config_lib.base_config().data
  config.name = "mnist_5k"
  config.manual_dir = str(manual_dir)
  return config


def _write_mnist_5k(folder, images, labels):
  path = folder / sources.MNIST_5K_FILE
  np.savez(path, images=images, labels=labels)
  return str(path)


def _digits(num_per_class=10, dtype=np.uint8, shape=(28, 28)):
  """Valid images (values 0..255) and labels 0..9, num_per_class of each digit."""
  rng = np.random.RandomState(0)
  count = 10 * num_per_class
  images = rng.randint(0, 256, size=(count,) + shape).astype(dtype)
  return images, np.repeat(np.arange(10, dtype=np.uint8), num_per_class)


def _refusal(tmp_path, images, labels) -> str:
  path = _write_mnist_5k(tmp_path, images, labels)
  with pytest.raises(errors.DataError) as info:
    data.load(_mnist_5k_config(tmp_path), batch_size=10)
  message = str(info.value)
  assert "\n" not in message and path in message  # One line, naming the file.
  return message


def test_float_images_in_0_1_are_refused(tmp_path):
  images, labels = _digits()
  message = _refusal(tmp_path, images.astype(np.float32) / 255.0, labels)
  assert "key 'images'" in message
  assert "expected uint8 0..255" in message and "found float32 with values in [0, 1]" in message


def test_images_above_255_are_refused(tmp_path):
  images, labels = _digits(dtype=np.int16)
  images[3, 4, 5] = 300  # uint8 would wrap it around to 44.
  message = _refusal(tmp_path, images, labels)
  assert "key 'images'" in message and "found int16 with values in [0, 300]" in message


def test_negative_images_are_refused(tmp_path):
  images, labels = _digits(dtype=np.int32)
  images[0, 0, 0] = -1
  message = _refusal(tmp_path, images, labels)
  assert "key 'images'" in message and "int32 with values in [-1, 255]" in message


def test_images_of_the_wrong_shape_are_refused(tmp_path):
  images, labels = _digits(shape=(28, 28, 3))
  message = _refusal(tmp_path, images, labels)
  assert "key 'images'" in message and "shape (100, 28, 28, 3)" in message


@pytest.mark.parametrize("bad", [10, -1])
def test_labels_outside_0_9_are_refused(tmp_path, bad):
  images, labels = _digits()
  labels = labels.astype(np.int64)
  labels[[4, 7]] = bad
  message = _refusal(tmp_path, images, labels)
  assert "key 'labels'" in message and "integer labels 0..9" in message
  assert f"the values {bad} (2 labels)" in message


def test_a_label_count_other_than_the_image_count_is_refused(tmp_path):
  images, labels = _digits()
  message = _refusal(tmp_path, images, labels[:-1])
  assert "key 'labels'" in message and "expected 100 integer labels" in message
  assert "shape (99,)" in message


def test_float_labels_are_refused(tmp_path):
  images, labels = _digits()
  message = _refusal(tmp_path, images, labels.astype(np.float32))
  assert "key 'labels'" in message and "found float32" in message


def test_valid_integer_arrays_of_any_width_and_shape_still_load(tmp_path):
  # The checks refuse only what is wrong: int16 [N, 28, 28, 1] images in 0..255 and int64
  # labels are what the source expects, only wider (and [N, 28, 28, 1] used to be refused).
  images, labels = _digits(dtype=np.int16, shape=(28, 28, 1))
  _write_mnist_5k(tmp_path, images, labels.astype(np.int64))
  read_images, read_labels = sources.read_mnist_5k(str(tmp_path / sources.MNIST_5K_FILE))
  assert read_images.dtype == np.uint8 and read_images.shape == (100, 28, 28, 1)
  np.testing.assert_array_equal(read_images, images)
  np.testing.assert_array_equal(read_labels, labels)
  loaded = data.load(_mnist_5k_config(tmp_path), batch_size=10, splits=("train",))
  assert loaded.info.num_examples["train"] == 100


def test_an_omniglot_zip_with_a_damaged_png_names_the_zip_and_entry(tmp_path):
  path = str(tmp_path / "images_background_small1.zip")
  entry = "images_background_small1/Alphabet/character01/0101_01.png"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr(entry, b"not a png")
  with pytest.raises(errors.DataError) as info:
    sources.read_omniglot_zips([path])
  message = str(info.value)
  assert "\n" not in message and path in message and entry in message
  assert "is not a readable PNG: Unknown image file format" in message


# --- TFDS preparation: offline, quiet -------------------------------------------------------


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                    "ALL_PROXY")


def _no_network(monkeypatch):
  """Every host name lookup fails, as on a machine without network; returns the hosts asked."""
  asked = []
  for name in _PROXY_VARIABLES:
    monkeypatch.delenv(name, raising=False)

  def getaddrinfo(host, *args, **kwargs):
    del args, kwargs
    asked.append(host)
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

  monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
  return asked


def test_offline_without_manual_dir_fails_within_seconds(tmp_path, monkeypatch):
  # TFDS used to retry the download with backoff for about 3.5 minutes first.
  monkeypatch.delenv(sources.MANUAL_DIR_ENV, raising=False)
  asked = _no_network(monkeypatch)
  config = config_lib.base_config().data
  config.name = "binarized_mnist"
  config.data_dir = str(tmp_path / "tensorflow_datasets")
  start = time.perf_counter()
  with pytest.raises(errors.DataError) as info:
    data.load(config, batch_size=10)
  elapsed = time.perf_counter() - start
  message = str(info.value)
  assert elapsed < 30, f"took {elapsed:.0f} s"
  assert message.startswith("data set 'binarized_mnist' cannot be prepared (no manual_dir): "
                            "cannot reach www.cs.toronto.edu")
  assert "\n" not in message and "--config.data.manual_dir=DIR" in message
  assert asked  # The host was probed, once per host rather than once per file.
  assert len(asked) == 1


def test_preparing_from_manual_dir_says_so_hides_progress_bars_and_stays_offline(
    truncated_manual_dir, tmp_path, monkeypatch, capfd):
  asked = _no_network(monkeypatch)
  config = config_lib.base_config().data
  config.name = "binarized_mnist"
  config.manual_dir = str(truncated_manual_dir)
  config.data_dir = str(tmp_path / "tensorflow_datasets")
  with pytest.raises(errors.DataError, match="corrupt or truncated"):
    data.load(config, batch_size=10)
  out, err = capfd.readouterr()
  assert f"preparing binarized_mnist from {truncated_manual_dir}" in err
  # Neither TFDS's progress bars nor its "Downloading and preparing" precede the error.
  assert "Dl Completed" not in err + out and "Downloading and preparing" not in out
  assert not asked  # manual_dir: no host name was even looked up.


# --- A search that never finished a trial ---------------------------------------------------


def _search_config():
  config = load_config("iwae", "tiny")
  config.train.eval_every_epochs = 0
  return config


def _fake_training(monkeypatch, error):
  """train.train raises `error` once it made the trial's workdir, having trained nothing."""
  trained = []

  def fake_train(config, workdir, **kwargs):
    del config, kwargs
    os.makedirs(workdir, exist_ok=True)
    trained.append(os.path.basename(workdir))
    raise error

  monkeypatch.setattr(train, "train", fake_train)
  return trained


def _saved_tuner(workdir):
  with open(os.path.join(workdir, tune.SEARCH_FILE), encoding="utf-8") as f:
    return json.load(f)["tuner"]


def test_a_search_without_a_finished_trial_restarts_with_another_tuner(tmp_path, monkeypatch):
  workdir = str(tmp_path / "search")
  config = _search_config()
  # The first start crashes in its first trial (here: data it cannot read).
  _fake_training(monkeypatch, errors.DataError("no data"))
  with pytest.raises(errors.DataError, match="no data"):
    tune.search(config, workdir, tuner="bayesian", max_trials=2)
  assert os.path.isdir(os.path.join(workdir, tune.TRIALS_DIR, "0"))
  # The user starts again with another tuner: the workdir is not locked to "bayesian".
  trained = _fake_training(monkeypatch, KeyboardInterrupt())
  with pytest.raises(KeyboardInterrupt):
    tune.search(config, workdir, tuner="random", max_trials=2)
  assert trained == ["0"] and _saved_tuner(workdir) == "random"
  oracle = json.load(open(os.path.join(workdir, tune.SEARCH_DIR, "oracle.json"),
                          encoding="utf-8"))
  assert list(oracle["ongoing_trials"].values()) == ["0"]  # A fresh oracle, not bayesian's.


def test_a_search_with_a_finished_trial_still_refuses_another_tuner(tmp_path, monkeypatch):
  workdir = str(tmp_path / "search")
  config = _search_config()
  # Its one trial finishes as FAILED (a NaN loss) without training anything.
  _fake_training(monkeypatch, errors.NonFiniteLossError("loss is nan"))
  with pytest.raises(errors.TuningError, match="no trial completed"):
    tune.search(config, workdir, tuner="random", max_trials=1)
  with pytest.raises(errors.WorkdirError, match="another tuner and 1 finished trial"):
    tune.search(config, workdir, tuner="bayesian", max_trials=2)
  assert _saved_tuner(workdir) == "random"


def test_the_bayesian_tuner_of_the_readme_can_be_made(tmp_path):
  # keras-tuner's Bayesian oracle needs scipy and scikit-learn, which setup.py now installs.
  tuner = tune.make_tuner(_search_config(), str(tmp_path / "search"), "bayesian", max_trials=2)
  assert isinstance(tuner.oracle, tune._BayesianOracle)  # pylint: disable=protected-access
