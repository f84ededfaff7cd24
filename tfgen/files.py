"""Files several processes may read while one writes them."""

import json
import os


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
