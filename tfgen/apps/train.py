"""tfgen-train: trains a model from a config file, resuming from the workdir's newest checkpoint.

  tfgen-train --config=configs/iwae.py --workdir=/tmp/run
  tfgen-train --config=configs/iwae.py:model=iwae,k=5 --config.train.batch_size=20 --workdir=...
  tfgen-train --config=configs/iwae.py:model=iwae --init_from=/tmp/vae_run --workdir=/tmp/iwae
"""

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
                                 "initialize this run's model (e.g. VAE -> IWAE).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from tfgen import train  # Imported after flag parsing so --help is fast.
  logging.set_verbosity(logging.INFO)
  result = train.train(_CONFIG.value, _WORKDIR.value, init_from=_INIT_FROM.value)
  print(f"trained to epoch {result.epoch}, step {result.step}; checkpoint {result.checkpoint}")


def run():
  common.run(main, "tfgen-train", __name__)


if __name__ == "__main__":
  run()
