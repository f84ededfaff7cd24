"""The semi-supervised VAE, model M2 of Kingma, Rezende, Mohamed & Welling (2014).

Generative model, with a class y of C classes and Gaussian latents z (the "style"):

  p(x, y, z) = p(x | y, z) p(y) p(z),      p(y) = 1/C,  p(z) = N(0, I)

Inference: q(z | x, y) a diagonal Gaussian and a classifier q(y | x), each an MLP. For a labelled
pair (x, y) the bound on log p(x, y) is

  L(x, y) = E_q(z|x,y)[log p(x | y, z)] + log p(y) − KL(q(z | x, y) ‖ p(z))

and for an unlabelled x, with y treated as a latent too, the bound on log p(x) is

  U(x) = Σ_y q(y | x) L(x, y) + H(q(y | x)).

The classifier appears only in U, so it would never learn from the labelled pairs; the objective
adds their cross-entropy with weight α (the paper's α = 0.1·N, i.e. 0.1 per example when the
objective is averaged over the N examples):

  J^α = Σ_labelled −L(x, y) + Σ_unlabelled −U(x) + α · E_labelled[−log q(y | x)].

Batches mix a few labelled examples (`batch["labelled"]`) with unlabelled ones
(tfgen/data/pipeline.py); the per-example loss is −L + α·(B / B_labelled)·CE for labelled and
−U for unlabelled examples, so its batch mean estimates J^α / N. L is computed for every class at
once (one pass over C·B rows) and the KL in closed form.

Evaluation: log p(x) = log Σ_y p(y) p(x | y) with p(x | y) the IWAE estimate with K importance
samples of z ~ q(z | x, y) for each class, summed exactly over y; the classification error of
argmax_y q(y | x) on labelled test images is the model's other output.

References:
  Kingma, Rezende, Mohamed & Welling, "Semi-Supervised Learning with Deep Generative Models",
    NeurIPS 2014.
  Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

import dataclasses
import math
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import layers
from tfgen import seeding
from tfgen import viz
from tfgen.distributions import likelihoods
from tfgen.models import base
from tfgen.models import capabilities as caps
from tfgen.models import registry

tfd = tfp.distributions


CLASSIFIERS = ("mlp", "conv")


class Classifier(keras.layers.Layer):
  """q(y | x)'s logits: an MLP on the flat image, or 3x3 convolution + max-pool blocks (of
  `channels`, 32 and 64 by default) before it; optional dropout on the input pixels and the
  hidden layers.
  """

  def __init__(self, kind, image_shape, hidden_sizes, num_classes, activation, batch_norm,
               dropout, input_dropout, channels=(32, 64), **kwargs):
    super().__init__(**kwargs)
    self.image_shape = tuple(image_shape)
    self.convs = layers.track_list(self, "conv", [
        keras.layers.Conv2D(c, 3, padding="same", activation="relu") for c in channels
    ] if kind == "conv" else [])
    self.pool = keras.layers.MaxPooling2D(2)
    self.mlp = layers.MLP(list(hidden_sizes), num_classes, activation, batch_norm)
    self.dropout, self.input_dropout = float(dropout), float(input_dropout)

  def build(self, input_shape):
    del input_shape  # The sublayers build on their first call.

  def _drop(self, h, rate, seed, i):
    # Stateless, from the step's seed: the loss stays a function of weights, batch and seed.
    if rate <= 0 or seed is None:
      return h
    return tf.nn.experimental.stateless_dropout(h, rate, seed=seeding.fold_in(seed, i))

  def call(self, x, training=False, seed=None):
    """Logits [B, classes]; dropout (training only) is drawn from `seed` (int32 [2])."""
    if not training:
      seed = None
    h = self._drop(tf.reshape(x, (-1,) + self.image_shape), self.input_dropout, seed, 0)
    for conv in self.convs:
      h = self.pool(conv(h))
    h = tf.reshape(h, [tf.shape(h)[0], math.prod(h.shape[1:])])
    if self.dropout <= 0:
      return self.mlp(h, training=training)
    # The hidden layers of the MLP, each followed by dropout, then its output layer.
    for i, dense in enumerate(self.mlp.hidden):
      h = dense(h)
      if self.mlp.norms:
        h = self.mlp.norms[i](h, training=training)
      h = self._drop(self.mlp.activation(h), self.dropout, seed, i + 1)
    return self.mlp.out(h)


@registry.MODELS.register("ssvae")
class SSVAE(base.LatentVariableModel):
  """M2: p(x | y, z) p(y) p(z) with q(z | x, y) and the classifier q(y | x).

  Args:
    image_shape: (H, W, C).
    num_classes: C.
    latent_size: size of z.
    hidden_sizes: hidden layers of each of the three MLPs (classifier, encoder, decoder).
    activation: activation of the hidden layers (softplus in the paper).
    batch_norm: batch normalization in the MLPs.
    alpha: weight of the labelled cross-entropy per example (0.1 in the paper's α = 0.1·N).
    unlabelled_weight: weight of the unlabelled examples' −U(x) in the loss (1: M2; 0: an
      ablation where only the labelled examples train the model).
    likelihood: "bernoulli" for binary images, "logistic" or "normal" for 8-bit intensities.
    binary: whether the images are binary.
    classifier: "mlp" (the paper's) or "conv" (two convolution blocks before the MLP).
    classifier_dropout: dropout rate on the classifier's hidden layers (0: none).
    classifier_input_dropout: dropout rate on the classifier's input pixels (0: none).
    classifier_channels: "conv" classifier: channels of its convolution blocks.
    min_scale: floor of the standard deviation of q(z | x, y).
    **kwargs: the latent-variable core's: num_importance_samples (draws of z in L(x, y), and the
      default k of `log_prob`) and kl_warmup_epochs (β on the KL of L in the training loss). The
      objective is J^α, so `objective` must stay "elbo" and `free_bits` 0.
  """

  DATA_FIELDS = ("num_classes", "binary")

  def __init__(self, image_shape, num_classes: int, latent_size: int = 50,
               hidden_sizes: Sequence[int] = (500,), activation: str = "softplus",
               batch_norm: bool = False, alpha: float = 0.1, unlabelled_weight: float = 1.0,
               likelihood: str = "bernoulli",
               binary: bool = True, classifier: str = "mlp", classifier_dropout: float = 0.0,
               classifier_input_dropout: float = 0.0, classifier_channels: Sequence[int] = (32, 64),
               min_scale: float = 1e-4, **kwargs):
    super().__init__(image_shape, **kwargs)
    if self.objective != "elbo" or self.free_bits:
      raise errors.ConfigError("the semi-supervised VAE trains J^alpha: config.model.objective "
                               "must be 'elbo' and free_bits 0")
    if not num_classes or num_classes < 2:
      raise errors.ConfigError(f"the semi-supervised VAE needs labelled classes, got "
                               f"num_classes={num_classes}")
    if latent_size < 1 or alpha < 0 or unlabelled_weight < 0:
      raise errors.ConfigError(f"latent_size must be >= 1, alpha and unlabelled_weight >= 0; "
                               f"got {latent_size}, {alpha} and {unlabelled_weight}")
    if classifier not in CLASSIFIERS:
      raise errors.ConfigError(f"unknown classifier {classifier!r}; known: "
                               f"{', '.join(CLASSIFIERS)}")
    if not (0 <= classifier_dropout < 1 and 0 <= classifier_input_dropout < 1):
      raise errors.ConfigError("classifier_dropout and classifier_input_dropout must lie in "
                               f"[0, 1), got {classifier_dropout} and {classifier_input_dropout}")
    self.num_classes = int(num_classes)
    self.latent_size = int(latent_size)
    self.alpha = float(alpha)
    self.unlabelled_weight = float(unlabelled_weight)
    self.min_scale = min_scale
    self.pixels = likelihoods.build(likelihood, image_shape, binary)
    mlp = lambda out: layers.MLP(list(hidden_sizes), out, activation, batch_norm)
    self.classifier = Classifier(classifier, image_shape, hidden_sizes, self.num_classes,
                                  activation, batch_norm, classifier_dropout,
                                  classifier_input_dropout, tuple(classifier_channels))
    self.encoder = mlp(2 * self.latent_size)
    self.decoder = mlp(self.pixels.num_params * self.event_size)

  @classmethod
  def data_kwargs(cls, info):
    return {"num_classes": info.num_classes, "binary": info.binary}

  # --- Distributions ---------------------------------------------------------------------------

  def _flat(self, x):
    return tf.reshape(x, [-1, self.event_size])

  def _one_hot(self, labels):
    return tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)

  def classify(self, x, training=False, seed=None) -> tfd.Categorical:
    """q(y | x) for images x [B, H, W, C]; batch shape [B]. In training, dropout draws from
    `seed`."""
    logits = self.classifier(self._flat(self.check_images(x)), training=training, seed=seed)
    return tfd.Categorical(logits=tf.cast(logits, tf.float32))

  def prior(self) -> tfd.Distribution:
    return base.standard_normal(self.latent_size)

  def label_prior(self) -> tfd.Categorical:
    """p(y), uniform over the classes."""
    return tfd.Categorical(logits=tf.zeros([self.num_classes]))

  def encode(self, x, training=False, labels=None) -> tfd.Distribution:
    """q(z | x, y); without labels y is the classifier's most likely class."""
    x = self.check_images(x)
    if labels is None:
      labels = tf.argmax(self.classify(x).logits, axis=-1)
    inputs = tf.concat([self._flat(x), self._one_hot(labels)], -1)
    return base.diagonal_normal(self.encoder(inputs, training=training), self.min_scale)

  def decode(self, z, training=False, labels=None) -> tfd.Distribution:
    """p(x | y, z) for z [..., latent] and labels [...]; without labels, Σ_y p(y) p(x | y, z)."""
    if labels is not None:
      labels = tf.broadcast_to(tf.cast(labels, tf.int32), tf.shape(z)[:-1])
      inputs = tf.concat([z, self._one_hot(labels)], -1)
      return self.pixels.distribution(self.decoder(inputs, training=training))
    # Every class for every z: components along a new last batch axis.
    classes = tf.broadcast_to(tf.range(self.num_classes),
                              tf.concat([tf.shape(z)[:-1], [self.num_classes]], 0))
    z_all = tf.broadcast_to(z[..., None, :], tf.concat([tf.shape(classes), tf.shape(z)[-1:]], 0))
    components = self.decode(z_all, training=training, labels=classes)
    weights = tf.broadcast_to(self.label_prior().logits, tf.shape(classes))
    return tfd.MixtureSameFamily(tfd.Categorical(logits=weights), components)

  # --- Bounds ----------------------------------------------------------------------------------

  def latent_terms(self, batch, num_samples, seed, training=False):
    """Terms of z ~ q(z | x, y) for the class y in batch["label"] (of every image): the core's
    ELBO of them plus log p(y) is L(x, y), and their log weights give log p(x | y)."""
    x = self.images(batch)
    labels = tf.cast(batch["label"], tf.int32)
    q = self.encode(x, training=training, labels=labels)
    z = q.sample(num_samples, seed=seed)
    log_px = self.decode(z, training=training, labels=labels).log_prob(x)
    return base.LatentTerms(log_px, [self.prior().log_prob(z)], [q.log_prob(z)],
                            kl=[tfd.kl_divergence(q, self.prior())])

  def _every_class(self, x, seed, training=False, beta=1.0):
    """L(x, y) for every class y with the KL weighted by β, [C, B], and the rate, [C, B]."""
    batch = tf.shape(x)[0]
    tiled = tf.tile(x, [self.num_classes, 1, 1, 1])
    labels = tf.repeat(tf.range(self.num_classes), batch)
    terms, _ = self._bound_terms(
        self.latent_terms({"image": tiled, "label": labels}, self.num_importance_samples, seed,
                          training), self.num_importance_samples)
    bound = (-terms["distortion"] - beta * terms["rate"]
             + self.label_prior().log_prob(labels))
    return (tf.reshape(bound, [self.num_classes, batch]),
            tf.reshape(terms["rate"], [self.num_classes, batch]))

  def _terms(self, x, labels, labelled, seed, training, beta=1.0):
    """Per-example bounds and classifier terms; labels [B] are read only where labelled [B]."""
    q_y = self.classify(x, training=training, seed=seeding.fold_in(seed, 3))
    log_q = tf.nn.log_softmax(q_y.logits)  # [B, C]
    probs = tf.exp(log_q)
    every, rate = self._every_class(x, seed, training, beta)  # [C, B]
    entropy = -tf.reduce_sum(probs * log_q, -1)
    unlabelled_bound = tf.reduce_sum(tf.transpose(probs) * every, 0) + entropy
    safe_labels = tf.where(labelled, labels, 0)
    pick = tf.stack([safe_labels, tf.range(tf.shape(x)[0])], -1)
    labelled_bound = tf.gather_nd(every, pick)
    cross_entropy = -tf.gather(log_q, safe_labels, batch_dims=1)
    return {
        "elbo": tf.where(labelled, labelled_bound, unlabelled_bound),
        "unlabelled_bound": unlabelled_bound,
        "labelled_bound": labelled_bound,
        "cross_entropy": cross_entropy,
        "classifier_entropy": entropy,
        "rate": tf.reduce_sum(tf.transpose(probs) * rate, 0),
        "errors": tf.cast(tf.not_equal(tf.argmax(log_q, -1, output_type=tf.int32), labels),
                          tf.float32),
    }

  @staticmethod
  def _labelled_mask(batch, batch_size):
    if "labelled" in batch:
      return tf.cast(batch["labelled"], tf.bool)
    if "label" in batch:
      return tf.cast(batch["label"], tf.int32) >= 0
    return tf.zeros([batch_size], tf.bool)

  def loss(self, batch, seed, training=False):
    x = self.images(batch)
    batch_size = tf.shape(x)[0]
    labelled = self._labelled_mask(batch, batch_size)
    labels = tf.cast(batch.get("label", tf.fill([batch_size], -1)), tf.int32)
    beta = tf.convert_to_tensor(self.kl_weight)
    terms = self._terms(x, labels, labelled, seed, training, beta)
    mask = tf.cast(labelled, tf.float32)
    num_labelled = tf.reduce_sum(mask)
    # Scaled so that the batch mean carries α times the mean cross-entropy of labelled examples.
    share = tf.cast(batch_size, tf.float32) / tf.maximum(num_labelled, 1.0)
    weighted_ce = mask * share * terms["cross_entropy"]
    weight = tf.where(labelled, 1.0, self.unlabelled_weight)
    loss = -weight * terms["elbo"] + self.alpha * weighted_ce
    metrics = {
        "elbo": terms["elbo"],
        "unlabelled_bound": terms["unlabelled_bound"],
        "rate": terms["rate"],
        "classifier_entropy": terms["classifier_entropy"],
        "labelled_cross_entropy": weighted_ce,
        "labelled_error": mask * share * terms["errors"],
    }
    return loss, metrics

  def bounds(self, batch, seed):
    """Per-example [B]: `elbo`, the bound U(x) on log p(x); where the batch has labels also
    `labelled_elbo` L(x, y) (a bound on log p(x, y)), `cross_entropy` −log q(y | x) and
    `classification_error`.
    """
    x = self.images(batch)
    batch_size = tf.shape(x)[0]
    given = "label" in batch
    labels = tf.cast(batch["label"], tf.int32) if given else tf.fill([batch_size], -1)
    terms = self._terms(x, labels, labels >= 0, seed, training=False)
    out = {"elbo": terms["unlabelled_bound"], "rate": terms["rate"],
           "classifier_entropy": terms["classifier_entropy"]}
    if given:
      out.update(labelled_elbo=terms["labelled_bound"], cross_entropy=terms["cross_entropy"],
                 classification_error=terms["errors"])
    return out

  def conditional_log_prob(self, batch, seed, num_importance_samples=None):
    """log p(x | y) for the classes in batch["label"], IWAE over z, [B]."""
    # The core's IWAE estimate: latent_terms condition on batch["label"].
    return super().log_prob(batch, seed, num_importance_samples)

  def log_prob(self, batch, seed, num_importance_samples=None):
    """log p(x) = log Σ_y p(y) p(x | y), the class summed out exactly (labels in the batch are
    not used: this is the test likelihood); IWAE over z, [B]."""
    x = self.images(batch)
    size = tf.shape(x)[0]
    tiled = {"image": tf.tile(x, [self.num_classes, 1, 1, 1]),
             "label": tf.repeat(tf.range(self.num_classes), size)}
    per_class = self.conditional_log_prob(tiled, seed, num_importance_samples)
    per_class = tf.reshape(per_class, [self.num_classes, size])
    return tf.reduce_logsumexp(per_class, 0) - math.log(self.num_classes)

  # --- Sampling and codes ----------------------------------------------------------------------

  def sample(self, num, seed, mean=False, labels=None):
    """Images [num, H, W, C] of the given classes; without labels, every class in turn."""
    seeds = tfp.random.split_seed(seed, n=2)
    if labels is None:
      labels = tf.range(num) % self.num_classes
    z = self.prior().sample(num, seed=seeds[0])
    p_x = self.decode(z, labels=labels)
    return p_x.mean() if mean else p_x.sample(seed=seeds[1])

  def reconstruct(self, x, seed):
    x = self.check_images(x)
    labels = tf.argmax(self.classify(x).logits, axis=-1, output_type=tf.int32)
    z = self.encode(x, labels=labels).sample(seed=seed)
    return self.decode(z, labels=labels).mean()

  def posterior_means(self, x, seed):
    del seed
    return [self.encode(x).mean()]

  def call(self, x, training=False):
    return self.classify(x, training=training).logits

  # --- Declared capabilities -------------------------------------------------------------------

  def signatures(self):
    """The latent model's, with labels: sample draws classes uniformly, sample_labels draws
    given ones, encode also returns the classifier's class (q(z | x, y) is taken at it), decode
    takes labels, log_prob sums the class out, and classify gives q(y | x)."""
    out = super().signatures()
    classes = caps.Input(caps.LABELS, self.num_classes)

    def encode(images, seed):
      labels = tf.argmax(self.classify(images).logits, -1, output_type=tf.int32)
      q = self.encode(images, labels=labels)
      return {"loc": q.mean(), "scale": q.stddev(), "latents": q.sample(seed=seed),
              "labels": labels}

    def decode(latents, labels, seed):
      del seed
      p = self.decode(latents, labels=labels)
      return {"images": tf.cast(p.mode(), tf.float32), "probabilities": p.mean()}

    def classify(images, seed):
      del seed
      logits = self.classify(images).logits
      return {"labels": tf.argmax(logits, -1, output_type=tf.int32),
              "probabilities": tf.nn.softmax(logits)}

    out.update(self.labelled_sample_signatures(self.num_classes))
    out["encode"] = caps.Signature(encode, out["encode"].inputs,
                                   dict(out["encode"].outputs, labels=(tf.int32, ())))
    out["decode"] = caps.Signature(decode, out["decode"].inputs + (classes,),
                                   out["decode"].outputs)
    # The class is summed out: each image is scored once per class.
    out["log_prob"] = dataclasses.replace(
        out["log_prob"], draws_per_item=lambda num_importance_samples: tf.minimum(
            num_importance_samples, self.importance_chunk_size) * self.num_classes)
    out["classify"] = caps.Signature(classify, (caps.Input(caps.IMAGES),),
                                     {"labels": (tf.int32, ()),
                                      "probabilities": (tf.float32, (self.num_classes,))})
    return out

  def sample_modes(self):
    modes = super().sample_modes()
    modes["samples"] = caps.SampleMode(
        self._class_samples_picture, uses_label=True,
        help="with --label, images of that class; else a grid of classes (rows) by styles z")
    modes["analogies"] = caps.SampleMode(
        self._analogies_picture, needs_test_data=True,
        help="each of --num test images' style z decoded with every class")
    return modes

  def _class_samples_picture(self, request):
    seed = seeding.as_seed(request.seed)
    if request.label >= 0:
      labels = tf.fill([request.num], request.label)
      images = self.sample(request.num, seed, mean=request.mean, labels=labels)
      return viz.image_grid(images.numpy(), request.num_columns)
    return class_style_grid(self, max(request.num // self.num_classes, 1), seed, request.mean)

  def _analogies_picture(self, request):
    """Analogies: each row a test image, then its style z decoded with every class in turn.

    The test images are of classes 0, 1, 2, ... in turn where the split has labels. z is the mean
    of q(z | x, y) with the image's own label y (else the classifier's guess), so a row keeps the
    writing style and changes only the class.
    """
    images, labels = _test_images_of_every_class(request.test, request.num, self.num_classes)
    z = self.encode(images, labels=labels).mean()  # [num, latent]
    classes = self.num_classes
    p_x = self.decode(tf.repeat(z, classes, axis=0),
                      labels=tf.tile(tf.range(classes), [tf.shape(z)[0]]))
    draws = p_x.mean() if request.mean else p_x.sample(seed=seeding.as_seed(request.seed))
    decoded = tf.reshape(draws, [-1, classes] + list(self.image_shape))
    rows = tf.concat([images[:, None], decoded], axis=1)
    return viz.image_grid(tf.reshape(rows, [-1] + list(self.image_shape)).numpy(), classes + 1)


def class_style_grid(model: SSVAE, num_styles: int, seed, mean: bool = True) -> np.ndarray:
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
