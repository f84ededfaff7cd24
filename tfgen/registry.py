"""Name-to-object registries: the one place where config strings pick classes and functions."""

from typing import Callable, Dict, Generic, TypeVar

from tfgen import errors

T = TypeVar("T")


class Registry(Generic[T]):
  """Maps the names used in configs to the objects they stand for.

  Attributes:
    kind: what the registry holds ("model", "data set", ...), used in error messages.
  """

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: Dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    """Decorator that registers its argument under `name`."""

    def decorator(obj: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      self._entries[name] = obj
      return obj

    return decorator

  def get(self, name: str) -> T:
    """Returns the entry called `name`; raises ConfigError naming the known ones otherwise."""
    if name not in self._entries:
      known = ", ".join(sorted(self._entries))
      raise errors.ConfigError(f"unknown {self.kind} {name!r}; known: {known}")
    return self._entries[name]

  def names(self):
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries
