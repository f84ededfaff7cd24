"""tfgen-evaluate: test NLL (IWAE bound at k=5000 by default), ELBO, active units and, on
labelled data, latent-code classification accuracy of a run.

  tfgen-evaluate --workdir=/tmp/run
  tfgen-evaluate --workdir=/tmp/run --num_importance_samples=1000 --split=validation

A preset (a trained model shipped with tfgen, docs/presets.md) is evaluated under its card's
protocol, on its data set read from --manual_dir (or $TFGEN_MANUAL_DIR) as training reads it:

  tfgen-evaluate --preset=vae_binarized_mnist --manual_dir=../shared/data/binarized_mnist
  tfgen-evaluate --preset=vae_binarized_mnist --num_examples=1000   # the card's check figure

A run that is still training can be evaluated: its newest complete checkpoint is read, a warning
line names it and the training's process, and the table's `checkpoint` and `step` say which.
"""

from absl import app
from absl import flags
from absl import logging

from tfgen.apps import common

_WORKDIR = flags.DEFINE_string("workdir", None, "Working directory of a training run.")
_PRESET = flags.DEFINE_string("preset", None, "A trained model shipped with tfgen "
                              "(tfgen-presets lists them).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "--preset: where its data set's files are "
                                  "(default: $TFGEN_MANUAL_DIR, else TFDS's own).")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", None, "--preset: only the first N examples "
                                     "of the split (the card's check: 1000).")
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
flags.mark_flags_as_mutual_exclusive(["workdir", "preset"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not _WORKDIR.value and not _PRESET.value:
    raise app.UsageError("give --workdir (a training run) or --preset (tfgen-presets lists them)")
  if _PRESET.value:
    _evaluate_preset()
    return
  if _MANUAL_DIR.value is not None or _NUM_EXAMPLES.value is not None:
    raise app.UsageError("--manual_dir and --num_examples go with --preset; a run reads its "
                         "data where it was trained")
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


def _evaluate_preset():
  from tfgen import presets  # pylint: disable=g-import-not-at-top
  presets.card(_PRESET.value)  # An unknown preset is refused before TensorFlow's import.
  common.import_keras()
  from tfgen import evaluate  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  results = presets.evaluate(_PRESET.value, manual_dir=_MANUAL_DIR.value,
                             num_examples=_NUM_EXAMPLES.value, classify_codes=_CLASSIFY.value,
                             num_importance_samples=_K.value, split=_SPLIT.value,
                             batch_size=_BATCH.value, chunk_size=_CHUNK.value)
  print(evaluate.format_table(results))


def run():
  common.run(main, "tfgen-evaluate", __name__)


if __name__ == "__main__":
  run()
