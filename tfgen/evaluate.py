"""Evaluation of a trained run: test log-likelihood, bounds and active units.

Protocol: the negative log-likelihood is −log p(x) averaged over the whole split, where log p(x)
is exact for fully observed models and, for latent-variable models, the IWAE bound with K
importance samples (K = 5000 unless stated), drawn `chunk_size` at a time so memory is bounded
whatever K is. Evaluation images are never re-binarized: fixed sets are read as stored, dynamic
ones were binarized once with a fixed seed (see tfgen/data/pipeline.py).

Models that classify (`infers_labels`, the semi-supervised VAE) also report
`classification_error`, the test error of argmax_y q(y | x), and their NLL is −log p(x) with the
class summed out.

Active units (Burda et al. 2016, section 5.2): unit u is active when Cov_x(E_{q(u|x)}[u]) > 0.01.
Sparse-code models also report the mean number of latent dimensions each image uses.

Latent-code classification (tfgen/probes.py): for latent-variable models on labelled data, a
logistic regression fitted on the training split's codes, scored on the evaluated split.
"""

import dataclasses
import json
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
from tfgen import models
from tfgen import probes
from tfgen import seeding
from tfgen import workdir as workdir_lib

ACTIVE_UNIT_THRESHOLD = 0.01


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
  """Rebuilds a run's model from its config and restores its newest checkpoint.

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
  path = workdir_lib.restore_model(model, workdir)
  suffix = path.rsplit("-", 1)[-1]
  return Trained(config, info, model, path, int(suffix) if suffix.isdigit() else -1, data)


def evaluate(workdir: str, num_importance_samples: Optional[int] = None,
             split: Optional[str] = None, batch_size: Optional[int] = None,
             chunk_size: Optional[int] = None, show_progress: bool = True,
             classify_codes: bool = True) -> Dict:
  """Evaluates the newest checkpoint of workdir and writes the results as JSON there.

  Args:
    workdir: a training run's working directory.
    num_importance_samples: K of the IWAE estimate (default: config.eval, 5000).
    split: "test" (default: config.eval.split), "validation" or "train".
    batch_size: images per evaluation batch (default: config.eval.batch_size).
    chunk_size: importance samples per image drawn at once (default: config.eval.chunk_size).
    show_progress: draw a progress bar.
    classify_codes: for latent-variable models on labelled data, also fit the latent-code
      classifier (tfgen/probes.py) on the training split and score it on `split`.

  Returns:
    The results dict that is also written to `evaluation_{split}_k{K}.json`.

  Raises:
    ConfigError: a size below 1; WorkdirError: no run or checkpoint in workdir.
  """
  sizes = dict(num_importance_samples=num_importance_samples, batch_size=batch_size,
               chunk_size=chunk_size)
  for name, value in sizes.items():
    # None means the config's value; 0 is a mistake, not a request for the default.
    if value is not None and value < 1:
      raise errors.ConfigError(f"{name} must be >= 1, got {value}")
  config = config_lib.load_from_workdir(workdir)
  ev = config.eval
  ev.update({name: value for name, value in sizes.items() if value is not None})
  ev.split = split or ev.split
  trained = load_trained(workdir, config, splits=(ev.split,))
  data, model = trained.data, trained.model
  k, chunk = ev.num_importance_samples, ev.chunk_size
  dataset = data.split(ev.split)
  is_latent = isinstance(model, models.LatentVariableModel)

  @tf.function
  def batch_terms(images, labels, seed):
    extra = {"labels": labels} if model.class_conditional else {}
    terms = dict(model.bounds(images, seed, **extra))
    # A model that classifies is scored on log p(x) with y marginalised, as test labels are
    # unknown to it; its bounds above report the classification error on the labels.
    lp_extra = {} if model.infers_labels else extra
    terms["log_prob"] = model.log_prob(images, seeding.fold_in(seed, 1),
                                       num_importance_samples=k, chunk_size=chunk, **lp_extra)
    means = model.posterior_means(images, seeding.fold_in(seed, 2)) if is_latent else []
    active = model.num_active_dimensions(images) if is_latent else None
    if active is not None:
      terms["active_dimensions"] = active
    return terms, means

  start = time.perf_counter()
  num_batches = math.ceil(data.info.num_examples[ev.split] / ev.batch_size)
  progbar = keras.utils.Progbar(num_batches, verbose=1 if show_progress else 0, unit_name="batch")
  sums, count, code_means = {}, 0, None
  for i, batch in enumerate(dataset):
    labels = batch.get("label", tf.zeros([tf.shape(batch["image"])[0]], tf.int32))
    terms, means = batch_terms(batch["image"], labels, seeding.as_seed([config.seed + 1, i]))
    for name, value in terms.items():
      sums[name] = sums.get(name, 0.0) + float(tf.reduce_sum(tf.cast(value, tf.float64)))
    count += int(batch["image"].shape[0])
    if is_latent:
      code_means = [m.numpy() for m in means] if code_means is None else [
          np.concatenate([a, m.numpy()]) for a, m in zip(code_means, means)]
    progbar.update(i + 1)
  seconds = time.perf_counter() - start

  num_pixels = int(np.prod(data.info.image_shape))
  nll = -sums.pop("log_prob") / count
  results = {
      "workdir": os.path.abspath(workdir),
      "checkpoint": trained.checkpoint,
      "step": trained.step,
      "model": config.model.name,
      "data": data.info.name,
      "binarization": data.info.binarization,
      "split": ev.split,
      "num_examples": count,
      "num_importance_samples": k if is_latent else None,
      "nll_nats": nll,
      "nll_bits_per_dim": nll / (num_pixels * math.log(2)),
  }
  results.update({name: value / count for name, value in sums.items()})
  if is_latent:
    variances = [np.var(m, axis=0) for m in code_means]
    results["active_units"] = [int(np.sum(v > ACTIVE_UNIT_THRESHOLD)) for v in variances]
    results["latent_units"] = [int(v.size) for v in variances]
  if "active_dimensions" in results:
    results["active_dimensions_per_image"] = results.pop("active_dimensions")
  if is_latent and classify_codes and data.info.num_classes:
    start = time.perf_counter()
    splits = data_lib.load(config.data, config.eval.batch_size, config.eval.batch_size,
                           seed=config.seed, splits=("train", "validation", ev.split),
                           train_for_eval=True)
    probe = probes.classify_codes(model, splits.train, splits.validation, splits.split(ev.split),
                                  data.info.num_classes)
    results.update(probe.as_dict())
    results["code_classification_seconds"] = time.perf_counter() - start
  results["seconds"] = seconds
  results["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  path = results_path(workdir, ev.split, k)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  os.replace(path + ".tmp", path)
  results["json"] = path
  logging.info("wrote %s", path)
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
