"""What every tfgen absl app shares: one clear error line and a non-zero exit for user errors."""

import os
import sys

from absl import app
from absl import logging

from tfgen import errors


def run(main, program: str) -> None:
  """Runs an absl main; a TfgenError (also one raised while parsing flags) exits 1 with one line."""
  try:
    app.run(main)
  except errors.TfgenError as e:
    logging.flush()
    print(f"{program}: error: {e}", file=sys.stderr, flush=True)
    sys.exit(1)


def program_name() -> str:
  return os.path.basename(sys.argv[0]) or "tfgen"
