"""Colour PixelCNN and Gated PixelCNN: R | G | B channel masks, the categorical and the
logistic-mixture outputs, the sampler, inpainting, the photo crops and one training step.

Tiny models on 2×2 and 2×3 images, eager: the whole file runs in seconds on a CPU.
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgen import data
from tfgen import errors
from tfgen import models
from tfgen import seeding
from tfgen.data import sources
from tfgen.layers import masked
from tfgen.models import pixelcnn
from tests.conftest import load_config
from tests.conftest import shared_data

SHAPE = (2, 3, 3)
CASES = [(model, output) for model in ("pixelcnn", "gated")
         for output in ("categorical", "logistic_mixture")]


def _model(kind, output, shape=SHAPE, num_levels=256):
  """A tiny model; 6 maps give each colour group two (so every mask connection is exercised)."""
  if kind == "pixelcnn":
    model = pixelcnn.PixelCNN(shape, num_blocks=1, channels=12, first_kernel_size=3,
                              output=output, num_mixtures=2, num_levels=num_levels)
  else:
    model = pixelcnn.GatedPixelCNN(shape, num_layers=2, channels=6, first_kernel_size=3,
                                   output=output, num_mixtures=2, num_levels=num_levels)
  model.build_for_images()
  return model


def _sub_pixel_outputs(model, x):
  """Per sub-pixel (r, c, k) of x [N, H, W, C], N = H·W·C, a random projection of what its
  conditional is computed from, taken from copy n = (r·W + c)·C + k: its logits, or for the
  mixture the component weights and locations given the sub-pixels before it. [N]."""
  h, w, c = model.image_shape
  logits = model.logits(x)
  if model.mixture:
    mixture = model._mixture(logits)  # pylint: disable=protected-access
    per_channel = [tf.concat([mixture.joint_log_weights(x, k), mixture.channel_locs(x, k)], -1)
                   for k in range(c)]
    outputs = tf.stack(per_channel, axis=3)  # [N, H, W, C, 2M]
  else:
    outputs = logits
  outputs = tf.reshape(outputs, [h * w * c, h * w * c, -1])  # [copy, sub-pixel, values]
  own = tf.linalg.diag_part(tf.transpose(outputs, [2, 0, 1]))  # [values, N]: copy n, sub-pixel n
  projection = tf.random.stateless_normal(tf.shape(own), seed=[7, 7])
  return tf.reduce_sum(own * projection, axis=0)


@pytest.mark.parametrize("kind,output", CASES)
def test_each_sub_pixel_depends_only_on_earlier_rows_columns_and_channels(kind, output):
  model = _model(kind, output, num_levels=4)
  size = model.event_size
  image = tf.random.stateless_uniform((1,) + SHAPE, seed=[3, 1])
  x = tf.Variable(tf.tile(image, [size, 1, 1, 1]))
  with tf.GradientTape() as tape:
    target = tf.reduce_sum(_sub_pixel_outputs(model, x))
  grads = np.abs(tape.gradient(target, x).numpy().reshape(size, size))  # [output, input]
  for n in range(size):
    assert np.all(grads[n, n:] == 0), (kind, output, n, np.nonzero(grads[n, n:]))
  # And the masks do not cut too much: G sees R, B sees R and G of the same pixel (at some
  # pixel: a ReLU may be off at another).
  pixels = np.arange(0, size, 3)
  for k, j in ((1, 0), (2, 0), (2, 1)):
    assert np.any(grads[pixels + k, pixels + j] > 0), (kind, output, k, j)


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_channel_masks_never_let_a_later_colour_reach_an_earlier_one(mask_type):
  # Input and output maps in groups R R G G B B; the gated layer's [a | b] pre-activations are
  # two blocks of such groups.
  for out_parts, filters in ((1, 6), (2, 12)):
    conv = masked.MaskedConv2D(filters, 3, mask_type, colours=3, out_parts=out_parts)
    x = tf.Variable(tf.random.stateless_normal([1, 3, 3, 6], seed=[1, 2]))
    out_groups = masked.channel_groups(filters, 3, out_parts)
    for g in range(3):
      with tf.GradientTape() as tape:
        target = tf.reduce_sum(tf.gather(conv(x)[0, 1, 1], np.flatnonzero(out_groups == g)))
      centre = np.abs(tape.gradient(target, x).numpy()[0, 1, 1])
      sees = centre.reshape(3, 2).sum(-1) > 0  # Per input group.
      expected = np.arange(3) < g if mask_type == "A" else np.arange(3) <= g
      np.testing.assert_array_equal(sees, expected, err_msg=f"{mask_type} group {g}")
  dense = masked.ChannelMaskedDense(6, colours=3)
  x = tf.Variable(tf.random.stateless_normal([1, 6], seed=[1, 3]))
  with tf.GradientTape() as tape:
    target = tf.reduce_sum(dense(x)[0, :2])  # Group R.
  np.testing.assert_array_equal(tape.gradient(target, x).numpy()[0, 2:], 0.0)


@pytest.mark.parametrize("kind,output", CASES)
def test_probabilities_of_all_2x2_colour_images_with_two_levels_sum_to_one(kind, output):
  model = _model(kind, output, shape=(2, 2, 3), num_levels=2)
  images = tf.reshape(tf.constant(list(itertools.product([0.0, 1.0], repeat=12))),
                      [-1, 2, 2, 3])
  log_p = model.log_prob({"image": images})
  assert float(tf.reduce_sum(tf.exp(tf.cast(log_p, tf.float64)))) == pytest.approx(1.0, abs=1e-5)


def _parallel_means(model, images):
  """The mean of every sub-pixel's conditional, from one pass over the whole images."""
  logits = model.logits(images)
  if model.mixture:
    return model._mixture(logits).conditional_means(images)  # pylint: disable=protected-access
  return tf.reduce_sum(tf.nn.softmax(logits) * tf.range(256, dtype=tf.float32), -1) / 255


@pytest.mark.parametrize("kind,output", CASES)
def test_sampler_matches_the_parallel_conditionals(kind, output):
  model = _model(kind, output, shape=(2, 2, 3))
  nothing_known = tf.zeros((2, 2, 2, 3), tf.bool)
  # The loop behind sample(), which returns both the draws and the means of one run.
  draws, means = model._sample_loop(  # pylint: disable=protected-access
      2, seeding.as_seed([5, len(kind)]), nothing_known, tf.zeros((2, 2, 2, 3)))
  draws = draws.numpy()
  np.testing.assert_array_equal(np.round(draws * 255), draws * 255)  # 8-bit levels.
  # Each sub-pixel's conditional, computed while sampling, equals the whole-image pass's.
  np.testing.assert_allclose(means, _parallel_means(model, draws), atol=1e-4)


@pytest.mark.parametrize("kind,output", [("gated", "categorical"),
                                         ("pixelcnn", "logistic_mixture")])
def test_inpainting_keeps_the_given_sub_pixels(kind, output):
  model = _model(kind, output)
  original = tf.round(tf.random.stateless_uniform((3,) + SHAPE, seed=[9, 9]) * 255) / 255
  known = np.zeros((3,) + SHAPE, bool)
  known[:, 0] = True  # The top row.
  known[:, 1, 0, 0] = True  # R of the next pixel, G and B drawn given it.
  known[:, 1, 1, 1] = True  # G given, R drawn before it.
  known[:, 1, 2, 2] = True  # The last sub-pixel.
  filled = model.sample(3, seeding.as_seed(4),
                        conditioned_on=tf.where(known, original, -1.0)).numpy()
  np.testing.assert_array_equal(filled[known], original.numpy()[known])
  assert np.all((filled[~known] >= 0) & (filled[~known] <= 1))


def test_bad_colour_configs_fail_in_one_line():
  with pytest.raises(errors.ConfigError, match="images of 1 or 3 channels"):
    pixelcnn.PixelCNN((4, 4, 2), num_blocks=1, channels=8)
  with pytest.raises(errors.ConfigError, match="too narrow for 3 colour groups"):
    pixelcnn.GatedPixelCNN((4, 4, 3), num_layers=1, channels=2)
  with pytest.raises(errors.ConfigError, match="unknown PixelCNN output 'gaussian'"):
    pixelcnn.PixelCNN((4, 4, 3), output="gaussian")
  binary = data.DataInfo("mnist", (4, 4, 1), "dynamic", {"train": 0})
  with pytest.raises(errors.ConfigError, match="logistic_mixture models 8-bit intensities"):
    models.build(models.model_config("pixelcnn", output="logistic_mixture"), binary)


def _photo_config(variant):
  config = load_config("gated_pixelcnn", variant)
  config.data.manual_dir = str(shared_data("photos"))
  return config


def test_photo_crops_are_disjoint_deterministic_8_bit_splits():
  config = _photo_config("tiny,data=photo_crops").data
  config.limit = 0
  raw = sources.photo_crops(config)
  assert raw.image_shape == (32, 32, 3) and raw.binarization == "none"
  assert raw.num_examples == {"train": 416, "validation": 52, "test": 52}
  crops = {s: np.stack([e["image"] for e in ds.as_numpy_iterator()])
           for s, ds in raw.splits.items()}
  assert all(c.dtype == np.uint8 and c.shape[1:] == (32, 32, 3) for c in crops.values())
  keys = {s: {c.tobytes() for c in cs} for s, cs in crops.items()}
  assert not (keys["train"] & keys["validation"] or keys["train"] & keys["test"]
              or keys["validation"] & keys["test"])
  again = sources.read_photo_crops([str(shared_data("photos", f)) for f in sources.PHOTO_FILES])
  np.testing.assert_array_equal(again["test"], crops["test"])
  assert crops["train"].std() > 20  # Real photographs, not blank.
  config.manual_dir = ""
  with pytest.raises(errors.DataError, match="needs china.jpg and flower.jpg"):
    sources.photo_crops(config)


def test_one_training_step_of_the_tiny_colour_config():
  # The tiny colour config on real photo crops, from the config to a gradient step. Eager and
  # outside tfgen.train, whose compilation alone would take this file's time budget; the loop
  # itself is model-agnostic and tested on the grey PixelCNNs.
  config = _photo_config("tiny,data=photo_crops,output=logistic_mixture,mixtures=2")
  config.data.limit = 8
  loaded = data.load(config.data, 8, 8, seed=0, splits=("train",))
  model = models.build(config.model, loaded.info)
  assert model.image_shape == (32, 32, 3) and model.mixture
  batch = next(iter(loaded.train))
  optimizer = keras.optimizers.Adam(config.train.learning_rate)
  losses = []
  for _ in range(2):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(model.loss(batch, seeding.as_seed(0), training=True)[0])
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                  model.trainable_variables))
    losses.append(float(loss))
  assert np.isfinite(losses[0]) and losses[1] < losses[0]


def test_celeb_a_64x64_goes_through_the_tfds_path(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = load_config("pixelcnn", "tiny,data=celeb_a")
  config.data.data_dir = str(tmp_path)
  with tfds.testing.mock_data(num_examples=4):
    loaded = data.load(config.data, 2, 2, seed=0, splits=("test",))
    batch = next(iter(loaded.test))
  model = models.build(config.model, loaded.info)
  assert model.image_shape == (64, 64, 3) and model.num_levels == 256 and not model.mixture
  assert np.isfinite(model.log_prob(batch).numpy()).all()


def test_colour_model_exports_and_serves_rgb_images(tmp_path):
  # Export is generic over the declared signatures; this checks the colour shapes and the
  # 8-bit values go through it (the grey models' round trips are in test_export.py).
  from tfgen import export  # pylint: disable=g-import-not-at-top
  model = _model("gated", "logistic_mixture", shape=(3, 3, 3))
  info = data.DataInfo("photo_crops", (3, 3, 3), "none", {"train": 0})
  export.build_archive(model, info).write_out(str(tmp_path / "sm"), verbose=False)
  signatures = tf.saved_model.load(str(tmp_path / "sm")).signatures
  images = signatures["sample"](num_samples=tf.constant(2), seed=tf.constant([1, 2]))["images"]
  assert images.dtype == tf.uint8 and images.shape == (2, 3, 3, 3)
  served = signatures["log_prob"](images=images)["log_prob"]
  # The model takes intensities in [0, 1] (as the data pipeline gives them); the SavedModel 0..255.
  expected = model.log_prob({"image": tf.cast(images, tf.float32) / 255.0})
  np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-3)
  inpainted = signatures["inpaint"](images=images, known=tf.constant(
      np.tile(np.arange(3)[None, :, None, None] < 2, (2, 1, 3, 3)), tf.uint8),
      seed=tf.constant([3, 4]))
  np.testing.assert_array_equal(np.asarray(inpainted["images"])[:, :2], images.numpy()[:, :2])
