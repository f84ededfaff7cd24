"""Shared fixtures: the real data in ../shared/data, configs, and quiet TensorFlow."""

import importlib.util
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("TFGEN_SHARED_DATA", REPO.parent / "shared" / "data"))
# CI sets this so that a test needing ../shared/data fails rather than skips when it is absent.
REQUIRE_SHARED_DATA = os.environ.get("TFGEN_REQUIRE_SHARED_DATA", "") not in ("", "0")


def shared_data(*parts) -> pathlib.Path:
  """The path of a real data set under ../shared/data; skips (or fails in CI) when absent."""
  path = SHARED_DATA.joinpath(*parts)
  if not path.exists():
    message = f"real data {path} is absent (it lives in ../shared/data beside the repo)"
    if REQUIRE_SHARED_DATA:
      pytest.fail(message + "; TFGEN_REQUIRE_SHARED_DATA is set")
    pytest.skip(message)
  return path


# The start of a script that checks a SavedModel in a process that must not import tfgen.
NO_TFGEN_PREAMBLE = r"""
import importlib.abc, json, sys
class _NoTfgen(importlib.abc.MetaPathFinder):
  def find_spec(self, fullname, path, target=None):
    if fullname == "tfgen" or fullname.startswith("tfgen."):
      raise ImportError("this process must not import tfgen")
sys.meta_path.insert(0, _NoTfgen())
"""


def run_app(name: str, *args):
  """Runs the console script `name` of this environment (tfgen-train, ...), quietly."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  binary = os.path.join(os.path.dirname(sys.executable), name)
  return subprocess.run([binary, *args], capture_output=True, text=True, timeout=600, env=env)


def load_config(name: str, variant: str = ""):
  """get_config(variant) of configs/NAME.py."""
  spec = importlib.util.spec_from_file_location(f"configs_{name}", REPO / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


# The slowest files, slowest first (`pytest --durations=0`, 2026-12-03 morning: 267 s down to
# 44 s of the suite's 1,404 s summed over both workers). pytest.ini hands whole files to 2
# workers in collection order, so a slow file collected last (alphabetically,
# test_xla_precision.py) would leave one worker idle at the end.
SLOWEST_FIRST = ("test_fitting.py", "test_export.py", "test_xla_precision.py", "test_cli.py",
                 "test_reliability.py", "test_presets.py",
                 "test_reliability_round2.py", "test_autoregressive.py", "test_tune.py",
                 "test_data_user_configs.py", "test_distribute.py", "test_vqvae.py",
                 "test_flow.py", "test_reliability_startup.py", "test_models.py", "test_vsc.py",
                 "test_train.py", "test_data_generic.py", "test_data_folders.py",
                 "test_tune_distributed.py", "test_python_docs.py", "test_startup_imports.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # Stable within a file.


@pytest.fixture(autouse=True)
def fixed_seeds():
  """Every test starts from the same global seeds, so random initializations repeat."""
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(1234)


@pytest.fixture(scope="session")
def tfds_data_dir(tmp_path_factory) -> str:
  """One TFDS data_dir per test session, so real data sets are prepared once."""
  return str(tmp_path_factory.mktemp("tensorflow_datasets"))


@pytest.fixture(scope="session")
def binarized_mnist_dir() -> pathlib.Path:
  return shared_data("binarized_mnist")


@pytest.fixture
def tiny_config(binarized_mnist_dir, tfds_data_dir):
  """The tiny VAE on the first 256 images of each split of real binarized MNIST."""
  config = load_config("iwae", "tiny")
  config.data.manual_dir = str(binarized_mnist_dir)
  config.data.data_dir = tfds_data_dir
  return config


@pytest.fixture
def truncated_manual_dir(binarized_mnist_dir, tmp_path) -> pathlib.Path:
  """A manual_dir whose binarized MNIST training file is cut short after 1 MB."""
  manual = tmp_path / "truncated"
  manual.mkdir()
  for split in ("valid", "test"):
    os.symlink(binarized_mnist_dir / f"binarized_mnist_{split}.amat",
               manual / f"binarized_mnist_{split}.amat")
  with open(binarized_mnist_dir / "binarized_mnist_train.amat", "rb") as f:
    (manual / "binarized_mnist_train.amat").write_bytes(f.read(1_000_000))
  return manual


_STAGE1_RUNS = {}


def untrained_vqvae_run(image_shape=(28, 28, 1)) -> str:
  """A workdir holding a tiny stage-1 VQ-VAE (config, data description, one checkpoint), made
  without data or training, once per process: for tests of stage 2 that need any stage 1."""
  import tempfile  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfgen import data  # pylint: disable=g-import-not-at-top
  from tfgen import models  # pylint: disable=g-import-not-at-top
  from tfgen import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  if image_shape in _STAGE1_RUNS:
    return _STAGE1_RUNS[image_shape]
  workdir = tempfile.mkdtemp(prefix="vqvae_stage1_")
  config = load_config("vqvae", "tiny")
  info = data.DataInfo(config.data.name, image_shape, "fixed", {"train": 0}, num_classes=10)
  model = models.build(config.model, info)
  model.build_for_images()
  config_lib.save(config, workdir)
  workdir_lib.save_data_info(info, workdir)
  workdir_lib.checkpoint_manager(tf.train.Checkpoint(model=model), workdir, 1).save(
      checkpoint_number=1)
  _STAGE1_RUNS[image_shape] = workdir
  return workdir


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, binarized_mnist_dir, tfds_data_dir):
  """A finished tiny VAE run (2 epochs, checkpoints at steps 8 and 16), one per test module;
  tests that change it work on `run_copy`."""
  from tfgen import train  # pylint: disable=g-import-not-at-top
  config = load_config("iwae", "tiny")
  config.data.manual_dir, config.data.data_dir = str(binarized_mnist_dir), tfds_data_dir
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  train.train(config, workdir, show_progress=False)
  return workdir


@pytest.fixture
def run_copy(trained_run, tmp_path):
  """A copy of the module's trained run, for one test to change."""
  import shutil  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  shutil.copytree(trained_run, workdir)
  return workdir


def data_config(name, **fields):
  """config.data of the base config for data set `name`, with `fields` set."""
  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config().data
  config.name = name
  for key, value in fields.items():
    config[key] = value
  return config
