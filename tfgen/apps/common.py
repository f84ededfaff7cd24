"""What every tfgen absl app shares: one clear error line and a non-zero exit for user errors."""

import sys

from absl import app
from absl import flags
from absl import logging

from tfgen import errors


def run(main, program: str, module_name: str) -> None:
  """Runs an absl main; a TfgenError (also one raised while parsing flags) exits 1 with one line.

  Args:
    main: the absl main function.
    program: the name used in error messages.
    module_name: the app module; its docstring and flags are what --help shows, whether the
      program was started as a console script or as bin/NAME.py.
  """
  module = sys.modules[module_name]
  sys.modules["__main__"].__doc__ = module.__doc__
  for flag in flags.FLAGS.get_flags_for_module(module_name):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  try:
    app.run(main)
  except errors.TfgenError as e:
    logging.flush()
    print(f"{program}: error: {e}", file=sys.stderr, flush=True)
    sys.exit(1)
  except KeyboardInterrupt:
    # The training loop has saved a checkpoint on its way out; a rerun resumes from it.
    print(f"\n{program}: interrupted", file=sys.stderr, flush=True)
    sys.exit(130)
