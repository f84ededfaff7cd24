"""Stopping a program cleanly on SIGTERM (what schedulers, `docker stop` and `kill` send) or Ctrl-C.

The apps install `handle_signals()`. Outside a training loop a signal unwinds the program at once:
SIGINT as KeyboardInterrupt, SIGTERM as `Terminated` (a KeyboardInterrupt too, so every `finally`
and `except KeyboardInterrupt` treats both alike). Inside a training loop (`deferred()`), the
first signal only asks the loop to stop: the loop calls `raise_if_requested()` between compiled
train calls, so the step in flight finishes, the loop writes a checkpoint and then unwinds. An
exception raised from a signal handler at an arbitrary bytecode can land inside TensorFlow's or
tf.data's callbacks, where it is swallowed or aborts the process; raising only at these points
avoids that. A second signal while one is pending unwinds at once (the user insists); SIGKILL
always ends the process.
"""

import contextlib
import signal
import threading


class Terminated(KeyboardInterrupt):
  """SIGTERM, unwinding like Ctrl-C.

  A KeyboardInterrupt rather than an Exception: the training loop saves a checkpoint on its way
  out, and keras-tuner (which records an Exception as a failed trial) leaves the running trial
  unfinished, to be resumed.
  """


_deferring = 0
_pending = None  # The signal number a deferred signal asked to stop with.


def _stop(signum: int):
  if signum == signal.SIGTERM:
    return Terminated(f"signal {signal.Signals(signum).name}")
  return KeyboardInterrupt()


def _handler(signum, frame):
  del frame
  global _pending
  if _deferring and _pending is None:
    _pending = signum
    return
  _pending = None
  raise _stop(signum)


@contextlib.contextmanager
def handle_signals():
  """Installs the handler for SIGTERM and SIGINT (in the main thread; elsewhere a no-op)."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


@contextlib.contextmanager
def deferred():
  """Within it, a first SIGTERM or SIGINT waits for the next `raise_if_requested()`."""
  global _deferring, _pending
  _deferring += 1
  try:
    yield
  finally:
    _deferring -= 1
    if not _deferring:
      _pending = None


def raise_if_requested() -> None:
  """Raises Terminated (SIGTERM) or KeyboardInterrupt (SIGINT) if a signal asked to stop."""
  global _pending
  if _pending is not None:
    signum, _pending = _pending, None
    raise _stop(signum)
