"""tfgen-vsc-study: VSC against the VAE as the latent size grows (docs/vsc.md).

  tfgen-vsc-study run --workdir=/tmp/vsc_study --data=fashion_mnist \
      --manual_dir=../shared/data/fashion_mnist
  tfgen-vsc-study run --workdir=/tmp/vsc_study --data=mnist_5k \
      --manual_dir=../shared/data/mnist_5k
  tfgen-vsc-study plot --workdir=/tmp/vsc_study --out_dir=docs/images \
      --results_md=docs/results.md

`run` trains and evaluates every missing point of the grid (latent sizes x alphas, alpha=1 the
VAE) in WORKDIR/DATA/NAME/, skipping evaluated points and resuming unfinished ones; `plot` draws
test ELBO and latent-code accuracy against the latent size from the runs' evaluation files and,
with --results_md, writes their table between the tfgen-vsc-study markers.
"""

from absl import app
from absl import flags
from absl import logging

from tfgen.apps import common

VERBS = ("run", "plot")

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the study's runs (WORKDIR/DATA/NAME/).")
_DATA = flags.DEFINE_string("data", "fashion_mnist", "run: fashion_mnist or mnist_5k.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "run: the data set's files "
                                  "(config.data.manual_dir), e.g. ../shared/data/fashion_mnist.")
_LATENTS = flags.DEFINE_list("latents", None, "run: latent sizes (default 10,25,50,100,200).")
_ALPHAS = flags.DEFINE_list("alphas", None, "run: prior activities; 1 is the VAE "
                            "(default 1,0.01,0.2,0.5).")
_EPOCHS = flags.DEFINE_integer("epochs", None, "run: epochs per point (default 12 on "
                               "fashion_mnist, 60 on mnist_5k).")
_OVERRIDE = flags.DEFINE_multi_string("override", [], "run: FIELD=VALUE set in every point's "
                                      "config (repeatable).")
_OUT_DIR = flags.DEFINE_string("out_dir", "docs/images", "plot: where the two PNGs go.")
_RESULTS_MD = flags.DEFINE_string("results_md", None, "plot: also write the table between "
                                  "<!-- tfgen-vsc-study begin/end --> in this Markdown file.")
_PROGRESS = flags.DEFINE_bool("progress", True, "run: progress bars.")


def main(argv):
  from tfgen import vsc_study  # After flag parsing, so --help is fast.
  args = argv[1:]
  if len(args) > 1 and args[0] in VERBS:
    raise app.UsageError(f"unexpected arguments: {' '.join(args[1:])} (tfgen-vsc-study takes "
                         "one of run, plot)")
  if len(args) != 1 or args[0] not in VERBS:
    raise vsc_study.StudyError("usage: tfgen-vsc-study run --workdir=ROOT --data=DATA "
                               "--manual_dir=DIR | plot --workdir=ROOT")
  if not _WORKDIR.value:
    raise vsc_study.StudyError(f"tfgen-vsc-study {args[0]} needs --workdir=ROOT")
  if args[0] == "plot":
    for path in vsc_study.plot(_WORKDIR.value, _OUT_DIR.value):
      print(f"wrote {path}")
    if _RESULTS_MD.value:
      vsc_study.write_table(_WORKDIR.value, _RESULTS_MD.value)
      print(f"wrote the table into {_RESULTS_MD.value}")
    else:
      print(vsc_study.table(_WORKDIR.value))
    return

  def numbers(values, kind, default):
    if values is None:
      return default
    try:
      return [kind(v) for v in values]
    except ValueError as e:
      raise vsc_study.StudyError(f"not a list of numbers: {','.join(values)}") from e

  from tfgen import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir_lib.make_workdir(_WORKDIR.value)
  common.import_keras()  # Also says which devices the points train on.
  from tfgen import reproduce  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  try:
    done = vsc_study.run(_WORKDIR.value, _DATA.value, _MANUAL_DIR.value,
                         latents=numbers(_LATENTS.value, int, vsc_study.LATENTS),
                         alphas=numbers(_ALPHAS.value, float, vsc_study.ALPHAS),
                         epochs=_EPOCHS.value,
                         overrides=reproduce.parse_overrides(_OVERRIDE.value),
                         show_progress=_PROGRESS.value)
  except KeyboardInterrupt as e:  # Reported in one line by common.run, with this note.
    e.add_note(f"the same command resumes the unfinished point in {_WORKDIR.value}")
    raise
  print(f"{len(done)} points trained and evaluated; tfgen-vsc-study plot "
        f"--workdir={_WORKDIR.value} draws the figures")


def run():
  common.run(main, "tfgen-vsc-study", __name__)


if __name__ == "__main__":
  run()
