"""What every registered model must do: build, train a step, checkpoint every weight, sample."""

import numpy as np
import pytest
import tensorflow as tf

from tfgen import data
from tfgen import errors
from tfgen import models
from tfgen import seeding
from tests.conftest import load_config
from tests.conftest import untrained_vqvae_run

# Each registered model with a tiny config variant that builds it.
TINY_VARIANTS = {
    "vae": [("iwae", "tiny"), ("iwae", "tiny,layers=2,model=iwae,k=3"),
            ("iwae", "tiny,batch_norm")],
    "nade": [("nade", "tiny"), ("nade", "tiny,ordering=random")],
    "made": [("made", "tiny"), ("made", "tiny,layers=2,ordering=random")],
    "matnet": [("matnet", "tiny,fc"), ("matnet", "tiny")],
    "pixelcnn": [("pixelcnn", "tiny")],
    "gated_pixelcnn": [("gated_pixelcnn", "tiny")],
    "vsc": [("vsc", "tiny,data=binarized_mnist"), ("vsc", "tiny,data=binarized_mnist,alpha=1"),
            ("vsc", "tiny,data=binarized_mnist,architecture=conv")],
    "conv_vae": [("conv_vae", "tiny")],
    "ssvae": [("ssvae", "tiny")],
    "realnvp": [("flow", "tiny")],
    "glow": [("flow", "tiny,arch=glow")],
    "maf": [("flow", "tiny,arch=maf")],
    "pixelsnail": [("pixelsnail", "tiny")],
    "vqvae": [("vqvae", "tiny"), ("vqvae", "tiny,codebook=loss")],
    "vqvae_prior": [("vqvae", "tiny,stage=2"), ("vqvae", "tiny,stage=2,prior=gated_pixelcnn")],
}
CASES = [(name, cfg, variant) for name, variants in TINY_VARIANTS.items()
         for cfg, variant in variants]


def test_every_registered_model_has_a_tiny_variant():
  assert sorted(TINY_VARIANTS) == models.MODELS.names()


def _build(config_name, variant):
  config = load_config(config_name, variant)
  if config.model.get("stage1_workdir") == "":  # A VQ-VAE prior needs a stage-1 run.
    config.model.stage1_workdir = untrained_vqvae_run()
  # Binary data unless the config asks for 8-bit intensities (the flows).
  binarization = "none" if config.data.binarization == "none" else "fixed"
  info = data.DataInfo(config.data.name, (28, 28, 1), binarization, {"train": 0}, num_classes=10)
  model = models.build(config.model, info)
  model.build_for_images()
  return model


@pytest.mark.parametrize("name,config_name,variant", CASES)
def test_checkpoint_holds_every_weight(name, config_name, variant, tmp_path):
  model = _build(config_name, variant)
  assert config_name and name
  path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
  saved = [n for n, _ in tf.train.list_variables(path) if n.startswith("model/")]
  assert len(saved) == len(model.weights) > 0
  other = _build(config_name, variant)
  tf.train.Checkpoint(model=other).read(path).assert_consumed()
  for a, b in zip(model.weights, other.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("name,config_name,variant", CASES)
def test_contract_shapes(name, config_name, variant):
  del name
  model = _build(config_name, variant)
  x = tf.cast(tf.random.stateless_uniform((5, 28, 28, 1), seed=[1, 2]) < 0.5, tf.float32)
  seed = seeding.as_seed(0)
  loss, metrics = model.loss({"image": x}, seed, training=True)
  assert loss.shape == (5,) and all(v.shape == (5,) for v in metrics.values())
  assert all(v.shape == (5,) for v in model.bounds({"image": x}, seed).values())
  model.importance_chunk_size = 3
  assert model.log_prob({"image": x}, seed, num_importance_samples=7).shape == (5,)
  # Compiled: an autoregressive sampler's 784-step loop is slow op by op.
  sample = tf.function(lambda mean: model.sample(4, seed, mean=mean))
  samples = sample(False)
  assert samples.shape == (4, 28, 28, 1)
  levels = samples.numpy() * (1 if load_config(config_name, variant).data.binarization != "none"
                              else 255)
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)  # Values the data can take.
  means = sample(True).numpy()
  assert means.min() >= 0 and means.max() <= 1
  np.testing.assert_array_equal(sample(False), samples)  # Same seed, same images.
  if isinstance(model, models.LatentVariableModel):
    assert model.encode(x).sample(seed=seed).shape[0] == 5
    assert model.reconstruct(x, seed).shape == x.shape
    assert all(m.shape[0] == 5 for m in model.posterior_means(x, seed))


def test_wrong_image_shape_is_one_clear_error():
  from tfgen import errors  # pylint: disable=g-import-not-at-top
  model = _build("iwae", "tiny")
  with pytest.raises(errors.DataError, match=r"expects images of shape \[batch, 28, 28, 1\]"):
    model.log_prob({"image": tf.zeros([2, 32, 32, 1])}, seeding.as_seed(0))


def test_every_hyperparameter_has_one_home_and_typos_fail_in_one_line():
  # Constants that were hard-wired before are config fields now, with the constructor's default.
  assert models.model_config("vae").min_scale == 1e-4
  assert models.model_config("ssvae").classifier_channels == (32, 64)
  assert models.model_config("pixelcnn").first_kernel_size == 7
  assert "binary" not in models.model_config("conv_vae")  # From the data, not the config.
  with pytest.raises(errors.ConfigError, match="model 'vae' takes no 'latent_size'"):
    models.model_config("vae", latent_size=3)
  config = models.model_config("nade", hidden_size=4)
  config.unlisted = 1
  info = data.DataInfo("binarized_mnist", (28, 28, 1), "fixed", {"train": 0})
  with pytest.raises(errors.ConfigError, match="takes no config.model.unlisted"):
    models.build(config, info)
  assert models.build(models.model_config("vae", min_scale=1e-2), info).min_scale == 1e-2


def test_generic_modules_never_ask_what_kind_of_model_they_hold():
  import pathlib  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(models.__file__).parents[1]
  kinds = ("LatentVariableModel", "AutoregressiveModel", "class_conditional", "infers_labels",
           "model.num_classes", "hasattr(", "isinstance(model", "isinstance(trained.model")
  for name in ("train.py", "evaluate.py", "sampling.py", "export.py", "apps"):
    paths = [root / name] if name.endswith(".py") else sorted((root / name).glob("*.py"))
    for path in paths:
      text = path.read_text(encoding="utf-8")
      assert not [k for k in kinds if k in text], path
