"""Keeping layers held in Python lists in TensorFlow checkpoints."""

from typing import List, Sequence, TypeVar

T = TypeVar("T")


def track_list(owner, name: str, items: Sequence[T]) -> List[T]:
  """Makes every item of a list of layers an attribute `{name}_{i}` of owner; returns the list.

  Keras 3 tracks layers kept in a list for its own weights, but TensorFlow checkpoints do not
  see them there: without this, `tf.train.Checkpoint(model=...)` would save none of their
  variables.
  """
  items = list(items)
  for i, item in enumerate(items):
    setattr(owner, f"{name}_{i}", item)
  return items
