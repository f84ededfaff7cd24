"""Every config trains on the user's own images through its `data=folder` variant (issue 32).

One short run per config on a generated folder of class sub-folders (the hash split): the
config's variant must give the model data it can build on (8-bit or binarized, labels for the
class-conditional models and M2), and the loop must train it.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import load_config
from tfgen import train

# config name -> the variant (beside tiny, data=folder) that makes it use the class folders.
CONFIGS = {
    "conv_vae": "", "flow": "", "gated_pixelcnn": "conditional", "iwae": "", "made": "",
    "matnet": "", "nade": "", "pixelcnn": "", "pixelsnail": "conditional", "ssvae": "",
    "vqvae": "", "vsc": "",
}


def _write_folder(root, per_class: int, shape, classes=("a_shirts", "b_shoes")):
  """Blob images, brighter for the second class, as PNGs in class sub-folders."""
  rng = np.random.default_rng(0)
  for c, name in enumerate(classes):
    os.makedirs(os.path.join(root, name))
    for i in range(per_class):
      image = rng.integers(0, 96, shape, dtype=np.uint8) + np.uint8(96 * c)
      tf.io.write_file(os.path.join(root, name, f"{i:03d}.png"), tf.io.encode_png(image))
  return str(root)


@pytest.fixture(scope="module")
def grey_folder(tmp_path_factory):
  return _write_folder(tmp_path_factory.mktemp("grey") / "images", 80, (28, 28, 1))


def _train(config, path, tmp_path, image_size):
  config.data.path = path
  config.data.image_size = image_size
  config.data.cache_dir = str(tmp_path / "cache")
  config.train.num_epochs = 1
  config.train.eval_every_epochs = 1
  return train.train(config, str(tmp_path / "run"), show_progress=False)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_config_trains_on_a_folder_of_images(name, grey_folder, tmp_path):
  variant = ",".join(filter(None, ["tiny", "data=folder", CONFIGS[name]]))
  config = load_config(name, variant)
  assert config.data.name == "folder"
  if name == "ssvae":  # Its tiny variant reads mnist_5k's 3,500 images in batches of 500.
    config.train.batch_size = config.eval.batch_size = 40
  result = _train(config, grey_folder, tmp_path, "28")
  assert result.step > 0 and np.isfinite(result.train_metrics["loss"])
  assert result.model.image_shape == (28, 28, 1)
  if name in ("iwae", "nade", "made", "matnet"):
    assert config.data.binarization == "dynamic"  # Their pixels are binary.


def test_a_colour_folder_trains_the_colour_pixelcnn_at_a_non_square_size(tmp_path):
  path = _write_folder(tmp_path / "colour", 40, (20, 30, 3))
  config = load_config("gated_pixelcnn", "tiny,data=folder")
  result = _train(config, path, tmp_path, "12x16")
  assert result.model.image_shape == (12, 16, 3) and np.isfinite(result.train_metrics["loss"])
