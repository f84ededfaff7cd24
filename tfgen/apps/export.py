"""tfgen-export: writes a run's newest model as a SavedModel with sample/log_prob/... signatures.

  tfgen-export --workdir=/tmp/run --out=/tmp/run_savedmodel
  saved_model_cli show --dir=/tmp/run_savedmodel --all
"""

from absl import app
from absl import flags
from absl import logging

from tfgen.apps import common

_WORKDIR = flags.DEFINE_string("workdir", None, "Working directory of a training run.")
_OUT = flags.DEFINE_string("out", None, "Folder to write the SavedModel to (new or empty).")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from tfgen import export  # Imported after flag parsing so --help is fast.
  logging.set_verbosity(logging.WARNING)
  description = export.export(_WORKDIR.value, _OUT.value)
  print(f"wrote {_OUT.value}: model {description['model']} at step {description['step']}, "
        f"signatures {', '.join(description['signatures'])}")


def run():
  common.run(main, "tfgen-export", __name__)


if __name__ == "__main__":
  run()
