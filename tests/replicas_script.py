"""Run by test_distribute.py in fresh processes: devices and strategies must be set up first.

  python tests/replicas_script.py mirrored OUT       # default strategy, then 2 logical CPU
                                                     # devices: 1 epoch, restarted for a 2nd
  TF_CONFIG=... python tests/replicas_script.py worker WORKDIR EPOCHS
                                                     # one MultiWorkerMirroredStrategy worker

Each prints one JSON line last: the trained weights and steps.
"""

import json
import sys

import tensorflow as tf

MODE = sys.argv[1]
if MODE == "mirrored":
  tf.config.set_logical_device_configuration(
      tf.config.list_physical_devices("CPU")[0],
      [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging
import numpy as np
import tensorflow_probability as tfp

from tfgen import config as config_lib
from tfgen import data
from tfgen import errors
from tfgen import models
from tfgen import train

tfd = tfp.distributions


@data.SOURCES.register("toy_binary")
def toy_binary(config):
  """40 fixed random binary 6x6 images in every split."""
  del config
  images = (np.random.RandomState(0).uniform(size=(40, 6, 6, 1)) < 0.3).astype(np.uint8)
  ds = tf.data.Dataset.from_tensor_slices({"image": images})
  return data.sources.RawData({s: ds for s in ("train", "validation", "test")},
                              {s: 40 for s in ("train", "validation", "test")}, (6, 6, 1),
                              "fixed")


@models.MODELS.register("fvsbn_test")
class FullyVisibleSigmoidBeliefNet(models.GenerativeModel):
  """p(x) = ∏_i Bernoulli(x_i | σ(b_i + Σ_{j<i} W_ij x_j)): deterministic and exact."""

  def __init__(self, image_shape):
    super().__init__(image_shape)
    d = self.event_size
    self.weight = self.add_weight(shape=(d, d), initializer="zeros", name="weight")
    self.bias = self.add_weight(shape=(d,), initializer="zeros", name="bias")
    self.mask = tf.constant(np.triu(np.ones((d, d), np.float32), k=1))

  def log_prob(self, batch, seed=None, num_importance_samples=None):
    flat = tf.reshape(self.images(batch), [-1, self.event_size])
    logits = flat @ (self.weight * self.mask) + self.bias
    return tfd.Independent(tfd.Bernoulli(logits=logits), 1).log_prob(flat)

  def loss(self, batch, seed, training=False):
    log_prob = self.log_prob(batch)
    return -log_prob, {"log_prob": log_prob}

  def bounds(self, batch, seed):
    return {"log_prob": self.log_prob(batch)}

  def sample(self, num, seed, mean=False):
    return tf.zeros((num,) + self.image_shape)


def toy_config(num_epochs=2):
  config = config_lib.base_config()
  config.model.name = "fvsbn_test"
  config.data.name = "toy_binary"
  config.train.batch_size = 8
  config.train.num_epochs = num_epochs
  config.train.learning_rate = 0.01
  config.train.steps_per_execution = 3
  config.train.checkpoint_every_epochs = 1
  config.train.eval_every_epochs = 0
  return config


def trained(result):
  """The weights this process holds (not re-read from the chief's checkpoint)."""
  return {"weights": [np.asarray(w.numpy()).tolist() for w in result.model.weights],
          "step": result.step,
          "loss": result.train_metrics["loss"], "checkpoint": result.checkpoint}


def main():
  out = {}
  if MODE == "mirrored":
    workdir = sys.argv[2]
    # One strategy of each kind for the whole process: a second MirroredStrategy in one process
    # would reuse the first one's collective keys.
    strategies = [("one", tf.distribute.get_strategy()), ("two", train.make_strategy("mirrored"))]
    for name, strategy in strategies:
      assert strategy.num_replicas_in_sync == (2 if name == "two" else 1)
      out[name] = {}
      for epochs in (1, 2):  # Stopped after one epoch, then started again for a second.
        result = train.train(toy_config(epochs), f"{workdir}/{name}", strategy=strategy,
                             show_progress=False)
        out[name][f"epochs{epochs}"] = trained(result)
    # A VQ-VAE's EMA codebook is updated from step statistics summed over the replicas.
    for name, strategy in strategies:
      config = toy_config(1)
      config.model = models.model_config("vqvae", num_codes=4, code_size=2, channels=4,
                                         num_residual=1, downsampling=1)
      result = train.train(config, f"{workdir}/vq_{name}", strategy=strategy,
                           show_progress=False)
      out[f"vqvae_{name}"] = trained(result)
      out[f"vqvae_{name}"]["codebook"] = result.model.quantizer.codebook.numpy().tolist()
    # XLA: the whole update on one replica, the loss and gradients on each of two.
    for name, strategy in strategies:
      config = toy_config(1)
      config.train.jit_compile = True
      out[f"xla_{name}"] = trained(train.train(config, f"{workdir}/xla_{name}",
                                               strategy=strategy, show_progress=False))
    # The tf.data pipeline (config.data.in_graph=False), distributed by the strategy.
    for name, strategy in strategies:
      config = toy_config(1)
      config.data.in_graph = False
      out[f"tfdata_{name}"] = trained(train.train(config, f"{workdir}/tfdata_{name}",
                                                  strategy=strategy, show_progress=False))
    config = toy_config()
    config.train.batch_size = 9  # Not a multiple of the 2 replicas.
    try:
      train.train(config, f"{workdir}/odd", strategy=strategy, show_progress=False)
    except errors.ConfigError as e:
      out["odd_batch_error"] = str(e)
  elif MODE == "worker":
    workdir, epochs = sys.argv[2], int(sys.argv[3])
    logging.set_verbosity(logging.INFO)
    strategy = train.make_strategy("auto")
    out["strategy"] = ("MultiWorkerMirroredStrategy"
                       if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                       else type(strategy).__name__)
    out["replicas"] = strategy.num_replicas_in_sync
    out["chief"] = train.is_chief(strategy)
    config = toy_config(epochs)
    # With early stopping: every worker keeps the best epoch's weights, the chief's stay.
    config.train.eval_every_epochs, config.train.early_stopping_epochs = 1, 5
    result = train.train(config, workdir, strategy=strategy, show_progress=False)
    out.update(trained(result))
    out["best"] = result.best
  else:
    raise SystemExit(f"unknown mode {MODE!r}")
  print(json.dumps(out), flush=True)


if __name__ == "__main__":
  main()
