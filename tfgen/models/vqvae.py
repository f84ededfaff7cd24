"""VQ-VAE: discrete latent codes from a learned codebook, and an autoregressive prior over them.

Stage 1 (`vqvae`). An encoder maps x to a grid of vectors z_e(x) [h, w, D]; each is replaced by
its nearest codebook entry, z_q = e_k, k = argmin_j ‖z_e − e_j‖² (the code grid k(x), int32
[h, w]), and a decoder gives p(x | z_q). The posterior q(k | x) is a point mass on k(x), so with a
prior p(k) over code grids

    log p(x) ≥ log p(x | z_q(x)) + log p(k(x))          (no entropy term: H[q] = 0).

Stage 1 trains with the uniform prior, log p(k) = −h·w·log K, a constant, so its loss is

    −log p(x | z_q) + β ‖z_e − sg(z_q)‖² [+ ‖sg(z_e) − z_q‖², the codebook loss]

with the straight-through gradient (the decoder's gradient at z_q is passed to z_e). The
codebook learns either from the codebook loss (`codebook="loss"`) or, by default, as exponential
moving averages of the encoder outputs assigned to each code (`codebook="ema"`): with n_k the
count and s_k the sum of the vectors assigned to code k in a step,

    N_k ← γ N_k + (1 − γ) n_k,  m_k ← γ m_k + (1 − γ) s_k,  e_k = m_k / Ñ_k,

Ñ_k = (N_k + ε) / (Σ_j N_j + K ε) · Σ_j N_j (Laplace-smoothed counts, so an unused code keeps a
finite entry). The counts and sums are the model's `step_statistics`, summed over replicas by the
training loop before `apply_step_statistics` updates the codebook.

Stage 2 (`vqvae_prior`). A frozen stage-1 model, read from its run (`stage1_workdir`), and an
autoregressive prior from this zoo (Gated PixelCNN, PixelCNN or PixelSNAIL, with K-way
categorical "pixels") over its code grids, trained by the same loop on the codes of the training
images. Its log_prob is the bound above with the learned p(k); sampling draws a code grid from
the prior and decodes it.

Pixels: Bernoulli for binary data; a discretized logistic (or normal) over 8-bit intensities
otherwise (tfgen/distributions/likelihoods.py).

References:
  van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete Representation Learning", NeurIPS 2017.
  Razavi, van den Oord & Vinyals, "Generating Diverse High-Fidelity Images with VQ-VAE-2",
    NeurIPS 2019 (EMA codebook updates, Laplace smoothing).
"""

import math
import os
from typing import Dict

from absl import logging
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import config as config_lib
from tfgen import errors
from tfgen import files
from tfgen import layers
from tfgen import seeding
from tfgen import viz
from tfgen import workdir as workdir_lib
from tfgen.distributions import likelihoods
from tfgen.models import autoregressive
from tfgen.models import base
from tfgen.models import capabilities as caps
from tfgen.models import registry

tfd = tfp.distributions

CODEBOOKS = ("ema", "loss")


class VectorQuantizer(keras.layers.Layer):
  """Nearest-neighbour lookup in a codebook of `num_codes` vectors of size `code_size`.

  Args:
    num_codes: K.
    code_size: D.
    ema: keep the codebook by exponential moving averages (else it is a trainable weight).
    decay: γ of the moving averages.
    epsilon: ε of the Laplace smoothing of the counts.
  """

  def __init__(self, num_codes: int, code_size: int, ema: bool, decay: float = 0.99,
               epsilon: float = 1e-5, **kwargs):
    super().__init__(**kwargs)
    self.num_codes, self.code_size, self.ema = num_codes, code_size, ema
    self.decay, self.epsilon = decay, epsilon

  def build(self, input_shape=None):
    del input_shape
    shape = (self.num_codes, self.code_size)
    init = keras.initializers.RandomUniform(-1.0 / self.num_codes, 1.0 / self.num_codes)
    # EMA state is assigned by the training loop in cross-replica context, not by gradients.
    state = dict(trainable=False) if self.ema else {}
    self.codebook = self.add_weight(shape=shape, initializer=init, name="codebook", **state)
    if self.ema:
      # Counts start at 1 and sums at the initial entries, so m_k / N_k is the entry from step 0.
      self.ema_count = self.add_weight(shape=(self.num_codes,), initializer="ones",
                                       name="ema_count", **state)
      self.ema_sum = self.add_weight(shape=shape, initializer="zeros", name="ema_sum", **state)
      self.ema_sum.assign(self.codebook.value)

  def nearest(self, z_e: tf.Tensor) -> tf.Tensor:
    """Code indices int32 [...] of z_e [..., D]."""
    codebook = tf.convert_to_tensor(self.codebook)
    flat = tf.reshape(z_e, [-1, self.code_size])
    distances = (tf.reduce_sum(flat ** 2, -1, keepdims=True) - 2.0 * flat @ tf.transpose(codebook)
                 + tf.reduce_sum(codebook ** 2, -1)[None])
    codes = tf.argmin(distances, axis=-1, output_type=tf.int32)
    return tf.reshape(codes, tf.shape(z_e)[:-1])

  def lookup(self, codes: tf.Tensor) -> tf.Tensor:
    """Codebook entries [..., D] of int codes [...]."""
    return tf.gather(tf.convert_to_tensor(self.codebook), tf.cast(codes, tf.int32))

  def statistics(self, z_e: tf.Tensor, codes: tf.Tensor) -> Dict[str, tf.Tensor]:
    """n_k (counts [K]) and s_k (sums of the assigned vectors [K, D]) of one batch."""
    flat = tf.reshape(z_e, [-1, self.code_size])
    one_hot = tf.one_hot(tf.reshape(codes, [-1]), self.num_codes)
    return {"code_counts": tf.reduce_sum(one_hot, 0),
            "code_sums": tf.transpose(one_hot) @ flat}

  def apply_ema(self, counts: tf.Tensor, sums: tf.Tensor) -> None:
    """One EMA update from a step's counts [K] and sums [K, D] (see the module docstring)."""
    g = self.decay
    count = g * self.ema_count + (1.0 - g) * counts
    total = g * self.ema_sum + (1.0 - g) * sums
    n = tf.reduce_sum(count)
    smoothed = (count + self.epsilon) / (n + self.num_codes * self.epsilon) * n
    self.ema_count.assign(count)
    self.ema_sum.assign(total)
    self.codebook.assign(total / smoothed[:, None])


class ResidualBlock(keras.layers.Layer):
  """x + 1×1(relu(3×3(relu(x))))."""

  def __init__(self, channels, **kwargs):
    super().__init__(**kwargs)
    self.conv = keras.layers.Conv2D(channels, 3, padding="same")
    self.project = keras.layers.Conv2D(channels, 1)

  def call(self, x):
    return x + self.project(tf.nn.relu(self.conv(tf.nn.relu(x))))


def codebook_usage(codes: np.ndarray, num_codes: int) -> Dict[str, float]:
  """Perplexity exp(H) of the code histogram of `codes` (any shape), and the codes never used."""
  counts = np.bincount(np.asarray(codes).reshape(-1), minlength=num_codes).astype(np.float64)
  p = counts / max(counts.sum(), 1.0)
  entropy = -np.sum(p[p > 0] * np.log(p[p > 0]))
  return {"code_perplexity": float(np.exp(entropy)), "dead_codes": int(np.sum(counts == 0)),
          "num_codes": int(num_codes)}


class _CodeGridTools:
  """What both stages share: codebook usage in evaluation, the code-grid signatures,
  reconstructions, and the bound. Needs `codes`, `decode`, `prior_log_prob`, `num_codes`,
  `code_shape` and `learned_prior`."""

  learned_prior = False  # Stage 1 decodes uniformly drawn codes: not worth a picture.

  def bounds(self, batch, seed):
    """log p(x | z_q(x)) + log p(k(x)) ("log_prob"), −log p(x | z_q) ("distortion") and
    −log p(k) ("rate"), [B] each, with the stage's prior (`prior_log_prob`)."""
    del seed
    x = self.images(batch)
    codes = self.codes(x)
    log_likelihood = self.decode(codes).log_prob(x)
    log_prior = self.prior_log_prob(codes, batch)
    return {"log_prob": log_likelihood + log_prior, "distortion": -log_likelihood,
            "rate": -log_prior}

  def log_prob(self, batch, seed=None, num_importance_samples=None):
    """The bound log p(x | z_q(x)) + log p(k(x)) in nats, [B] (deterministic)."""
    del num_importance_samples
    return self.bounds(batch, seed)["log_prob"]

  def log_prob_samples(self, num_importance_samples):
    del num_importance_samples
    return 1  # One posterior draw, the point mass: a bound, whatever k is asked for.

  def evaluation_terms(self, batch, seed, num_importance_samples):
    terms, collected = super().evaluation_terms(batch, seed, num_importance_samples)
    collected["codes"] = self.codes(self.images(batch))
    return terms, collected

  def finish_evaluation(self, results, collected, context):
    results = super().finish_evaluation(results, collected, context)
    results.update(codebook_usage(collected["codes"], self.num_codes))
    return results

  def code_signatures(self) -> Dict[str, caps.Signature]:
    """encode(images) -> codes int32 [B, h, w]; decode(codes) -> images, probabilities."""
    grid = (tf.int32, self.code_shape)

    def encode(images, seed):
      del seed
      return {"codes": self.codes(images)}

    def decode(codes, seed):
      del seed
      # The exporter rounds the means to the data's levels (0/1 for binary data).
      probabilities = self.decode(codes).mean()
      return {"images": probabilities, "probabilities": probabilities}

    return {
        "encode": caps.Signature(encode, (caps.Input(caps.IMAGES),), {"codes": grid}),
        "decode": caps.Signature(
            decode, (caps.Input(caps.CODES, self.num_codes, self.code_shape),),
            {"images": (caps.PIXELS, caps.IMAGE), "probabilities": (tf.float32, caps.IMAGE)}),
    }

  def training_pictures(self, images, seed):
    pictures = {"reconstructions": self._reconstruction_picture(images[:32])}
    if self.learned_prior:
      pictures.update(super().training_pictures(images, seed))
    return pictures

  def _reconstruction_picture(self, originals, num_columns=8):
    means = self.decode(self.codes(originals)).mean()
    return viz.reconstruction_pairs(np.asarray(originals), means.numpy(), num_columns)

  def sample_modes(self):
    modes = super().sample_modes()
    if not self.learned_prior:
      modes["samples"] = caps.SampleMode(
          self._samples_picture, help="decode code grids drawn uniformly (stage 1 has no "
          "learned prior; train stage 2 for samples)")
    modes["reconstructions"] = caps.SampleMode(
        self._reconstructions_picture, needs_test_data=True,
        help="--num test images and their decoded code grids, in alternating rows")
    return modes

  def _reconstructions_picture(self, request):
    originals = caps.test_images(request, request.num)
    return self._reconstruction_picture(originals, request.num_columns or 8)


@registry.MODELS.register("vqvae")
class VQVAE(_CodeGridTools, base.GenerativeModel):
  """Stage 1: encoder, vector quantizer, decoder; the bound uses the uniform prior over codes.

  Args:
    image_shape: (H, W, C), from the data set.
    num_codes: K, codebook entries.
    code_size: D, size of each entry.
    channels: width of the encoder and decoder.
    num_residual: residual blocks at the code grid's resolution, in the encoder and the decoder.
    downsampling: stride-2 steps from the image to the code grid (28×28 with 2: 7×7 codes).
    codebook: "ema" (moving averages) or "loss" (the codebook loss trains it by gradient).
    commitment_cost: β.
    ema_decay: γ of the "ema" codebook.
    likelihood: "bernoulli", "logistic", "normal" or "categorical" (256-way); "" picks
      Bernoulli for binary data and the discretized logistic otherwise.
    learned_scale, fixed_scale: the scale of a continuous likelihood (likelihoods.py).
    binary: whether the data are binary (from the data).
  """

  DATA_FIELDS = ("binary",)

  def __init__(self, image_shape, num_codes: int = 64, code_size: int = 32, channels: int = 64,
               num_residual: int = 2, downsampling: int = 2, codebook: str = "ema",
               commitment_cost: float = 0.25, ema_decay: float = 0.99, likelihood: str = "",
               learned_scale: bool = True, fixed_scale: float = 0.1, binary: bool = True,
               **kwargs):
    super().__init__(image_shape, **kwargs)
    height, width, depth = self.image_shape
    if codebook not in CODEBOOKS:
      raise errors.ConfigError(f"codebook must be one of {', '.join(CODEBOOKS)}; got {codebook!r}")
    if num_codes < 2 or code_size < 1 or channels < 1 or downsampling < 1:
      raise errors.ConfigError("num_codes must be >= 2 and code_size, channels, downsampling "
                               ">= 1")
    if height % 2 ** downsampling or width % 2 ** downsampling:
      raise errors.ConfigError(f"{downsampling} stride-2 steps need image sides divisible by "
                               f"{2 ** downsampling}; got {self.image_shape}")
    self.num_codes, self.code_size = int(num_codes), int(code_size)
    self.commitment_cost = float(commitment_cost)
    self.code_shape = (height >> downsampling, width >> downsampling)
    self.pixels = likelihoods.build(likelihood or ("bernoulli" if binary else "logistic"),
                                    self.image_shape, binary, learned_scale, fixed_scale)
    conv = lambda: keras.layers.Conv2D(channels, 4, strides=2, padding="same")
    self.down = layers.track_list(self, "down", [conv() for _ in range(downsampling)])
    self.encoder_blocks = layers.track_list(self, "encoder_block", [
        ResidualBlock(channels) for _ in range(num_residual)])
    self.to_code = keras.layers.Conv2D(self.code_size, 1)
    self.from_code = keras.layers.Conv2D(channels, 3, padding="same")
    self.decoder_blocks = layers.track_list(self, "decoder_block", [
        ResidualBlock(channels) for _ in range(num_residual)])
    deconv = lambda c: keras.layers.Conv2DTranspose(c, 4, strides=2, padding="same")
    self.up = layers.track_list(self, "up", [deconv(channels) for _ in range(downsampling - 1)]
                                + [deconv(self.pixels.num_params * depth)])
    self.quantizer = VectorQuantizer(self.num_codes, self.code_size, codebook == "ema",
                                     ema_decay)
    self.quantizer.build()

  @classmethod
  def data_kwargs(cls, info):
    return {"binary": info.binary}

  # --- Encoder, quantizer, decoder -------------------------------------------------------------

  def encoder_output(self, x: tf.Tensor) -> tf.Tensor:
    """z_e(x): [B, h, w, D]."""
    h = 2.0 * self.check_images(x) - 1.0
    for layer in self.down:
      h = tf.nn.relu(layer(h))
    for block in self.encoder_blocks:
      h = block(h)
    # float32 codes: the nearest-code search and the codebook stay float32 under mixed precision.
    return tf.cast(self.to_code(tf.nn.relu(h)), tf.float32)

  def codes(self, x: tf.Tensor) -> tf.Tensor:
    """k(x): the code grid, int32 [B, h, w]."""
    return self.quantizer.nearest(self.encoder_output(x))

  def encode(self, x, training=False) -> tfd.Distribution:
    """q(k | x): a point mass on the code grid k(x), event shape [h, w] (int32)."""
    del training
    return tfd.Independent(tfd.Deterministic(self.codes(x)), 2)

  def _decode_vectors(self, z_q: tf.Tensor) -> tfd.Distribution:
    h = self.from_code(z_q)
    for block in self.decoder_blocks:
      h = block(h)
    h = tf.nn.relu(h)
    for i, layer in enumerate(self.up):
      h = layer(h)
      if i < len(self.up) - 1:
        h = tf.nn.relu(h)
    return self.pixels.distribution(h)

  def decode(self, codes, training=False) -> tfd.Distribution:
    """p(x | z_q) for code grids int [B, h, w]; event shape [H, W, C]."""
    del training
    return self._decode_vectors(self.quantizer.lookup(codes))

  def prior_log_prob(self, codes: tf.Tensor, batch=None) -> tf.Tensor:
    """log p(k) of the uniform prior: −h·w·log K for every grid, [B]."""
    del batch
    return tf.fill(tf.shape(codes)[:1], -math.prod(self.code_shape) * math.log(self.num_codes))

  # --- The contract -----------------------------------------------------------------------------

  def loss(self, batch, seed, training=False):
    del seed, training
    x = self.images(batch)
    z_e = self.encoder_output(x)
    codes = self.quantizer.nearest(z_e)
    z_q = self.quantizer.lookup(codes)
    # Straight-through: the decoder sees z_q, its gradient reaches z_e unchanged.
    log_likelihood = self._decode_vectors(z_e + tf.stop_gradient(z_q - z_e)).log_prob(x)
    commitment = tf.reduce_sum((z_e - tf.stop_gradient(z_q)) ** 2, [1, 2, 3])
    loss = -log_likelihood + self.commitment_cost * commitment
    metrics = {"distortion": -log_likelihood, "commitment": commitment}
    if not self.quantizer.ema:
      codebook_loss = tf.reduce_sum((tf.stop_gradient(z_e) - z_q) ** 2, [1, 2, 3])
      loss += codebook_loss
      metrics["codebook_loss"] = codebook_loss
    bound = log_likelihood + self.prior_log_prob(codes)
    metrics.update(log_prob=bound, bits_per_dim=self.bits_per_dim(bound))
    return loss, metrics

  def step_statistics(self, batch, seed):
    del seed
    if not self.quantizer.ema:
      return {}
    z_e = self.encoder_output(self.images(batch))
    return self.quantizer.statistics(z_e, self.quantizer.nearest(z_e))

  def apply_step_statistics(self, totals):
    self.quantizer.apply_ema(totals["code_counts"], totals["code_sums"])

  def sample_codes(self, num, seed) -> tf.Tensor:
    """Code grids from the prior, int32 [num, h, w] (uniform in stage 1)."""
    return tf.random.stateless_uniform((num,) + self.code_shape, seed, 0, self.num_codes,
                                       dtype=tf.int32)

  def images_from_codes(self, codes, seed, mean=False):
    """Decoded images [B, H, W, C] in [0, 1]: a draw of p(x | z_q), or its mean."""
    p = self.decode(codes)
    return p.mean() if mean else tf.cast(p.sample(seed=seed), tf.float32)

  def sample(self, num, seed, mean=False):
    codes = self.sample_codes(num, seeding.fold_in(seed, 0))
    return self.images_from_codes(codes, seeding.fold_in(seed, 1), mean)

  def signatures(self):
    out = super().signatures()
    out.update(self.code_signatures())
    return out


def _prior_class(name: str):
  cls = registry.MODELS.get(name)
  if not issubclass(cls, autoregressive.AutoregressiveModel):
    raise errors.ConfigError(f"the VQ-VAE prior must be an autoregressive model of this zoo "
                             f"(gated_pixelcnn, pixelcnn, pixelsnail); got {name!r}")
  return cls


_STAGE1 = "config.model.stage1_workdir"


def _load_stage1(workdir: str) -> base.GenerativeModel:
  """The model of stage-1 run `workdir`, frozen, from its newest complete checkpoint (or the best
  epoch's weights of a run trained with early stopping), as `registry.load_frozen` loads it.

  A stage-1 run still training is read as it is: TensorFlow renames a checkpoint into place only
  once it is complete, so this is its newest complete checkpoint, named in a warning line. A new
  stage-2 run then trains on that checkpoint's codes; a stage-2 run that has checkpoints of its
  own restores the stage-1 weights saved in them over these.

  Raises:
    ConfigError: workdir is missing, or holds no run or no checkpoint yet (one line each).
    WorkdirError: its config, data description or checkpoints are damaged or do not fit.
  """
  example = f"tfgen-train --config=configs/vqvae.py --workdir={workdir}"
  if not os.path.exists(workdir):
    raise errors.ConfigError(f"{_STAGE1} {workdir!r} does not exist; give the workdir of a "
                             f"trained stage-1 run, or train one there first: {example}")
  if not os.path.isdir(workdir):
    raise errors.ConfigError(f"{_STAGE1} {workdir!r} is a file; give the workdir of a trained "
                             "stage-1 run")
  trainer = files.lock_holder(os.path.join(workdir, workdir_lib.LOCK_FILE))
  has_run = os.path.exists(os.path.join(workdir, config_lib.CONFIG_FILE))
  has_checkpoint = workdir_lib.newest_checkpoint(workdir) is not None or os.path.isdir(
      os.path.join(workdir, workdir_lib.BEST_DIR))
  if trainer is not None and not (has_run and has_checkpoint):
    raise errors.ConfigError(
        f"{_STAGE1} {workdir!r} has no checkpoint yet: its stage-1 training (process "
        f"{trainer}) has not written one. Start stage 2 once it has finished (or written a "
        "checkpoint, every config.train.checkpoint_every_epochs epochs)")
  if not has_run:
    raise errors.ConfigError(f"{_STAGE1} {workdir!r} holds no training run (no "
                             f"{config_lib.CONFIG_FILE}); train stage 1 there first: {example}")
  if not has_checkpoint:
    raise errors.ConfigError(f"{_STAGE1} {workdir!r} has no checkpoint: its stage-1 training "
                             f"stopped before writing one; train stage 1 there first: {example}")
  saved = config_lib.load_from_workdir(workdir)
  info = workdir_lib.load_data_info(workdir)
  if info is None:
    raise errors.WorkdirError(f"{_STAGE1} {workdir!r} records no data description "
                              f"({workdir_lib.DATA_INFO_FILE}); was it trained by tfgen-train?")
  model = registry.build(saved.model, info)
  model.build_for_images()
  path = workdir_lib.restore_model(model, workdir)
  if trainer is not None:
    logging.warning("stage-1 run %s is still training (process %d): took its newest complete "
                    "checkpoint, %s. A new stage-2 run trains on that checkpoint's codes; one "
                    "that has checkpoints of its own keeps the stage-1 weights saved in them",
                    workdir, trainer, os.path.relpath(path, workdir))
  model.trainable = False
  return model


@registry.MODELS.register("vqvae_prior")
class VQVAEWithPrior(_CodeGridTools, base.GenerativeModel):
  """Stage 2: a frozen stage-1 VQ-VAE and an autoregressive prior over its code grids.

  Args:
    image_shape: (H, W, C); must be the stage-1 model's.
    stage1_workdir: the stage-1 run (tfgen-train with a `vqvae` config) whose newest
      checkpoint is loaded and frozen.
    prior: the prior's config: `name` (gated_pixelcnn, pixelcnn or pixelsnail) and its
      hyperparameters (`models.model_config(name, ...)`); its `num_levels` is the codebook size.
    num_classes: classes of the data (from the data), for a class-conditional prior.
    stage1: instead of stage1_workdir, from Python: the stage-1 VQVAE model itself, or its Keras
      config (what `get_config` writes, so that a saved .keras file holds its stage 1 and
      `keras.saving.load_model` needs no stage-1 run).
  """

  DATA_FIELDS = ("num_classes",)
  PYTHON_ONLY_FIELDS = ("stage1",)

  def __init__(self, image_shape, stage1_workdir: str = "", prior=None, num_classes=None,
               stage1=None, **kwargs):
    super().__init__(image_shape, **kwargs)
    if stage1 is None and not stage1_workdir:
      raise errors.ConfigError("vqvae_prior trains on a stage-1 run's codes: set "
                               "--config.model.stage1_workdir=RUN (a vqvae run's workdir)")
    if stage1 is None:
      stage1 = _load_stage1(stage1_workdir)
    elif isinstance(stage1, dict):
      stage1 = keras.saving.deserialize_keras_object(stage1)
      stage1.build_for_images()
      stage1.trainable = False
    self.stage1 = stage1
    if not isinstance(self.stage1, VQVAE):
      raise errors.ConfigError(f"{stage1_workdir or 'stage1'!r} holds a "
                               f"{type(self.stage1).__name__}, not a vqvae run")
    if self.stage1.image_shape != self.image_shape:
      raise errors.ConfigError(f"the stage-1 run models images of shape "
                               f"{self.stage1.image_shape}, this data set's are "
                               f"{self.image_shape}; use the stage-1 run's data set")
    fields = dict((prior or {"name": "gated_pixelcnn"}).items())
    cls = _prior_class(fields.pop("name", "gated_pixelcnn"))
    if "num_classes" in cls.DATA_FIELDS:
      fields["num_classes"] = num_classes
    self.prior = cls(self.stage1.code_shape + (1,), num_levels=self.stage1.num_codes, **fields)
    self.num_classes = self.prior.num_classes

  @classmethod
  def data_kwargs(cls, info):
    return {"num_classes": info.num_classes}

  def constructor_arguments(self):
    # The stage-1 model itself, not the run it came from: a saved model is whole without it.
    return dict(super().constructor_arguments(), stage1_workdir="",
                stage1=keras.saving.serialize_keras_object(self.stage1))

  def build_for_images(self):
    super().build_for_images()
    self.prior.build_for_images()

  # --- Codes as the prior's images --------------------------------------------------------------

  def _as_levels(self, codes):
    return tf.cast(codes, tf.float32)[..., None] / (self.stage1.num_codes - 1.0)

  def _from_levels(self, levels):
    return tf.cast(tf.round(levels[..., 0] * (self.stage1.num_codes - 1.0)), tf.int32)

  def _prior_batch(self, codes, batch):
    out = {"image": self._as_levels(codes)}
    if "label" in batch:
      out["label"] = batch["label"]
    return out

  def prior_log_prob(self, codes, batch) -> tf.Tensor:
    """log p(k) under the learned prior, [B]."""
    return self.prior.log_prob(self._prior_batch(codes, batch))

  # --- The contract -----------------------------------------------------------------------------

  def loss(self, batch, seed, training=False):
    del training
    codes = tf.stop_gradient(self.stage1.codes(self.images(batch)))
    log_prior = self.prior_log_prob(codes, batch)
    return -log_prior, {"prior_log_prob": log_prior,
                        "prior_bits_per_code": -log_prior / (math.prod(self.stage1.code_shape)
                                                             * math.log(2.0))}

  def sample_codes(self, num, seed, labels=None):
    """Code grids drawn from the prior, int32 [num, h, w]."""
    extra = {} if labels is None else {"labels": labels}
    return self._from_levels(self.prior.sample(num, seed, **extra))

  def sample(self, num, seed, mean=False, labels=None):
    codes = self.sample_codes(num, seeding.fold_in(seed, 0), labels)
    return self.stage1.images_from_codes(codes, seeding.fold_in(seed, 1), mean)

  def codes(self, x):
    return self.stage1.codes(x)

  def encode(self, x, training=False):
    return self.stage1.encode(x, training)

  def decode(self, codes, training=False):
    return self.stage1.decode(codes, training)

  # --- Declared capabilities --------------------------------------------------------------------

  learned_prior = True

  @property
  def num_codes(self):
    return self.stage1.num_codes

  @property
  def code_shape(self):
    return self.stage1.code_shape

  def signatures(self):
    out = super().signatures()
    out.update(self.code_signatures())
    if self.num_classes is not None:
      out.update(self.labelled_sample_signatures(self.num_classes))
    return out
