"""Neural style transfer (tfgen.style, tfgen-style) on small images with random VGG19 weights."""

import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO
from tfgen import errors
from tfgen import style

# Small, non-square images: 48x64 content, a style image of another aspect.
CONTENT_SHAPE = (48, 64, 3)
STYLE_SHAPE = (64, 40, 3)
# With random weights the features are small and the default total-variation weight (set for
# ImageNet features) would be all of the loss: these make the content and style terms count.
SMALL_TV = {"tv_weight": 1.0}


def _picture(shape, seed):
  """A smooth colour picture with some texture: float32 RGB in [0, 255]."""
  rng = np.random.default_rng(seed)
  h, w, _ = shape
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  channels = [np.sin(2 * np.pi * (f * x + g * y) + p)
              for f, g, p in rng.uniform(0.5, 4.0, size=(3, 3))]
  image = 127.5 + 100 * np.stack(channels, -1) + rng.normal(0, 10, shape)
  return np.clip(image, 0, 255).astype(np.float32)


def _write_png(path, image):
  tf.io.write_file(str(path), tf.io.encode_png(np.round(image).astype(np.uint8)))
  return str(path)


@pytest.fixture(scope="module")
def vgg():
  """One randomly initialized VGG19 for the module (building one takes about a second)."""
  keras.utils.set_random_seed(0)
  return style.vgg19(None)


def test_gram_matrix_matches_hand_computation():
  features = np.arange(1, 2 * 3 * 2 + 1, dtype=np.float32).reshape(1, 2, 3, 2) / 10
  expected = np.zeros((2, 2), np.float32)
  for i in range(2):
    for j in range(3):
      for c in range(2):
        for d in range(2):
          expected[c, d] += features[0, i, j, c] * features[0, i, j, d]
  expected /= 6  # the number of positions
  gram = style.gram_matrix(tf.constant(features)).numpy()
  assert gram.shape == (1, 2, 2)
  np.testing.assert_allclose(gram[0], expected, rtol=1e-6)


def test_losses_match_hand_computations():
  a = np.array([[[[0.0], [3.0]], [[1.0], [1.0]]]], np.float32)  # [1, 2, 2, 1]
  b = np.zeros_like(a)
  assert style.content_loss(a, b).numpy() == pytest.approx((0 + 9 + 1 + 1) / 4)
  grams = [tf.constant([[[2.0]]]), tf.constant([[[1.0, 0.0], [0.0, 3.0]]])]
  targets = [tf.constant([[[0.0]]]), tf.zeros([1, 2, 2])]
  assert style.style_loss(grams, targets).numpy() == pytest.approx(0.5 * 4 + 0.5 * 10 / 4)
  # Vertical |differences| 1, 2 (mean 1.5) and horizontal 3, 0 (mean 1.5), over 255.
  assert style.total_variation_loss(a * 255).numpy() == pytest.approx(3.0, rel=1e-6)


def test_preprocess_is_vgg19_preprocess_input_and_deprocess_inverts_it():
  image = _picture((8, 12, 3), 0).round()
  expected = keras.applications.vgg19.preprocess_input(image.copy())
  np.testing.assert_allclose(style.preprocess(image).numpy(), expected, atol=1e-4)
  np.testing.assert_array_equal(style.deprocess(expected), image.astype(np.uint8))


def test_vgg19_layer_names_are_the_networks(vgg):
  assert [layer.name for layer in vgg.layers[1:]] == list(style.VGG19_LAYERS)


def test_load_image_keeps_aspect_with_longer_side_size(tmp_path):
  path = _write_png(tmp_path / "wide.png", _picture((60, 80, 3), 1))
  image = style.load_image(path, 64)
  assert image.shape == (48, 64, 3) and image.dtype == np.float32
  tall = style.load_image(_write_png(tmp_path / "tall.png", _picture((80, 50, 3), 2)), 64)
  assert tall.shape == (64, 40, 3)
  assert 0 <= image.min() and image.max() <= 255


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_transfer_keeps_shape_and_lowers_the_loss(vgg, optimizer):
  content, style_image = _picture(CONTENT_SHAPE, 3), _picture(STYLE_SHAPE, 4)
  saved = []
  image, history = style.transfer(
      content, style_image, vgg, steps=8, optimizer=optimizer, save_every=3, verbose=0,
      jit_compile=False, on_save=lambda step, img: saved.append((step, img.shape)), **SMALL_TV)
  assert image.shape == CONTENT_SHAPE and image.dtype == np.uint8
  assert set(history) == {"loss", "content", "style", "tv"}
  assert len(history["loss"]) == 8
  np.testing.assert_allclose(
      history["loss"], np.sum([history[k] for k in ("content", "style", "tv")], 0), rtol=1e-4)
  # The content image is where the optimization starts: the style term is what gets lowered.
  assert np.all(np.diff(history["loss"]) < 0), history["loss"]
  assert history["style"][-1] < history["style"][0]
  assert saved == [(3, CONTENT_SHAPE), (6, CONTENT_SHAPE)]
  assert not np.array_equal(image, style.deprocess(style.preprocess(content).numpy()))


def test_missing_weights_file_names_the_expected_file(tmp_path, monkeypatch):
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
  with pytest.raises(errors.ConfigError) as e:
    style.find_vgg_weights(None)
  message = str(e.value)
  assert style.VGG19_WEIGHTS_FILE in message and style.VGG19_WEIGHTS_URL in message
  assert "--random_weights" in message and "\n" not in message
  with pytest.raises(errors.ConfigError, match=style.VGG19_WEIGHTS_FILE):
    style.find_vgg_weights(str(tmp_path / "nowhere.h5"))
  assert style.find_vgg_weights(None, random_weights=True) is None
  with pytest.raises(errors.ConfigError, match="exclude"):
    style.find_vgg_weights(str(tmp_path / "nowhere.h5"), random_weights=True)
  # The Keras cache is where a file is found without the flag.
  cached = tmp_path / "keras" / "models" / style.VGG19_WEIGHTS_FILE
  cached.parent.mkdir(parents=True)
  cached.write_bytes(b"")
  assert style.find_vgg_weights(None) == str(cached)


def _write_keras2_weights(model, path):
  """Writes `model`'s weights laid out as the Keras applications' (Keras 2) notop .h5 file."""
  with h5py.File(path, "w") as f:
    names = [layer.name for layer in model.layers]
    f.attrs["layer_names"] = [n.encode() for n in names]
    f.attrs["keras_version"] = b"2.2.4"
    f.attrs["backend"] = b"tensorflow"
    for layer in model.layers:
      group = f.create_group(layer.name)
      weight_names = [f"{layer.name}/{kind}:0" for kind in ("kernel", "bias")][
          :len(layer.weights)]
      group.attrs["weight_names"] = [n.encode() for n in weight_names]
      for name, weight in zip(weight_names, layer.weights):
        group.create_dataset(name, data=weight.numpy())


def test_weights_file_loads_and_a_bad_one_is_one_clear_error(vgg, tmp_path):
  path = tmp_path / style.VGG19_WEIGHTS_FILE
  _write_keras2_weights(vgg, path)
  keras.utils.set_random_seed(99)
  loaded = style.vgg19(str(path))
  for a, b in zip(vgg.weights, loaded.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  garbage = tmp_path / "garbage.h5"
  garbage.write_bytes(b"not an hdf5 file")
  with pytest.raises(errors.DataError, match="not a loadable VGG19 weights file") as e:
    style.vgg19(str(garbage))
  assert style.VGG19_WEIGHTS_URL in str(e.value) and "\n" not in str(e.value)


def test_bad_layer_name_lists_the_valid_layers():
  with pytest.raises(errors.ConfigError) as e:
    style.check_layers("block6_conv1", style.DEFAULT_STYLE_LAYERS)
  assert "block6_conv1" in str(e.value)
  assert all(name in str(e.value) for name in style.VGG19_LAYERS)
  with pytest.raises(errors.ConfigError, match="block1_conv1, block1_conv2"):
    style.check_layers("block4_conv2", ["block1_conv1", "conv3_1"])


def test_bad_numbers_and_outputs_fail_before_any_work(tmp_path):
  content = _write_png(tmp_path / "c.png", _picture(CONTENT_SHAPE, 5))
  out = str(tmp_path / "out.png")
  for bad in ({"steps": 0}, {"tv_weight": -1.0}, {"learning_rate": float("nan")},
              {"content_weight": 0.0, "style_weight": 0.0}, {"save_every": -1},
              {"optimizer": "sgd"}):
    with pytest.raises(errors.ConfigError):
      style.stylize(content, content, out, random_weights=True, **bad)
  with pytest.raises(errors.OutputError, match="folder"):
    style.stylize(content, content, str(tmp_path), random_weights=True)
  with pytest.raises(errors.DataError, match="not a file"):
    style.stylize(str(tmp_path / "missing.jpg"), content, out, random_weights=True)
  text = tmp_path / "notes.txt"
  text.write_text("not an image")
  with pytest.raises(errors.DataError, match="not an image"):
    style.stylize(content, str(text), out, random_weights=True)
  with pytest.raises(errors.ConfigError, match="needs at least 16 pixels"):
    style.stylize(content, content, out, random_weights=True, size=20)
  assert not os.path.exists(out)


def test_app_defaults_are_the_librarys():
  from tfgen.apps import style as app  # pylint: disable=g-import-not-at-top
  flags = {f.name: f.default for f in app.flags.FLAGS.get_flags_for_module(app.__name__)}
  assert flags["content_weight"] == style.DEFAULT_CONTENT_WEIGHT
  assert flags["style_weight"] == style.DEFAULT_STYLE_WEIGHT
  assert flags["tv_weight"] == style.DEFAULT_TV_WEIGHT
  assert flags["learning_rate"] == style.DEFAULT_LEARNING_RATE
  assert flags["content_layer"] == style.DEFAULT_CONTENT_LAYER
  assert tuple(flags["style_layers"]) == style.DEFAULT_STYLE_LAYERS
  assert flags["size"] == style.DEFAULT_SIZE and flags["steps"] == style.DEFAULT_STEPS


def _run_app(args, tmp_path):
  script = os.path.join(os.path.dirname(sys.executable), "tfgen-style")
  command = [script] if os.path.exists(script) else [sys.executable, "bin/style.py"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_HOME=str(tmp_path / "keras"))
  return subprocess.run(command + args, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=120)


def test_app_end_to_end_with_random_weights(tmp_path):
  content = _write_png(tmp_path / "content.png", _picture((60, 80, 3), 6))
  style_path = _write_png(tmp_path / "style.png", _picture((50, 50, 3), 7))
  out = tmp_path / "styled.png"
  result = _run_app([f"--content={content}", f"--style={style_path}", f"--out={out}",
                     "--random_weights", "--size=64", "--steps=4", "--save_every=2",
                     "--tv_weight=1", "--optimizer=lbfgs", "--nojit_compile"], tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "NOT a real style transfer" in result.stdout
  assert "wrote 48x64 image" in result.stdout
  image = tf.io.decode_png(tf.io.read_file(str(out))).numpy()
  assert image.shape == (48, 64, 3)
  assert (tmp_path / "styled_step2.png").exists()


def test_app_without_weights_fails_with_one_line(tmp_path):
  content = _write_png(tmp_path / "content.png", _picture(CONTENT_SHAPE, 8))
  out = tmp_path / "styled.png"
  result = _run_app([f"--content={content}", f"--style={content}", f"--out={out}"], tmp_path)
  assert result.returncode == 1
  lines = [line for line in result.stderr.splitlines() if line.startswith("tfgen-style:")]
  assert len(lines) == 1 and style.VGG19_WEIGHTS_FILE in lines[0], result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert not out.exists()
