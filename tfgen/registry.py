"""Name-to-object registries: the one place where config strings pick classes and functions."""

from typing import Callable, Dict, Generic, Optional, Set, TypeVar

from tfgen import errors

T = TypeVar("T")


class Registry(Generic[T]):
  """Maps the names used in configs to the objects they stand for.

  Attributes:
    kind: what the registry holds ("model", "data set", ...), used in error messages.
  """

  def __init__(self, kind: str, on_register: Optional[Callable[[str, T], None]] = None):
    """Args: kind: what it holds; on_register: called with (name, entry) for each entry."""
    self.kind = kind
    self._on_register = on_register
    self._entries: Dict[str, T] = {}
    self._families: Set[str] = set()

  def register(self, name: str, family: bool = False) -> Callable[[T], T]:
    """Decorator that registers its argument under `name`.

    Args:
      name: the config name.
      family: `name` also stands for every "name:REST" (e.g. "tfds:cifar10"); the entry reads
        REST from the config itself, so a family is one entry however many sets it reaches.
    """

    def decorator(obj: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      self._entries[name] = obj
      if self._on_register is not None:
        self._on_register(name, obj)
      if family:
        self._families.add(name)
      return obj

    return decorator

  def _lookup(self, name: str) -> Optional[str]:
    """The key of the entry `name` stands for, or None."""
    if name in self._entries:
      return name
    head = name.split(":", 1)[0] if ":" in name else None
    return head if head in self._families else None

  def get(self, name: str) -> T:
    """Returns the entry called `name`; raises ConfigError naming the known ones otherwise."""
    key = self._lookup(name)
    if key is None:
      known = ", ".join(sorted(n + ":NAME" if n in self._families else n for n in self._entries))
      raise errors.ConfigError(f"unknown {self.kind} {name!r}; known: {known}")
    return self._entries[key]

  def names(self):
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return self._lookup(name) is not None
