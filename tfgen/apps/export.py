"""tfgen-export: writes a run's newest model as a SavedModel with sample/log_prob/... signatures.

  tfgen-export --workdir=/tmp/run --out=/tmp/run_savedmodel
  tfgen-export --workdir=/tmp/run --out=/tmp/big --max_batch_size=50000 --max_samples=1000
  saved_model_cli show --dir=/tmp/run_savedmodel --all

The SavedModel refuses requests beyond the --max_* limits (see docs/serving.md). It is written
into a temporary folder beside --out (OUT.partial-HOST-PID) and renamed to --out once complete,
so --out never holds part of one, even after kill -9; the next export to the same --out removes
a temporary folder that a killed export left.
"""

from absl import app
from absl import flags
from absl import logging

from tfgen.apps import common

_WORKDIR = flags.DEFINE_string("workdir", None, "Working directory of a training run.")
_OUT = flags.DEFINE_string("out", None, "Folder to write the SavedModel to (new or empty); "
                           "checked before the model is loaded.")
# Defaults None, meaning tfgen.export's own (named in the help), so that --help need not import
# TensorFlow; a value < 1 is refused by tfgen.export with a one-line error.
_MAX_BATCH_SIZE = flags.DEFINE_integer(
    "max_batch_size", None, "Most images (or latents) one call of log_prob, encode, decode, "
    "classify or inpaint may take; larger calls are refused. Default 10000.")
_MAX_SAMPLES = flags.DEFINE_integer(
    "max_samples", None, "Most images one call of sample (num_samples) or sample_labels may "
    "draw. Default 10000.")
_MAX_IMPORTANCE_SAMPLES = flags.DEFINE_integer(
    "max_importance_samples", None, "Largest num_importance_samples log_prob accepts "
    "(latent-variable models). Default 100000.")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.import_keras()
  from tfgen import export  # Imported after flag parsing so --help is fast.
  logging.set_verbosity(logging.WARNING)
  limits = {flag.name: flag.value for flag in (_MAX_BATCH_SIZE, _MAX_SAMPLES,
                                               _MAX_IMPORTANCE_SAMPLES) if flag.value is not None}
  description = export.export(_WORKDIR.value, _OUT.value, **limits)
  print(f"wrote {_OUT.value}: model {description['model']} at step {description['step']}, "
        f"signatures {', '.join(description['signatures'])}")


def run():
  common.run(main, "tfgen-export", __name__)


if __name__ == "__main__":
  run()
