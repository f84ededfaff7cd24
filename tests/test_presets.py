"""Presets (tfgen/presets, docs/presets.md): the mechanism on a tiny run made here, and every
shipped preset loading without training and matching its card on its 1,000 test images."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests import conftest
from tfgen import errors
from tfgen import presets

SHIPPED = presets.names()


@pytest.fixture(scope="module")
def tiny_presets(trained_run, tmp_path_factory):
  """The module's tiny trained run made into two presets in a folder of their own, float32 and
  (as measured) float16; PRESETS_DIR points there while the tests of the mechanism run."""
  folder = str(tmp_path_factory.mktemp("presets"))
  cards = {
      "tiny32": presets.make_preset(trained_run, "tiny32", "tfgen-train tiny", "a test",
                                    presets_dir=folder, force_dtype="float32", log=lambda _: None),
      "tiny16": presets.make_preset(trained_run, "tiny16", "tfgen-train tiny", "a test",
                                    presets_dir=folder, log=lambda _: None),
  }
  return folder, cards


@pytest.fixture
def in_tiny_presets(tiny_presets, monkeypatch):
  monkeypatch.setattr(presets, "PRESETS_DIR", tiny_presets[0])
  return tiny_presets


def _run_log_prob(model, images, seed=(5, 6)):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return model.log_prob({"image": tf.constant(images)}, tf.constant(seed, tf.int32), 50).numpy()


def _test_images(trained_run, num=16):
  from tfgen import evaluate  # pylint: disable=g-import-not-at-top
  data = evaluate.load_trained(trained_run).data
  return next(iter(data.test))["image"].numpy()[:num]


def test_float32_preset_gives_the_runs_log_prob_bit_for_bit(trained_run, in_tiny_presets):
  from tfgen import evaluate  # pylint: disable=g-import-not-at-top
  images = _test_images(trained_run)
  run_model = evaluate.load_trained(trained_run, splits=()).model
  model = presets.from_preset("tiny32")
  np.testing.assert_array_equal(_run_log_prob(model, images), _run_log_prob(run_model, images))
  card = presets.card("tiny32")
  assert card["weights_dtype"] == "float32"
  assert card["nll_first_1000"]["nll_nats"] == card["nll_first_1000"]["float32_nll_nats"]


def test_float16_preset_is_the_rounded_weights_and_matches_its_card(trained_run, in_tiny_presets,
                                                                     binarized_mnist_dir,
                                                                     tfds_data_dir):
  card = presets.card("tiny16")
  assert card["weights_dtype"] == "float16"
  assert abs(card["float16_delta_nats"]) < presets.FLOAT16_TOLERANCE
  with np.load(os.path.join(in_tiny_presets[0], "tiny16", presets.WEIGHTS_FILE)) as stored:
    assert {stored[k].dtype for k in stored.files} == {np.dtype(np.float16)}
  model = presets.from_preset("tiny16")
  run_weights = presets.model_weights(presets.from_preset("tiny32"))
  for path, value in presets.model_weights(model).items():
    assert value.dtype == np.float32
    np.testing.assert_array_equal(value, run_weights[path].astype(np.float16).astype(np.float32))
  # The card's check figure, reproduced from the preset alone (the tiny split has 256 images).
  check = card["nll_first_1000"]
  results = presets.evaluate("tiny16", manual_dir=str(binarized_mnist_dir), data_dir=tfds_data_dir,
                             num_examples=presets.CHECK_EXAMPLES, show_progress=False,
                             classify_codes=False, model=model)
  assert results["num_examples"] == check["num_examples"] == 256
  assert results["nll_nats"] == pytest.approx(check["nll_nats"], abs=1e-4)
  whole = card["test_nll_nats"]
  assert whole == pytest.approx(check["nll_nats"], abs=1e-4)  # The tiny test split is 256 images.
  assert card["test_nll_bits_per_dim"] == pytest.approx(whole / (784 * np.log(2)))


def test_card_records_how_it_was_made(in_tiny_presets):
  card = presets.card("tiny16")
  for field in ("name", "description", "config", "data_info", "training_command", "data",
                "num_importance_samples", "test_nll_nats", "test_nll_bits_per_dim",
                "num_test_examples", "nll_first_1000", "float16_delta_nats", "weights_dtype",
                "weights_bytes", "train_wall_seconds", "hardware", "tfgen_commit", "date"):
    assert field in card, field
  assert card["num_importance_samples"] == 10  # configs/iwae.py:tiny's eval k.
  assert card["epochs_trained"] == 2 and card["train_wall_seconds"] > 0
  assert "seed" in card["nll_first_1000"]["protocol"]
  assert card["weights_bytes"] == os.path.getsize(
      os.path.join(in_tiny_presets[0], "tiny16", presets.WEIGHTS_FILE))
  assert [c["name"] for c in presets.list_presets()] == ["tiny16", "tiny32"]
  table = presets.format_table()
  assert "tiny16" in table and f"{card['test_nll_nats']:.2f}" in table


def test_vqvae_prior_preset_carries_its_stage1(tmp_path, monkeypatch, binarized_mnist_dir,
                                              tfds_data_dir):
  """A model built on a stage-1 run (VQ-VAE prior): the preset holds both stages and needs no
  stage-1 workdir to load."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfgen import data, models  # pylint: disable=g-import-not-at-top
  from tfgen import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  stage1 = tmp_path / "vq1"
  shutil.copytree(conftest.untrained_vqvae_run(), stage1)
  config = conftest.load_config("vqvae", "tiny,stage=2")
  config.model.stage1_workdir = str(stage1)
  config.data.manual_dir, config.data.data_dir = str(binarized_mnist_dir), tfds_data_dir
  stage2 = str(tmp_path / "vq2")  # An untrained stage 2 made without data or training.
  os.makedirs(stage2)
  info = data.DataInfo("binarized_mnist", (28, 28, 1), "fixed", {"train": 256, "test": 256})
  model = models.build(config.model, info)
  model.build_for_images()
  config_lib.save(config, stage2)
  workdir_lib.save_data_info(info, stage2)
  workdir_lib.checkpoint_manager(tf.train.Checkpoint(model=model), stage2, 1).save(
      checkpoint_number=1)
  folder = str(tmp_path / "presets")
  card = presets.make_preset(stage2, "tinyvq", "tfgen-train stage 1 && stage 2",
                             presets_dir=folder, force_dtype="float32", log=lambda _: None)
  assert card["stage1"]["config"]["model"]["name"] == "vqvae"
  shutil.rmtree(stage1)  # The preset needs no stage-1 workdir.
  monkeypatch.setattr(presets, "PRESETS_DIR", folder)
  loaded = presets.from_preset("tinyvq")
  images = next(iter(data.load(config.data, 32, 32, splits=("test",)).test))["image"].numpy()[:8]
  np.testing.assert_array_equal(_run_log_prob(loaded, images), _run_log_prob(model, images))


def test_paths_do_not_depend_on_what_the_process_built_before():
  from tfgen import data, models  # pylint: disable=g-import-not-at-top
  config = conftest.load_config("iwae", "tiny")
  info = data.DataInfo("binarized_mnist", (28, 28, 1), "fixed", {"train": 0})
  first, second = (models.build(config.model, info) for _ in range(2))
  first.build_for_images()
  second.build_for_images()
  assert [v.path for v in first.variables] != [v.path for v in second.variables]
  assert presets.canonical_paths(first.variables) == presets.canonical_paths(second.variables)


def test_unknown_preset_lists_the_known_ones(in_tiny_presets):
  with pytest.raises(errors.ConfigError, match=r"unknown preset 'nope'; known presets: tiny16, "
                     r"tiny32"):
    presets.from_preset("nope")
  with pytest.raises(errors.ConfigError, match="unknown preset"):
    presets.card("../tiny16")


def test_missing_or_damaged_weights_are_one_clear_error(in_tiny_presets, monkeypatch, tmp_path):
  folder = tmp_path / "presets"
  shutil.copytree(in_tiny_presets[0], folder)
  monkeypatch.setattr(presets, "PRESETS_DIR", str(folder))
  weights = folder / "tiny16" / presets.WEIGHTS_FILE
  weights.write_bytes(weights.read_bytes()[:100])
  with pytest.raises(errors.WorkdirError, match=r"preset 'tiny16': its weights file .* is damaged"):
    presets.from_preset("tiny16")
  weights.unlink()
  with pytest.raises(errors.WorkdirError, match=r"preset 'tiny16': its weights file .* is missing"):
    presets.from_preset("tiny16")
  # Arrays of another model.
  np.savez(weights, **{"vae/kl_weight": np.zeros([], np.float32)})
  with pytest.raises(errors.WorkdirError, match="does not fit its model"):
    presets.from_preset("tiny16")


def _app(name, *args):
  result = conftest.run_app(name, *args)
  lines = [line for line in result.stderr.splitlines()
           if line.strip() and "running on" not in line]
  return result, lines


def test_cli_refuses_bad_input_in_one_line(tmp_path):
  cases = [
      (("tfgen-sample", "--preset=nope", f"--out={tmp_path}/x.png"), 1, "unknown preset 'nope'"),
      (("tfgen-sample", "--preset=nope", f"--workdir={tmp_path}"), 2, "At most one of (workdir"),
      (("tfgen-sample", f"--out={tmp_path}/x.png"), 2, "give one of --workdir, --saved_model or "
       "--preset"),
      (("tfgen-evaluate", "--preset=nope"), 1, "unknown preset 'nope'"),
      (("tfgen-evaluate", "--preset=nope", f"--workdir={tmp_path}"), 2, "At most one of (workdir"),
      (("tfgen-evaluate",), 2, "give --workdir (a training run) or --preset"),
      (("tfgen-evaluate", f"--workdir={tmp_path}", "--num_examples=5"), 2,
       "--manual_dir and --num_examples go with --preset"),
      (("tfgen-presets", "show", "nope"), 1, "unknown preset 'nope'"),
      (("tfgen-presets", "frobnicate"), 2, "unknown action 'frobnicate'"),
      (("tfgen-presets", "make", "--name=x"), 1, "make needs --workdir, --name and"),
  ]
  for (program, *args), code, message in cases:
    result, lines = _app(program, *args)
    assert result.returncode == code, (program, args, result.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), (args, lines)
    assert message in lines[0], (args, lines)


def test_cli_lists_the_presets():
  result, _ = _app("tfgen-presets")
  assert result.returncode == 0, result.stderr
  listed, _ = _app("tfgen-sample", "--list_presets")
  assert listed.returncode == 0 and listed.stdout == result.stdout
  if SHIPPED:
    assert result.stdout.splitlines()[0].split()[:3] == ["name", "model", "data"]
    assert all(name in result.stdout for name in SHIPPED)
    assert presets.total_bytes() <= presets.SIZE_BUDGET_BYTES
  else:
    assert "no presets" in result.stdout


def test_make_through_the_cli(trained_run, tmp_path):
  result, _ = _app("tfgen-presets", "make", f"--workdir={trained_run}", "--name=cli_tiny",
                   "--training_command=tfgen-train tiny", f"--presets_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  card = json.loads((tmp_path / "cli_tiny" / presets.CARD_FILE).read_text())
  assert card["training_command"] == "tfgen-train tiny" and "wrote" in result.stdout


@pytest.mark.skipif(not SHIPPED, reason="no presets shipped")
def test_cli_samples_a_shipped_preset(tmp_path):
  name = SHIPPED[0]
  out = tmp_path / "grid.png"
  result, _ = _app("tfgen-sample", f"--preset={name}", "--num=4", f"--out={out}")
  assert result.returncode == 0, result.stderr
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# The real check: every shipped preset loads without training, and its NLL on its card's 1,000
# test images matches the card's figure to 0.01 nats (the tolerance). Reads the data set
# from ../shared/data (skips where absent, fails in CI: TFGEN_REQUIRE_SHARED_DATA).
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_preset_matches_its_card(name, tfds_data_dir):
  card = presets.card(name)
  manual_dir = conftest.shared_data(card["config"]["data"]["name"])
  model = presets.from_preset(name)
  check = card["nll_first_1000"]
  results = presets.evaluate(name, manual_dir=str(manual_dir), data_dir=tfds_data_dir,
                             num_examples=check["num_examples"], show_progress=False,
                             classify_codes=False, model=model)
  assert results["num_examples"] == check["num_examples"] == presets.CHECK_EXAMPLES
  assert results["num_importance_samples"] == card["num_importance_samples"]
  assert abs(results["nll_nats"] - check["nll_nats"]) < 0.01, (results["nll_nats"], check)
  assert abs(card["float16_delta_nats"]) < 0.01 or card["weights_dtype"] == "float32"


def test_shipped_presets_are_package_data(tmp_path):
  """A wheel (what a non-editable install installs) holds every preset's card and weights."""
  import zipfile  # pylint: disable=g-import-not-at-top
  source = tmp_path / "source"  # A copy, so the build writes nothing into the working tree.
  shutil.copytree(conftest.REPO / "tfgen", source / "tfgen",
                  ignore=shutil.ignore_patterns("__pycache__"))
  for f in ("setup.py", "README.md"):
    shutil.copy(conftest.REPO / f, source / f)
  result = subprocess.run(
      [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
       "-q", "-w", str(tmp_path)],
      capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  (wheel,) = tmp_path.glob("tfgen-*.whl")
  names = set(zipfile.ZipFile(wheel).namelist())
  assert "tfgen/presets/__init__.py" in names and "tfgen/apps/presets.py" in names
  for name in SHIPPED:
    for f in (presets.CARD_FILE, presets.WEIGHTS_FILE):
      assert f"tfgen/presets/{name}/{f}" in names, (name, f)
