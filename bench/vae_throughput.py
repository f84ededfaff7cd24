r"""Benchmark: train the one-layer VAE on binarized MNIST, then evaluate it.

Prints training examples per second, evaluation importance samples per second and the test NLL
reached. Record what it prints, with the command, in docs/results.md.

  python bench/vae_throughput.py --manual_dir=../shared/data/binarized_mnist --epochs=5 \
      --num_importance_samples=1000
"""

import importlib.util
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

_MANUAL_DIR = flags.DEFINE_string("manual_dir", "", "Folder of the binarized MNIST .amat files.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "TFDS data_dir (default: TFDS's).")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Training epochs.")
_BATCH = flags.DEFINE_integer("batch_size", 100, "Training batch size.")
_K = flags.DEFINE_integer("num_importance_samples", 5000, "k of the test NLL.")
_WORKDIR = flags.DEFINE_string("workdir", "", "Where to train (default: a temporary folder).")
_VARIANT = flags.DEFINE_string("variant", "", "Variant of configs/iwae.py.")


def main(argv):
  del argv
  from tfgen import evaluate  # pylint: disable=g-import-not-at-top
  from tfgen import train

  path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "iwae.py"
  spec = importlib.util.spec_from_file_location("iwae_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(_VARIANT.value)
  config.data.manual_dir = _MANUAL_DIR.value
  config.data.data_dir = _DATA_DIR.value
  config.train.num_epochs = _EPOCHS.value
  config.train.batch_size = _BATCH.value
  config.train.eval_every_epochs = 0
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="tfgen_bench_")

  start = time.perf_counter()
  result = train.train(config, workdir, show_progress=False)
  train_seconds = time.perf_counter() - start
  examples = result.step * config.train.batch_size
  # The TensorBoard scalar excludes start-up; this figure includes data loading and tracing.
  print(f"train: {result.epoch} epochs, {examples} examples in {train_seconds:.1f} s "
        f"= {examples / train_seconds:,.0f} examples/s (batch {config.train.batch_size}, "
        "whole run including start-up and per-epoch shuffles)")
  results = evaluate.evaluate(workdir, num_importance_samples=_K.value, show_progress=False)
  samples = results["num_examples"] * _K.value
  print(f"evaluate: k={_K.value} on {results['num_examples']} test images in "
        f"{results['seconds']:.1f} s = {samples / results['seconds']:,.0f} importance samples/s, "
        f"peak memory {results['peak_memory_mb']:.0f} MB")
  print(f"test NLL (k={_K.value}): {results['nll_nats']:.2f} nats; ELBO {results['elbo']:.2f}; "
        f"active units {results['active_units']}")


if __name__ == "__main__":
  app.run(main)
