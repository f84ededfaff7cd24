"""tfgen-train: trains a model from a config file, resuming from the workdir's newest checkpoint.

  tfgen-train --config=configs/iwae.py --workdir=/tmp/run
  tfgen-train --config=configs/iwae.py:model=iwae,k=5 --config.train.batch_size=20 --workdir=...
  tfgen-train --config=configs/iwae.py:model=iwae --init_from=/tmp/vae_run --workdir=/tmp/iwae
  tfgen-train --config=configs/iwae.py --strategy=mirrored --workdir=...    # every local GPU
  TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker",
      "index": 0}}' tfgen-train --config=configs/iwae.py --workdir=/shared/run   # on each host

See docs/scaling.md.
"""

import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from tfgen.apps import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with a variant: configs/iwae.py:k=50,layers=2. "
    "Fields are overridden with --config.FIELD=VALUE.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events, "
                               "PNGs and the config; an existing run there is resumed.")
_INIT_FROM = flags.DEFINE_string("init_from", None, "Workdir of another run whose newest weights "
                                 "(its best/ ones if it used early stopping) initialize this "
                                 "run's model (e.g. VAE -> IWAE).")
_STRATEGY = flags.DEFINE_enum(
    "strategy", "auto", ["auto", "one_device", "mirrored", "multi_worker"],
    "tf.distribute strategy. auto: MultiWorkerMirroredStrategy when TF_CONFIG names several "
    "workers, MirroredStrategy when several GPUs are visible, else one device. mirrored: every "
    "local GPU (every logical CPU device without GPUs). multi_worker: configured by TF_CONFIG.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 1, "Split the CPU into this many logical devices (to try --strategy=mirrored "
    "on a machine without GPUs).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _CPU_DEVICES.value < 1:
    raise app.UsageError(f"--cpu_devices must be >= 1, got {_CPU_DEVICES.value}")
  common.import_keras()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfgen import train  # Imported after flag parsing so --help is fast.
  from tfgen import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  if _CPU_DEVICES.value > 1:
    # Before anything else touches TensorFlow's devices.
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration() for _ in range(_CPU_DEVICES.value)])
  # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
  strategy = train.make_strategy(_STRATEGY.value)
  logging.set_verbosity(logging.INFO)
  if strategy.num_replicas_in_sync > 1:
    logging.info("%s with %d replicas in sync", type(strategy).__name__,
                 strategy.num_replicas_in_sync)
  result = train.train(_CONFIG.value, _WORKDIR.value, init_from=_INIT_FROM.value,
                       strategy=strategy)
  print(f"trained to epoch {result.epoch}, step {result.step}; checkpoint {result.checkpoint}")
  if result.best:  # Early stopping: what evaluation, sampling and export will read.
    best_dir = os.path.join(_WORKDIR.value, workdir_lib.BEST_DIR)
    print(f"{'stopped early; ' if result.stopped_early else ''}best validation "
          f"{result.best['metric']} {result.best['value']:.3f} after epoch "
          f"{result.best['epoch']}, weights in {best_dir}")


def run():
  common.run(main, "tfgen-train", __name__)


if __name__ == "__main__":
  run()
