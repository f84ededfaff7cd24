"""Evaluation of a trained run: test log-likelihood, bounds and active units.

Protocol: the negative log-likelihood is −log p(x) averaged over the whole split, where log p(x)
is exact for fully observed models and, for latent-variable models, the IWAE bound with K
importance samples (K = 5000 unless stated), drawn `chunk_size` at a time so memory is bounded
whatever K is. Evaluation images are never re-binarized: fixed sets are read as stored, dynamic
ones were binarized once with a fixed seed (see tfgen/data/pipeline.py).

What is averaged and reported beyond the NLL, the model declares (tfgen/models/base.py):
`evaluation_terms` gives per-example terms (its bounds, and `log_prob`) and arrays collected over
the split, and `finish_evaluation` adds what the whole split shows. Latent-variable models thus
add active units (Burda et al. 2016, section 5.2: unit u is active when Cov_x(E_{q(u|x)}[u]) >
0.01) and, on labelled data, latent-code classification (tfgen/probes.py); the semi-supervised
VAE its classification error, with its NLL −log p(x) with the class summed out; sparse codes the
dimensions each image uses.
"""

import dataclasses
import math
import os
import resource
import time
from typing import Dict, Optional

from absl import logging
import keras
import ml_collections
import numpy as np
import tensorflow as tf

from tfgen import config as config_lib
from tfgen import data as data_lib
from tfgen import errors
from tfgen import files
from tfgen import models
from tfgen import seeding
from tfgen import workdir as workdir_lib
from tfgen.models import capabilities as caps


def results_path(workdir: str, split: str, num_importance_samples: int) -> str:
  return os.path.join(workdir, f"evaluation_{split}_k{num_importance_samples}.json")


@dataclasses.dataclass
class Trained:
  """A run's model rebuilt from its workdir, with what it was built from."""

  config: ml_collections.ConfigDict
  info: data_lib.DataInfo
  model: models.GenerativeModel
  checkpoint: str
  step: int
  data: Optional[data_lib.Data] = None  # Only when splits were asked for.


def load_trained(workdir: str, config=None, splits=("test",)) -> Trained:
  """Rebuilds a run's model from its config and restores its weights: the best validation
  epoch's (best/) for a run trained with early stopping, else the newest checkpoint's.

  A run may be loaded while it trains: TensorFlow renames a checkpoint into place only once it
  is complete, so this is the newest complete one when the weights are read (a warning line
  names it and the training process); checkpoints written later are not seen.

  Args:
    workdir: a training run's working directory.
    config: the run's config, possibly with changed eval settings (default: the saved one).
    splits: which data splits to load; with none, the data set is not touched when the run
      recorded its DataInfo.
  """
  config = config or config_lib.load_from_workdir(workdir)
  config_lib.validate(config)
  info, data = workdir_lib.load_data_info(workdir), None
  if splits or info is None:
    data = data_lib.load(config.data, config.train.batch_size, config.eval.batch_size,
                         seed=config.seed, splits=splits)
    info = data.info
  model = models.build(config.model, info)
  model.build_for_images()
  trainer = training_process(workdir)
  path = workdir_lib.restore_model(model, workdir)
  suffix = path.rsplit("-", 1)[-1]
  step = int(suffix) if suffix.isdigit() else -1
  if trainer is not None:
    logging.warning("the run in %s is still training (process %d): using its newest complete "
                    "checkpoint, %s (step %d); later checkpoints are not seen", workdir,
                    trainer, os.path.relpath(path, workdir), step)
  return Trained(config, info, model, path, step, data)


def training_process(workdir: str) -> Optional[int]:
  """The process of this machine training in workdir (holding its lock), if any."""
  return files.lock_holder(os.path.join(workdir, workdir_lib.LOCK_FILE))


def check_sizes(**sizes) -> Dict:
  """The sizes given (not None); 0 or less is a mistake, not a request for the default.

  Raises:
    ConfigError: a size below 1.
  """
  for name, value in sizes.items():
    if value is not None and value < 1:
      raise errors.ConfigError(f"{name} must be >= 1, got {value}")
  return {name: value for name, value in sizes.items() if value is not None}


def evaluate(workdir: str, num_importance_samples: Optional[int] = None,
             split: Optional[str] = None, batch_size: Optional[int] = None,
             chunk_size: Optional[int] = None, show_progress: bool = True,
             classify_codes: bool = True) -> Dict:
  """Evaluates workdir's model (its best/ weights with early stopping, else the newest
  checkpoint's) and writes the results as JSON there.

  Args:
    workdir: a training run's working directory.
    num_importance_samples: K of the IWAE estimate (default: config.eval, 5000).
    split: "test" (default: config.eval.split), "validation" or "train".
    batch_size: images per evaluation batch (default: config.eval.batch_size).
    chunk_size: importance samples per image drawn at once (default: config.eval.chunk_size).
    show_progress: draw a progress bar.
    classify_codes: let models that can (latent-variable models on labelled data) fit the
      latent-code classifier (tfgen/probes.py) on the training split and score it on `split`.

  Returns:
    The results dict that is also written to `evaluation_{split}_k{K}.json`.

  Raises:
    ConfigError: a size below 1; WorkdirError: no run or checkpoint in workdir.
  """
  sizes = check_sizes(num_importance_samples=num_importance_samples, batch_size=batch_size,
                       chunk_size=chunk_size)
  config = config_lib.load_from_workdir(workdir)
  ev = config.eval
  ev.update(sizes)
  ev.split = split or ev.split
  trained = load_trained(workdir, config, splits=(ev.split,))
  results = {"workdir": os.path.abspath(workdir), "checkpoint": trained.checkpoint,
             "step": trained.step}
  results.update(evaluate_model(trained.model, config, trained.data,
                                show_progress=show_progress, classify_codes=classify_codes))
  path = results_path(workdir, ev.split, ev.num_importance_samples)
  files.write_json(path, results)
  results["json"] = path
  logging.info("wrote %s", path)
  return results


def evaluate_model(model: models.GenerativeModel, config: ml_collections.ConfigDict,
                   data: Optional[data_lib.Data] = None, show_progress: bool = True,
                   classify_codes: bool = True, num_examples: Optional[int] = None) -> Dict:
  """Evaluates a built model under `config.eval` (k, split, batch and chunk sizes) on the data
  set of `config.data`: what tfgen-evaluate reports, for a run's model or a preset's.

  Batch i of the split is evaluated with the seed (config.seed + 1, i), so the same model, config
  and examples give the same figures.

  Args:
    model: a built model with its weights.
    config: the config it was trained with (its `eval`, `data` and `seed` are read).
    data: the loaded data holding config.eval.split (default: loaded from config.data).
    show_progress: draw a progress bar.
    classify_codes: as for evaluate().
    num_examples: only the first this many examples of the split (default: all of them), in
      batches of config.eval.batch_size as the whole split is.

  Returns:
    The results dict (model, data, split, num_examples, nll_nats, nll_bits_per_dim, the model's
    terms, seconds, ...).

  Raises:
    ConfigError: num_examples below 1.
  """
  check_sizes(num_examples=num_examples)
  ev = config.eval
  if data is None:
    data = data_lib.load(config.data, config.train.batch_size, ev.batch_size, seed=config.seed,
                         splits=(ev.split,))
  k = ev.num_importance_samples
  model.importance_chunk_size = ev.chunk_size
  dataset = data.split(ev.split)
  total = data.info.num_examples[ev.split]
  if num_examples is not None and num_examples < total:
    dataset = dataset.unbatch().take(num_examples).batch(ev.batch_size)
    total = num_examples

  # XLA needs static shapes: the last batch of a split may be smaller, which costs one more
  # compilation, not a fallback.
  @tf.function(jit_compile=bool(ev.get("jit_compile", False)) or None)
  def batch_terms(batch, seed):
    return model.evaluation_terms(batch, seed, k)

  start = time.perf_counter()
  num_batches = math.ceil(total / ev.batch_size)
  progbar = keras.utils.Progbar(num_batches, verbose=1 if show_progress else 0, unit_name="batch")
  sums, count, collected = {}, 0, {}
  for i, batch in enumerate(dataset):
    terms, arrays = batch_terms(batch, seeding.as_seed([config.seed + 1, i]))
    for name, value in terms.items():
      sums[name] = sums.get(name, 0.0) + float(tf.reduce_sum(tf.cast(value, tf.float64)))
    for name, value in arrays.items():
      collected.setdefault(name, []).append(value.numpy())
    count += int(batch["image"].shape[0])
    progbar.update(i + 1)
  seconds = time.perf_counter() - start

  num_pixels = int(np.prod(data.info.image_shape))
  nll = -sums.pop("log_prob") / count
  results = {
      "model": config.model.name,
      "data": data.info.name,
      "binarization": data.info.binarization,
      "split": ev.split,
      "num_examples": count,
      "num_importance_samples": model.log_prob_samples(k),
      "nll_nats": nll,
      "nll_bits_per_dim": nll / (num_pixels * math.log(2)),
  }
  results.update({name: value / count for name, value in sums.items()})

  def load_splits(names):
    splits = data_lib.load(config.data, config.eval.batch_size, config.eval.batch_size,
                           seed=config.seed, splits=tuple(names), train_for_eval=True)
    return {name: splits.split(name) for name in names}

  context = caps.EvaluationContext(data.info.num_classes, ev.split, load_splits, classify_codes)
  start = time.perf_counter()
  results = model.finish_evaluation(
      results, {name: np.concatenate(parts) for name, parts in collected.items()}, context)
  results["finish_seconds"] = time.perf_counter() - start
  results["seconds"] = seconds
  results["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return results


def format_table(results: Dict) -> str:
  """The results as an aligned two-column table."""
  rows = []
  for key, value in results.items():
    if isinstance(value, float):
      value = f"{value:.4f}"
    rows.append((key, str(value)))
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
