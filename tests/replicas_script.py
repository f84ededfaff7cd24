"""Run by test_distribute.py in a fresh process: 2 logical CPUs must be set before TF starts."""

import json
import sys

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow_probability as tfp

from tfgen import config as config_lib
from tfgen import data
from tfgen import evaluate
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

  @classmethod
  def from_config(cls, config, info):
    del config
    return cls(info.image_shape)

  def log_prob(self, x, seed=None, num_importance_samples=None):
    flat = tf.reshape(self.check_images(x), [-1, self.event_size])
    logits = flat @ (self.weight * self.mask) + self.bias
    return tfd.Independent(tfd.Bernoulli(logits=logits), 1).log_prob(flat)

  def loss(self, batch, seed, training=False):
    log_prob = self.log_prob(batch["image"])
    return -log_prob, {"log_prob": log_prob}

  def bounds(self, x, seed):
    return {"log_prob": self.log_prob(x)}

  def sample(self, num, seed, mean=False):
    return tf.zeros((num,) + self.image_shape)


def main(workdir):
  config = config_lib.base_config()
  config.model.name = "fvsbn_test"
  config.data.name = "toy_binary"
  config.train.batch_size = 8
  config.train.num_epochs = 2
  config.train.learning_rate = 0.01
  config.train.steps_per_execution = 3
  config.train.eval_every_epochs = 0
  weights = {}
  for name, strategy in [("one", tf.distribute.get_strategy()),
                         ("two", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]:
    assert strategy.num_replicas_in_sync == (2 if name == "two" else 1)
    result = train.train(config, f"{workdir}/{name}", strategy=strategy, show_progress=False)
    model = evaluate.load_trained(f"{workdir}/{name}", splits=()).model
    weights[name] = [w.numpy().tolist() for w in model.weights]
    weights[name + "_step"] = result.step
  print(json.dumps(weights))


if __name__ == "__main__":
  main(sys.argv[1])
