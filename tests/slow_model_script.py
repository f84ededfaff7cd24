"""Run by test_reliability.py in a fresh process: tfgen-train on a model whose every train step
takes STEP_SECONDS (a sleep inside the step), standing in for a large model on a small machine.

  python tests/slow_model_script.py STEP_SECONDS TFGEN_TRAIN_FLAGS...
"""

import sys
import time

import tensorflow as tf

from tfgen.apps import train as train_app
from tfgen.models import vae

STEP_SECONDS = float(sys.argv[1])
_loss = vae.VAE.loss


def _slow_loss(self, batch, seed, training=False):
  loss, metrics = _loss(self, batch, seed, training)
  pause = tf.py_function(lambda: time.sleep(STEP_SECONDS) or 0.0, [], tf.float32)
  return loss + 0.0 * pause, metrics


vae.VAE.loss = _slow_loss
sys.argv = ["tfgen-train"] + sys.argv[2:]
train_app.run()
