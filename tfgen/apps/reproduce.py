"""tfgen-reproduce: a paper's table of results as one resumable command (docs/reproduce.md).

  tfgen-reproduce list                                    # the tables
  tfgen-reproduce list iwae_table1_fixed                  # a table's entries
  tfgen-reproduce run iwae_table1_fixed --workdir=/shared/repro
  tfgen-reproduce run autoregressive --workdir=/shared/repro --entries=nade --max_epochs=20
  tfgen-reproduce report iwae_table1_fixed --workdir=/shared/repro --results_md=docs/results.md

`run` trains each missing entry in WORKDIR/ENTRY/ with tfgen-train's loop (resuming unfinished
ones), evaluates it with the table's protocol and writes WORKDIR/ENTRY/result.json; finished
entries are skipped, and entries claimed by another process (on this host or another one sharing
WORKDIR) too. `report` renders the table in Markdown from those files.
"""

import shlex
import sys

from absl import app
from absl import flags
from absl import logging

from tfgen.apps import common

VERBS = ("list", "run", "report")

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the entries' workdirs (ROOT/ENTRY/); "
                               "several processes and hosts may share it.")
_ENTRIES = flags.DEFINE_list("entries", None, "Only these entries of the table (default: all).")
_MAX_EPOCHS = flags.DEFINE_integer(
    "max_epochs", None, "Train at most this many epochs of each entry's schedule; result.json "
    "records epochs done / planned, and a later run without the cap continues the same workdir.")
_OVERRIDE = flags.DEFINE_multi_string(
    "override", [], "FIELD=VALUE set in every entry's config, e.g. "
    "--override=data.manual_dir=../shared/data/binarized_mnist (repeatable; recorded in "
    "result.json).")
_RESULTS_MD = flags.DEFINE_string(
    "results_md", None, "report: write the table between <!-- tfgen-reproduce TABLE begin --> "
    "and <!-- tfgen-reproduce TABLE end --> in this Markdown file instead of printing it.")
_KEEP_PREVIOUS = flags.DEFINE_bool(
    "keep_previous", True, "report --results_md: an entry without a result.json in WORKDIR "
    "keeps the row it has in the file (a report from a new WORKDIR does not erase earlier "
    "runs); --nokeep_previous renders such entries 'not run'.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Progress bars while training and evaluating.")


def main(argv):
  from tfgen import reproduce  # Imported after flag parsing so --help is fast.
  args = argv[1:]
  if not args or args[0] not in VERBS:
    got = f"unknown command {args[0]!r}" if args else "no command"
    raise reproduce.ReproduceError(f"{got}; usage: tfgen-reproduce list [TABLE] | run TABLE "
                                   "--workdir=ROOT | report TABLE --workdir=ROOT")
  verb, rest = args[0], args[1:]
  if len(rest) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(rest[1:])} (tfgen-reproduce {verb} "
                         "takes one TABLE)")
  if verb != "list" and not rest:
    raise reproduce.ReproduceError(f"tfgen-reproduce {verb} takes one TABLE; tables: "
                                   f"{', '.join(sorted(reproduce.TABLES))}")
  table = rest[0] if rest else None
  if verb == "list":
    print(reproduce.describe(table))
    return
  reproduce.get_table(table)  # An unknown table is reported before anything else.
  if not _WORKDIR.value:
    raise reproduce.ReproduceError(f"tfgen-reproduce {verb} needs --workdir=ROOT")
  if verb == "report":
    block = reproduce.report(table, _WORKDIR.value, _RESULTS_MD.value, _KEEP_PREVIOUS.value)
    if _RESULTS_MD.value:
      print(f"wrote the {table} table into {_RESULTS_MD.value}")
    else:
      print(block)
    return
  from tfgen import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir_lib.make_workdir(_WORKDIR.value)
  common.import_keras()  # Also says which devices the entries train on.
  # Progress bars show the training; per-epoch log lines would bury the entries' outcomes.
  logging.set_verbosity(logging.WARNING)

  def show(outcome):
    print(f"{outcome.entry}: {outcome.status}: {outcome.detail}", flush=True)

  command = " ".join(shlex.quote(a) for a in ["tfgen-reproduce", *sys.argv[1:]])
  try:
    outcomes = reproduce.run(table, _WORKDIR.value, entries=_ENTRIES.value,
                             max_epochs=_MAX_EPOCHS.value,
                             overrides=reproduce.parse_overrides(_OVERRIDE.value),
                             command=command, show_progress=_PROGRESS.value, on_outcome=show)
  except KeyboardInterrupt as e:  # Reported in one line by common.run, with this note.
    e.add_note(f"the same command resumes the unfinished entry in {_WORKDIR.value}")
    raise
  done = sum(o.status == "done" for o in outcomes)
  print(f"{done} entries trained and evaluated, {len(outcomes) - done} skipped; "
        f"tfgen-reproduce report {table} --workdir={_WORKDIR.value} renders the table")


def run():
  common.run(main, "tfgen-reproduce", __name__)


if __name__ == "__main__":
  run()
