"""What every tfgen absl app shares: one clear error line and a non-zero exit for user errors.

Exit codes: 0 success; 1 a user error (bad config, data, workdir, ...), printed as one line
`PROGRAM: error: ...`; 2 a command line that does not parse (unknown flag or config field,
missing config file, bad value, an unexpected argument), also one line; 130 after Ctrl-C
(SIGINT) and 143 after SIGTERM, both once the program has saved what it can (tfgen-train writes
a checkpoint on its way out).

And a quiet, lean start: TensorFlow's start-up lines (oneDNN, its CUDA probe on a machine without
a GPU) are filtered out of its import (quiet_tensorflow_start), Keras is imported without the
scikit-learn and matplotlib it would import for features tfgen does not use (lean_keras_start),
and a program that runs a model says in one line which devices it runs on (import_keras).
"""

import collections
import contextlib
import ctypes
import functools
import importlib.abc
import importlib.util
import os
import re
import signal
import subprocess
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
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


# The program run() is running (tfgen-train, ...), for the device line; None outside run().
_program = None
_devices_said = False
# The GPUs' names, listed during TensorFlow's filtered import; None if that did not happen.
_gpu_names = None


# Modules Keras imports with itself only for features no tfgen command uses through Keras: its
# scikit-learn wrappers (scikit-learn and SciPy's statistics, 0.75 s of a command's start-up) and
# its image-gallery plots (matplotlib.pyplot, 0.3 s).
_KERAS_EXTRAS = ("sklearn", "matplotlib")
# Keras's modules that keep matplotlib as a global, set to None when it could not be imported:
# {module: {global name: module it stands for}}.
_KERAS_PLOTS = {
    "keras.src.visualization.plot_image_gallery": {"plt": "matplotlib.pyplot"},
    "keras.src.visualization.plot_bounding_box_gallery": {"patches": "matplotlib.patches"},
}


class _ImportedWhenUsed:
  """Stands for a module, which is imported on first use (for Keras's plots, see below)."""

  def __init__(self, name: str):
    self._name = name

  def __getattr__(self, attribute):
    return getattr(importlib.import_module(self._name), attribute)


@contextlib.contextmanager
def _keras_extras_hidden():
  """Within it, importing scikit-learn or matplotlib raises ImportError (unless imported before).

  Keras treats both as optional and carries on without them. Afterwards both import as usual
  (keras-tuner's Bayesian oracle in tfgen-tune imports scikit-learn, tfgen-vsc-study plots with
  matplotlib), and Keras's own plots (keras.visualization) get a matplotlib that is imported when
  they are first used. Only Keras's scikit-learn wrappers (keras.wrappers) stay unavailable.
  """
  hidden = [name for name in _KERAS_EXTRAS if name not in sys.modules]
  for name in hidden:
    sys.modules[name] = None  # Makes `import NAME` raise ImportError.
  try:
    yield
  finally:
    for name in hidden:
      if sys.modules.get(name, 0) is None:
        del sys.modules[name]
    if importlib.util.find_spec("matplotlib") is not None:
      for module_name, names in _KERAS_PLOTS.items():
        module = sys.modules.get(module_name)
        for name, stands_for in names.items():
          if module is not None and getattr(module, name, 0) is None:
            setattr(module, name, _ImportedWhenUsed(stands_for))


class _LeanKerasLoader(importlib.abc.Loader):
  """Executes `keras` or `tensorflow` (which imports Keras) with Keras's extras hidden."""

  def __init__(self, loader):
    self._loader = loader

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    module.__spec__.loader = module.__loader__ = self._loader
    with _keras_extras_hidden():
      self._loader.exec_module(module)


class _LeanKerasImport(importlib.abc.MetaPathFinder):
  """Finds the first of `keras` and `tensorflow` to be imported and loads it with _LeanKerasLoader.

  Whichever comes first imports the other while it executes, so once is enough.
  """

  def find_spec(self, fullname, path=None, target=None):
    del path, target  # Only top-level modules are asked about.
    if fullname not in ("keras", "tensorflow"):
      return None
    sys.meta_path.remove(self)
    spec = importlib.util.find_spec(fullname)  # Through quiet_tensorflow_start's finder too.
    if spec is not None and getattr(spec.loader, "exec_module", None) is not None:
      spec.loader = _LeanKerasLoader(spec.loader)
    return spec


def lean_keras_start() -> None:
  """Makes the first import of Keras, wherever it happens, skip scikit-learn and matplotlib.

  An import hook, like quiet_tensorflow_start's: Keras is imported by whatever needs it first (a
  config file's checks while the flags are parsed import tfgen.models), and TensorFlow imports
  Keras too. See _keras_extras_hidden for what Keras then lacks (its scikit-learn wrappers).
  """
  if "keras" not in sys.modules and "tensorflow" not in sys.modules and not any(
      isinstance(finder, _LeanKerasImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _LeanKerasImport())


def import_keras() -> None:
  """Imports Keras (and TensorFlow) without its extras, and says which devices the run uses.

  The extras are the scikit-learn and matplotlib that Keras would import for features tfgen does
  not use (_keras_extras_hidden); skipping them saves about 1 s of a command's start-up. In a
  program started by run(), the first call prints one line on stderr, e.g.
  `tfgen-train running on CPU (2 cores), no GPU`.
  """
  if "keras" not in sys.modules:
    with _keras_extras_hidden():
      import keras  # pylint: disable=g-import-not-at-top,unused-import
  global _devices_said
  if _program and not _devices_said:
    _devices_said = True
    gpu_names = _gpu_names
    if gpu_names is None:  # Unfiltered now, so an error listing them shows as the run's own.
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      gpu_names = [_gpu_name(tf, gpu) for gpu in tf.config.list_physical_devices("GPU")]
    # No colon after the name: `PROGRAM: ...` lines are a run's verdict (an error, an
    # interruption), which scripts pick out by that prefix.
    print(f"{_program} {device_summary(gpu_names, _cpu_count(), _nvidia_driver())}",
          file=sys.stderr, flush=True)


def device_summary(gpu_names, cpu_count: int, nvidia_driver: bool) -> str:
  """What a run computes on, in words: `running on CPU (2 cores), no GPU`, or the GPUs' names.

  Args:
    gpu_names: the names of the GPUs TensorFlow sees (e.g. "NVIDIA A100-SXM4-40GB").
    cpu_count: CPU cores available to the process.
    nvidia_driver: whether the machine has an NVIDIA driver, so that a missing GPU is news.

  Returns:
    One line without the program's name.
  """
  if gpu_names:
    counts = collections.Counter(gpu_names)
    names = ", ".join(f"{n}x {name}" if n > 1 else name for name, n in counts.items())
    return f"running on {len(gpu_names)} GPUs: {names}" if len(gpu_names) > 1 else (
        f"running on GPU: {names}")
  cpus = f"CPU ({cpu_count} core{'s' if cpu_count != 1 else ''})"
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if nvidia_driver and visible is not None:
    return f"running on {cpus}, no GPU (CUDA_VISIBLE_DEVICES={visible!r})"
  if nvidia_driver:
    return (f"running on {cpus}: TensorFlow found no usable GPU although this machine has an "
            "NVIDIA driver (TF_CPP_MIN_LOG_LEVEL=0 shows why)")
  return f"running on {cpus}, no GPU"


def _cpu_count() -> int:
  affinity = getattr(os, "sched_getaffinity", None)  # Linux: the cores this process may use.
  return len(affinity(0)) if affinity else os.cpu_count() or 1


@functools.lru_cache(maxsize=None)
def _nvidia_driver() -> bool:
  """Whether the machine has an NVIDIA driver: without one, CUDA's errors are no news."""
  if os.path.exists("/proc/driver/nvidia"):
    return True
  try:  # WSL2 and some containers have the driver's library but no /proc/driver/nvidia.
    ctypes.CDLL("libcuda.so.1")
  except OSError:
    return False
  return True


def _gpu_name(tf, gpu) -> str:
  return tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)


def _list_gpus(tf) -> None:
  """Lists the GPUs, which probes CUDA (and prints its cuInit error on a machine without one)."""
  global _gpu_names
  try:
    _gpu_names = [_gpu_name(tf, gpu) for gpu in tf.config.list_physical_devices("GPU")]
  except Exception:  # pylint: disable=broad-except
    _gpu_names = None  # import_keras() lists them again, with stderr as it is, and fails visibly.


# TensorFlow's C++ code logs through absl before anything reads TF_CPP_MIN_LOG_LEVEL: absl writes
# every message logged before absl::InitializeLog() to stderr, whatever the level
# (abseil/abseil-cpp#1957), so the oneDNN and "Could not find cuda drivers" lines and absl's
# warning about them (TensorFlow 2.21 prints all three twice) cannot be turned off, only
# filtered. This program is the filter, fed fd 2 of `import tensorflow` and of the first device
# listing (the cuInit probe). It runs as a process of its own so that what TensorFlow prints just
# before aborting the import (an F line, e.g. a CPU without AVX) still reaches the terminal; it
# drops only TensorFlow's C++ log lines below TF_CPP_MIN_LOG_LEVEL (never F), absl's warning, and
# two harmless errors: cuInit's on a machine without an NVIDIA driver, and the duplicate CUDA
# plugin registrations of some TensorFlow builds (tensorflow/tensorflow#62075).
_FILTER_PROGRAM = r"""
import re, sys
level, no_driver = int(sys.argv[1]), sys.argv[2] == "1"
log_line = re.compile(rb"([IWE])\d{4} [\d:.]+ +\d+ [\w./-]+\.(?:cc|cpp|h):\d+\] ")
duplicate_plugin = re.compile(rb"Unable to register cu(?:DNN|FFT|BLAS) factory: Attempting to "
                              rb"register factory for plugin \w+ when one has already been")
absl_warning = b"WARNING: All log messages before absl::InitializeLog() is called"

def noise(line):
  if line.startswith(absl_warning):
    return True
  match = log_line.match(line)
  if not match:
    return False
  if b"IWE".index(match.group(1)) < level:
    return True
  return bool((no_driver and b"cuInit" in line) or duplicate_plugin.search(line))

out = sys.stdout.buffer
for line in sys.stdin.buffer:
  if not noise(line):
    try:
      out.write(line)
      out.flush()
    except OSError:
      pass  # Keep reading: a writer to a full pipe would block.
"""


def _tf_log_level() -> int:
  try:
    return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
  except ValueError:
    return 0


def _flush_stderr() -> None:
  if sys.stderr is not None:
    sys.stderr.flush()


@contextlib.contextmanager
def _tensorflow_start_up_filtered():
  """Within it, stderr (fd 2, so C++ too) goes through _FILTER_PROGRAM; nothing at level 0."""
  level = _tf_log_level()
  if level <= 0 or not sys.executable:  # TF_CPP_MIN_LOG_LEVEL=0: the user asked for everything.
    yield
    return
  try:
    original = os.dup(2)
  except OSError:  # No stderr to filter.
    yield
    return
  read = write = None
  try:
    read, write = os.pipe()
    # -I -S: the standard library only, which starts in some 30 ms; a session of its own, so
    # that Ctrl-C stops tfgen, not the filter that shows tfgen's last lines.
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _FILTER_PROGRAM, str(level),
         "0" if _nvidia_driver() else "1"],
        stdin=read, stdout=original, stderr=original, start_new_session=True)
  except OSError:  # Out of file descriptors or processes: TensorFlow's lines stay as they are.
    for fd in (original, read, write):
      if fd is not None:
        os.close(fd)
    yield
    return
  os.close(read)
  _flush_stderr()
  os.dup2(write, 2)
  os.close(write)
  try:
    yield
  finally:
    _flush_stderr()
    os.dup2(original, 2)
    os.close(original)
    try:
      process.wait(timeout=10)  # It has written everything once the pipe is closed.
    except subprocess.TimeoutExpired:
      pass  # A process started meanwhile holds the pipe; the filter passes on its lines till then.


class _QuietTensorFlowLoader(importlib.abc.Loader):
  """Executes tensorflow/__init__.py, and lists the GPUs, with stderr filtered."""

  def __init__(self, loader):
    self._loader = loader

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    module.__spec__.loader = module.__loader__ = self._loader  # TensorFlow keeps its own loader.
    with _tensorflow_start_up_filtered():
      self._loader.exec_module(module)
      _list_gpus(module)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
  """Finds `tensorflow` the usual way, once, and loads it with _QuietTensorFlowLoader.

  An import hook rather than a filtered `import tensorflow` in one place: a config file read
  while parsing the flags, tfgen's own modules or Keras may import TensorFlow first, while
  commands that never need it (--help, most mistakes) should not pay for its import.
  """

  def find_spec(self, fullname, path=None, target=None):
    del path, target  # Only a top-level module is asked about.
    if fullname != "tensorflow":
      return None
    sys.meta_path.remove(self)  # Once: a later import, even one retried after failing, is plain.
    spec = importlib.util.find_spec(fullname)
    if spec is not None and getattr(spec.loader, "exec_module", None) is not None:
      spec.loader = _QuietTensorFlowLoader(spec.loader)
    return spec


def quiet_tensorflow_start() -> None:
  """Makes TensorFlow's import quiet on a machine without a GPU, unless TF_CPP_MIN_LOG_LEVEL=0.

  tfgen/apps/__init__.py sets TF_CPP_MIN_LOG_LEVEL=2 (INFO and WARNING lines off) unless the
  user set it; TensorFlow only applies it once its logging is set up, so the lines it prints
  before then, and the cuInit error of its GPU probe on a machine without an NVIDIA driver, are
  filtered out of stderr during its import (see _FILTER_PROGRAM). Every other line, tfgen's and
  TensorFlow's errors included, gets through, and stderr is not touched once the import is done.
  """
  if "tensorflow" not in sys.modules and not any(
      isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlowImport())


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
      return f"config file {path!r} cannot be loaded: {type(e).__name__}: {errors.first_line(e)}"
  if config is not None:
    from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
    for field in _override_fields(argv):
      message = config_lib.missing_field(config, field)
      if message:
        return message
  if isinstance(error, flags.Error):
    return errors.first_line(error)
  return f"{type(error).__name__}: {errors.first_line(error)}"


def _load_config(config_arg: str):
  """get_config(VARIANT) of the config file in --config=FILE[:VARIANT]."""
  from tfgen import config as config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.load_file(config_arg)


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
      raise _CommandLineError(errors.first_line(e)) from e

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
  global _program
  _program = program
  quiet_tensorflow_start()
  lean_keras_start()
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
  except BrokenPipeError:
    # The reader of stdout has gone (`tfgen-reproduce list | head -3`): the shell's convention,
    # quietly; stdout is pointed at /dev/null so that flushing it at exit cannot fail again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(EXIT_BROKEN_PIPE)
