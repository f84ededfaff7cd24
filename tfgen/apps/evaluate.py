"""tfgen-evaluate: test NLL (IWAE bound at k=5000 by default), ELBO, active units and, on
labelled data, latent-code classification accuracy of a run.

  tfgen-evaluate --workdir=/tmp/run
  tfgen-evaluate --workdir=/tmp/run --num_importance_samples=1000 --split=validation

A run that is still training can be evaluated: its newest complete checkpoint is read, a warning
line names it and the training's process, and the table's `checkpoint` and `step` say which.
"""

from absl import app
from absl import flags
from absl import logging

from tfgen.apps import common

_WORKDIR = flags.DEFINE_string("workdir", None, "Working directory of a training run.")
_K = flags.DEFINE_integer("num_importance_samples", None,
                          "Importance samples per image (default: the config's, 5000).")
_SPLIT = flags.DEFINE_enum("split", None, ["train", "validation", "test"],
                           "Split to evaluate (default: the config's, test).")
_BATCH = flags.DEFINE_integer("batch_size", None, "Images per batch (default: the config's).")
_CHUNK = flags.DEFINE_integer("chunk_size", None, "Importance samples drawn at once per image; "
                              "bounds memory (default: the config's).")
_CLASSIFY = flags.DEFINE_bool("classify_codes", True, "Latent-variable models on labelled data: "
                              "fit a logistic regression on training-set codes and report its "
                              "accuracy on the evaluated split.")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  # A workdir without a run is refused before TensorFlow's import (seconds).
  config_lib.load_from_workdir(_WORKDIR.value)
  common.import_keras()
  from tfgen import evaluate  # Imported after flag parsing so --help is fast.
  logging.set_verbosity(logging.WARNING)
  results = evaluate.evaluate(_WORKDIR.value, num_importance_samples=_K.value, split=_SPLIT.value,
                              batch_size=_BATCH.value, chunk_size=_CHUNK.value,
                              classify_codes=_CLASSIFY.value)
  print(evaluate.format_table(results))


def run():
  common.run(main, "tfgen-evaluate", __name__)


if __name__ == "__main__":
  run()
