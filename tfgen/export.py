"""SavedModel export: signatures that sample, score, encode and decode with plain tensors.

A SavedModel written here loads with `tf.saved_model.load` alone (tfgen need not be installed)
and serves as it is from TensorFlow Serving, whose default signature is `sample`. Signatures:

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

Randomness is stateless: `sample` draws from its `seed` input, so one seed always gives the same
images; `log_prob` and `encode` draw with a fixed seed, so they are deterministic too. Every input
is checked, and a bad one fails with a message naming the signature and the expected spec.
"""

import json
import math
import os
import shutil
from typing import Dict, Optional

import keras
import tensorflow as tf

from tfgen import errors
from tfgen import evaluate
from tfgen import models
from tfgen import seeding

EXPORT_INFO_FILE = "tfgen_export.json"
# Draws per chunk of the IWAE bound inside the SavedModel: bounds its memory for any k.
CHUNK_SIZE = 500
# A ceiling on one request's size, so a typo cannot ask the server for a billion images.
MAX_SAMPLES_PER_CALL = 10000
FIXED_SEED = (0, 0)


def _assert_shape(tensor: tf.Tensor, expected, message: str) -> tf.Operation:
  """Fails with `message` and the actual shape unless tensor's shape is `expected` (−1: any)."""
  shape = tf.shape(tensor)
  rank = len(expected)
  padded = tf.concat([shape, tf.zeros([rank], tf.int32)], 0)[:rank]
  fits = [tf.constant(True)] + [tf.equal(padded[i], d) for i, d in enumerate(expected) if d >= 0]
  ok = tf.logical_and(tf.equal(tf.size(shape), rank), tf.reduce_all(tf.stack(fits)))
  return tf.debugging.Assert(ok, [message, shape])


def _seed_in(signature: str, seed: tf.Tensor) -> tf.Tensor:
  with tf.control_dependencies([tf.debugging.assert_equal(
      tf.size(seed), 2, message=f"{signature}: `seed` must be int32 [2]")]):
    return tf.ensure_shape(tf.identity(seed), [2])


class _Exported:
  """The signature functions built around a model."""

  def __init__(self, model, info, latent_size: Optional[int] = None):
    self.model = model
    self._latent_size = latent_size
    self._image_shape = tuple(info.image_shape)
    self._max_value = 1 if info.binary else 255
    self._num_pixels = int(math.prod(info.image_shape))

  def _images_in(self, signature: str, images: tf.Tensor) -> tf.Tensor:
    """Checks uint8 images [B, H, W, C] in range and returns them as float32 model inputs."""
    h, w, c = self._image_shape
    spec = f"uint8 [batch, {h}, {w}, {c}] with values 0..{self._max_value}"
    checks = [
        _assert_shape(images, (-1,) + self._image_shape,
                      f"{signature}: `images` must be {spec}; got shape"),
        tf.debugging.assert_less_equal(
            tf.reduce_max(tf.cast(images, tf.int32)), self._max_value,
            message=f"{signature}: `images` must be {spec}; got a larger value"),
    ]
    with tf.control_dependencies(checks):
      images = tf.ensure_shape(tf.identity(images), [None, h, w, c])
      scale = 1.0 if self._max_value == 1 else 255.0
      return tf.cast(images, tf.float32) / scale

  def _images_out(self, values: tf.Tensor) -> tf.Tensor:
    scale = 1.0 if self._max_value == 1 else 255.0
    return tf.cast(tf.round(tf.clip_by_value(values, 0.0, 1.0) * scale), tf.uint8)

  def _positive(self, signature: str, name: str, value: tf.Tensor, upper: Optional[int] = None):
    message = f"{signature}: `{name}` must be an int32 scalar >= 1"
    checks = [tf.debugging.assert_rank(value, 0, message=message),
              tf.debugging.assert_positive(value, message=message)]
    if upper is not None:
      checks.append(tf.debugging.assert_less_equal(
          value, upper, message=f"{signature}: `{name}` must be at most {upper}"))
    with tf.control_dependencies(checks):
      return tf.identity(value)

  def sample(self, num_samples, seed):
    num_samples = self._positive("sample", "num_samples", num_samples, MAX_SAMPLES_PER_CALL)
    seed = _seed_in("sample", seed)
    draws = self.model.sample(num_samples, seed=seed)
    means = self.model.sample(num_samples, seed=seed, mean=True)
    return {"images": self._images_out(draws), "probabilities": means}

  def _scores(self, log_prob):
    return {"log_prob": log_prob,
            "bits_per_dim": -log_prob / (self._num_pixels * math.log(2.0))}

  def log_prob_exact(self, images):
    x = self._images_in("log_prob", images)
    return self._scores(self.model.log_prob(x, seed=seeding.as_seed(FIXED_SEED)))

  def log_prob_conditional(self, images, labels):
    x = self._images_in("log_prob", images)
    labels = self._labels_in("log_prob", labels, tf.shape(x)[0])
    return self._scores(self.model.log_prob(x, seed=seeding.as_seed(FIXED_SEED), labels=labels))

  def _labels_in(self, signature, labels, num):
    classes = self.model.num_classes
    message = f"{signature}: `labels` must be int32 [batch] with values 0..{classes - 1}"
    checks = [tf.debugging.assert_equal(tf.size(labels), num, message=message),
              tf.debugging.assert_non_negative(labels, message=message),
              tf.debugging.assert_less(labels, classes, message=message)]
    with tf.control_dependencies(checks):
      return tf.identity(labels)

  def sample_conditional(self, num_samples, seed):
    """Draws labels uniformly, then images of those classes."""
    num_samples = self._positive("sample", "num_samples", num_samples, MAX_SAMPLES_PER_CALL)
    labels = tf.random.stateless_uniform([num_samples], seed=seeding.fold_in(seed, 1),
                                         maxval=self.model.num_classes, dtype=tf.int32)
    return self.sample_labels(labels, seed, check=False)

  def sample_labels(self, labels, seed, check=True):
    seed = _seed_in("sample_labels", seed)
    if check:
      labels = self._labels_in("sample_labels", labels, tf.size(labels))
    draws = self.model.sample(tf.size(labels), seed=seed, labels=labels)
    means = self.model.sample(tf.size(labels), seed=seed, mean=True, labels=labels)
    return {"images": self._images_out(draws), "probabilities": means, "labels": labels}

  def inpaint(self, images, known, seed):
    """Keeps the pixels where `known` is 1 and draws the others given the pixels before them."""
    x = self._images_in("inpaint", images)
    with tf.control_dependencies([_assert_shape(
        known, (-1,) + self._image_shape, "inpaint: `known` must be uint8 like `images`; got shape")]):
      keep = tf.cast(tf.reshape(known, tf.shape(x)), tf.bool)
    seed = _seed_in("inpaint", seed)
    conditioned_on = tf.where(keep, x, -1.0)
    draws = self.model.sample(tf.shape(x)[0], seed=seed, conditioned_on=conditioned_on)
    return {"images": self._images_out(draws)}

  def log_prob_bound(self, images, num_importance_samples):
    x = self._images_in("log_prob", images)
    k = self._positive("log_prob", "num_importance_samples", num_importance_samples)
    return self._scores(self.model.log_prob(x, seed=seeding.as_seed(FIXED_SEED),
                                            num_importance_samples=k, chunk_size=CHUNK_SIZE))

  def encode(self, images):
    x = self._images_in("encode", images)
    q = self.model.encode(x)
    latents = q.sample(seed=seeding.as_seed(FIXED_SEED))
    out = {"loc": q.mean(), "scale": q.stddev(), "latents": latents}
    if self.model.infers_labels:
      # q(z | x, y) is taken at the classifier's most likely class, returned with the code.
      out["labels"] = tf.argmax(self.model.classify(x).logits, -1, output_type=tf.int32)
    return out

  def decode(self, latents, labels=None):
    size = self._latent_size
    with tf.control_dependencies([_assert_shape(
        latents, (-1, size), f"decode: `latents` must be float32 [batch, {size}]; got shape")]):
      latents = tf.ensure_shape(tf.identity(latents), [None, size])
    if labels is None:
      p = self.model.decode(latents)
    else:
      labels = self._labels_in("decode", labels, tf.shape(latents)[0])
      p = self.model.decode(latents, labels=labels)
    return {"images": self._images_out(tf.cast(p.mode(), tf.float32)), "probabilities": p.mean()}

  def classify(self, images):
    q = self.model.classify(self._images_in("classify", images))
    return {"labels": tf.argmax(q.logits, -1, output_type=tf.int32),
            "probabilities": tf.nn.softmax(q.logits)}


def build_archive(model, info) -> keras.export.ExportArchive:
  """A Keras ExportArchive of `model` (a tfgen model) with the signatures this module lists."""
  latent_size = None
  if isinstance(model, models.LatentVariableModel):
    latent_size = int(model.encode(tf.zeros((1,) + tuple(info.image_shape))).event_shape[-1])
  module = _Exported(model, info, latent_size)
  archive = keras.export.ExportArchive()
  archive.track(model)
  # Any rank and size here, so that a wrong shape reaches the check with a clear message.
  images = tf.TensorSpec([None, None, None, None], tf.uint8, name="images")
  scalar = lambda name: tf.TensorSpec([], tf.int32, name=name)
  seed = tf.TensorSpec([None], tf.int32, name="seed")
  sample_spec = [scalar("num_samples"), seed]
  sample = module.sample_conditional if model.class_conditional else module.sample
  archive.add_endpoint("sample", sample, input_signature=sample_spec)
  # TensorFlow Serving calls this one when a request names no signature.
  archive.add_endpoint("serving_default", sample, input_signature=sample_spec)
  labels = tf.TensorSpec([None], tf.int32, name="labels")
  if model.class_conditional:
    archive.add_endpoint("sample_labels", lambda labels, seed: module.sample_labels(labels, seed),
                         input_signature=[labels, seed])
  if isinstance(model, models.LatentVariableModel):
    archive.add_endpoint("log_prob", module.log_prob_bound,
                         input_signature=[images, scalar("num_importance_samples")])
    archive.add_endpoint("encode", module.encode, input_signature=[images])
    latents = tf.TensorSpec([None, latent_size], tf.float32, name="latents")
    if model.class_conditional:
      archive.add_endpoint("decode", module.decode, input_signature=[latents, labels])
    else:
      archive.add_endpoint("decode", module.decode, input_signature=[latents])
  elif model.class_conditional:
    archive.add_endpoint("log_prob", module.log_prob_conditional, input_signature=[images, labels])
  else:
    archive.add_endpoint("log_prob", module.log_prob_exact, input_signature=[images])
  if model.infers_labels:
    archive.add_endpoint("classify", module.classify, input_signature=[images])
  if isinstance(model, models.AutoregressiveModel):
    archive.add_endpoint("inpaint", module.inpaint, input_signature=[
        images, tf.TensorSpec([None, None, None, None], tf.uint8, name="known"), seed])
  return archive


def export(workdir: str, out: str) -> Dict:
  """Writes workdir's newest model as a SavedModel in `out`, with a JSON describing it.

  Returns:
    The description written to `out/tfgen_export.json`.

  Raises:
    WorkdirError: workdir has no run or checkpoint; out exists and is not empty.
  """
  if os.path.exists(out) and os.listdir(out):
    raise errors.WorkdirError(f"--out {out!r} exists and is not empty; choose a new folder")
  trained = evaluate.load_trained(workdir, splits=())
  config, info = trained.config, trained.info
  archive = build_archive(trained.model, info)
  tmp = out.rstrip("/") + ".partial"
  if os.path.exists(tmp):
    shutil.rmtree(tmp)  # Left by an export that was interrupted.
  archive.write_out(tmp, verbose=False)
  signatures = sorted(tf.saved_model.load(tmp).signatures)
  description = {
      "model": config.model.name,
      "data": info.name,
      "binarization": info.binarization,
      "image_shape": list(info.image_shape),
      "pixel_values": "0..1" if info.binary else "0..255",
      "step": trained.step,
      "checkpoint": trained.checkpoint,
      "test_nll": _test_nll(workdir),
      "signatures": signatures,
      "config": json.loads(config.to_json_best_effort()),
  }
  with open(os.path.join(tmp, EXPORT_INFO_FILE), "w", encoding="utf-8") as f:
    json.dump(description, f, indent=2)
  if os.path.exists(out):
    os.rmdir(out)
  os.replace(tmp, out)
  return description


def _test_nll(workdir: str) -> Optional[Dict]:
  """The test NLL of the run's evaluation with the most importance samples, if evaluated."""
  best = None
  for name in os.listdir(workdir):
    if name.startswith("evaluation_test_k") and name.endswith(".json"):
      with open(os.path.join(workdir, name), encoding="utf-8") as f:
        results = json.load(f)
      k = results.get("num_importance_samples") or 0
      if best is None or k > best["num_importance_samples"]:
        best = {"nats": results["nll_nats"], "num_importance_samples": k,
                "step": results.get("step")}
  return best
