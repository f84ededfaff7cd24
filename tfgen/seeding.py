"""Stateless seeds: int32 [2] tensors, derived from one another by folding in integers."""

import tensorflow as tf


def as_seed(seed) -> tf.Tensor:
  """An int32 [2] stateless seed from an int, a pair or a tensor."""
  if isinstance(seed, int):
    seed = [seed, 0]
  return tf.cast(tf.convert_to_tensor(seed), tf.int32)


def fold_in(seed, data) -> tf.Tensor:
  """A new int32 [2] seed from `seed` and an integer (a step, a replica, a chunk index)."""
  # Philox named, not auto-selected: XLA auto-selects another algorithm, and a seed derived
  # inside a compiled train call must be the one the same step derives outside it.
  return tf.cast(tf.random.experimental.stateless_fold_in(as_seed(seed), tf.cast(data, tf.int64),
                                                          alg="philox"), tf.int32)
