"""Sampling from a trained run (`tfgen-sample --mode=NAME`) or from an exported SavedModel.

The modes are what the run's model declares (`model.sample_modes()`, tfgen/models/base.py):
every model draws `samples`; latent-variable models add `traversal`, autoregressive models
`inpaint`, VSC `conditional`, the semi-supervised VAE `analogies`, and a new family whatever it
declares. This module only loads the run, hands the mode a SampleRequest and writes the PNG.
"""

import re

import numpy as np
import tensorflow as tf

from tfgen import data as data_lib
from tfgen import errors
from tfgen import evaluate
from tfgen import viz
from tfgen.models import capabilities as caps


def sample_grid(workdir: str, num: int, out: str, seed: int = 0, num_columns: int = 0,
                mean: bool = True, inpaint: bool = False, label: int = -1,
                mode: str = "samples", num_images: int = 4, scale: float = 0.0) -> str:
  """Draws the picture of mode `mode` from workdir's newest checkpoint and writes it as a PNG.

  Args:
    workdir: a training run's working directory.
    num: number of images.
    out: PNG path.
    seed: the same seed gives the same images.
    num_columns: columns of the grid (0: the mode's own layout).
    mean: pixel probabilities of the last conditional instead of a draw.
    inpaint: the same as mode="inpaint" (autoregressive models).
    label: the class to draw or the class of the test images a mode starts from (-1: none),
      for modes that use one.
    mode: one of the modes the model declares ("samples" by default).
    num_images: test images a mode that encodes images starts from.
    scale: resolution relative to the training images', for modes that render at any resolution
      (0: the mode's default).

  Returns:
    The path written.

  Raises:
    ConfigError: a mode the run's model does not declare, a --label or --scale the mode does not
      use, or a negative --scale.
    OutputError: `out` cannot be written (checked before the model is loaded).
  """
  if not scale >= 0 or scale == float("inf"):
    raise errors.ConfigError(f"--scale must be a number > 0 (0: the mode's default), got {scale}")
  viz.check_writable(out)  # Before loading the model: a bad --out fails at once.
  mode = "inpaint" if inpaint else mode
  trained = evaluate.load_trained(workdir, splits=())
  modes = trained.model.sample_modes()
  name = trained.config.model.name
  if mode not in modes:
    raise errors.ConfigError(f"unknown --mode {mode!r} for model {name!r}; it offers: "
                             f"{', '.join(modes)}")
  chosen = modes[mode]
  if label >= 0 and not chosen.uses_label:
    raise errors.ConfigError(f"--label is not used by --mode={mode} of model {name!r}: it "
                             "needs a class-conditional model or a mode that picks test images")
  if scale and not chosen.uses_scale:
    scaled = [m for m, declared in modes.items() if declared.uses_scale]
    raise errors.ConfigError(f"--scale is not used by --mode={mode} of model {name!r}; modes "
                             "that render at another resolution: "
                             f"{', '.join(scaled) or 'none (e.g. a vae with decoder=cppn)'}")
  request = caps.SampleRequest(num=num, seed=seed, mean=mean, label=label,
                               num_columns=num_columns, num_images=num_images, model_name=name,
                               num_classes=trained.info.num_classes, scale=scale)
  if chosen.needs_test_data:
    config = trained.config
    request.test = data_lib.load(config.data, config.train.batch_size, config.eval.batch_size,
                                 seed=config.seed, splits=("test",)).test
  return viz.write_png(out, chosen.fn(request))


def saved_model_grid(saved_model: str, num: int, out: str, seed: int = 0, num_columns: int = 0,
                     mean: bool = True) -> str:
  """Calls the `sample` signature of a SavedModel from tfgen-export and writes a PNG grid.

  Args:
    saved_model: the SavedModel folder.
    num, out, seed, num_columns, mean: as for sample_grid.

  Returns:
    The path written.

  Raises:
    WorkdirError: the folder holds no SavedModel with a `sample` signature.
    ConfigError: the SavedModel refused the request (e.g. more than its max_samples images).
    OutputError: `out` cannot be written (checked before the SavedModel is loaded).
  """
  viz.check_writable(out)
  if not tf.saved_model.contains_saved_model(saved_model):
    raise errors.WorkdirError(f"{saved_model!r} holds no SavedModel; write one with tfgen-export")
  loaded = tf.saved_model.load(saved_model)
  if "sample" not in loaded.signatures:
    raise errors.WorkdirError(f"the SavedModel in {saved_model!r} has no `sample` signature")
  try:
    outputs = loaded.signatures["sample"](num_samples=tf.constant(num, tf.int32),
                                          seed=tf.constant([seed, 0], tf.int32))
  except tf.errors.InvalidArgumentError as e:
    # The SavedModel checks its inputs (e.g. its max_samples limit); keep the line that says so.
    lines = [line.strip() for line in (e.message or str(e)).splitlines() if line.strip()]
    said = next((line[line.find("sample:"):] for line in lines if "sample:" in line), lines[0])
    said = re.sub(r"\]\s*\[", " ", said).rstrip("]")  # tf.debugging.Assert's "[msg] [value]".
    raise errors.ConfigError(f"the SavedModel refused the request: {said}") from None
  if mean:
    images = outputs["probabilities"].numpy()
  else:
    images = outputs["images"].numpy().astype(np.float32)
    images /= max(float(images.max()), 1.0) if images.max() <= 1 else 255.0
  return viz.write_png(out, viz.image_grid(images, num_columns))
