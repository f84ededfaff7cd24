r"""tfgen-presets: the trained models shipped with tfgen (docs/presets.md).

  tfgen-presets                        # the table: name, model, data, test NLL, bits/dim, size
  tfgen-presets show NAME              # one preset's card (JSON)
  tfgen-presets make --workdir=/tmp/presets/vae1 --name=vae_binarized_mnist \
      --description="..." --training_command="tfgen-train --config=configs/iwae.py ..."

`make` turns a trained run into a preset in tfgen/presets/NAME/ (or --presets_dir): it measures
the NLL of the first 1,000 test images with float32 and float16-rounded weights, keeps float16
when the change is below 0.01 nats, measures the whole test split and writes the card.
Use a preset with tfgen.presets.from_preset(NAME), tfgen-sample --preset=NAME and
tfgen-evaluate --preset=NAME.
"""

from absl import app
from absl import flags

from tfgen.apps import common

_WORKDIR = flags.DEFINE_string("workdir", None, "make: the trained run.")
_NAME = flags.DEFINE_string("name", None, "make: the preset's name.")
_COMMAND = flags.DEFINE_string("training_command", None, "make: the exact command that trained "
                               "the run, for the card.")
_DESCRIPTION = flags.DEFINE_string("description", "", "make: one sentence for the card.")
_PRESETS_DIR = flags.DEFINE_string("presets_dir", None, "make: where to write (default: the "
                                   "package's tfgen/presets/).")
_DTYPE = flags.DEFINE_enum("weights_dtype", None, ["float16", "float32"], "make: store the "
                           "weights in this dtype whatever the measured float16 change.")
_ACTIONS = ("list", "show", "make")


def main(argv):
  args = argv[1:]
  action = args[0] if args else "list"
  if action not in _ACTIONS:
    raise app.UsageError(f"unknown action {action!r}; actions: {', '.join(_ACTIONS)}")
  if action in ("list", "make") and len(args) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(args[1:])}")
  from tfgen import errors  # pylint: disable=g-import-not-at-top
  from tfgen import presets  # pylint: disable=g-import-not-at-top
  if action == "list":
    print(presets.format_table())
    return
  if action == "show":
    if len(args) != 2:
      raise app.UsageError("show takes one preset name: tfgen-presets show NAME")
    import json  # pylint: disable=g-import-not-at-top
    print(json.dumps(presets.card(args[1]), indent=2))
    return
  if not _WORKDIR.value or not _NAME.value or not _COMMAND.value:
    raise errors.ConfigError("make needs --workdir, --name and --training_command")
  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  config_lib.load_from_workdir(_WORKDIR.value)  # No run there: refused before TensorFlow loads.
  common.import_keras()
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  presets.make_preset(_WORKDIR.value, _NAME.value, _COMMAND.value, _DESCRIPTION.value,
                      presets_dir=_PRESETS_DIR.value or presets.PRESETS_DIR,
                      force_dtype=_DTYPE.value)


def run():
  common.run(main, "tfgen-presets", __name__)


if __name__ == "__main__":
  run()
