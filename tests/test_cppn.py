"""CPPNs (tfgen.cppn, tfgen-cppn) and the VAE's cppn decoder, on tiny networks and images."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import load_config
from tests.conftest import run_app
from tfgen import cppn
from tfgen import data
from tfgen import errors
from tfgen import models
from tfgen import seeding
from tfgen import viz
from tfgen.models import capabilities as caps

# A small random CPPN, quick to render at every size below.
SMALL = dict(units=8, depth=2, latent_size=3)


def test_coordinates_are_pixel_centres_with_the_longer_side_spanning_minus_one_to_one():
  coords = cppn.coordinates(2, 4)  # 2 rows, 4 columns
  assert coords.shape == (8, 2) and coords.dtype == np.float32
  np.testing.assert_allclose(coords[:4, 0], [-0.75, -0.25, 0.25, 0.75])
  np.testing.assert_allclose(coords[::4, 1], [-0.25, 0.25])  # The shorter side keeps the aspect.
  # The centres of a 10x finer grid average to the coarse pixel's centre: the same function.
  fine = cppn.coordinates(20, 40).reshape(2, 10, 4, 10, 2).mean(axis=(1, 3)).reshape(-1, 2)
  np.testing.assert_allclose(fine, coords, atol=1e-6)


@pytest.mark.parametrize("height,width", [(1, 1), (16, 16), (9, 31), (40, 7)])
def test_render_has_the_asked_shape_at_any_resolution(height, width):
  model = cppn.random_cppn(0, channels=3, **SMALL)
  z = cppn.random_latents(0, 3, num=2)
  images = cppn.render(model, z, height, width)
  assert images.shape == (2, height, width, 3) and images.dtype == np.float32
  assert 0 <= images.min() and images.max() <= 1
  assert cppn.render(model, z[0], height, width).shape == (height, width, 3)
  grey = cppn.random_cppn(0, channels=1, **SMALL)
  assert cppn.random_image(0, height, width, channels=1, **SMALL).shape == (height, width, 1)
  assert cppn.render(grey, z[0], height, width).shape == (height, width, 1)


def test_render_in_chunks_equals_render_at_once(monkeypatch):
  model = cppn.random_cppn(1, **SMALL)
  z = cppn.random_latents(1, 3, num=2)
  whole = cppn.render(model, z, 12, 17)
  monkeypatch.setattr(cppn, "RENDER_BUDGET", 2 * 8 * 5)  # 5 pixels per chunk.
  np.testing.assert_allclose(cppn.render(model, z, 12, 17), whole, atol=1e-6)


def test_random_images_are_deterministic_per_seed():
  first = cppn.random_image(3, 24, 40, **SMALL)
  keras.utils.set_random_seed(99)  # Keras's global seed must not matter.
  np.testing.assert_array_equal(cppn.random_image(3, 24, 40, **SMALL), first)
  assert first.dtype == np.uint8 and first.shape == (24, 40, 3)
  assert not np.array_equal(cppn.random_image(4, 24, 40, **SMALL), first)
  assert first.std() > 5  # A pattern, not a flat colour.


def test_interpolation_has_the_frames_asked_and_the_ends_are_the_two_latents():
  model = cppn.random_cppn(5, **SMALL)
  z_start, z_end = cppn.random_latents(5, 3, num=2)
  frames = cppn.interpolation_frames(model, z_start, z_end, 5, 10, 14)
  assert frames.shape == (5, 10, 14, 3)
  np.testing.assert_allclose(frames[0], cppn.render(model, z_start, 10, 14), atol=1e-6)
  np.testing.assert_allclose(frames[-1], cppn.render(model, z_end, 10, 14), atol=1e-6)
  assert not np.allclose(frames[0], frames[-1])
  assert cppn.random_interpolation(5, 3, 10, 14, **SMALL).shape == (3, 10, 14, 3)
  with pytest.raises(errors.ConfigError, match="--frames must be >= 2"):
    cppn.interpolation_frames(model, z_start, z_end, 1, 10, 14)


def test_regression_lowers_the_mse_and_renders_at_ten_times_the_size():
  y, x = np.mgrid[0:12, 0:16] / 16.0
  image = np.stack([0.5 + 0.4 * np.sin(6 * x), 0.5 + 0.4 * np.cos(5 * y), x * y], -1)
  model, history = cppn.fit_image(image, steps=60, learning_rate=1e-2, units=16, depth=2,
                                  fourier_frequencies=2, verbose=0, jit_compile=False)
  mse = history["mse"]
  assert len(mse) == 60 and mse[-1] < 0.25 * mse[0], mse[::10]
  assert cppn.image_mse(model, image) < mse[0]
  assert cppn.render(model, None, 120, 160).shape == (120, 160, 3)
  assert cppn.psnr(0.01) == pytest.approx(20.0)


def test_size_strings_activations_and_numbers_are_checked():
  assert cppn.parse_size("320x200") == (200, 320)
  assert cppn.parse_size("64") == (64, 64)
  for bad in ("12y", "x5", "", "3x4x5", "-3x4"):
    with pytest.raises(errors.ConfigError, match="WIDTHxHEIGHT"):
      cppn.parse_size(bad)
  with pytest.raises(errors.ConfigError, match="sides must be"):
    cppn.parse_size("0x10")
  with pytest.raises(errors.ConfigError, match="sides must be"):
    cppn.parse_size(f"{cppn.MAX_SIDE + 1}x1")
  assert cppn.parse_activations("tanh, sin") == ("tanh", "sin")
  with pytest.raises(errors.ConfigError, match="unknown activation 'sine'"):
    cppn.parse_activations("tanh,sine")
  with pytest.raises(errors.ConfigError, match="depth"):
    cppn.CPPN(depth=0)
  with pytest.raises(errors.ConfigError, match="--steps"):
    cppn.fit_image(np.zeros((4, 4, 3)), steps=0)


def test_gif_of_frames_decodes_to_the_frames():
  rng = np.random.default_rng(0)
  grey = rng.integers(0, 256, (3, 7, 300, 1)).astype(np.uint8)  # Rows longer than a clear run.
  decoded = tf.io.decode_gif(viz.gif_bytes(grey)).numpy()
  assert decoded.shape == (3, 7, 300, 3)
  np.testing.assert_array_equal(decoded[..., 0], grey[..., 0])
  colour = rng.integers(0, 256, (2, 5, 6, 3)).astype(np.uint8)
  decoded = tf.io.decode_gif(viz.gif_bytes(colour)).numpy().astype(int)
  assert decoded.shape == (2, 5, 6, 3)
  assert np.abs(decoded - colour).max() <= 26  # Half a step of the 6x7x6 colour cube.


def test_fit_file_refuses_missing_and_unreadable_images_before_any_work(tmp_path):
  out = str(tmp_path / "fit.png")
  with pytest.raises(errors.DataError, match="--image .* is not a file"):
    cppn.fit_file(str(tmp_path / "missing.jpg"), out, steps=1)
  text = tmp_path / "notes.jpg"
  text.write_text("not an image")
  with pytest.raises(errors.DataError, match="not an image"):
    cppn.fit_file(str(text), out, steps=1)
  with pytest.raises(errors.ConfigError, match="--scale"):
    cppn.fit_file(str(text), out, scale=0)
  with pytest.raises(errors.OutputError, match="folder"):
    cppn.fit_file(str(text), str(tmp_path), steps=1)
  assert not os.path.exists(out)


# --- The VAE's cppn decoder ---------------------------------------------------------------------


def _vae(variant="tiny,decoder=cppn"):
  config = load_config("iwae", variant)
  info = data.DataInfo("binarized_mnist", (28, 28, 1), "fixed", {"train": 0}, num_classes=10)
  model = models.build(config.model, info)
  model.build_for_images()
  return model


def test_vae_with_the_cppn_decoder_trains_and_decodes_at_any_resolution(tmp_path):
  model = _vae()
  x = tf.cast(tf.random.stateless_uniform((6, 28, 28, 1), seed=[1, 2]) < 0.5, tf.float32)
  seed = seeding.as_seed(0)
  loss, _ = model.loss({"image": x}, seed, training=True)
  assert loss.shape == (6,) and np.all(np.isfinite(loss.numpy()))
  z = model.prior().sample(3, seed=seed)
  assert model.decode(z).event_shape == (28, 28, 1)
  doubled = model.decode_at(z, 56, 56).mean()
  assert doubled.shape == (3, 56, 56, 1)
  assert model.decode_at(z, 28, 42).mean().shape == (3, 28, 42, 1)
  np.testing.assert_allclose(model.decode_at(z, 28, 28).mean(), model.decode(z).mean(),
                             atol=1e-6)

  adam = keras.optimizers.Adam(1e-2)
  before = [w.numpy() for w in model.trainable_weights]
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model.loss({"image": x}, seed, training=True)[0])
  adam.apply_gradients(zip(tape.gradient(loss, model.trainable_weights),
                           model.trainable_weights))
  after = model.loss({"image": x}, seed, training=True)[0]
  assert np.isfinite(float(loss)) and np.all(np.isfinite(after.numpy()))
  assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))

  path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
  saved = [n for n, _ in tf.train.list_variables(path) if n.startswith("model/")]
  assert len(saved) == len(model.weights)
  other = _vae()
  tf.train.Checkpoint(model=other).read(path).assert_consumed()
  np.testing.assert_allclose(other.decode_at(z, 56, 56).mean(), model.decode_at(z, 56, 56).mean(),
                             atol=1e-6)


def test_only_the_cppn_decoder_declares_the_any_resolution_modes():
  model = _vae()
  modes = model.sample_modes()
  assert modes["hires_samples"].uses_scale and modes["hires_reconstructions"].needs_test_data
  picture = modes["hires_samples"].fn(caps.SampleRequest(num=4, seed=1, scale=2))
  assert picture.shape == (2 * 57 + 1, 2 * 57 + 1, 1)  # 2x2 grid of 56x56 images, 1-pixel gaps.
  again = modes["hires_samples"].fn(caps.SampleRequest(num=4, seed=1, scale=2))
  np.testing.assert_array_equal(picture, again)
  default = _vae("tiny")
  assert not any(mode.uses_scale for mode in default.sample_modes().values())
  with pytest.raises(errors.ConfigError, match="decoder 'conv' is not one of mlp, cppn"):
    models.build(models.model_config("vae", decoder="conv"),
                 data.DataInfo("binarized_mnist", (28, 28, 1), "fixed", {"train": 0}))


# --- The app ------------------------------------------------------------------------------------


def test_app_missing_image_is_one_line_and_exit_1(tmp_path):
  # A process of its own: the apps' absl flags are process-wide, and tfgen-style's share names
  # with tfgen-cppn's (--out, --size), so the two apps cannot be imported into one process.
  out = tmp_path / "fit.png"
  result = run_app("tfgen-cppn", "fit", f"--image={tmp_path / 'missing.jpg'}", f"--out={out}")
  assert result.returncode == 1, result.stderr[-2000:]
  lines = [line for line in result.stderr.splitlines() if line.startswith("tfgen-cppn:")]
  assert len(lines) == 1 and "is not a file" in lines[0], result.stderr[-2000:]
  assert "Traceback" not in result.stderr and not out.exists()
