r"""Benchmark: training throughput and sampling time of the autoregressive models (and of the
VQ-VAE's two stages, whose prior is one).

For each config given, trains `--steps` steps at `--batch_size` through the common training loop
(after a warm-up call that traces) and reports examples per second, then times `--num_samples`
samples (after a warm-up draw that traces the sampler).

  python bench/autoregressive.py --manual_dir=../shared/data/binarized_mnist \
      --configs=nade,made,pixelcnn,gated_pixelcnn --num_samples=4
  python bench/autoregressive.py --manual_dir=../shared/data/binarized_mnist \
      --configs=pixelsnail,vqvae,vqvae:stage=2 --overrides=model.stage1_workdir=/tmp/vq1
"""

import importlib.util
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

_MANUAL_DIR = flags.DEFINE_string("manual_dir", "", "Folder of the binarized MNIST .amat files.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "TFDS data_dir (default: TFDS's).")
_CONFIGS = flags.DEFINE_list("configs", ["nade", "made", "pixelcnn", "gated_pixelcnn"],
                             "Config files under configs/, each optionally NAME:VARIANT.")
_BATCH = flags.DEFINE_integer("batch_size", 100, "Training batch size.")
_STEPS = flags.DEFINE_integer("steps", 50, "Timed training steps.")
_SAMPLES = flags.DEFINE_integer("num_samples", 4, "Images per timed sampling call.")
_OVERRIDES = flags.DEFINE_list("overrides", [], "Config fields to set, KEY=VALUE each, e.g. "
                               "model.stage1_workdir=/tmp/vq1 for a VQ-VAE prior.")


def _config(spec):
  name, _, variant = spec.partition(":")
  path = pathlib.Path(__file__).resolve().parents[1] / "configs" / f"{name}.py"
  module_spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant)


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfgen import data
  from tfgen import models
  from tfgen import optimizers
  from tfgen import seeding
  from tfgen import train

  for spec in _CONFIGS.value:
    config = _config(spec)
    config.data.manual_dir, config.data.data_dir = _MANUAL_DIR.value, _DATA_DIR.value
    config.train.batch_size = _BATCH.value
    for override in _OVERRIDES.value:
      key, _, value = override.partition("=")
      config.update_from_flattened_dict({key: value})
    loaded = data.load(config.data, _BATCH.value, splits=("train",))
    model = models.build(config.model, loaded.info)
    model.build_for_images()
    optimizer = optimizers.build(config.train)
    trainer = train.Trainer(model, optimizer, tf.distribute.get_strategy(), _BATCH.value, 0)
    iterator = iter(loaded.train.repeat())
    trainer.train_steps(iterator, 2)  # Traces.
    start = time.perf_counter()
    trainer.train_steps(iterator, _STEPS.value)
    seconds = time.perf_counter() - start
    examples_per_second = _STEPS.value * _BATCH.value / seconds
    sample = tf.function(lambda seed: model.sample(_SAMPLES.value, seed))
    sample(seeding.as_seed(0)).numpy()  # Traces.
    start = time.perf_counter()
    sample(seeding.as_seed(1)).numpy()
    sample_seconds = time.perf_counter() - start
    parameters = sum(int(tf.size(w)) for w in model.trainable_weights)
    print(f"{spec}: {parameters:,} parameters; training {examples_per_second:,.0f} examples/s "
          f"(batch {_BATCH.value}, {_STEPS.value} steps); {_SAMPLES.value} samples in "
          f"{sample_seconds:.2f} s", flush=True)


if __name__ == "__main__":
  app.run(main)
