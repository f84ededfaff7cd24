"""A convolutional VAE with batch normalization, for grey-scale and colour images.

Factorisation, with Gaussian latents z and a pixel likelihood chosen in the config:

  p(x, z) = p(z) p(x | z),   p(z) = N(0, I),   q(z | x) a diagonal Gaussian

The encoder halves the image with stride-2 4x4 convolutions while the side is even and larger
than 7 (28 -> 14 -> 7, 64 -> 32 -> 16 -> 8 -> 4), doubling the channels each time, then a dense
layer gives q's location and scale. The decoder mirrors it with stride-2 transposed
convolutions. Every layer but the last of each network is followed by batch normalization and a
ReLU: with it VAEs train far faster. Training normalizes with batch statistics; evaluation,
sampling and export with the moving averages, so an image's bound does not depend on the batch it
is in (importance samples for evaluation are also drawn per sample index, not per example, see
`log_weights`).

p(x | z) is Bernoulli for binary images, or for 8-bit intensities a Normal or logistic
discretized onto the 256 levels (tfgen/distributions/likelihoods.py), so −log p(x) is in nats
of the 8-bit data and converts to bits per dimension. Bounds as in tfgen/models/vae.py:
ELBO_k = (1/k) Σᵢ log wᵢ, IWAE_k = log (1/k) Σᵢ wᵢ with log wᵢ = log p(x, z⁽ⁱ⁾) − log q(z⁽ⁱ⁾ | x).

References:
  Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
  Ioffe & Szegedy, "Batch Normalization", ICML 2015.
  Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
  Salimans, Karpathy, Chen & Kingma, "PixelCNN++" (discretized logistic), ICLR 2017.
"""

import math
from typing import List

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import layers
from tfgen.distributions import likelihoods
from tfgen.models import base
from tfgen.models import registry

tfd = tfp.distributions

MIN_SIDE = 7


def downsampling_steps(side: int) -> int:
  """Stride-2 steps from `side` while it is even and larger than MIN_SIDE (28: 2, 64: 4)."""
  steps = 0
  while side % 2 == 0 and side > MIN_SIDE:
    side //= 2
    steps += 1
  return steps


class Normed(keras.layers.Layer):
  """A layer, then batch normalization and a ReLU (the last layer of a network has neither)."""

  def __init__(self, layer, **kwargs):
    super().__init__(**kwargs)
    self.inner = layer
    self.norm = keras.layers.BatchNormalization()

  def call(self, x, training=False):
    return tf.nn.relu(self.norm(self.inner(x), training=training))


@registry.MODELS.register("conv_vae")
class ConvVAE(base.LatentVariableModel):
  """Convolutional encoder, transposed-convolutional decoder, batch norm after each inner layer.

  Args:
    image_shape: (H, W, C), from the data set.
    latent_size: size of z.
    channels: channels of the first convolution; each stride-2 step doubles them.
    hidden_size: width of the dense layer between the convolutions and z.
    likelihood: "bernoulli", "logistic", "normal" or "categorical" (distributions/likelihoods.py).
    binary: whether the images are binary (from the data).
    learned_scale: continuous likelihoods: predict the scale per pixel (else `fixed_scale`).
    fixed_scale: the scale of a continuous likelihood when it is not learned.
    min_scale: floor of q's standard deviation.
    **kwargs: the latent-variable core's (objective, num_importance_samples, kl_warmup_epochs,
      free_bits; see base.LatentVariableModel).
  """

  DATA_FIELDS = ("binary",)

  def __init__(self, image_shape, latent_size: int = 32, channels: int = 32,
               hidden_size: int = 256, likelihood: str = "bernoulli", binary: bool = True,
               learned_scale: bool = True, fixed_scale: float = 0.1, min_scale: float = 1e-4,
               **kwargs):
    super().__init__(image_shape, **kwargs)
    if min(latent_size, channels, hidden_size) < 1:
      raise errors.ConfigError("latent_size, channels and hidden_size must be >= 1")
    height, width, depth = self.image_shape
    steps = downsampling_steps(height)
    if steps == 0 or downsampling_steps(width) != steps:
      raise errors.ConfigError(f"the convolutional VAE needs square-ish images whose sides halve "
                               f"alike down to at most {MIN_SIDE * 2 - 1}; got {self.image_shape}")
    self.latent_size = int(latent_size)
    self.min_scale = min_scale
    self.pixels = likelihoods.build(likelihood, self.image_shape, binary, learned_scale,
                                    fixed_scale)
    widths = [channels * 2 ** i for i in range(steps)]
    self.small_shape = (height >> steps, width >> steps, widths[-1])
    conv = lambda c: keras.layers.Conv2D(c, 4, strides=2, padding="same")
    deconv = lambda c: keras.layers.Conv2DTranspose(c, 4, strides=2, padding="same")
    self.encoder_layers = layers.track_list(
        self, "encoder", [Normed(conv(c)) for c in widths] + [
            Normed(keras.layers.Dense(hidden_size))])
    self.encoder_out = keras.layers.Dense(2 * self.latent_size)
    self.decoder_layers = layers.track_list(
        self, "decoder", [Normed(keras.layers.Dense(hidden_size)),
                          Normed(keras.layers.Dense(math.prod(self.small_shape)))] + [
            Normed(deconv(c)) for c in reversed(widths[:-1])])
    self.decoder_out = deconv(self.pixels.num_params * depth)

  @classmethod
  def data_kwargs(cls, info):
    return {"binary": info.binary}

  # --- Distributions ---------------------------------------------------------------------------

  def prior(self) -> tfd.Distribution:
    return base.standard_normal(self.latent_size)

  def encode(self, x, training=False) -> tfd.Distribution:
    h = self.check_images(x)
    for i, layer in enumerate(self.encoder_layers):
      if i == len(self.encoder_layers) - 1:
        h = tf.reshape(h, [tf.shape(h)[0], math.prod(h.shape[1:])])
      h = layer(h, training=training)
    return base.diagonal_normal(self.encoder_out(h), self.min_scale)

  def decode(self, z, training=False) -> tfd.Distribution:
    # Convolutions take one batch axis: k draws of a batch, [k, B, d], pass as [k·B, d].
    batch_shape = tf.shape(z)[:-1]
    h = tf.reshape(z, [-1, self.latent_size])
    h = self.decoder_layers[0](h, training=training)
    h = self.decoder_layers[1](h, training=training)
    h = tf.reshape(h, (-1,) + self.small_shape)
    for layer in self.decoder_layers[2:]:
      h = layer(h, training=training)
    params = self.decoder_out(h)
    params = tf.reshape(params, tf.concat([batch_shape, tf.shape(params)[1:]], 0))
    return self.pixels.distribution(params)

  # --- Log-density terms -----------------------------------------------------------------------

  def _draw(self, q, num_samples, seed, shared: bool):
    """num_samples draws from q [B, d] as [num_samples, B, d].

    With `shared`, draw i uses the same standard-normal noise for every example of the batch, so
    an example's importance samples depend on the seed and i only, not on the batch around it.
    """
    if not shared:
      return q.sample(num_samples, seed=seed)
    noise = tf.random.stateless_normal(tf.stack([num_samples, 1, self.latent_size]), seed=seed)
    return q.distribution.loc + q.distribution.scale * noise

  def latent_terms(self, batch, num_samples, seed, training=False):
    """Training draws independently; evaluation shares its noise across the batch (`_draw`)."""
    x = self.images(batch)
    q = self.encode(x, training=training)
    z = self._draw(q, num_samples, seed, shared=not training)
    log_px = self.decode(z, training=training).log_prob(x)
    return base.LatentTerms(log_px, [self.prior().log_prob(z)], [q.log_prob(z)],
                            kl=[tfd.kl_divergence(q, self.prior())])

  # --- Sampling and codes ----------------------------------------------------------------------

  def sample(self, num, seed, mean=False):
    seeds = tfp.random.split_seed(seed, n=2)
    p_x = self.decode(self.prior().sample(num, seed=seeds[0]))
    return tf.clip_by_value(p_x.mean(), 0.0, 1.0) if mean else p_x.sample(seed=seeds[1])

  def posterior_means(self, x, seed) -> List[tf.Tensor]:
    del seed
    return [self.encode(x).mean()]
