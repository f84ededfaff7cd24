"""tfgen-tune: hyperparameter search over a config's tuning.space with keras-tuner.

  tfgen-tune --config=configs/iwae.py --tuner=bayesian --max_trials=20 --workdir=/tmp/tune
  tfgen-tune --config=configs/iwae.py:tiny --tuner=random --max_trials=6 --workdir=/tmp/tiny
  tfgen-train --config=/tmp/tune/best_config.py --workdir=/tmp/best

Every trial trains the config with its values through tfgen-train's loop in
WORKDIR/trials/ID/. Starting the same command again continues the search (finished trials are
not repeated; a larger --max_trials extends it). At the end: a table of trials (also
WORKDIR/trials.csv), a TensorBoard HParams view (tensorboard --logdir=WORKDIR/hparams) and
WORKDIR/best_config.py. See docs/tuning.md.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from tfgen.apps import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file with a tuning.space, optionally with a variant: "
    "configs/iwae.py:tiny. Fields are overridden with --config.FIELD=VALUE, including the "
    "space: --config.tuning.space.learning_rate.max=0.1.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the search; an existing search "
                               "there is continued.")
_TUNER = flags.DEFINE_enum("tuner", "bayesian", ["bayesian", "hyperband", "random"],
                           "keras-tuner oracle. hyperband hands out budgets of up to "
                           "config.train.num_epochs epochs.")
_MAX_TRIALS = flags.DEFINE_integer("max_trials", 10, "Trials in all, counting those of earlier "
                                   "starts of the same search.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the oracle's draws.")
_MAX_FAILED = flags.DEFINE_integer("max_consecutive_failed_trials", 3,
                                   "Stop the search after this many failed trials in a row.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from tfgen import tune  # Imported after flag parsing so --help is fast.
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  try:
    rows = tune.search(config, _WORKDIR.value, tuner=_TUNER.value, max_trials=_MAX_TRIALS.value,
                       seed=_SEED.value, max_consecutive_failed_trials=_MAX_FAILED.value)
  except KeyboardInterrupt as e:  # Reported in one line by common.run, with this note.
    e.add_note(f"the same command continues the search in {_WORKDIR.value}")
    raise
  print()
  print(tune.format_table(rows, tune.objective_name(config)))
  print(f"\ntable: {_WORKDIR.value}/{tune.TABLE_CSV}; HParams: tensorboard "
        f"--logdir={_WORKDIR.value}/{tune.HPARAMS_DIR}; best: {_WORKDIR.value}/"
        f"{tune.BEST_CONFIG}")


def run():
  common.run(main, "tfgen-tune", __name__)


if __name__ == "__main__":
  run()
