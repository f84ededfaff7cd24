"""The training set held in variables, batched inside the train call (tfgen/data/in_graph.py)."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfgen import config as config_lib
from tfgen import data
from tfgen import models
from tfgen import optimizers
from tfgen import train
from tfgen.data import in_graph

NUM, BATCH = 23, 5  # 4 full batches an epoch; 3 examples left over.


def _arrays(intensities=False):
  rng = np.random.RandomState(0)
  if intensities:
    image = rng.randint(0, 256, size=(NUM, 4, 4, 1)).astype(np.uint8)
  else:
    image = (rng.uniform(size=(NUM, 4, 4, 1)) < 0.5).astype(np.uint8)
  # The label is the example's index, so a batch says which examples it holds.
  return {"image": image, "label": np.arange(NUM, dtype=np.int32)}


def _epoch(batches, epoch, first_step=0):
  batches.start_epoch(epoch, first_step)
  take = tf.function(lambda: next(batches))
  return [{k: v.numpy() for k, v in take().items()}
          for _ in range(batches.steps_per_epoch - first_step)]


def test_an_epoch_holds_distinct_examples_in_an_order_set_by_seed_and_epoch():
  batches = in_graph.InGraphBatches(_arrays(), BATCH, "fixed", seed=7)
  assert batches.steps_per_epoch == NUM // BATCH
  first = _epoch(batches, 0)
  indices = np.concatenate([b["label"] for b in first])
  assert len(indices) == len(set(indices)) == 4 * BATCH
  arrays = _arrays()
  for b in first:  # Images travel with their labels, converted to floats.
    assert b["image"].dtype == np.float32
    np.testing.assert_array_equal(b["image"], arrays["image"][b["label"]])
  again = np.concatenate([b["label"] for b in _epoch(batches, 0)])
  np.testing.assert_array_equal(indices, again)
  assert not np.array_equal(indices, np.concatenate([b["label"] for b in _epoch(batches, 1)]))
  other_seed = in_graph.InGraphBatches(_arrays(), BATCH, "fixed", seed=8)
  assert not np.array_equal(indices, np.concatenate([b["label"] for b in _epoch(other_seed, 0)]))


def test_starting_mid_epoch_gives_the_rest_of_the_same_epoch():
  batches = in_graph.InGraphBatches(_arrays(intensities=True), BATCH, "dynamic", seed=3)
  whole, rest = _epoch(batches, 2), _epoch(batches, 2, first_step=2)
  assert len(rest) == 2
  for a, b in zip(whole[2:], rest):
    np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_array_equal(a["image"], b["image"])  # The same binarization too.


@pytest.mark.parametrize("binarization", ["fixed", "dynamic", "none"])
def test_taking_several_steps_at_once_gives_the_batches_one_at_a_time(binarization):
  """A compiled multi-step call takes its steps' batches in one block (`take`)."""
  batches = in_graph.InGraphBatches(_arrays(binarization != "fixed"), BATCH, binarization, 3)
  one_by_one = _epoch(batches, 1, first_step=1)
  batches.start_epoch(1, first_step=1)
  block = tf.function(batches.take)(tf.constant(3))
  assert block["image"].shape[0] == 3 * BATCH and block["image"].dtype == tf.float32
  for name in ("image", "label"):
    np.testing.assert_array_equal(block[name].numpy(),
                                  np.concatenate([b[name] for b in one_by_one]))
  assert int(batches._position.numpy()) == 4  # pylint: disable=protected-access


def test_dynamic_binarization_draws_afresh_each_epoch_with_the_intensity_as_mean():
  arrays = {"image": np.full((2000, 4, 4, 1), 64, np.uint8)}
  batches = in_graph.InGraphBatches(arrays, 1000, "dynamic", seed=0)
  first, second = _epoch(batches, 0), _epoch(batches, 1)
  pixels = np.concatenate([b["image"] for b in first])
  assert set(np.unique(pixels)) == {0.0, 1.0}
  assert pixels.mean() == pytest.approx(64 / 255, abs=0.01)
  assert not np.array_equal(first[0]["image"], second[0]["image"])
  grey = in_graph.InGraphBatches(arrays, 1000, "none", seed=0)
  np.testing.assert_allclose(_epoch(grey, 0)[0]["image"], 64 / 255, rtol=1e-6)


def test_a_set_over_the_size_limit_stays_in_tf_data(monkeypatch):
  dataset = tf.data.Dataset.from_tensor_slices(_arrays())
  assert in_graph.InGraphBatches.from_dataset(dataset, NUM, BATCH, "fixed", 0).num_examples == NUM
  monkeypatch.setattr(in_graph, "MAX_BYTES", NUM * 16 - 1)
  assert in_graph.InGraphBatches.from_dataset(dataset, NUM, BATCH, "fixed", 0) is None


def test_the_loop_uses_in_graph_batches_unless_configured_otherwise(tiny_config):
  loaded = data.load(tiny_config.data, 20, seed=0)
  batches = train.train_batches_in_graph(loaded, tiny_config)
  assert batches.num_examples == loaded.info.num_examples["train"]
  assert batches.steps_per_epoch == loaded.steps_per_epoch
  off = tiny_config.copy_and_resolve_references()
  off.data.in_graph = False
  assert train.train_batches_in_graph(loaded, off) is None
  # Semi-supervised batches stay in tf.data: tests/test_ssvae.py.


def test_a_train_call_over_in_graph_batches_trains_like_the_same_batches_fed_one_by_one():
  """The multi-step call advances the position each step and updates as a plain step would."""
  config = config_lib.base_config()
  config.model = models.model_config("made", hidden_sizes=(8,), num_masks=1)
  info = data.DataInfo("toy", (4, 4, 1), "fixed", {"train": NUM}, None)
  weights = []
  for feed in ("in_graph", "one_by_one"):
    tf.keras.utils.set_random_seed(0)
    model = models.build(config.model, info)
    model.build_for_images()
    optimizer = optimizers.build(config.train)
    trainer = train.Trainer(model, optimizer, tf.distribute.get_strategy(), BATCH, seed=0)
    batches = in_graph.InGraphBatches(_arrays(), BATCH, "fixed", seed=1).start_epoch(0)
    if feed == "in_graph":
      trainer.train_steps(batches, 4)
    else:
      fed = _epoch(batches, 0)
      for batch in fed:
        trainer.train_steps(itertools.repeat({"image": tf.constant(batch["image"])}), 1)
    weights.append([w.numpy() for w in model.trainable_weights])
  for a, b in zip(*weights):
    np.testing.assert_allclose(a, b, atol=1e-6)
