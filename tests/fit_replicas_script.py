"""Run by test_fitting.py in a fresh process (logical devices must be set up first): one `fit`
step of NADE (exact, seed-free) and of a VQ-VAE (EMA codebook statistics) on one device and
under MirroredStrategy on 2 logical CPU devices, from the same weights and global batch; prints
one JSON line: the largest weight difference per model."""

import json
import sys

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

# pylint: disable=g-import-not-at-top,wrong-import-position
import keras
import numpy as np

import tfgen

BATCH = 8


def fitted(name, weights, strategy, **hyperparameters):
  with strategy.scope():
    model = tfgen.build(name, image_shape=(8, 8, 1), **hyperparameters)
    if weights is not None:
      model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), seed=4)
  images = (np.random.RandomState(0).uniform(size=(BATCH, 8, 8, 1)) < 0.4).astype("float32")
  history = model.fit(tf.data.Dataset.from_tensors({"image": images}), epochs=1, verbose=0)
  return model, history.history["loss"][0]


SIZES = {"nade": dict(hidden_size=16),
         "vqvae": dict(num_codes=8, code_size=4, channels=8, num_residual=1, downsampling=1)}
differences = {}
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
for name in sys.argv[1:] or SIZES:
  sizes = SIZES[name]
  start = tfgen.build(name, image_shape=(8, 8, 1), **sizes).get_weights()
  one, one_loss = fitted(name, start, tf.distribute.get_strategy(), **sizes)
  two, two_loss = fitted(name, start, mirrored, **sizes)
  moved = max(float(np.abs(a - b).max()) for a, b in zip(start, one.get_weights()))
  differences[name] = {
      "replicas": mirrored.num_replicas_in_sync,
      "weights": max(float(np.abs(a - b).max())
                     for a, b in zip(one.get_weights(), two.get_weights())),
      "moved": moved, "loss": [one_loss, two_loss]}
print(json.dumps(differences))
