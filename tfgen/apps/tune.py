"""tfgen-tune: hyperparameter search over a config's tuning.space with keras-tuner.

  tfgen-tune --config=configs/iwae.py --tuner=bayesian --max_trials=20 --workdir=/tmp/tune
  tfgen-tune --config=configs/iwae.py:tiny --tuner=random --max_trials=6 --workdir=/tmp/tiny
  tfgen-train --config=/tmp/tune/best_config.py --workdir=/tmp/best

Every trial trains the config with its values through tfgen-train's loop in
WORKDIR/trials/ID/. Starting the same command again continues the search (finished trials are
not repeated; a larger --max_trials extends it). At the end: a table of trials (also
WORKDIR/trials.csv), a TensorBoard HParams view (tensorboard --logdir=WORKDIR/hparams) and
WORKDIR/best_config.py. See docs/tuning.md.

Over several processes or machines (keras-tuner's variables; the same flags for every process,
and a WORKDIR that all of them see):

  KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 \
      tfgen-tune --config=... --tuner=random --max_trials=20 --workdir=/shared/tune
  KERASTUNER_TUNER_ID=tuner0 KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 \
      tfgen-tune --config=... --tuner=random --max_trials=20 --workdir=/shared/tune

The chief serves the search and trains nothing; it exits once every trial is done, after writing
the table and best_config.py. Each worker trains the trials it is handed on its own devices and
exits when none are left.
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
_ORACLE_TIMEOUT = flags.DEFINE_float(
    "oracle_timeout", 600, "A worker of a search over several processes (KERASTUNER_TUNER_ID "
    "other than chief): seconds to wait for the chief to answer, at the start and at each "
    "request later.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _ORACLE_TIMEOUT.value <= 0:
    raise app.UsageError(f"--oracle_timeout must be > 0, got {_ORACLE_TIMEOUT.value}")
  common.import_keras()
  from tfgen import tune  # Imported after flag parsing so --help is fast.
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  role = tune.process_role()
  try:
    rows = tune.search(config, _WORKDIR.value, tuner=_TUNER.value, max_trials=_MAX_TRIALS.value,
                       seed=_SEED.value, max_consecutive_failed_trials=_MAX_FAILED.value,
                       oracle_timeout=_ORACLE_TIMEOUT.value)
  except KeyboardInterrupt as e:  # Reported in one line by common.run, with this note.
    e.add_note(f"the same command continues the search in {_WORKDIR.value}")
    raise
  if role.is_worker:
    ran = ", ".join(f"{r['trial']} ({r['status']})" for r in rows) or "none"
    print(f"{role.tuner_id}: the chief has no trial left; this worker ran trials: {ran}. The "
          f"chief writes {_WORKDIR.value}/{tune.TABLE_CSV} and {tune.BEST_CONFIG}.")
    return
  print()
  print(tune.format_table(rows, tune.objective_name(config)))
  print(f"\ntable: {_WORKDIR.value}/{tune.TABLE_CSV}; HParams: tensorboard "
        f"--logdir={_WORKDIR.value}/{tune.HPARAMS_DIR}; best: {_WORKDIR.value}/"
        f"{tune.BEST_CONFIG}")


def run():
  common.run(main, "tfgen-tune", __name__)


if __name__ == "__main__":
  run()
