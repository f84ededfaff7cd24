"""tfgen-sample: draws images from a trained run or an exported SavedModel as a PNG grid.

  tfgen-sample --workdir=/tmp/run --num=64 --out=samples.png
  tfgen-sample --saved_model=/tmp/run_savedmodel --num=64 --out=grid.png
  tfgen-sample --workdir=/tmp/pixelcnn --num=16 --inpaint --out=inpainted.png
  tfgen-sample --workdir=/tmp/gated --num=16 --label=3 --out=threes.png
  tfgen-sample --workdir=/tmp/ssvae --num=100 --out=classes.png   # rows: classes, columns: z
  tfgen-sample --workdir=/tmp/ssvae --mode=analogies --num=10 --out=analogies.png
  tfgen-sample --workdir=/tmp/vsc --mode=traversal --num_images=4 --out=traversal.png
  tfgen-sample --workdir=/tmp/vsc --mode=conditional --label=3 --num=8 --out=threes.png
  tfgen-sample --workdir=/tmp/vae_cppn --mode=hires_samples --scale=4 --out=x4.png  # 112x112
  tfgen-sample --preset=vae_binarized_mnist --num=64 --out=x.png   # a model shipped with tfgen
  tfgen-sample --list_presets                                       # the presets (tfgen-presets)
"""

from absl import app
from absl import flags
from absl import logging

from tfgen.apps import common

_WORKDIR = flags.DEFINE_string("workdir", None, "Working directory of a training run.")
_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "A SavedModel written by tfgen-export.")
_PRESET = flags.DEFINE_string("preset", None, "A trained model shipped with tfgen "
                              "(--list_presets lists them).")
_LIST_PRESETS = flags.DEFINE_bool("list_presets", False, "Print the presets' table and exit.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "--preset with a mode that starts from "
                                  "test images: where its data set's files are.")
_NUM = flags.DEFINE_integer("num", 64, "Number of images.", lower_bound=1)
_OUT = flags.DEFINE_string("out", "samples.png", "PNG file to write.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed; the same seed gives the same images.")
_COLUMNS = flags.DEFINE_integer("columns", 0, "Grid columns (0: square grid).", lower_bound=0)
_INPAINT = flags.DEFINE_bool("inpaint", False, "Autoregressive models: complete the bottom half "
                             "of test images (rows of originals and completions).")
_LABEL = flags.DEFINE_integer("label", -1, "Class-conditional models: the class to draw "
                              "(-1: every class in turn).")
_MODE = flags.DEFINE_string("mode", "samples", "A picture the run's model offers: samples (every "
                            "model); traversal (latent models: sweep the most used latent "
                            "dimensions of test images); inpaint (autoregressive models, as "
                            "--inpaint); conditional (VSC: keep the dimensions a test image uses "
                            "and redraw their values); analogies (the semi-supervised VAE: each "
                            "test image's style decoded with every class); hires_samples and "
                            "hires_reconstructions (a VAE with the cppn decoder: decoded at "
                            "--scale times the resolution); and whatever else the model declares "
                            "(an unknown mode lists them).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 4, "traversal/conditional: test images to "
                                   "encode.", lower_bound=1)
_MEAN = flags.DEFINE_bool("mean", True, "Show pixel probabilities of the last conditional "
                          "rather than a binary draw.")
_SCALE = flags.DEFINE_float("scale", 0.0, "Modes that render at any resolution (hires_samples, "
                            "hires_reconstructions): times the training resolution (0: the "
                            "mode's default, 4).", lower_bound=0.0)
flags.mark_flags_as_mutual_exclusive(["workdir", "saved_model", "preset"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _LIST_PRESETS.value:
    from tfgen import presets  # pylint: disable=g-import-not-at-top
    print(presets.format_table())
    return
  if not (_WORKDIR.value or _SAVED_MODEL.value or _PRESET.value):
    raise app.UsageError("give one of --workdir, --saved_model or --preset (--list_presets "
                         "lists the presets)")
  if _PRESET.value:
    from tfgen import errors, presets  # pylint: disable=g-import-not-at-top
    presets.card(_PRESET.value)  # An unknown preset is refused before TensorFlow's import.
    if _SCALE.value or _INPAINT.value:
      raise errors.ConfigError("--scale and --inpaint need --workdir; with --preset use "
                               "--mode=NAME")
    common.import_keras()
    logging.set_verbosity(logging.WARNING)
    path = presets.sample_grid(_PRESET.value, _NUM.value, _OUT.value, seed=_SEED.value,
                               num_columns=_COLUMNS.value, mean=_MEAN.value, mode=_MODE.value,
                               label=_LABEL.value, manual_dir=_MANUAL_DIR.value)
    print(f"wrote {_MODE.value} grid to {path}")
    return
  if not _SAVED_MODEL.value:
    from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
    # A workdir without a run is refused before TensorFlow's import (seconds).
    config_lib.load_from_workdir(_WORKDIR.value)
  common.import_keras()
  from tfgen import sampling  # Imported after flag parsing so --help is fast.
  logging.set_verbosity(logging.WARNING)
  if _SAVED_MODEL.value:
    if _SCALE.value:
      from tfgen import errors  # pylint: disable=g-import-not-at-top
      raise errors.ConfigError("--scale needs --workdir (a SavedModel serves the training "
                               "resolution only)")
    path = sampling.saved_model_grid(_SAVED_MODEL.value, _NUM.value, _OUT.value, seed=_SEED.value,
                                     num_columns=_COLUMNS.value, mean=_MEAN.value)
  else:
    path = sampling.sample_grid(_WORKDIR.value, _NUM.value, _OUT.value, seed=_SEED.value,
                                num_columns=_COLUMNS.value, mean=_MEAN.value,
                                inpaint=_INPAINT.value, label=_LABEL.value, mode=_MODE.value,
                                num_images=_NUM_IMAGES.value, scale=_SCALE.value)
  print(f"wrote {_MODE.value} grid to {path}")


def run():
  common.run(main, "tfgen-sample", __name__)


if __name__ == "__main__":
  run()
