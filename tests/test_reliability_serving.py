"""tfgen's promises to a client of an exported SavedModel (docs/serving.md, tfgen/export.py).

Every bad request ends in one InvalidArgumentError naming the signature, the argument and what it
must be; requests beyond the limits set at export time are refused, and requests within them are
served a chunk at a time with the results of unchunked calls. The models are tiny and built
directly (no training), exported with small limits and chunks of 2 so that the limits and the
chunking show on a handful of images.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO
from tests.conftest import load_config
from tfgen import data
from tfgen import errors
from tfgen import evaluate
from tfgen import export
from tfgen import models
from tfgen import seeding

LIMITS = export.Limits(max_batch_size=8, max_samples=6, max_importance_samples=70)
CHUNK = 2  # Images, latents or samples per step in the archives below.


def _build(config_name):
  """A tiny untrained model of configs/NAME.py:tiny and its DataInfo (28x28 binary images)."""
  config = load_config(config_name, "tiny")
  info = data.DataInfo(config.data.name, (28, 28, 1), "fixed", {"train": 0}, num_classes=10)
  model = models.build(config.model, info)
  model.build_for_images()
  return config, info, model


def _serve(model, info, path, limits=LIMITS, batch_chunk_size=CHUNK):
  export.build_archive(model, info, limits, batch_chunk_size=batch_chunk_size).write_out(
      str(path), verbose=False)
  return tf.saved_model.load(str(path)).signatures


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
  """(model, signatures) of a tiny VAE exported with LIMITS and chunks of CHUNK."""
  _, info, model = _build("iwae")
  return model, _serve(model, info, tmp_path_factory.mktemp("vae") / "sm")


@pytest.fixture(scope="module")
def nade(tmp_path_factory):
  """(model, signatures) of a tiny NADE (exact log_prob, inpaint) exported like `vae`."""
  _, info, model = _build("nade")
  return model, _serve(model, info, tmp_path_factory.mktemp("nade") / "sm")


def _images(num, seed=3):
  return tf.cast(tf.random.stateless_uniform([num, 28, 28, 1], seed=[seed, 0]) < 0.3, tf.uint8)


def _refused(fn, message, **inputs):
  """Calls fn, which must fail with an InvalidArgumentError holding `message` (plain text)."""
  with pytest.raises(tf.errors.InvalidArgumentError) as failure:
    fn(**inputs)
  assert message in str(failure.value), str(failure.value)


# --- Cryptic errors are gone ----------------------------------------------------------------


def test_images_of_any_wrong_shape_name_the_signature_and_spec(vae, nade):
  spec = "`images` must be uint8 [batch, 28, 28, 1] with values 0..1; got shape"
  for shape in ([2, 28, 28], [28, 28], [2, 28, 28, 1, 1], [], [2, 28, 27, 1]):
    images = tf.zeros(shape, tf.uint8)
    # Several calls: the checks once raced the ops they guard (`Invalid reduction dimension`).
    for _ in range(3):
      _refused(nade[1]["log_prob"], f"log_prob: {spec}", images=images)
      _refused(vae[1]["log_prob"], f"log_prob: {spec}", images=images,
               num_importance_samples=tf.constant(5))
    _refused(vae[1]["encode"], f"encode: {spec}", images=images)
    _refused(nade[1]["inpaint"], f"inpaint: {spec}", images=images, known=images,
             seed=tf.constant([1, 2]))


@pytest.mark.parametrize("value", [[5], [[5]], [1, 2]])
def test_counts_must_be_scalars(vae, value):
  _refused(vae[1]["sample"], "sample: `num_samples` must be an int32 scalar >= 1; got shape",
           num_samples=tf.constant(value), seed=tf.constant([1, 2]))
  _refused(vae[1]["log_prob"],
           "log_prob: `num_importance_samples` must be an int32 scalar >= 1; got shape",
           images=_images(2), num_importance_samples=tf.constant(value))


@pytest.mark.parametrize("seed", [[1, 2, 3], [1], [[1, 2]], 7])
def test_seeds_must_be_two_ints(vae, nade, seed):
  message = "`seed` must be int32 [2], e.g. [1, 2]; got shape"
  _refused(vae[1]["sample"], f"sample: {message}", num_samples=tf.constant(2),
           seed=tf.constant(seed))
  _refused(nade[1]["inpaint"], f"inpaint: {message}", images=_images(2), known=_images(2),
           seed=tf.constant(seed))


def test_inpaint_known_must_match_the_images(nade):
  _refused(nade[1]["inpaint"], "inpaint: `known` must be uint8 of the shape of `images`",
           images=_images(2), known=_images(3), seed=tf.constant([1, 2]))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_latents_are_refused(vae, value):
  latents = np.zeros([3, 4], np.float32)
  latents[1, 2] = value
  _refused(vae[1]["decode"], "decode: `latents` must be finite; got NaN or infinite values",
           latents=tf.constant(latents))


def test_latents_of_the_wrong_shape_name_the_spec(vae):
  for shape in ([3], [3, 5], [3, 4, 1]):
    _refused(vae[1]["decode"], "decode: `latents` must be float32 [batch, 4]; got shape",
             latents=tf.zeros(shape))


# --- Limits -----------------------------------------------------------------------------------


def test_importance_samples_beyond_the_limit_are_refused(vae):
  images = _images(1)
  _refused(vae[1]["log_prob"], "log_prob: `num_importance_samples` must be at most 70 "
           "(max_importance_samples, set at export time); got", images=images,
           num_importance_samples=tf.constant(71))
  _refused(vae[1]["log_prob"], "must be at most 70", images=images,
           num_importance_samples=tf.constant(10**9))
  assert vae[1]["log_prob"](images=images, num_importance_samples=tf.constant(70))[
      "log_prob"].shape == [1]


def test_batches_beyond_the_limit_are_refused(vae, nade):
  over = "per call (max_batch_size, set at export time); got"
  images = _images(LIMITS.max_batch_size + 1)
  _refused(vae[1]["log_prob"], f"log_prob: `images` may hold at most 8 images {over}",
           images=images, num_importance_samples=tf.constant(2))
  _refused(vae[1]["encode"], f"encode: `images` may hold at most 8 images {over}", images=images)
  _refused(nade[1]["log_prob"], f"log_prob: `images` may hold at most 8 images {over}",
           images=images)
  _refused(nade[1]["inpaint"], f"inpaint: `images` may hold at most 8 images {over}",
           images=images, known=images, seed=tf.constant([1, 2]))
  # Refused before anything is decoded: 2,000,000 latents once crashed the process.
  _refused(vae[1]["decode"], f"decode: `latents` may hold at most 8 latents {over}",
           latents=tf.zeros([2_000_000, 4]))
  _refused(vae[1]["sample"], "sample: `num_samples` must be at most 6 (max_samples, set at "
           "export time); got", num_samples=tf.constant(7), seed=tf.constant([1, 2]))
  assert vae[1]["encode"](images=images[:8])["loc"].shape == [8, 4]


def test_class_conditional_signatures_check_labels_and_limits(tmp_path):
  _, info, model = _build("ssvae")  # Class-conditional: sample_labels, decode takes labels.
  signatures = _serve(model, info, tmp_path / "sm", export.Limits(max_batch_size=4,
                                                                  max_samples=3))
  seed = tf.constant([1, 2])
  spec = "`labels` must be int32 [batch] with values 0..9"
  _refused(signatures["sample_labels"], "sample_labels: `labels` may hold at most 3 labels per "
           "call (max_samples, set at export time)", labels=tf.constant([0, 1, 2, 0]), seed=seed)
  _refused(signatures["sample_labels"], f"sample_labels: {spec}; got shape",
           labels=tf.constant([[0, 1]]), seed=seed)
  _refused(signatures["sample_labels"], f"sample_labels: {spec}; got a value out of range",
           labels=tf.constant([0, 10]), seed=seed)
  _refused(signatures["decode"], f"decode: {spec}, one per latent; got shape",
           latents=tf.zeros([2, 4]), labels=tf.constant([0, 1, 2]))
  _refused(signatures["decode"], f"decode: {spec}; got a value out of range",
           latents=tf.zeros([2, 4]), labels=tf.constant([0, -1]))
  _refused(signatures["classify"], "classify: `images` may hold at most 4 images per call "
           "(max_batch_size, set at export time)", images=_images(5))
  assert signatures["classify"](images=_images(3))["probabilities"].shape == [3, 10]
  out = signatures["sample_labels"](labels=tf.constant([2, 0, 1]), seed=seed)
  np.testing.assert_array_equal(out["labels"], [2, 0, 1])
  # Three samples in chunks of 2: the first chunk draws with `seed`, the second with fold_in.
  for begin, chunk_seed in ((0, seed), (2, seeding.fold_in(seed, 1))):
    labels = out["labels"][begin:begin + 2]
    expected = model.sample(len(labels), seed=chunk_seed, mean=True, labels=labels)
    np.testing.assert_allclose(out["probabilities"][begin:begin + 2], expected, atol=1e-6)


# --- Chunks -----------------------------------------------------------------------------------


def test_a_batch_of_three_chunks_equals_the_calls_on_its_chunks(vae):
  model, signatures = vae
  images = _images(6)
  k = tf.constant(7)
  whole = signatures["log_prob"](images=images, num_importance_samples=k)["log_prob"]
  code = signatures["encode"](images=images)
  decoded = signatures["decode"](latents=code["latents"])
  for begin in range(0, 6, CHUNK):
    part = images[begin:begin + CHUNK]
    served = signatures["log_prob"](images=part, num_importance_samples=k)["log_prob"]
    np.testing.assert_array_equal(whole[begin:begin + CHUNK], served)
    # And a chunk is what the model in memory gives for those images with the fixed seed.
    model.importance_chunk_size = export.CHUNK_SIZE
    expected = model.log_prob({"image": tf.cast(part, tf.float32)},
                              seed=seeding.as_seed(export.FIXED_SEED), num_importance_samples=7)
    np.testing.assert_allclose(served, expected, atol=1e-4, rtol=1e-5)
    part_code = signatures["encode"](images=part)
    for name in ("loc", "scale", "latents"):
      np.testing.assert_array_equal(code[name][begin:begin + CHUNK], part_code[name])
    part_decoded = signatures["decode"](latents=code["latents"][begin:begin + CHUNK])
    np.testing.assert_array_equal(decoded["probabilities"][begin:begin + CHUNK],
                                  part_decoded["probabilities"])
  assert whole.shape == [6] and code["loc"].shape == [6, 4]
  assert decoded["images"].shape == [6, 28, 28, 1]


def test_samples_in_chunks_draw_the_first_with_the_seed_and_the_others_with_folded_seeds(vae):
  model, signatures = vae
  seed = tf.constant([7, 1])
  out = signatures["sample"](num_samples=tf.constant(5), seed=seed)
  assert out["images"].shape == [5, 28, 28, 1] and out["images"].dtype == tf.uint8
  for i, begin in enumerate(range(0, 5, CHUNK)):
    num = min(CHUNK, 5 - begin)
    chunk_seed = seed if i == 0 else seeding.fold_in(seed, i)
    expected = model.sample(num, seed=chunk_seed, mean=True)
    np.testing.assert_allclose(out["probabilities"][begin:begin + num], expected, atol=1e-6)
  again = signatures["sample"](num_samples=tf.constant(5), seed=seed)
  np.testing.assert_array_equal(out["images"], again["images"])


def test_empty_batches_give_empty_results(vae, nade):
  empty = tf.zeros([0, 28, 28, 1], tf.uint8)
  assert vae[1]["log_prob"](images=empty, num_importance_samples=tf.constant(3))[
      "log_prob"].shape == [0]
  assert vae[1]["decode"](latents=tf.zeros([0, 4]))["images"].shape == [0, 28, 28, 1]
  assert nade[1]["log_prob"](images=empty)["bits_per_dim"].shape == [0]


# --- Setting the limits at export time ---------------------------------------------------------


def test_limits_are_written_to_the_description_and_set_by_export(tmp_path, monkeypatch):
  config, info, model = _build("iwae")
  trained = evaluate.Trained(config, info, model, "ckpt-1", 1)
  monkeypatch.setattr(evaluate, "load_trained", lambda workdir, splits=(): trained)
  workdir, out = tmp_path / "run", str(tmp_path / "sm")
  workdir.mkdir()
  description = export.export(str(workdir), out, max_batch_size=3, max_samples=4,
                               max_importance_samples=5)
  limits = {"max_batch_size": 3, "max_samples": 4, "max_importance_samples": 5}
  assert description["limits"] == limits
  with open(os.path.join(out, export.EXPORT_INFO_FILE), encoding="utf-8") as f:
    written = json.load(f)
  assert written["limits"] == limits
  assert written["chunks"]["batch_chunk_size"] == export.BATCH_CHUNK_SIZE
  signatures = tf.saved_model.load(out).signatures
  _refused(signatures["decode"], "decode: `latents` may hold at most 3 latents per call "
           "(max_batch_size, set at export time)", latents=tf.zeros([4, 4]))
  _refused(signatures["sample"], "must be at most 4 (max_samples", num_samples=tf.constant(5),
           seed=tf.constant([1, 2]))
  _refused(signatures["log_prob"], "must be at most 5 (max_importance_samples",
           images=_images(1), num_importance_samples=tf.constant(6))
  # The defaults the docs name.
  assert export.Limits() == export.Limits(max_batch_size=10000, max_samples=10000,
                                          max_importance_samples=100000)


@pytest.mark.parametrize("name,value", [("max_batch_size", 0), ("max_samples", -1),
                                        ("max_importance_samples", 2.5),
                                        ("max_batch_size", True), ("max_samples", 2**31)])
def test_limits_must_be_whole_numbers_from_one(name, value, tmp_path):
  with pytest.raises(errors.ConfigError, match=f"--{name} \\(an export limit\\) must be a whole "
                     "number from 1 to 2147483647"):
    export.export(str(tmp_path / "no_run"), str(tmp_path / "sm"), **{name: value})
  assert not os.path.exists(tmp_path / "sm")


def test_export_flags_set_the_limits_and_a_bad_one_is_one_line(tmp_path):
  result = subprocess.run(
      [os.path.join(os.path.dirname(sys.executable), "tfgen-export"),
       f"--workdir={tmp_path / 'no_run'}", f"--out={tmp_path / 'sm'}",
       "--max_importance_samples=0"],
      cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  lines = [line for line in result.stderr.splitlines() if line.startswith("tfgen-export:")]
  assert lines == ["tfgen-export: error: --max_importance_samples (an export limit) must be a "
                   "whole number from 1 to 2147483647; got 0"], result.stderr[-3000:]


def test_tfgen_sample_beyond_the_saved_models_limit_is_one_clear_error(tmp_path):
  from tfgen import sampling  # pylint: disable=g-import-not-at-top
  _, info, model = _build("iwae")
  _serve(model, info, tmp_path / "sm")
  out = tmp_path / "grid.png"
  with pytest.raises(errors.ConfigError, match=r"refused the request: sample: `num_samples` "
                     r"must be at most 6 \(max_samples, set at export time\); got 9$"):
    sampling.saved_model_grid(str(tmp_path / "sm"), 9, str(out))
  assert not out.exists() and not os.path.exists(f"{out}.tmp")
