"""What a model declares it can do, for the generic code that exports, samples and evaluates.

Generic modules never ask what kind of model they hold. They loop over what it declares:

  * `model.signatures()` -> {name: Signature}: the SavedModel functions of tfgen-export. A
    Signature names its inputs by kind (images, latents, labels, a seed, counts); the exporter
    checks each kind, works through a request a chunk at a time and calls the model's function
    on every chunk (tfgen/export.py).
  * `model.sample_modes()` -> {name: SampleMode}: the pictures of `tfgen-sample --mode=NAME`.
  * `model.evaluation_terms(...)` / `model.finish_evaluation(...)`: what tfgen-evaluate
    averages over a split and what it adds from the whole split (tfgen/models/base.py).
  * `model.training_pictures(...)`: the PNGs the training loop writes at every checkpoint.

A new family declares its own; the base classes give the common ones (tfgen/models/base.py).
"""

import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfgen import errors

# Input kinds of a Signature. The exporter checks each kind the same way for every model.
IMAGES = "images"                  # uint8 [B, H, W, C]; the function gets float32 in [0, 1].
KNOWN = "known"                    # uint8 [B, H, W, C], a mask the shape of the images.
LATENTS = "latents"                # float32 [B, size], finite.
CODES = "codes"                    # int32 [B, *shape] in 0..size − 1: a grid of discrete codes.
LABELS = "labels"                  # int32 [B] in 0..size − 1, one per image or latent if any.
SEED = "seed"                      # int32 [2]; the function gets a seed per chunk.
NUM_SAMPLES = "num_samples"        # int32 scalar >= 1: how many items to draw.
NUM_IMPORTANCE_SAMPLES = "num_importance_samples"  # int32 scalar >= 1, passed whole.
INPUT_KINDS = (IMAGES, KNOWN, LATENTS, CODES, LABELS, SEED, NUM_SAMPLES, NUM_IMPORTANCE_SAMPLES)
# Inputs whose rows are the items of a request, sliced into chunks.
BATCHED = (IMAGES, KNOWN, LATENTS, CODES, LABELS)

# Output markers: PIXELS values are floats in [0, 1] that the SavedModel serves as uint8 (0..1
# for binary data, 0..255 otherwise); IMAGE stands for the image shape (H, W, C).
PIXELS = "pixels"
IMAGE = "image"


@dataclasses.dataclass(frozen=True)
class Input:
  """One input of a Signature.

  Attributes:
    kind: one of INPUT_KINDS; the input's name in the SavedModel is the kind.
    size: LATENTS: the latent size; LABELS: the number of classes; CODES: the codebook size.
    shape: CODES: the shape of one item's code grid, e.g. (7, 7).
  """
  kind: str
  size: int = 0
  shape: Tuple[int, ...] = ()

  def __post_init__(self):
    if self.kind not in INPUT_KINDS:
      raise ValueError(f"unknown input kind {self.kind!r}; known: {', '.join(INPUT_KINDS)}")


@dataclasses.dataclass(frozen=True)
class Signature:
  """A function a SavedModel serves.

  Attributes:
    fn: (**inputs) -> {name: tensor [n, ...]} for one chunk of n items. It gets each declared
      input by kind (images as float32 in [0, 1], `num_samples` as the chunk's count), and
      always a `seed` (the request's per chunk when SEED is declared, else a fixed one).
    inputs: the inputs, in the SavedModel's order.
    outputs: {name: (dtype or PIXELS, shape of one item, with IMAGE for the image shape)}.
    draws_per_item: optional (**scalar inputs) -> int32 scalar, the work one item costs in
      units of one image pass (e.g. importance samples per image); the exporter takes fewer
      items per step as it grows, so that a step's memory stays bounded.
  """
  fn: Callable[..., Dict[str, tf.Tensor]]
  inputs: Tuple[Input, ...]
  outputs: Dict[str, Tuple[Any, Tuple]]
  draws_per_item: Optional[Callable[..., tf.Tensor]] = None

  def input(self, kind: str) -> Optional[Input]:
    return next((i for i in self.inputs if i.kind == kind), None)


@dataclasses.dataclass
class SampleRequest:
  """What `tfgen-sample` asks of a sample mode.

  Attributes:
    num: images asked for (`--num`).
    seed: int; the same seed gives the same picture.
    mean: pixel means of the last conditional rather than a draw.
    label: class asked for, or -1.
    num_columns: grid columns (0: the mode's own layout).
    num_images: test images a mode that encodes images starts from.
    model_name: config.model.name, for messages.
    num_classes: classes of the data set, or None.
    scale: resolution relative to the training images' (`--scale`), for modes that declare
      `uses_scale`; 0: the mode's own default.
    test: the test split (batched, with `image` and maybe `label`), for modes that declare
      `needs_test_data`; None otherwise.
  """
  num: int
  seed: int = 0
  mean: bool = True
  label: int = -1
  num_columns: int = 0
  num_images: int = 4
  model_name: str = ""
  num_classes: Optional[int] = None
  scale: float = 0.0
  test: Optional[tf.data.Dataset] = None


@dataclasses.dataclass(frozen=True)
class SampleMode:
  """A picture `tfgen-sample --mode=NAME` draws.

  Attributes:
    fn: (SampleRequest) -> uint8 picture [rows, columns, C].
    needs_test_data: whether fn reads request.test.
    uses_label: whether fn reads request.label (else --label is refused for this mode).
    uses_scale: whether fn reads request.scale (else --scale is refused for this mode).
    help: one line for --help and error messages.
  """
  fn: Callable[[SampleRequest], np.ndarray]
  needs_test_data: bool = False
  uses_label: bool = False
  uses_scale: bool = False
  help: str = ""


@dataclasses.dataclass
class EvaluationContext:
  """What a model's `finish_evaluation` may use beyond its collected arrays.

  Attributes:
    num_classes: classes of the data set, or None.
    split: the evaluated split.
    load_splits: (names) -> {name: dataset}, batched evaluation splits of the run's data (the
      training split unshuffled and not re-binarized per epoch).
    classify_codes: whether latent-code classification was asked for.
  """
  num_classes: Optional[int]
  split: str
  load_splits: Callable[[Tuple[str, ...]], Dict[str, tf.data.Dataset]]
  classify_codes: bool = True


def test_images(request: SampleRequest, num: int, label: int = -1) -> tf.Tensor:
  """`num` test images, [num, H, W, C]: of class `label` when label >= 0; on labelled data
  otherwise one of each class in turn (splits may be sorted by class); else the first ones.

  Raises:
    ConfigError: a label on unlabelled data. DataError: the split has too few such images.
  """
  if label >= 0 and not request.num_classes:
    raise errors.ConfigError("--label needs a labelled data set")
  num_classes = request.num_classes or 0
  wanted = ([label] * num if label >= 0 else
            [i % num_classes for i in range(num)] if num_classes else [None] * num)
  chosen = [None] * num
  for batch in request.test:
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
