"""What every tfgen absl app shares: one clear error line and a non-zero exit for user errors.

Exit codes: 0 success; 1 a user error (bad config, data, workdir, ...), printed as one line
`PROGRAM: error: ...`; 2 a command line that does not parse (unknown flag or config field,
missing config file, bad value, an unexpected argument), also one line; 130 after Ctrl-C
(SIGINT) and 143 after SIGTERM, both once the program has saved what it can (tfgen-train writes
a checkpoint on its way out).
"""

import os
import re
import signal
import sys

from absl import app
from absl import flags
from absl import logging

from tfgen import errors
from tfgen import signals

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


def import_keras() -> None:
  """Imports Keras (and TensorFlow) without scikit-learn, 0.75 s of a command's start-up.

  Keras imports scikit-learn, when installed, only for its scikit-learn wrappers, which tfgen
  never uses; the one user of scikit-learn here, keras-tuner's Bayesian oracle (tfgen-tune),
  imports it later, and that import works as usual.
  """
  if "keras" in sys.modules:
    return
  hidden = "sklearn" not in sys.modules
  if hidden:
    sys.modules["sklearn"] = None  # Makes `import sklearn` raise ImportError.
  try:
    import keras  # pylint: disable=g-import-not-at-top,unused-import
  finally:
    if hidden and sys.modules.get("sklearn", 0) is None:
      del sys.modules["sklearn"]


def _config_file(argv) -> str:
  """The value of --config=FILE[:VARIANT] on the command line, or ""."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return ""


def _override_fields(argv):
  """The dotted fields of --config.FIELD=VALUE overrides, in order."""
  return [m.group(1) for m in (re.match(r"--config\.([^=]+)(=|$)", a) for a in argv) if m]


def usage_message(argv, error: BaseException) -> str:
  """One line saying what is wrong with a command line whose flags did not parse."""
  config_arg = _config_file(argv)
  path = config_arg.split(":", 1)[0]
  if config_arg and not os.path.isfile(path):
    return f"config file {path!r} does not exist (--config={config_arg})"
  config = None
  if config_arg:
    try:
      config = _load_config(config_arg)
    except Exception as e:  # pylint: disable=broad-except
      return f"config file {path!r} cannot be loaded: {type(e).__name__}: {_first_line(e)}"
  if config is not None:
    from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
    for field in _override_fields(argv):
      message = config_lib.missing_field(config, field)
      if message:
        return message
  if isinstance(error, flags.Error):
    return _first_line(error)
  return f"{type(error).__name__}: {_first_line(error)}"


def _load_config(config_arg: str):
  """get_config(VARIANT) of the config file in --config=FILE[:VARIANT]."""
  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.load_file(config_arg)


def _first_line(error: BaseException) -> str:
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return lines[0] if lines else type(error).__name__


def _parse_flags(program: str):
  """An absl flags parser that reports a command line it cannot parse as one line, exit 2."""

  def parse(argv):
    try:
      remaining = flags.FLAGS(argv)
      if "config" in flags.FLAGS and flags.FLAGS["config"].present:
        # A config file that fails to load is only reported when first read: read it now.
        flags.FLAGS["config"].value.get("model")
      return remaining
    except errors.TfgenError:
      raise  # Raised by a config file's get_config: reported by run() below.
    except Exception as e:  # absl, ml_collections and config files raise many kinds; pylint: disable=broad-except
      print(f"{program}: error: {usage_message(argv, e)}", file=sys.stderr, flush=True)
      sys.exit(EXIT_USAGE)

  return parse


class _CommandLineError(Exception):
  """An app.UsageError from an app's main, carried past app.run, which would print the help."""


def _reporting_usage_errors(main):
  """main, with its app.UsageError (e.g. an unexpected argument) turned into _CommandLineError."""

  def wrapped(argv):
    try:
      return main(argv)
    except app.UsageError as e:
      raise _CommandLineError(_first_line(e)) from e

  return wrapped


def run(main, program: str, module_name: str) -> None:
  """Runs an absl main; a user error is one line on stderr and an exit code, never a traceback.

  A TfgenError (also one raised while parsing flags) exits 1; a command line that does not parse,
  or an app.UsageError raised by main (an unexpected argument, a flag value out of range), exits
  2 with one line rather than absl's help text followed by the error.

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
    with signals.handle_signals():
      app.run(_reporting_usage_errors(main), flags_parser=_parse_flags(program))
  except errors.TfgenError as e:
    logging.flush()
    print(f"{program}: error: {e}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)
  except _CommandLineError as e:
    logging.flush()
    print(f"{program}: error: {e}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USAGE)
  except KeyboardInterrupt as e:
    # Whatever the program saves on its way out (tfgen-train's checkpoint) is written by now.
    what = "terminated (SIGTERM)" if isinstance(e, signals.Terminated) else "interrupted"
    # Notes added on the way out, e.g. the checkpoint tfgen-train saved.
    notes = "".join(f"; {note}" for note in getattr(e, "__notes__", ()))
    print(f"\n{program}: {what}{notes}", file=sys.stderr, flush=True)
    sys.exit(EXIT_TERMINATED if isinstance(e, signals.Terminated) else EXIT_INTERRUPTED)
