"""Files several processes may read while one writes them."""

import json
import os
from typing import Tuple


def write_json(path: str, obj, sort_keys: bool = False) -> None:
  """Writes obj as JSON to path atomically: readers see the old file or the new one, never part.

  The temporary file is named per process, so two writers never share one.
  """
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=sort_keys)
    f.write("\n")
  os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
  """Writes text to path atomically (see write_json)."""
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


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
