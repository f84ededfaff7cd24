"""Sampling from a trained run."""

import os

import numpy as np
import tensorflow as tf

from tfgen import errors
from tfgen import evaluate
from tfgen import models
from tfgen import seeding
from tfgen import viz


def _class_conditional_latent(trained, mode: str):
  model = trained.model
  if not (model.class_conditional and isinstance(model, models.LatentVariableModel)):
    raise errors.ConfigError(f"--mode={mode} needs a class-conditional latent-variable model "
                             f"(ssvae); {trained.config.model.name!r} is not")
  return model


def class_style_grid(model, num_styles: int, seed, mean: bool = True) -> np.ndarray:
  """Rows are the classes, columns styles z ~ p(z), one z shared down each column.

  Returns:
    uint8 picture of num_classes x num_styles images.
  """
  z = model.prior().sample(num_styles, seed=seeding.fold_in(seed, 0))
  classes = model.num_classes
  z_grid = tf.tile(z, [classes, 1])  # Row-major: row c holds every style with class c.
  labels = tf.repeat(tf.range(classes), num_styles)
  p_x = model.decode(z_grid, labels=labels)
  images = p_x.mean() if mean else p_x.sample(seed=seeding.fold_in(seed, 1))
  return viz.image_grid(images.numpy(), num_styles)


def analogy_grid(trained, num: int, seed: int = 0, mean: bool = True) -> np.ndarray:
  """Analogies: each row a test image, then its style z decoded with every class in turn.

  The test images are of classes 0, 1, 2, ... in turn where the split has labels. z is the mean
  of q(z | x, y) with the image's own label y (else the classifier's guess), so a row keeps the
  writing style and changes only the class.

  Returns:
    uint8 picture, num rows of 1 + num_classes images.
  """
  model = _class_conditional_latent(trained, "analogies")
  images, labels = _test_images_of_every_class(trained.data.test, num, model.num_classes)
  z = model.encode(images, labels=labels).mean()  # [num, latent]
  classes = model.num_classes
  p_x = model.decode(tf.repeat(z, classes, axis=0),
                     labels=tf.tile(tf.range(classes), [tf.shape(z)[0]]))
  draws = p_x.mean() if mean else p_x.sample(seed=seeding.as_seed(seed))
  decoded = tf.reshape(draws, [-1, classes] + list(model.image_shape))
  rows = tf.concat([images[:, None], decoded], axis=1)
  return viz.image_grid(tf.reshape(rows, [-1] + list(model.image_shape)).numpy(), classes + 1)


def _test_images_of_every_class(dataset, num: int, num_classes: int):
  """num test images, of classes 0, 1, 2, ... in turn where the split has labels (test splits
  may be stored sorted by class), else the first num; returns (images, labels or None)."""
  wanted = [i % num_classes for i in range(num)]
  picked = {}
  for batch in dataset:
    if "label" not in batch:
      first = next(iter(dataset.unbatch().batch(num)))
      return first["image"], None
    for image, label in zip(batch["image"].numpy(), batch["label"].numpy()):
      slots = [i for i, c in enumerate(wanted) if c == label and i not in picked]
      if slots:
        picked[slots[0]] = (image, label)
    if len(picked) == num:
      break
  order = sorted(picked)  # Classes the split lacks leave their slots out.
  return (tf.constant(np.stack([picked[i][0] for i in order])),
          tf.constant([picked[i][1] for i in order], tf.int32))


# tfgen-sample --mode: `samples` is sample_grid's own path; the others draw a picture from a run
# loaded with its test split: (trained, num, seed, mean) -> uint8 picture.
MODES = {"samples": None, "analogies": analogy_grid}


def sample_grid(workdir: str, num: int, out: str, seed: int = 0, num_columns: int = 0,
                mean: bool = True, inpaint: bool = False, label: int = -1,
                mode: str = "samples") -> str:
  """Draws `num` images from workdir's newest checkpoint and writes them as a PNG grid.

  Args:
    workdir: a training run's working directory.
    num: number of images.
    out: PNG path.
    seed: the same seed gives the same images.
    num_columns: columns of the grid (0: square).
    mean: pixel probabilities of the last conditional instead of a draw.
    inpaint: autoregressive models only: take the first `num` test images, keep their top half
      and draw the bottom half; the grid alternates rows of originals and completions.
    label: class-conditional models: the class to draw (-1: classes 0, 1, 2, ... in turn; for
      class-conditional latent-variable models a grid of classes (rows) by styles z (columns),
      num // classes of them).
    mode: "samples" (the above) or another key of MODES, e.g. "analogies".

  Returns:
    The path written.

  Raises:
    ConfigError: an unknown mode, or one the run's model does not support.
  """
  if mode not in MODES:
    raise errors.ConfigError(f"unknown --mode {mode!r}; known: {', '.join(MODES)}")
  if MODES[mode] is not None:
    trained = evaluate.load_trained(workdir, splits=("test",))
    return viz.write_png(out, MODES[mode](trained, num, seed=seed, mean=mean))
  trained = evaluate.load_trained(workdir, splits=("test",) if inpaint else ())
  model = trained.model
  if (label < 0 and not inpaint and model.class_conditional
      and isinstance(model, models.LatentVariableModel)):
    styles = max(num // model.num_classes, 1)
    return viz.write_png(out, class_style_grid(model, styles, seeding.as_seed(seed), mean))
  extra = {}
  if model.class_conditional:
    labels = np.full([num], label) if label >= 0 else np.arange(num) % trained.info.num_classes
    extra["labels"] = tf.constant(labels, tf.int32)
  elif label >= 0:
    raise errors.ConfigError(f"--label needs a class-conditional model; {trained.config.model.name!r} "
                             "is not")
  if inpaint:
    if not isinstance(model, models.AutoregressiveModel):
      raise errors.ConfigError("--inpaint needs an autoregressive model (nade, made, pixelcnn, "
                               "gated_pixelcnn)")
    originals = next(iter(trained.data.test.unbatch().batch(num)))["image"]
    rows = model.image_shape[0]
    known = tf.range(rows)[None, :, None, None] < rows // 2
    conditioned_on = tf.where(known, originals, -1.0)
    filled = model.sample(num, seed=seeding.as_seed(seed), mean=mean,
                          conditioned_on=conditioned_on, **extra)
    filled = tf.where(known, originals, filled)
    columns = num_columns or 8
    return viz.write_png(out, viz.reconstruction_pairs(originals.numpy(), filled.numpy(), columns))
  images = model.sample(num, seed=seeding.as_seed(seed), mean=mean, **extra).numpy()
  return viz.write_png(out, viz.image_grid(images, num_columns))


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
  """
  if not tf.saved_model.contains_saved_model(saved_model):
    raise errors.WorkdirError(f"{saved_model!r} holds no SavedModel; write one with tfgen-export")
  loaded = tf.saved_model.load(saved_model)
  if "sample" not in loaded.signatures:
    raise errors.WorkdirError(f"the SavedModel in {saved_model!r} has no `sample` signature")
  outputs = loaded.signatures["sample"](num_samples=tf.constant(num, tf.int32),
                                        seed=tf.constant([seed, 0], tf.int32))
  if mean:
    images = outputs["probabilities"].numpy()
  else:
    images = outputs["images"].numpy().astype(np.float32)
    images /= max(float(images.max()), 1.0) if images.max() <= 1 else 255.0
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  return viz.write_png(out, viz.image_grid(images, num_columns))
