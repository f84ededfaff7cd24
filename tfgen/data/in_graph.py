"""The training set held in variables and batched inside the compiled train call.

A `tf.data` iterator costs every step a hand-over between the input pipeline's threads and the
train step; on the 2-core CPU that is about a tenth of a one-layer VAE step at batch 100
(docs/results.md). When the training set is small (binarized MNIST is 39 MB of bytes) tfgen keeps
it in host-memory variables instead and builds each batch inside the compiled multi-step train
call: a gather from the epoch's permutation, the conversion to floats and, for dynamically
binarized sets, a stateless Bernoulli draw.

An epoch's order is a permutation drawn from the seed and the epoch number alone, so a run resumed
mid-epoch continues exactly where it stopped. `next()` returns a *global* batch; under a
multi-replica strategy each replica keeps its slice of it (`Trainer`), and every worker holds the
same set and draws the same permutation, so a step sees the same examples on any number of
replicas or hosts. The order is not the `tf.data` pipeline's shuffle, so a run with
`config.data.in_graph=False` sees the examples in a different order.
"""

from typing import Dict, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from tfgen import seeding

# Above this size the set stays in the tf.data pipeline: the variables are a second copy of it in
# host memory, next to tf.data's cache of the evaluation splits.
MAX_BYTES = 1 << 30


class InGraphBatches:
  """An iterator of training batches computed inside `tf.function` from variables.

  Attributes:
    batch_size: examples per (global) batch.
    steps_per_epoch: full batches per epoch; the remainder of the permutation is dropped.
    yields_global_batches: tells the Trainer to give each replica its slice of every batch.
  """

  yields_global_batches = True

  def __init__(self, arrays: Dict[str, np.ndarray], batch_size: int, binarization: str,
               seed: int):
    """Args:
      arrays: the training set, {"image": uint8 [N, H, W, C], maybe "label": int32 [N]}.
      batch_size: global batch size.
      binarization: "fixed" (stored {0, 1}), "dynamic" (Bernoulli draw per pass from
        intensities / 255) or "none" (intensities / 255).
      seed: the run's seed; with the epoch number it gives the order and the binarization.
    """
    self.num_examples = len(arrays["image"])
    self.batch_size = int(batch_size)
    self.steps_per_epoch = self.num_examples // self.batch_size
    self.binarization = binarization
    self.seed = int(seed)
    # On the host: the batch, not the set, is what crosses to an accelerator.
    with tf.init_scope(), tf.device("/cpu:0"):
      self._arrays = {k: tf.Variable(v, trainable=False, name=f"train_{k}")
                      for k, v in arrays.items()}
      self._order = tf.Variable(tf.zeros([self.num_examples], tf.int32), trainable=False,
                                name="epoch_order")
      self._position = tf.Variable(0, dtype=tf.int32, trainable=False, name="epoch_position")
      self._epoch_seed = tf.Variable(tf.zeros([2], tf.int32), trainable=False,
                                     name="epoch_seed")

  @classmethod
  def from_dataset(cls, dataset: tf.data.Dataset, num_examples: int, batch_size: int,
                   binarization: str, seed: int) -> Optional["InGraphBatches"]:
    """Reads an unbatched training set of 8-bit images into variables; None if too large."""
    spec = dataset.element_spec
    example_bytes = sum(np.prod(s.shape) * s.dtype.size for s in spec.values())
    if num_examples * example_bytes > MAX_BYTES:
      logging.info("training set of %.1f GB kept in the tf.data pipeline (in-graph limit %.1f)",
                   num_examples * example_bytes / 1e9, MAX_BYTES / 1e9)
      return None
    chunks = {k: [] for k in spec}
    for batch in dataset.batch(10000):
      for k, v in batch.items():
        chunks[k].append(v.numpy())
    return cls({k: np.concatenate(v) for k, v in chunks.items()}, batch_size, binarization,
               seed)

  def start_epoch(self, epoch: int, first_step: int = 0) -> "InGraphBatches":
    """Draws epoch `epoch`'s order and positions the iterator at its batch `first_step`."""
    from tfgen.data import pipeline  # pylint: disable=g-import-not-at-top
    epoch_seed = pipeline.epoch_seed(self.seed, epoch)
    self._order.assign(np.random.default_rng(epoch_seed).permutation(self.num_examples)
                       .astype(np.int32))
    self._position.assign(first_step)
    self._epoch_seed.assign(seeding.as_seed(epoch_seed))
    return self

  def __iter__(self):
    return self

  def __next__(self) -> Dict[str, tf.Tensor]:
    """The next global batch (inside tf.function: ops that advance the position when run)."""
    return self.take(1)

  def take(self, num_steps) -> Dict[str, tf.Tensor]:
    """The next `num_steps` global batches at once (inside tf.function; advances the position).

    Step i's batch is rows [i * batch_size, (i + 1) * batch_size) of each tensor, the batch that
    `next()` would have given at that step: a compiled multi-step call gathers its steps' examples
    in one op before its loop, so the loop reads a block of a few MB instead of the whole set.

    Args:
      num_steps: int32 scalar, at most the steps left in the epoch.

    Returns:
      {"image": float32 [num_steps * batch_size, H, W, C], maybe "label": [num_steps * batch_size]}.
    """
    one_step = isinstance(num_steps, int) and num_steps == 1  # next(): no loop over draws.
    num_steps = tf.cast(num_steps, tf.int32)
    position = self._position.read_value()
    indices = self._order[position * self.batch_size:(position + num_steps) * self.batch_size]
    with tf.control_dependencies([indices]):
      self._position.assign_add(num_steps)
    batch = {k: tf.gather(v, indices) for k, v in self._arrays.items()}
    image = tf.cast(batch["image"], tf.float32)
    if self.binarization == "dynamic" and one_step:
      uniform = tf.random.stateless_uniform(tf.shape(image),
                                            seed=seeding.fold_in(self._epoch_seed, position))
      image = tf.cast(uniform < image / 255.0, tf.float32)
    elif self.binarization == "dynamic":
      # One draw per batch, seeded by the batch's position in the epoch, whatever the call size.
      per_step = tf.reshape(image, tf.concat([[num_steps, self.batch_size],
                                              tf.shape(image)[1:]], 0))
      draws = tf.map_fn(
          lambda step: tf.random.stateless_uniform(
              tf.shape(per_step)[1:], seed=seeding.fold_in(self._epoch_seed, position + step)),
          tf.range(num_steps), fn_output_signature=tf.float32)
      image = tf.reshape(tf.cast(draws < per_step / 255.0, tf.float32), tf.shape(image))
    elif self.binarization != "fixed":
      image = image / 255.0
    batch["image"] = image
    return batch
