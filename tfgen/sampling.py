"""Sampling from a trained run: sample grids, inpainting, and latent traversals and conditional
samples for latent-variable models.

Modes of `tfgen-sample --mode=...` (see MODES): "samples" draws from the model; "analogies"
decodes test images' styles with every class (class-conditional latent models); "traversal"
encodes test images and sweeps each of their most used latent dimensions; "conditional" keeps the
set of dimensions an encoded image uses and draws new values for them from the prior's slab.
"""

import re

import numpy as np
import tensorflow as tf

from tfgen import errors
from tfgen import evaluate
from tfgen import models
from tfgen import seeding
from tfgen import viz

def _latent_model(trained, mode: str):
  if not isinstance(trained.model, models.LatentVariableModel):
    raise errors.ConfigError(f"--mode={mode} needs a latent-variable model; "
                             f"{trained.config.model.name!r} is not one")
  return trained.model


def _test_images(trained, num: int, label: int = -1) -> tf.Tensor:
  """`num` test images, [num, H, W, C]: of class `label` when label >= 0; on labelled data
  otherwise one of each class in turn (splits may be sorted by class); else the first ones."""
  if label >= 0 and not trained.info.num_classes:
    raise errors.ConfigError(f"--label needs a labelled data set; {trained.info.name!r} has none")
  num_classes = trained.info.num_classes or 0
  wanted = ([label] * num if label >= 0 else
            [i % num_classes for i in range(num)] if num_classes else [None] * num)
  chosen = [None] * num
  for batch in trained.data.test:
    labels = batch["label"].numpy() if "label" in batch else None
    for image, image_label in zip(batch["image"], labels if labels is not None else [None] *
                                  int(batch["image"].shape[0])):
      for slot, want in enumerate(wanted):
        if chosen[slot] is None and (want is None or want == image_label):
          chosen[slot] = image
          break
    if all(c is not None for c in chosen):
      return tf.stack(chosen)
  found = sum(c is not None for c in chosen)
  raise errors.DataError(f"the test split holds {found} images"
                         + (f" of class {label}" if label >= 0 else "") + f", not {num}")


def traversal_codes(codes, usage, num_dimensions: int = 8, num_steps: int = 9,
                    span: float = 3.0) -> tf.Tensor:
  """Codes of latent traversals: per image, its most used dimensions swept over [−span, span].

  Dimensions are ranked by how surely the image uses them (γ for sparse codes), then by the
  code's magnitude; each of the top `num_dimensions` is set in turn to `num_steps` values while
  the rest of the code stays as it is.

  Args:
    codes: E_q[z] per image, [N, J].
    usage: probability that each image uses each dimension, [N, J].
    num_dimensions: rows per image.
    num_steps: columns.
    span: the sweep runs from −span to span (prior standard deviations).

  Returns:
    [N, num_dimensions, num_steps, J].
  """
  latent_size = int(codes.shape[-1])
  num_dimensions = min(num_dimensions, latent_size)
  # Usage first; the magnitude only orders dimensions used equally surely (dense codes).
  score = usage + 1e-3 * tf.tanh(tf.abs(codes))
  top = tf.math.top_k(score, k=num_dimensions).indices
  values = tf.linspace(-span, span, num_steps)
  base = tf.tile(codes[:, None, None, :], [1, num_dimensions, num_steps, 1])
  sweep = tf.one_hot(top, latent_size)[:, :, None, :]
  return base * (1.0 - sweep) + sweep * values[None, None, :, None]


def traversal_images(model, images, num_dimensions: int = 8, num_steps: int = 9,
                     span: float = 3.0) -> np.ndarray:
  """Decoded latent traversals of images [N, H, W, C] (see traversal_codes).

  Rows sweep the dimensions each image uses (γ > 0.5; all of them for dense codes), at most
  `num_dimensions` and at least one per image.

  Returns:
    Pixel means [rows·num_steps, H, W, C], row-major (a grid of num_steps columns).
  """
  codes, usage = model.codes(images), model.prob_active(images)
  traversed = traversal_codes(codes, usage, num_dimensions, num_steps, span)
  num_used = np.clip(np.sum(usage.numpy() > 0.5, axis=1), 1, traversed.shape[1])
  rows = tf.concat([traversed[i, :n] for i, n in enumerate(num_used)], 0)
  return model.decode(tf.reshape(rows, [-1, codes.shape[-1]])).mean().numpy()


def conditional_codes(usage, num_samples: int, seed) -> tf.Tensor:
  """New codes that use the same dimensions as given ones.

  Dimensions with usage > 0.5 take values drawn from the prior's slab, N(0, 1); the others are 0
  (for dense codes every dimension is redrawn, which is an ordinary prior sample).

  Args:
    usage: probability that each image uses each dimension, [N, J].
    num_samples: codes per image.
    seed: int32 [2].

  Returns:
    [N, num_samples, J].
  """
  used = usage > 0.5
  values = tf.random.stateless_normal([used.shape[0], num_samples, used.shape[1]], seed=seed)
  return tf.where(used[:, None, :], values, 0.0)


def conditional_images(model, images, num_samples: int, seed) -> np.ndarray:
  """Per image [N, H, W, C]: the image, then `num_samples` decoded conditional codes.

  Returns:
    [N·(num_samples + 1), H, W, C].
  """
  codes = conditional_codes(model.prob_active(images), num_samples, seed)
  decoded = model.decode(tf.reshape(codes, [-1, codes.shape[-1]])).mean()
  decoded = tf.reshape(decoded, [-1, num_samples] + list(images.shape[1:]))
  return tf.reshape(tf.concat([images[:, None], decoded], 1),
                    [-1] + list(images.shape[1:])).numpy()


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


def analogy_grid(trained, num: int, seed: int = 0, mean: bool = True, **unused) -> np.ndarray:
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


def traversal_grid(trained, num: int, seed: int = 0, mean: bool = True, label: int = -1,
                   num_images: int = 4, **unused) -> np.ndarray:
  """Latent traversals of `num_images` test images (of class `label` if >= 0): a row per used
  latent dimension (at most 8), 9 values from −3 to 3."""
  model = _latent_model(trained, "traversal")
  steps = 9
  return viz.image_grid(traversal_images(model, _test_images(trained, num_images, label),
                                         num_steps=steps), steps)


def conditional_grid(trained, num: int, seed: int = 0, mean: bool = True, label: int = -1,
                     num_images: int = 4, **unused) -> np.ndarray:
  """Per test image (`num_images`, of class `label` if >= 0), a row: the image and `num`
  decodings of new codes on its active dimensions."""
  model = _latent_model(trained, "conditional")
  images = _test_images(trained, num_images, label)
  return viz.image_grid(conditional_images(model, images, num, seeding.as_seed(seed)), num + 1)


# tfgen-sample --mode: `samples` is sample_grid's own path; the others draw a picture from a run
# loaded with its test split: (trained, num, seed, mean, label, num_images) -> uint8 picture.
MODES = {"samples": None, "analogies": analogy_grid, "traversal": traversal_grid,
         "conditional": conditional_grid}


def sample_grid(workdir: str, num: int, out: str, seed: int = 0, num_columns: int = 0,
                mean: bool = True, inpaint: bool = False, label: int = -1,
                mode: str = "samples", num_images: int = 4) -> str:
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
      num // classes of them); in the traversal and conditional modes, take test images of
      this class.
    mode: "samples" (the above) or another key of MODES: "analogies" (class-conditional latent
      models, `num` test images), "traversal" (for each of `num_images` test images, a row per
      used latent dimension, at most 8, and 9 values from −3 to 3), "conditional" (for each of
      `num_images` test images, a row with the image and `num` conditional samples).
    num_images: test images encoded in the traversal and conditional modes.

  Returns:
    The path written.

  Raises:
    ConfigError: an unknown mode, or one the run's model does not support.
    OutputError: `out` cannot be written (checked before the model is loaded).
  """
  if mode not in MODES:
    raise errors.ConfigError(f"unknown --mode {mode!r}; known: {', '.join(MODES)}")
  viz.check_writable(out)  # Before loading the model: a bad --out fails at once.
  if MODES[mode] is not None:
    trained = evaluate.load_trained(workdir, splits=("test",))
    return viz.write_png(out, MODES[mode](trained, num, seed=seed, mean=mean, label=label,
                                          num_images=num_images))
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
