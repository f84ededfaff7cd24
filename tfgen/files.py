"""Files several processes may read while one writes them, and reading back what tfgen wrote.

Every file tfgen writes is written whole under a temporary name and renamed into place, so a
reader (or a process killed mid-write, even by kill -9) never sees part of one. A file can still
be damaged by a disk or machine crash or a hand edit; `read_json` says so in one line naming it,
and the callers decide whether to refuse (the file is needed) or to go on without it, with a
warning (`read_json_or_warn`).
"""

import glob
import json
import os
import time
from typing import Any, Optional, Sequence, Tuple

from absl import logging

from tfgen import errors

# A temporary `PATH.tmp.PID` older than this is left by a writer that died (a JSON write takes
# milliseconds); the next write of PATH removes it.
ABANDONED_TEMPORARY_S = 3600.0


class DamagedFileError(errors.WorkdirError):
  """A file tfgen wrote that no longer holds what it wrote: cut short, emptied or edited.

  Attributes:
    path: the file.
    problem: what is wrong with it, e.g. "not valid JSON: Expecting value: line 3 column 1".
  """

  def __init__(self, path: str, problem: str, advice: str = ""):
    self.path, self.problem = path, problem
    super().__init__(f"{path!r} is damaged ({problem})" + (f"; {advice}" if advice else ""))


def write_json(path: str, obj, sort_keys: bool = False) -> None:
  """Writes obj as JSON to path atomically: readers see the old file or the new one, never part.

  The temporary file is named per process, so two writers never share one. The data reach the
  disk before the rename, so a machine crash cannot leave an empty file under the final name.
  """
  _write(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


def write_text(path: str, text: str) -> None:
  """Writes text to path atomically (see write_json)."""
  _write(path, text)


def _write(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.tmp.{os.getpid()}"
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  _remove_abandoned_temporaries(path)


def _remove_abandoned_temporaries(path: str) -> None:
  """Deletes the `PATH.tmp.PID` files that writers killed mid-write left (readers ignore them)."""
  now = time.time()
  for tmp in glob.glob(glob.escape(path) + ".tmp.*"):
    try:
      if now - os.path.getmtime(tmp) > ABANDONED_TEMPORARY_S:
        os.remove(tmp)
    except OSError:  # Renamed or removed by its writer meanwhile.
      pass


def read_json(path: str, kind: Optional[type] = None, keys: Sequence[str] = (),
              advice: str = "") -> Any:
  """The JSON value of a file tfgen wrote, or None when there is no such file.

  Args:
    path: the file.
    kind: the type its value must have (dict, list), if any.
    keys: keys a dict value must have.
    advice: what the user can do about a damaged file, appended to the error's message.

  Raises:
    DamagedFileError: the file cannot be read, is not JSON (cut short by a crash, emptied, edited
      by hand), holds another kind of value or lacks one of `keys`.
  """
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    return None
  except OSError as e:
    raise DamagedFileError(path, f"unreadable: {e.strerror or e}", advice) from e
  try:
    value = json.loads(raw.decode("utf-8"))
  except (UnicodeDecodeError, ValueError) as e:
    problem = "empty" if not raw.strip() else f"not valid JSON: {errors.first_line(e)}"
    raise DamagedFileError(path, problem, advice) from e
  if kind is not None and not isinstance(value, kind):
    raise DamagedFileError(path, f"a JSON {_json_type(value)} where a JSON "
                           f"{_json_type(kind())} belongs", advice)
  missing = [key for key in keys if key not in value] if isinstance(value, dict) else []
  if missing:
    raise DamagedFileError(path, f"no {', '.join(repr(k) for k in missing)}", advice)
  return value


def read_json_or_warn(path: str, kind: Optional[type] = None, keys: Sequence[str] = (),
                      consequence: str = "ignored") -> Any:
  """read_json for a file tfgen can do without: a damaged one gives None and one warning line.

  Args:
    path, kind, keys: as for read_json.
    consequence: what the warning says happens instead, e.g. "ignored; tfgen-evaluate writes
      it again".
  """
  try:
    return read_json(path, kind, keys)
  except DamagedFileError as e:
    logging.warning("%s; %s", e, consequence)
    return None


def set_aside(path: str) -> str:
  """Renames a damaged file to PATH.damaged (or PATH.damaged-TIME), kept for a person to look
  at but no longer read; returns the new name."""
  kept = f"{path}.damaged"
  if os.path.exists(kept):
    kept = f"{path}.damaged-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
  os.replace(path, kept)
  return kept


def read_json_or_set_aside(path: str, kind: Optional[type] = None,
                           keys: Sequence[str] = ()) -> Any:
  """read_json for a record a writer is about to extend: a damaged one is set aside (`set_aside`)
  with one warning line, and None returned, so that a new record starts without losing it."""
  try:
    return read_json(path, kind, keys)
  except DamagedFileError as e:
    kept = set_aside(path)
    logging.warning("%s; kept as %s, and a new one is started", e, kept)
    return None


def lock_holder(path: str) -> Optional[int]:
  """The process of this machine that holds an exclusive flock on the file `path`, if any.

  Read from Linux's /proc/locks, so that nothing is locked, even for a moment: a probe that took
  the lock itself could make a run starting at that moment find its workdir busy. Elsewhere (and
  for a holder on another machine of a shared file system) the answer is None.
  """
  try:
    inode = os.stat(path).st_ino
    with open("/proc/locks", encoding="utf-8") as f:
      lines = f.read().splitlines()
  except OSError:
    return None
  for line in lines:
    fields = line.split()
    # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2147479 0 EOF"; waiting requests have "->" after "1:".
    if len(fields) >= 6 and fields[1:4] == ["FLOCK", "ADVISORY", "WRITE"] and fields[4].isdigit():
      if fields[5].rsplit(":", 1)[-1] == str(inode):
        return int(fields[4])
  return None


def _json_type(value) -> str:
  return {dict: "object", list: "array", str: "string", bool: "boolean",
          type(None): "null"}.get(type(value), "number")


def _split_at_markers(path: str, begin: str, end: str) -> Tuple[str, str, str]:
  with open(path, encoding="utf-8") as f:
    text = f.read()
  if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
    raise ValueError(f"{path} needs exactly one pair of lines {begin} and {end} (in that "
                     "order) where the table goes")
  head, rest = text.split(begin, 1)
  block, tail = rest.split(end, 1)
  return head, block, tail


def read_between_markers(path: str, begin: str, end: str) -> str:
  """What lies between the lines `begin` and `end` of the text file at path.

  Raises:
    OSError: the file cannot be read.
    ValueError: the markers are missing, repeated or out of order (the message says which).
  """
  return _split_at_markers(path, begin, end)[1].strip("\n")


def replace_between_markers(path: str, begin: str, end: str, block: str) -> None:
  """Replaces what lies between the lines `begin` and `end` of the text file at path.

  Raises:
    OSError: the file cannot be read or written.
    ValueError: the markers are missing, repeated or out of order (the message says which).
  """
  head, _, tail = _split_at_markers(path, begin, end)
  write_text(path, f"{head}{begin}\n{block}\n{end}{tail}")


def process_alive(pid: int) -> bool:
  """Whether process `pid` of this machine is running (a process of another user counts)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except OSError:  # Alive, of another user.
    return True
  return True
