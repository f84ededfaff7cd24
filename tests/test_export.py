"""Export: every registered model writes a SavedModel that serves without tfgen."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfgen import errors
from tfgen import evaluate
from tfgen import export
from tfgen import models
from tfgen import seeding
from tfgen import train
from tests.conftest import REPO
from tests.conftest import load_config
from tests.conftest import shared_data
from tests.test_models import CASES

K = 50


def _run(args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


def _bin(name):
  return os.path.join(os.path.dirname(sys.executable), name)


# The command-line tools (saved_model_cli, tfgen-sample --saved_model) and the export description
# are tried on one model of each kind (latent, autoregressive; the class-conditional kind's
# labels in test_class_conditional_export_takes_labels); every
# registered model's signatures are served in the reload test.
TOOL_CASES = [c for c in CASES if (c[1], c[2]) in {("iwae", "tiny"), ("nade", "tiny")}]
# The flows (8-bit data) are exported, reloaded without tfgen and checked in tests/test_flow.py.
# So are the VQ-VAEs (integer code grids), in tests/test_vqvae.py.
# One variant of every registered model (the CLI tools' variant where it has one): export is generic code over the declared signatures, so
# the variants of one model share their path through it.
_ONE_PER_MODEL = {}
for _case in sorted((c for c in CASES if c[1] not in ("flow", "vqvae")),
                    key=lambda c: c not in TOOL_CASES):
  _ONE_PER_MODEL.setdefault(_case[0], _case)
EXPORT_CASES = [c for c in CASES if c in _ONE_PER_MODEL.values()]
_RUNS = {}  # case -> (workdir, saved_model dir), shared by the fixtures below.


def _trained_and_exported(case, tmp_path_factory, binarized_mnist_dir, tfds_data_dir):
  """(workdir, saved_model dir) of a tiny model trained one epoch and exported, made once."""
  if case in _RUNS:
    return _RUNS[case]
  _, config_name, variant = case
  config = load_config(config_name, variant)
  # Models that need labels (the semi-supervised VAE) train on mnist_5k, the others on
  # binarized MNIST.
  config.data.manual_dir = str(binarized_mnist_dir if config.data.name == "binarized_mnist"
                               else shared_data(config.data.name))
  config.data.data_dir = tfds_data_dir
  config.train.num_epochs = 1
  root = tmp_path_factory.mktemp("export")
  workdir, out = str(root / "run"), str(root / "saved_model")
  result = train.train(config, workdir, show_progress=False)
  description = export.export(workdir, out)
  assert result.step > 0
  assert description["model"] == config.model.name and description["step"] == result.step
  _RUNS[case] = workdir, out
  return _RUNS[case]


def _test_images(workdir):
  trained = evaluate.load_trained(workdir, splits=("test",))
  return trained, next(iter(trained.data.test))["image"][:6]


@pytest.fixture(scope="module")
def served(tmp_path_factory, binarized_mnist_dir, tfds_data_dir):
  """Case -> what tests/reload_script.py served from that case's SavedModel, every registered
  model's tiny variants, all reloaded in one process without tfgen (one TensorFlow import)."""
  root = tmp_path_factory.mktemp("served")
  arguments, outputs = [], {}
  for i, case in enumerate(EXPORT_CASES):
    workdir, out = _trained_and_exported(case, tmp_path_factory, binarized_mnist_dir,
                                         tfds_data_dir)
    _, images = _test_images(workdir)
    inputs = root / f"inputs_{i}.npz"
    np.savez(inputs, images=images.numpy().astype(np.uint8), num_importance_samples=K)
    outputs[case] = root / f"out_{i}.json"
    arguments += [out, str(inputs), str(outputs[case])]
  result = _run([sys.executable, str(REPO / "tests" / "reload_script.py"), *arguments])
  assert result.returncode == 0, result.stderr[-3000:]
  return outputs


@pytest.fixture(scope="module", params=TOOL_CASES, ids=[f"{c[0]}:{c[2]}" for c in TOOL_CASES])
def exported_one_of_each_kind(request, tmp_path_factory, binarized_mnist_dir, tfds_data_dir):
  """(workdir, saved_model dir) of TOOL_CASES."""
  return _trained_and_exported(request.param, tmp_path_factory, binarized_mnist_dir,
                               tfds_data_dir)


@pytest.mark.parametrize("case", EXPORT_CASES, ids=[f"{c[0]}:{c[2]}" for c in EXPORT_CASES])
def test_reloads_without_tfgen_and_serves_every_signature(case, served):
  workdir, _ = _RUNS[case]
  trained, images = _test_images(workdir)
  with open(served[case], encoding="utf-8") as f:
    served = json.load(f)

  assert not served["tfgen_imported"]
  assert served["sample_dtype"] == "uint8" and served["sample_shape"] == [5, 28, 28, 1]
  assert served["sample_repeats"] and served["sample_differs_by_seed"]
  assert served["default_is_sample"]
  model = trained.model
  if isinstance(model, models.LatentVariableModel):
    # The SavedModel draws its importance samples with seed (0, 0), 500 at a time: the same
    # draws as here, so the bound agrees to float precision, well inside its Monte Carlo error.
    model.importance_chunk_size = export.CHUNK_SIZE
    expected = model.log_prob({"image": images}, seed=seeding.as_seed(export.FIXED_SEED),
                              num_importance_samples=K)
    expected_signatures = {"sample", "serving_default", "log_prob", "encode", "decode"}
    if "classify" in model.signatures():
      expected_signatures |= {"sample_labels", "classify"}
      predicted = tf.argmax(model.classify(images).logits, -1).numpy()
      np.testing.assert_array_equal(served["classify_labels"], predicted)
      np.testing.assert_allclose(served["classify_probabilities_sum"], 1.0, rtol=1e-5)
    assert set(served["signatures"]) == expected_signatures
    assert served["encode_shapes"]["loc"][0] == 6
    assert served["decode_shape"] == [6, 28, 28, 1] and served["decode_dtype"] == "uint8"
  else:
    expected = model.log_prob({"image": images})
    assert served["inpaint_keeps_known"] and set(served["inpaint_values"]) <= {0, 1}
  np.testing.assert_allclose(served["log_prob"], expected.numpy(), atol=1e-4, rtol=1e-5)
  np.testing.assert_allclose(served["bits_per_dim"],
                             -expected.numpy() / (784 * np.log(2)), rtol=1e-5)
  for name, message in served["errors"].items():
    assert message, f"{name}: a bad input was accepted"
    signature = name.split("_")[0] if not name.startswith("log_prob") else "log_prob"
    assert signature in message, (name, message)
  assert "must be uint8 [batch, 28, 28, 1]" in served["errors"]["log_prob_shape"]
  assert "values 0..1" in served["errors"]["log_prob_range"]
  assert "uint8" in served["errors"]["log_prob_dtype"]
  # A wrong rank, count or seed names the argument and its spec, not a TensorFlow op; the
  # limits written at export time are enforced.
  assert "must be uint8 [batch, 28, 28, 1]" in served["errors"]["log_prob_rank"]
  assert "may hold at most 10000 images per call (max_batch_size, set at export time)" in (
      served["errors"]["log_prob_batch"])
  assert "`num_samples` must be an int32 scalar" in served["errors"]["sample_count_shape"]
  assert "`seed` must be int32 [2]" in served["errors"]["sample_seed_rank"]
  assert "must be at most 10000 (max_samples" in served["errors"]["sample_limit"]
  if isinstance(model, models.LatentVariableModel):
    assert "decode: `latents` must be finite" in served["errors"]["decode_nan"]
    assert "must be at most 100000 (max_importance_samples" in (
        served["errors"]["log_prob_k_limit"])
    assert "`num_importance_samples` must be an int32 scalar" in (
        served["errors"]["log_prob_k_shape"])


def test_saved_model_cli_shows_and_runs_sample(exported_one_of_each_kind):
  _, out = exported_one_of_each_kind
  show = _run([_bin("saved_model_cli"), "show", "--dir", out, "--all"])
  assert show.returncode == 0, show.stderr[-2000:]
  for name in ("sample", "log_prob", "serving_default"):
    assert f"signature_def['{name}']" in show.stdout
  run = _run([_bin("saved_model_cli"), "run", "--dir", out, "--tag_set", "serve",
              "--signature_def", "sample", "--input_exprs", "num_samples=3;seed=[4,2]"])
  assert run.returncode == 0, run.stderr[-2000:]
  assert "Result for output key images" in run.stdout


def test_sample_from_saved_model_and_export_description(exported_one_of_each_kind, tmp_path):
  workdir, out = exported_one_of_each_kind
  with open(os.path.join(out, export.EXPORT_INFO_FILE), encoding="utf-8") as f:
    description = json.load(f)
  assert description["image_shape"] == [28, 28, 1]
  assert description["data"] == evaluate.load_trained(workdir, splits=()).info.name
  assert description["test_nll"] is None  # Not evaluated yet.
  assert description["limits"] == {"max_batch_size": 10000, "max_samples": 10000,
                                   "max_importance_samples": 100000}
  grid = str(tmp_path / "grid.png")
  result = _run([_bin("tfgen-sample"), f"--saved_model={out}", "--num=9", f"--out={grid}"])
  assert result.returncode == 0, result.stderr[-2000:]
  assert tf.io.decode_png(tf.io.read_file(grid)).shape[-1] == 1
  with pytest.raises(errors.WorkdirError, match="not empty"):
    export.export(workdir, out)
  results = evaluate.evaluate(workdir, num_importance_samples=5, show_progress=False)
  again = export.export(workdir, str(tmp_path / "evaluated"))
  assert again["test_nll"]["nats"] == results["nll_nats"]


def test_class_conditional_export_takes_labels(tmp_path):
  from tfgen import data  # pylint: disable=g-import-not-at-top
  from tfgen.models import pixelcnn
  info = data.DataInfo("mnist", (6, 6, 1), "dynamic", {"train": 0}, num_classes=3)
  model = pixelcnn.GatedPixelCNN((6, 6, 1), num_layers=2, channels=8, class_conditional=True,
                                 num_classes=3)
  model.build_for_images()
  export.build_archive(model, info).write_out(str(tmp_path / "sm"), verbose=False)
  signatures = tf.saved_model.load(str(tmp_path / "sm")).signatures
  assert {"sample", "sample_labels", "log_prob", "inpaint"} <= set(signatures)
  out = signatures["sample_labels"](labels=tf.constant([2, 0]), seed=tf.constant([1, 1]))
  np.testing.assert_array_equal(out["labels"], [2, 0])
  images = out["images"]
  served = signatures["log_prob"](images=images, labels=tf.constant([2, 0]))["log_prob"]
  expected = model.log_prob({"image": tf.cast(images, tf.float32), "label": tf.constant([2, 0])})
  np.testing.assert_allclose(served, expected, atol=1e-4)
  with pytest.raises(tf.errors.InvalidArgumentError, match="log_prob: `labels` must be"):
    signatures["log_prob"](images=images, labels=tf.constant([5, 0]))
