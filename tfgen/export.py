"""SavedModel export: signatures that sample, score, encode and decode with plain tensors.

A SavedModel written here loads with `tf.saved_model.load` alone (tfgen need not be installed)
and serves as it is from TensorFlow Serving, whose default signature is `sample`. Its signatures
are the ones the model declares (`model.signatures()`, tfgen/models/capabilities.py): each names
its inputs by kind, and this module checks every input by its kind, works through a request in
chunks and converts pixels, for any model alike. The families declare these:

  sample(num_samples: int32 [], seed: int32 [2])
      -> images: uint8 [N, H, W, C] drawn from the model (0/1 for binary data, 0..255 otherwise),
         probabilities: float32 [N, H, W, C], the pixel means of the last conditional.
  log_prob(images: uint8 [B, H, W, C]) for fully observed models, or
  log_prob(images, num_importance_samples: int32 []) for latent-variable models
      -> log_prob: float32 [B] in nats (exact, or the IWAE bound with that many samples),
         bits_per_dim: float32 [B].
  encode(images)  -> loc, scale: float32 [B, latent], latents: float32 [B, latent] (one draw)
  decode(latents: float32 [B, latent]) -> images: uint8 (the most likely pixels), probabilities
      (latent-variable models only; for a VAE with two stochastic layers these are q(z₁ | x) and
      p(x | z₁)). Class-conditional latent models (the semi-supervised VAE) take `labels`
      (int32 [B]) in decode too, and their encode also returns the classifier's `labels`.
  classify(images) -> labels: int32 [B], probabilities: float32 [B, classes] (models that
      classify: the semi-supervised VAE).
  sample_labels(labels: int32 [N], seed) -> images, probabilities, labels: samples of the given
      classes (class-conditional models, whose log_prob takes `labels` too).
  inpaint(images, known: uint8 [B, H, W, C], seed) -> images: the pixels where `known` is not 0
      kept, the others drawn given the pixels before them (autoregressive models).
  Normalizing flows: log_prob(images, num_importance_samples) with that many dequantizations,
      encode(images) -> latents [B, H·W·C] (the bijection), decode(latents) -> images.
  VQ-VAEs: encode(images) -> codes: int32 [B, h, w] (the nearest codebook entries),
      decode(codes: int32 [B, h, w]) -> images, probabilities; log_prob is the bound
      log p(x | z_q(x)) + log p(z_q(x)) (uniform prior before stage 2).

Randomness is stateless: `sample` draws from its `seed` input, so one seed always gives the same
images; `log_prob` and `encode` draw with a fixed seed, so they are deterministic too.

Checks. Every input is checked inside the graph, and a bad one is replaced by a harmless stand-in
before anything is computed from it, so the call fails with the check's own
`tf.errors.InvalidArgumentError`, naming the signature, the argument and the expected spec:

  assertion failed: [log_prob: `images` must be uint8 [batch, 28, 28, 1] with values 0..1; got
  shape] [2 28 28]

The input signatures accept tensors of any shape (only the dtype is fixed, and TensorFlow refuses
a wrong one itself), so a wrong rank reaches these checks too: images of the wrong rank or size,
counts and `num_importance_samples` that are not scalars >= 1, seeds that are not int32 [2],
labels out of range or not one per image, `known` masks not the shape of their images, and
latents of the wrong shape or holding NaN or infinite values.

Limits. A `Limits` set at export time (`export(..., max_batch_size=...)`, or the flags of the same
names of tfgen-export) caps what one call may ask for, and is written to `tfgen_export.json`:

  max_batch_size (10,000): images given to log_prob, encode, classify or inpaint, latents given
      to decode.
  max_samples (10,000): num_samples of sample, labels given to sample_labels.
  max_importance_samples (100,000): num_importance_samples of log_prob. Its cost grows as the
      number of images times k, so the largest requests take long on a CPU.

A request beyond a limit fails with a message naming it and saying it was set at export time.

Chunks. Within the limits, each signature works through a request BATCH_CHUNK_SIZE (250) images,
latents or samples at a time in a loop inside the graph, and log_prob of latent-variable models
draws its importance samples CHUNK_SIZE (500) at a time and takes fewer images per step as k
grows, so that a step scores at most MAX_DRAWS_PER_STEP (50,000) images times samples (250 images
up to k = 200, 100 images from k = 500). Memory is thus that of one step whatever the request.
A request of one chunk computes exactly what it did before chunking; in a larger one, chunk i > 0
of `sample` and `inpaint` draws with seed fold_in(seed, i) (chunk 0 with `seed` itself), and each
chunk of `log_prob` and `encode` draws with the fixed seed, so their results for a batch equal
those of calls on its chunks one by one.
"""

import dataclasses
import glob
import json
import os
import shutil
import socket
from typing import Callable, Dict, Optional, Tuple

from absl import logging
import keras
import tensorflow as tf

from tfgen import errors
from tfgen import evaluate
from tfgen import files
from tfgen import seeding
from tfgen.models import capabilities as caps

EXPORT_INFO_FILE = "tfgen_export.json"
# Draws per chunk of the IWAE bound inside the SavedModel: bounds its memory for any k.
CHUNK_SIZE = 500
# Images, latents or samples per step of a signature's loop over a request: bounds its memory
# for any batch within the limits.
BATCH_CHUNK_SIZE = 250
# log_prob of a latent-variable model scores at most this many images × importance samples per
# step: a step at k ≥ 500 decodes as many images as 250 images at k = 200.
MAX_DRAWS_PER_STEP = 50000
FIXED_SEED = (0, 0)

DEFAULT_MAX_BATCH_SIZE = 10000
DEFAULT_MAX_SAMPLES = 10000
DEFAULT_MAX_IMPORTANCE_SAMPLES = 100000
_INT32_MAX = 2**31 - 1
# Values an error message shows of its data (a shape has at most a handful).
_SUMMARIZE = 8


@dataclasses.dataclass(frozen=True)
class Limits:
  """The largest request a SavedModel serves, set at export time; larger ones are refused.

  Attributes:
    max_batch_size: images per call of log_prob, encode, classify and inpaint, latents per call of
      decode.
    max_samples: num_samples of sample, labels per call of sample_labels.
    max_importance_samples: num_importance_samples of log_prob (latent-variable models).

  Raises:
    ConfigError: a limit that is not a whole number from 1 to 2**31 − 1.
  """
  max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
  max_samples: int = DEFAULT_MAX_SAMPLES
  max_importance_samples: int = DEFAULT_MAX_IMPORTANCE_SAMPLES

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      # bool is an int too, but True is surely a mistake for a limit.
      if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _INT32_MAX:
        raise errors.ConfigError(f"--{field.name} (an export limit) must be a whole number "
                                 f"from 1 to {_INT32_MAX}; got {value!r}")


def _shape_fits(tensor: tf.Tensor, expected) -> tf.Tensor:
  """Whether tensor's shape (of any rank) is `expected` (−1: any size), a bool scalar."""
  shape = tf.shape(tensor)
  rank = len(expected)
  padded = tf.concat([shape, tf.zeros([rank], tf.int32)], 0)[:rank]
  fits = [tf.constant(True)] + [tf.equal(padded[i], d) for i, d in enumerate(expected) if d >= 0]
  return tf.logical_and(tf.equal(tf.size(shape), rank), tf.reduce_all(tf.stack(fits)))


def _gate(tensor: tf.Tensor, ok: tf.Tensor, stand_in: Callable[[], tf.Tensor], message: str,
          *data, shape=None) -> tf.Tensor:
  """`tensor` if the bool scalar `ok` holds; else the call fails with `message` and `data`.

  Ops computed from the result may still run before the check (Grappler moves control
  dependencies, and a while loop's captured inputs escape them), so a bad input is also
  replaced by `stand_in()`, a harmless value of the expected spec (an empty batch, a count of
  1). Nothing but the check can then fail, and the call ends with its message rather than an
  op's own (`Invalid reduction dimension`, a crash on a huge allocation).

  Args:
    tensor: the input checked.
    ok: bool scalar, whether it is good.
    stand_in: () -> what to compute with in its place when it is not.
    message: what it must be, ending in what `data` shows (e.g. "; got shape").
    *data: tensors the message shows after it (computed whatever the input: keep them safe).
    shape: the static shape that `ok` guarantees, if any. It is set on the result, not asserted
      with tf.ensure_shape, whose op Grappler may run before the check.

  Returns:
    `tensor`, or the stand-in in a call that fails.
  """
  check = tf.debugging.Assert(ok, [message, *data], summarize=_SUMMARIZE)
  with tf.control_dependencies([check]):
    checked = tf.cond(ok, lambda: tf.identity(tensor), stand_in)
  if shape is not None:
    checked.set_shape(shape)
  return checked


def _seed_in(signature: str, seed: tf.Tensor) -> tf.Tensor:
  return _gate(seed, _shape_fits(seed, (2,)), lambda: tf.zeros([2], tf.int32),
               f"{signature}: `seed` must be int32 [2], e.g. [1, 2]; got shape", tf.shape(seed),
               shape=[2])


def _chunk_seed(seed: tf.Tensor, i: tf.Tensor) -> tf.Tensor:
  """The seed of chunk i of a request: `seed` itself for chunk 0, as before chunking."""
  return tf.where(tf.equal(i, 0), seed, seeding.fold_in(seed, i))


def _in_chunks(fn: Callable, total: tf.Tensor, chunk_size, outputs: Dict[str, Tuple]):
  """fn over consecutive slices of `total` items, one slice at a time, concatenated.

  Args:
    fn: (begin, end, i) -> {name: tensor [end − begin, ...]}, the outputs of the items from
      begin to end − 1 (chunk i).
    total: int32 scalar, the number of items (0 gives empty outputs).
    chunk_size: int32 scalar or int, items per chunk (the last may have fewer).
    outputs: {name: (dtype, shape of one item)}, what fn returns.

  Returns:
    {name: tensor [total, ...]}.
  """
  chunk_size = tf.convert_to_tensor(chunk_size, tf.int32)
  num_chunks = (total + chunk_size - 1) // chunk_size
  arrays = {name: tf.TensorArray(dtype, size=num_chunks, infer_shape=False,
                                 element_shape=tf.TensorShape([None]).concatenate(shape))
            for name, (dtype, shape) in outputs.items()}

  def body(i, arrays):
    begin = i * chunk_size
    out = fn(begin, tf.minimum(begin + chunk_size, total), i)
    return i + 1, {name: arrays[name].write(i, out[name]) for name in arrays}

  # One iteration at a time: overlapping them would hold several chunks in memory at once.
  _, arrays = tf.while_loop(lambda i, _: i < num_chunks, body, (tf.constant(0), arrays),
                            parallel_iterations=1)
  return {name: array.concat() for name, array in arrays.items()}


class _Served:
  """One declared Signature served: its inputs checked by kind, its work done in chunks."""

  def __init__(self, name: str, signature: caps.Signature, info, limits: Limits,
               batch_chunk_size: int):
    self.name = name
    self.signature = signature
    self._limits = limits
    self._chunk = batch_chunk_size
    self._image_shape = tuple(info.image_shape)
    self._max_value = 1 if info.binary else 255
    kinds = [i.kind for i in signature.inputs]
    # The items a request works through: its images, else latents, else code grids, else a count,
    # else labels.
    self._items = next(k for k in (caps.IMAGES, caps.LATENTS, caps.CODES, caps.NUM_SAMPLES,
                                   caps.LABELS, None) if k is None or k in kinds)
    self._outputs = {key: (tf.uint8 if dtype == caps.PIXELS else dtype,
                           self._image_shape if shape == caps.IMAGE else tuple(shape))
                     for key, (dtype, shape) in signature.outputs.items()}

  def input_signature(self):
    dtypes = {caps.IMAGES: tf.uint8, caps.KNOWN: tf.uint8, caps.LATENTS: tf.float32}
    # Any rank and size for every input, so that a wrong shape reaches the checks inside, which
    # name the signature and the expected spec, rather than TensorFlow's own error.
    return [tf.TensorSpec(None, dtypes.get(i.kind, tf.int32), name=i.kind)
            for i in self.signature.inputs]

  # --- Input checks ----------------------------------------------------------------------------

  def _batch_capped(self, name: str, value: tf.Tensor, limit: int, limit_name: str,
                    what: str) -> tf.Tensor:
    """value, checked to hold at most `limit` rows."""
    return _gate(value, tf.shape(value)[0] <= limit, lambda: value[:0],
                 f"{self.name}: `{name}` may hold at most {limit} {what} per call ({limit_name}, "
                 f"set at export time); got", tf.shape(value)[0])

  def _images_in(self, images: tf.Tensor) -> tf.Tensor:
    """Checks uint8 images [B, H, W, C] in range and returns them as float32 model inputs."""
    h, w, c = self._image_shape
    spec = f"uint8 [batch, {h}, {w}, {c}] with values 0..{self._max_value}"
    images = _gate(images, _shape_fits(images, (-1,) + self._image_shape),
                   lambda: tf.zeros([0, h, w, c], tf.uint8),
                   f"{self.name}: `images` must be {spec}; got shape", tf.shape(images),
                   shape=[None, h, w, c])
    images = self._batch_capped("images", images, self._limits.max_batch_size,
                                "max_batch_size", "images")
    images = _gate(images, tf.reduce_all(images <= self._max_value), lambda: images[:0],
                   f"{self.name}: `images` must be {spec}; got a larger value",
                   tf.reduce_max(images))
    return tf.cast(images, tf.float32) / float(self._max_value)

  def _pixels_out(self, values: tf.Tensor) -> tf.Tensor:
    scale = float(self._max_value)
    return tf.cast(tf.round(tf.clip_by_value(values, 0.0, 1.0) * scale), tf.uint8)

  def _known_in(self, known: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    # Sizes, not tf.shape(known)[0]: a check must not fail itself on a scalar `known`.
    same_shape = tf.logical_and(_shape_fits(known, (-1,) + self._image_shape),
                                tf.equal(tf.size(known), tf.size(x)))
    return _gate(known, same_shape, lambda: tf.zeros(tf.shape(x), tf.uint8),
                 f"{self.name}: `known` must be uint8 of the shape of `images`; got shape",
                 tf.shape(known), "for images of shape", tf.shape(x), shape=x.shape)

  def _latents_in(self, latents: tf.Tensor, size: int) -> tf.Tensor:
    latents = _gate(latents, _shape_fits(latents, (-1, size)), lambda: tf.zeros([0, size]),
                    f"{self.name}: `latents` must be float32 [batch, {size}]; got shape",
                    tf.shape(latents), shape=[None, size])
    latents = self._batch_capped("latents", latents, self._limits.max_batch_size,
                                 "max_batch_size", "latents")
    # A NaN would decode to NaN probabilities and arbitrary images, silently.
    finite = tf.math.is_finite(latents)
    return _gate(latents, tf.reduce_all(finite), lambda: latents[:0],
                 f"{self.name}: `latents` must be finite; got NaN or infinite values:",
                 tf.reduce_sum(tf.cast(tf.logical_not(finite), tf.int32)))

  def _codes_in(self, codes: tf.Tensor, size: int, shape) -> tf.Tensor:
    """Checks int32 code grids [B, *shape] with values 0..size − 1."""
    dims = ", ".join(str(d) for d in shape)
    spec = f"int32 [batch, {dims}] with values 0..{size - 1}"
    codes = _gate(codes, _shape_fits(codes, (-1,) + tuple(shape)),
                  lambda: tf.zeros([0, *shape], tf.int32),
                  f"{self.name}: `codes` must be {spec}; got shape", tf.shape(codes),
                  shape=[None, *shape])
    codes = self._batch_capped("codes", codes, self._limits.max_batch_size, "max_batch_size",
                               "code grids")
    return _gate(codes, tf.reduce_all((codes >= 0) & (codes < size)), lambda: codes[:0],
                 f"{self.name}: `codes` must be {spec}; got a value out of range",
                 tf.reduce_min(codes), tf.reduce_max(codes))

  def _count_in(self, name: str, value: tf.Tensor, limit: int, limit_name: str) -> tf.Tensor:
    """Checks an int32 scalar 1..limit."""
    message = f"{self.name}: `{name}` must be an int32 scalar >= 1"
    one = lambda: tf.constant(1)
    value = _gate(value, tf.equal(tf.rank(value), 0), one, f"{message}; got shape",
                  tf.shape(value), shape=[])
    value = _gate(value, value >= 1, one, f"{message}; got", value)
    return _gate(value, value <= limit, one, f"{self.name}: `{name}` must be at most {limit} "
                 f"({limit_name}, set at export time); got", value)

  def _labels_in(self, labels: tf.Tensor, classes: int, num: Optional[tf.Tensor] = None,
                 per: str = "") -> tf.Tensor:
    """Checks int32 labels [num], one per `per`, of known classes (num None: up to max_samples)."""
    spec = f"int32 [batch] with values 0..{classes - 1}"
    if num is None:
      labels = _gate(labels, _shape_fits(labels, (-1,)), lambda: tf.zeros([0], tf.int32),
                     f"{self.name}: `labels` must be {spec}; got shape", tf.shape(labels),
                     shape=[None])
      labels = self._batch_capped("labels", labels, self._limits.max_samples, "max_samples",
                                  "labels")
    else:
      ok = tf.logical_and(_shape_fits(labels, (-1,)), tf.equal(tf.size(labels), num))
      labels = _gate(labels, ok, lambda: tf.zeros([num], tf.int32),
                     f"{self.name}: `labels` must be {spec}, one per {per}; got shape",
                     tf.shape(labels), f"for {per}s:", num, shape=[None])
    return _gate(labels, tf.reduce_all((labels >= 0) & (labels < classes)),
                 lambda: tf.zeros_like(labels),
                 f"{self.name}: `labels` must be {spec}; got a value out of range",
                 tf.reduce_min(labels), tf.reduce_max(labels))

  def _checked(self, values: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Every input checked by its kind: batches first, as labels and masks are counted by them."""
    sig, checked = self.signature, {}
    if caps.IMAGES in values:
      checked[caps.IMAGES] = self._images_in(values[caps.IMAGES])
    if caps.LATENTS in values:
      checked[caps.LATENTS] = self._latents_in(values[caps.LATENTS],
                                               sig.input(caps.LATENTS).size)
    if caps.CODES in values:
      spec = sig.input(caps.CODES)
      checked[caps.CODES] = self._codes_in(values[caps.CODES], spec.size, spec.shape)
    if caps.KNOWN in values:
      checked[caps.KNOWN] = self._known_in(values[caps.KNOWN], checked[caps.IMAGES])
    if caps.LABELS in values:
      rows = next((k for k in (caps.IMAGES, caps.LATENTS) if k in checked), None)
      checked[caps.LABELS] = self._labels_in(
          values[caps.LABELS], sig.input(caps.LABELS).size,
          None if rows is None else tf.shape(checked[rows])[0],
          {caps.IMAGES: "image", caps.LATENTS: "latent"}.get(rows, ""))
    if caps.NUM_SAMPLES in values:
      checked[caps.NUM_SAMPLES] = self._count_in(
          caps.NUM_SAMPLES, values[caps.NUM_SAMPLES], self._limits.max_samples, "max_samples")
    if caps.NUM_IMPORTANCE_SAMPLES in values:
      checked[caps.NUM_IMPORTANCE_SAMPLES] = self._count_in(
          caps.NUM_IMPORTANCE_SAMPLES, values[caps.NUM_IMPORTANCE_SAMPLES],
          self._limits.max_importance_samples, "max_importance_samples")
    if caps.SEED in values:
      checked[caps.SEED] = _seed_in(self.name, values[caps.SEED])
    return checked

  # --- The call --------------------------------------------------------------------------------

  def __call__(self, *args):
    values = self._checked(dict(zip([i.kind for i in self.signature.inputs], args)))
    if self._items == caps.NUM_SAMPLES:
      total = values[caps.NUM_SAMPLES]
    elif self._items is not None:
      total = tf.shape(values[self._items])[0]
    else:
      total = tf.constant(1)
    scalars = {k: v for k, v in values.items()
               if k in (caps.NUM_SAMPLES, caps.NUM_IMPORTANCE_SAMPLES)}
    chunk_size = self._chunk
    if self.signature.draws_per_item is not None:
      # Fewer items per step as each costs more: a step's work stays within MAX_DRAWS_PER_STEP.
      draws = self.signature.draws_per_item(**{k: v for k, v in scalars.items()
                                               if k != caps.NUM_SAMPLES})
      chunk_size = tf.clip_by_value(MAX_DRAWS_PER_STEP // draws, 1, self._chunk)

    def chunk(begin, end, i):
      inputs = {}
      for kind, value in values.items():
        if kind in caps.BATCHED:
          inputs[kind] = value[begin:end]
        elif kind == caps.NUM_SAMPLES:
          inputs[kind] = end - begin
        elif kind != caps.SEED:
          inputs[kind] = value
      inputs["seed"] = (_chunk_seed(values[caps.SEED], i) if caps.SEED in values
                        else seeding.as_seed(FIXED_SEED))
      out = self.signature.fn(**inputs)
      return {key: self._pixels_out(out[key]) if self.signature.outputs[key][0] == caps.PIXELS
              else tf.cast(out[key], self._outputs[key][0]) for key in self._outputs}

    return _in_chunks(chunk, total, chunk_size, self._outputs)


def _named(served: _Served, name: str) -> Callable:
  """served as a function called `name`: TensorFlow names the graph after it, so errors that
  TensorFlow raises itself (a wrong dtype) still name the signature."""

  def fn(*args):
    return served(*args)

  fn.__name__ = fn.__qualname__ = name
  return fn


def build_archive(model, info, limits: Optional[Limits] = None,
                  batch_chunk_size: int = BATCH_CHUNK_SIZE) -> keras.export.ExportArchive:
  """A Keras ExportArchive of `model` serving every signature the model declares.

  Args:
    model: a built tfgen model.
    info: the DataInfo it was trained on.
    limits: the largest requests served (default Limits()).
    batch_chunk_size: images, latents or samples per step of a signature's loop.

  Raises:
    ConfigError: batch_chunk_size is not a whole number >= 1.
  """
  limits = limits or Limits()
  if isinstance(batch_chunk_size, bool) or not isinstance(batch_chunk_size, int) or (
      not 1 <= batch_chunk_size <= _INT32_MAX):
    raise errors.ConfigError(f"batch_chunk_size must be a whole number >= 1; got "
                             f"{batch_chunk_size!r}")
  model.importance_chunk_size = CHUNK_SIZE
  archive = keras.export.ExportArchive()
  archive.track(model)
  for name, signature in model.signatures().items():
    served = _Served(name, signature, info, limits, batch_chunk_size)
    fn = _named(served, name)
    archive.add_endpoint(name, fn, input_signature=served.input_signature())
    if name == "sample":
      # TensorFlow Serving calls this one when a request names no signature.
      archive.add_endpoint("serving_default", fn, input_signature=served.input_signature())
  return archive


def export(workdir: str, out: str, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
           max_samples: int = DEFAULT_MAX_SAMPLES,
           max_importance_samples: int = DEFAULT_MAX_IMPORTANCE_SAMPLES) -> Dict:
  """Writes workdir's newest model as a SavedModel in `out`, with a JSON describing it.

  The SavedModel is written into a temporary folder beside `out` (`OUT.partial-HOST-PID`) and
  renamed to `out` once complete, so `out` never holds part of one, whatever stops the export
  (an error, Ctrl-C, kill -9). `out` is checked, and the temporary folder made, before the model
  is loaded. A temporary folder left by an export killed on this host is removed by the next
  export to the same `out`; nothing reads one.

  Args:
    workdir: the training run's working directory.
    out: the folder to write, new or empty.
    max_batch_size: images or latents one call of log_prob, encode, decode, classify or inpaint
      may take (see `Limits`).
    max_samples: images one call of sample or sample_labels may draw.
    max_importance_samples: the largest num_importance_samples of log_prob.

  Returns:
    The description written to `out/tfgen_export.json`.

  Raises:
    ConfigError: a limit that is not a whole number >= 1.
    WorkdirError: workdir has no run or checkpoint; out exists and is not empty.
    OutputError: out is a file, or cannot be written (its folder is a file, no permission, no
      room); nothing is left behind.
  """

  def load():
    trained = evaluate.load_trained(workdir, splits=())
    return trained.model, trained.info, {
        "step": trained.step, "checkpoint": trained.checkpoint, "test_nll": _test_nll(workdir),
        "config": json.loads(trained.config.to_json_best_effort())}

  return _write(load, out, Limits(max_batch_size, max_samples, max_importance_samples))


def export_model(model, out: str, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 max_samples: int = DEFAULT_MAX_SAMPLES,
                 max_importance_samples: int = DEFAULT_MAX_IMPORTANCE_SAMPLES) -> Dict:
  """`export` of a model held in Python (what `model.export(out)` calls): the same SavedModel,
  with the data description the model was built for (`model.data_info`).

  Raises:
    ConfigError: the model records no data description (build it with tfgen.build or
      tfgen.models.build), or a bad limit; WorkdirError / OutputError as `export`.
  """
  info = getattr(model, "data_info", None)
  if info is None:
    raise errors.ConfigError(f"this {type(model).__name__} records no data description; build "
                             "it with tfgen.build(...) or tfgen.models.build(config, info)")
  if not model.built:
    model.build_for_images()
  return _write(lambda: (model, info, {"config": {"model": _model_config(model)}}), out,
                Limits(max_batch_size, max_samples, max_importance_samples))


def _model_config(model) -> Dict:
  """The model's config.model fields as JSON values."""
  fields = {"name": getattr(model, "config_name", type(model).__name__)}
  for name, value in model.constructor_arguments().items():
    if name != "image_shape" and name not in model.PYTHON_ONLY_FIELDS:
      fields[name] = value
  return json.loads(json.dumps(fields, default=str))


def _write(load: Callable, out: str, limits: Limits) -> Dict:
  """Writes the SavedModel of load() -> (model, info, description fields) atomically to out."""
  out = _check_out(out)
  tmp = _make_partial(out)
  try:
    model, info, facts = load()
    archive = build_archive(model, info, limits)
    try:
      archive.write_out(tmp, verbose=False)
      signatures = sorted(tf.saved_model.load(tmp).signatures)
    except (OSError, tf.errors.OpError) as e:
      raise errors.OutputError(f"cannot write {out!r}: {errors.first_line(e)}") from e
    description = {
        "model": facts["config"]["model"]["name"],
        "data": info.name,
        "binarization": info.binarization,
        "image_shape": list(info.image_shape),
        "pixel_values": "0..1" if info.binary else "0..255",
        "step": facts.get("step"),
        "checkpoint": facts.get("checkpoint"),
        "test_nll": facts.get("test_nll"),
        "signatures": signatures,
        "limits": dataclasses.asdict(limits),
        "chunks": {"batch_chunk_size": BATCH_CHUNK_SIZE, "importance_chunk_size": CHUNK_SIZE,
                   "max_draws_per_step": MAX_DRAWS_PER_STEP},
        "config": facts["config"],
    }
    try:
      files.write_json(os.path.join(tmp, EXPORT_INFO_FILE), description)
      # One rename: `out` (absent, or an empty folder, which rename replaces) goes from nothing
      # to the complete SavedModel.
      os.replace(tmp, out)
    except OSError as e:
      if os.path.isdir(out) and os.listdir(out):  # Filled by someone else meanwhile.
        raise _not_empty(out) from e
      raise errors.OutputError(f"cannot write {out!r}: {e.strerror or e}") from e
  except BaseException:
    # Also on Ctrl-C and SIGTERM: only kill -9 leaves the temporary folder behind.
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return description


def _not_empty(out: str) -> errors.WorkdirError:
  return errors.WorkdirError(f"--out {out!r} exists and is not empty; choose a new folder")


def _check_out(out: str) -> str:
  """`out` as the folder to write (a symbolic link's target), if it can be one.

  Raises:
    OutputError: out is empty or a file; WorkdirError: out is a folder that is not empty.
  """
  if not out or not out.strip():
    raise errors.OutputError("--out is empty; give a new folder for the SavedModel, such as "
                             "/tmp/run_savedmodel")
  out = out.rstrip(os.sep) or os.sep
  if os.path.islink(out):
    out = os.path.realpath(out)
  if os.path.exists(out) and not os.path.isdir(out):
    raise errors.OutputError(f"--out {out!r} is a file; give a new or empty folder for the "
                             "SavedModel")
  try:
    if os.path.isdir(out) and os.listdir(out):
      raise _not_empty(out)
  except OSError as e:  # A folder that cannot be listed.
    raise errors.OutputError(f"cannot write {out!r}: {e.strerror or e}") from e
  return out


def _partial_prefix(out: str) -> str:
  return f"{out}.partial-"


def _make_partial(out: str) -> str:
  """Makes the temporary folder beside `out` that the SavedModel is written into.

  Making it shows that `out`'s folder can be written, before any slow work. Temporary folders
  that exports killed on this host left behind are removed first.

  Raises:
    OutputError: out's folder cannot be created or written.
  """
  host = socket.gethostname().replace(os.sep, "_").replace("-", "_")
  tmp = f"{_partial_prefix(out)}{host}-{os.getpid()}"
  try:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    _remove_abandoned_partials(out, host)
    os.mkdir(tmp)
  except FileExistsError as e:  # makedirs met a file where a folder of the path belongs.
    raise errors.OutputError(f"cannot write {out!r}: Not a directory") from e
  except OSError as e:
    raise errors.OutputError(f"cannot write {out!r}: {e.strerror or e}") from e
  return tmp


def _remove_abandoned_partials(out: str, host: str) -> None:
  """Removes OUT.partial-HOST-PID folders of exports on this host that are no longer running.

  Those of other hosts (a shared file system) may belong to a running export and are left; so is
  the `OUT.partial` of older tfgen versions, which nothing reads either.
  """
  for path in glob.glob(glob.escape(_partial_prefix(out)) + "*"):
    owner_host, _, pid = path[len(_partial_prefix(out)):].rpartition("-")
    if owner_host != host or not pid.isdigit():
      continue
    # This process's own pid: left by an earlier process that had the same pid.
    if int(pid) == os.getpid() or not files.process_alive(int(pid)):
      shutil.rmtree(path, ignore_errors=True)
      logging.info("removed %s, left by an export that was killed", path)


def _test_nll(workdir: str) -> Optional[Dict]:
  """The test NLL of the run's evaluation with the most importance samples, if evaluated.

  A damaged evaluation file (a crash, a hand edit) is skipped with a warning: the export does
  not need it, and tfgen-evaluate writes it again.
  """
  best = None
  for name in sorted(os.listdir(workdir)):
    if name.startswith("evaluation_test_k") and name.endswith(".json"):
      results = files.read_json_or_warn(
          os.path.join(workdir, name), dict, ("nll_nats",),
          consequence="the export leaves it out of test_nll; tfgen-evaluate writes it again")
      if results is None:
        continue
      k = results.get("num_importance_samples") or 0
      if not isinstance(k, int) or not isinstance(results["nll_nats"], (int, float)):
        logging.warning("%r holds no numbers nll_nats and num_importance_samples; the export "
                        "leaves it out of test_nll", os.path.join(workdir, name))
        continue
      if best is None or k > best["num_importance_samples"]:
        best = {"nats": results["nll_nats"], "num_importance_samples": k,
                "step": results.get("step")}
  return best
