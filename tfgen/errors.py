"""Errors that tfgen reports to a user as one clear message, without a traceback."""


class TfgenError(Exception):
  """Base class of every error a user can cause and fix (bad config, missing data, ...)."""


class ConfigError(TfgenError):
  """An invalid configuration value or an unknown name."""


class DataError(TfgenError):
  """A data set that cannot be had, or files that are corrupt or of the wrong shape."""


class WorkdirError(TfgenError):
  """A working directory that cannot be used: locked by another run, or with no run in it."""


class NonFiniteLossError(TfgenError):
  """Training produced a NaN or infinite loss."""


class TuningError(TfgenError):
  """A hyperparameter search that could not finish: no trial completed, or too many failed."""


class OutputError(TfgenError):
  """An output file that cannot be written: a folder in its place, no permission, no room."""


def first_line(error: BaseException) -> str:
  """The first non-empty line of an exception's message (or its type's name): what a one-line
  report quotes of an error raised by a library."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return lines[0] if lines else type(error).__name__
