"""Compositional pattern-producing networks: images as functions of pixel coordinates.

A CPPN (Stanley 2007) is a network that maps the coordinates of a point of the image plane, and a
latent vector z shared by all points of one image, to that point's colour:

    c(x, y) = sigmoid(f([x, y, r, φ(x, y)], z))          r = √(x² + y²)

where f is an MLP applied to every pixel independently (tanh, sin, Gaussian or any Keras
activation; configurable width and depth) and φ optionally adds Fourier features of the
coordinates, sin(2^k π x), cos(2^k π x), sin(2^k π y), cos(2^k π y) for k = 0 … F−1 (the
positional encoding of Mildenhall et al. 2020, whose use against the "spectral bias" of
coordinate MLPs Tancik et al. 2020 analyse). Because the image is a function of continuous
coordinates it can be rendered at any resolution: rendering samples the same function at more,
finer-spaced pixel centres.

Coordinates: pixel centres, with the longer side of the image spanning [−1, 1] and the shorter
side keeping the aspect, x = (2j + 1 − W) / max(H, W), y = (2i + 1 − H) / max(H, W). A render at
s times the size therefore shows the same region of the plane at s times the density (the centres
of an s×s block of fine pixels average to the centre of the coarse pixel), and a non-square render
is not stretched.

What this module offers:

  * `CPPN`, a Keras 3 layer (z [..., d], coordinates [P, 2]) -> logits [..., P, C]; the VAE uses
    it as a decoder (`config.model.decoder = "cppn"`, tfgen/models/vae.py).
  * `render`: a CPPN at any height and width, a pixel chunk at a time so that memory stays bounded.
  * `random_cppn` / `random_image`: the classic CPPN art of random networks with large weights
    (Ha 2016), deterministic per seed; `interpolation_frames`: a latent interpolation.
  * `fit_image`: image regression, a CPPN fitted to one picture by MSE with Adam, which can then be
    rendered at 10x its size (`fit_file` for the command line, `tfgen-cppn fit`).

References:
  Stanley, K. O. (2007). Compositional pattern producing networks: a novel abstraction of
    development. Genetic Programming and Evolvable Machines 8(2), 131-162.
  Ha, D. (2016). Generating large images from latent vectors. blog.otoro.net, 2016-04-01.
  Mildenhall, B., Srinivasan, P. P., Tancik, M., Barron, J. T., Ramamoorthi, R. & Ng, R. (2020).
    NeRF: representing scenes as neural radiance fields for view synthesis. ECCV 2020.
  Tancik, M., Srinivasan, P. P., Mildenhall, B. et al. (2020). Fourier features let networks learn
    high frequency functions in low dimensional domains. NeurIPS 2020.
"""

import math
import re
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from tfgen import errors
from tfgen import layers
from tfgen import viz

# Activations beyond Keras's names: periodic and bump functions give CPPNs their repetitions and
# symmetries (Stanley 2007).
_EXTRA_ACTIVATIONS = {
    "sin": tf.sin,
    "gaussian": lambda x: tf.exp(-tf.square(x)),
}
# The longest side rendered or fitted: bounds the memory of the finished picture (float32).
MAX_SIDE = 16384
# Values (pixels × images × units) of one hidden activation per chunk of `render`: 64 MB.
RENDER_BUDGET = 1 << 24

# Random CPPNs: Ha (2016)'s settings — N(0, 1) weights, so that tanh units saturate into sharp
# shapes — with a zoom that shows a few of them per image.
RANDOM_DEFAULTS = dict(channels=3, latent_size=8, units=32, depth=4, activation="tanh",
                       fourier_frequencies=0, zoom=2.0, weight_std=1.0)
# Image regression: a wider network, Glorot weights, and Fourier features up to 2^3 π x, a period
# of 8 pixels of a 64-pixel side. Up to the Nyquist frequency (6 frequencies, a 2-pixel period)
# the fit is no closer but the 10x render shows the pixel grid (docs/cppn.md).
FIT_DEFAULTS = dict(units=128, depth=4, activation="tanh", fourier_frequencies=4,
                    learning_rate=3e-3, steps=2000, fit_size=64, scale=10.0)


def activation(name: str):
  """The function of an activation name: "sin", "gaussian" (exp(−x²)) or a Keras name.

  Raises:
    ConfigError: an unknown name.
  """
  if name in _EXTRA_ACTIVATIONS:
    return _EXTRA_ACTIVATIONS[name]
  try:
    return keras.activations.get(name)
  except (ValueError, TypeError) as e:
    raise errors.ConfigError(f"unknown activation {name!r}; use sin, gaussian or a Keras "
                             "activation (tanh, relu, softplus, ...)") from e


def parse_activations(spec: Union[str, Sequence[str]]) -> Tuple[str, ...]:
  """"tanh" or "tanh,sin" (one per hidden layer, cycled) -> ("tanh", "sin"); checks each name."""
  names = tuple(n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec))
  if not names or not all(names):
    raise errors.ConfigError(f"--activation {spec!r} is empty; give a name or a comma list")
  for name in names:
    activation(name)
  return names


def coordinates(height: int, width: int) -> np.ndarray:
  """Pixel-centre coordinates of a height × width image, row-major.

  Returns:
    float32 [height·width, 2]: (x, y) with x = (2j + 1 − W) / max(H, W) and y likewise, so that
    the longer side spans (−1, 1) and the aspect is kept.
  """
  longer = max(height, width)
  x = (2 * np.arange(width) + 1 - width) / longer
  y = (2 * np.arange(height) + 1 - height) / longer
  grid_y, grid_x = np.meshgrid(y, x, indexing="ij")
  return np.stack([grid_x.ravel(), grid_y.ravel()], -1).astype(np.float32)


def _initializer(weight_std: Optional[float], seed: Optional[int], index: int):
  """N(0, weight_std²) (random art) or Glorot (training); seeded per layer when seed is given."""
  layer_seed = None if seed is None else int(seed) * 1009 + index
  if weight_std is not None:
    return keras.initializers.RandomNormal(stddev=weight_std, seed=layer_seed)
  return keras.initializers.GlorotUniform(seed=layer_seed)


class CPPN(keras.layers.Layer):
  """An MLP applied per pixel to coordinate features and a latent z: the CPPN's logits.

  The first layer is W_c·features(x, y) + W_z·z + b, computed as the sum of a per-pixel part
  [P, units] and a per-image part [..., units], so z is multiplied once per image rather than once
  per pixel; the later layers are dense layers of `units` on every pixel.

  Args:
    channels: output channels (1: grey, 3: RGB).
    latent_size: size of z (0: a function of the coordinates alone).
    units: width of every hidden layer.
    depth: hidden layers (>= 1).
    activation: a name or a comma list cycled over the hidden layers ("tanh", "sin", "gaussian",
      any Keras activation).
    fourier_frequencies: F; adds sin/cos(2^k π x) and of y for k < F (0: x, y, r only).
    coordinate_scale: coordinates are multiplied by this first (a zoom: larger shows more of the
      pattern).
    weight_std: None: Glorot-uniform weights (for training); a number: N(0, weight_std²) weights
      (random CPPN art: large weights saturate the units into sharp shapes).
    seed: seeds the initial weights (None: Keras's global seed), so a seed gives one network.
  """

  def __init__(self, channels: int = 3, latent_size: int = 8, units: int = 32, depth: int = 4,
               activation: Union[str, Sequence[str]] = "tanh", fourier_frequencies: int = 0,
               coordinate_scale: float = 1.0, weight_std: Optional[float] = None,
               seed: Optional[int] = None, **kwargs):
    super().__init__(**kwargs)
    for name, value, low in (("channels", channels, 1), ("latent_size", latent_size, 0),
                             ("units", units, 1), ("depth", depth, 1),
                             ("fourier_frequencies", fourier_frequencies, 0)):
      if int(value) != value or value < low:
        raise errors.ConfigError(f"CPPN {name} must be an integer >= {low}, got {value}")
    if not math.isfinite(coordinate_scale) or coordinate_scale <= 0:
      raise errors.ConfigError(f"CPPN zoom (coordinate scale) must be > 0, got "
                               f"{coordinate_scale}")
    if weight_std is not None and (not math.isfinite(weight_std) or weight_std <= 0):
      raise errors.ConfigError(f"CPPN weight_std must be > 0, got {weight_std}")
    self.channels, self.latent_size = int(channels), int(latent_size)
    self.units, self.depth = int(units), int(depth)
    self.fourier_frequencies = int(fourier_frequencies)
    self.coordinate_scale = float(coordinate_scale)
    self.activation_names = parse_activations(activation)
    self.activations = [_activation_of(self.activation_names, i) for i in range(self.depth)]

    def dense(size, index, use_bias=True):
      return keras.layers.Dense(size, use_bias=use_bias,
                                kernel_initializer=_initializer(weight_std, seed, index))

    self.coordinate_dense = dense(self.units, 0)
    # No bias: the coordinate part already has one, and the sum is one affine map of [c, z].
    self.latent_dense = dense(self.units, 1, use_bias=False) if self.latent_size else None
    # track_list: tf.train.Checkpoint sees the layers of a plain list only through Keras.
    self.hidden = layers.track_list(self, "hidden",
                                    [dense(self.units, 2 + i) for i in range(self.depth - 1)])
    self.out = dense(self.channels, 1 + self.depth)

  @property
  def num_features(self) -> int:
    """Coordinate features per pixel: x, y, r and 4 per Fourier frequency."""
    return 3 + 4 * self.fourier_frequencies

  def features(self, coords) -> tf.Tensor:
    """[P, 2] coordinates -> [P, num_features]: x, y, r, then sin and cos of 2^k π x and y."""
    coords = tf.convert_to_tensor(coords, tf.float32) * self.coordinate_scale
    radius = tf.norm(coords, axis=-1, keepdims=True)
    parts = [coords, radius]
    if self.fourier_frequencies:
      frequencies = math.pi * 2.0 ** tf.range(self.fourier_frequencies, dtype=tf.float32)
      angles = tf.reshape(coords[:, :, None] * frequencies, [-1, 2 * self.fourier_frequencies])
      parts += [tf.sin(angles), tf.cos(angles)]
    return tf.concat(parts, -1)

  def call(self, z, coords):
    """Logits of every pixel of every image.

    Args:
      z: [..., latent_size] (for latent_size 0, [..., 0] gives the batch shape).
      coords: [P, 2] pixel coordinates (see `coordinates`).

    Returns:
      [..., P, channels] logits; sigmoid gives the colours in [0, 1].
    """
    pixel_part = self.coordinate_dense(self.features(coords))  # [P, units]
    z = tf.convert_to_tensor(z)
    if self.latent_dense is not None:
      image_part = self.latent_dense(tf.cast(z, pixel_part.dtype))  # [..., units]
      hidden = image_part[..., None, :] + pixel_part
    else:
      hidden = tf.broadcast_to(pixel_part, tf.concat([tf.shape(z)[:-1], tf.shape(pixel_part)], 0))
    hidden = self.activations[0](hidden)
    for index, dense in enumerate(self.hidden, start=1):
      hidden = self.activations[index](dense(hidden))
    return self.out(hidden)


def _activation_of(names: Sequence[str], layer: int):
  return activation(names[layer % len(names)])


class CPPNDecoder(keras.layers.Layer):
  """A VAE decoder that maps (z, pixel coordinates) to each pixel's logit, at any resolution.

  z first passes through an MLP (computed once per image), whose last hidden layer is the CPPN's
  latent; the CPPN then gives every pixel its logit. Trained at the data's resolution, it decodes
  at any other: the pixels are samples of one continuous function of the coordinates.

  Args:
    image_shape: (H, W, C) of the training images: the default resolution and the channels.
    hidden_sizes: the MLP on z (at least one layer).
    activation: of the MLP and of the CPPN's hidden layers.
    batch_norm: batch normalization in the MLP on z.
    units, depth, fourier_frequencies: the CPPN (see CPPN).
  """

  def __init__(self, image_shape, hidden_sizes: Sequence[int], activation: str = "tanh",
               batch_norm: bool = False, units: int = 64, depth: int = 3,
               fourier_frequencies: int = 0, **kwargs):
    super().__init__(**kwargs)
    if not hidden_sizes:
      raise errors.ConfigError("the cppn decoder needs at least one hidden layer on z")
    self.image_shape = tuple(int(d) for d in image_shape)
    self.latent_net = layers.MLP(hidden_sizes, None, activation, batch_norm)
    self.cppn = CPPN(self.image_shape[-1], int(hidden_sizes[-1]), units, depth, activation,
                     fourier_frequencies)

  @property
  def units(self) -> int:
    return self.cppn.units

  def call(self, z, height: Optional[int] = None, width: Optional[int] = None, training=False):
    """Logits [..., height, width, C] of latents z [..., latent size] (default: training size)."""
    height = height or self.image_shape[0]
    width = width or self.image_shape[1]
    latent = self.latent_net(z, training=training)
    logits = self.cppn(latent, coordinates(height, width))  # [..., P, C]
    return tf.reshape(logits, tf.concat(
        [tf.shape(logits)[:-2], [height, width, self.image_shape[-1]]], 0))


# --- Rendering ----------------------------------------------------------------------------------


def check_size(height: int, width: int, what: str = "--size") -> Tuple[int, int]:
  """Returns (height, width) as ints, refusing sides < 1 or > MAX_SIDE.

  Raises:
    ConfigError: a side out of range.
  """
  height, width = int(height), int(width)
  if min(height, width) < 1 or max(height, width) > MAX_SIDE:
    raise errors.ConfigError(f"{what}: sides must be 1..{MAX_SIDE} pixels, got "
                             f"{width}x{height} (WIDTHxHEIGHT)")
  return height, width


def parse_size(text: str) -> Tuple[int, int]:
  """"WIDTHxHEIGHT" (e.g. "320x200") or "N" (N x N) -> (height, width).

  Raises:
    ConfigError: not of that form, or a side out of 1..MAX_SIDE.
  """
  match = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*", text or "")
  if not match:
    raise errors.ConfigError(f"--size {text!r} is not WIDTHxHEIGHT (e.g. 320x200) or one number "
                             "N for NxN")
  width = int(match.group(1))
  height = int(match.group(2)) if match.group(2) else width
  return check_size(height, width)


def render(model: CPPN, z, height: int, width: int, logits: bool = False) -> np.ndarray:
  """Draws a CPPN's image(s) at any resolution, a chunk of pixels at a time.

  Args:
    model: a CPPN.
    z: [latent_size] for one image or [N, latent_size] for N (None: no latent, one image).
    height, width: the size to render, in pixels.
    logits: return the logits instead of the colours.

  Returns:
    float32 [height, width, channels] (one z) or [N, height, width, channels], colours in [0, 1]
    (or logits).
  """
  height, width = check_size(height, width, "render size")
  if z is None:
    z = np.zeros([model.latent_size], np.float32)
  z = np.asarray(z, np.float32)
  single = z.ndim == 1
  z = z[None] if single else z
  coords = coordinates(height, width)
  # Every hidden activation of a chunk holds chunk × N × units values: keep it within the budget.
  chunk = max(1, RENDER_BUDGET // (len(z) * model.units))
  parts = []
  for start in range(0, len(coords), chunk):
    out = model(z, coords[start:start + chunk])
    parts.append((out if logits else tf.sigmoid(out)).numpy())
  images = np.concatenate(parts, axis=1).reshape(len(z), height, width, model.channels)
  return images[0] if single else images


def to_uint8(images: np.ndarray) -> np.ndarray:
  """[0, 1] floats -> uint8 [0, 255]."""
  return np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)


# --- Random CPPNs -------------------------------------------------------------------------------


def random_cppn(seed: int, channels: int = RANDOM_DEFAULTS["channels"],
                latent_size: int = RANDOM_DEFAULTS["latent_size"],
                units: int = RANDOM_DEFAULTS["units"], depth: int = RANDOM_DEFAULTS["depth"],
                activation: Union[str, Sequence[str]] = RANDOM_DEFAULTS["activation"],
                fourier_frequencies: int = RANDOM_DEFAULTS["fourier_frequencies"],
                zoom: float = RANDOM_DEFAULTS["zoom"],
                weight_std: float = RANDOM_DEFAULTS["weight_std"]) -> CPPN:
  """A CPPN with random N(0, weight_std²) weights, the same for the same seed.

  Returns:
    A built CPPN (weights created).
  """
  model = CPPN(channels, latent_size, units, depth, activation, fourier_frequencies,
               coordinate_scale=zoom, weight_std=weight_std, seed=seed)
  model(np.zeros([1, latent_size], np.float32), coordinates(1, 1))  # Creates the weights.
  return model


def random_latents(seed: int, latent_size: int, num: int = 1) -> np.ndarray:
  """N(0, I) latents [num, latent_size], the same for the same seed."""
  # Another stream than the weights' (which Keras derives from the seed): z and W independent.
  return np.random.default_rng([seed, 1]).standard_normal((num, latent_size)).astype(np.float32)


def random_image(seed: int, height: int, width: int, **kwargs) -> np.ndarray:
  """The image of a random CPPN and a random z, both from `seed`.

  Args:
    seed: the same seed gives the same image, at every size.
    height, width: pixels.
    **kwargs: random_cppn's network settings.

  Returns:
    uint8 [height, width, channels].
  """
  height, width = check_size(height, width)
  model = random_cppn(seed, **kwargs)
  return to_uint8(render(model, random_latents(seed, model.latent_size)[0], height, width))


def interpolation_frames(model: CPPN, z_start, z_end, num_frames: int, height: int,
                         width: int) -> np.ndarray:
  """Images along the straight line from z_start to z_end, both included.

  Args:
    model: a CPPN.
    z_start, z_end: [latent_size].
    num_frames: >= 2 frames; frame i renders z_start + (i / (num_frames − 1))·(z_end − z_start).
    height, width: pixels.

  Returns:
    float32 [num_frames, height, width, channels] in [0, 1].

  Raises:
    ConfigError: fewer than 2 frames.
  """
  if num_frames < 2:
    raise errors.ConfigError(f"--frames must be >= 2 (the two ends), got {num_frames}")
  weights = np.linspace(0.0, 1.0, num_frames, dtype=np.float32)[:, None]
  z_start, z_end = np.asarray(z_start, np.float32), np.asarray(z_end, np.float32)
  latents = (1 - weights) * z_start + weights * z_end
  # Exact ends: the first and last frames are the two endpoint images.
  latents[0], latents[-1] = z_start, z_end
  return render(model, latents, height, width)


def random_interpolation(seed: int, num_frames: int, height: int, width: int,
                         **kwargs) -> np.ndarray:
  """`interpolation_frames` of a random CPPN between two random latents, all from `seed`.

  Returns:
    uint8 [num_frames, height, width, channels].
  """
  height, width = check_size(height, width)
  if num_frames < 2:
    raise errors.ConfigError(f"--frames must be >= 2 (the two ends), got {num_frames}")
  model = random_cppn(seed, **kwargs)
  z_start, z_end = random_latents(seed, model.latent_size, 2)
  return to_uint8(interpolation_frames(model, z_start, z_end, num_frames, height, width))


# --- Image regression ---------------------------------------------------------------------------


def psnr(mse: float) -> float:
  """Peak signal-to-noise ratio in dB of a mean squared error on [0, 1] values."""
  return 10.0 * math.log10(1.0 / mse) if mse > 0 else float("inf")


def fit_image(image: np.ndarray, steps: int = FIT_DEFAULTS["steps"],
              learning_rate: float = FIT_DEFAULTS["learning_rate"],
              units: int = FIT_DEFAULTS["units"], depth: int = FIT_DEFAULTS["depth"],
              activation: Union[str, Sequence[str]] = FIT_DEFAULTS["activation"],
              fourier_frequencies: int = FIT_DEFAULTS["fourier_frequencies"], seed: int = 0,
              verbose: int = 1, jit_compile: bool = True) -> Tuple[CPPN, Dict[str, List[float]]]:
  """Fits a CPPN of the coordinates alone to one image: full-batch MSE, Adam.

  Args:
    image: [H, W, C] with values in [0, 1].
    steps: Adam steps, each on every pixel.
    learning_rate: Adam's step size.
    units, depth, activation, fourier_frequencies: the network (see CPPN).
    seed: seeds the initial weights.
    verbose: 1 shows a progress bar with the MSE and PSNR, 0 nothing.
    jit_compile: compile the step with XLA.

  Returns:
    (the fitted CPPN, {"mse": per step, the MSE of the weights the step started from}).

  Raises:
    ConfigError: steps < 1 or a learning rate that is not a finite positive number.
    NonFiniteLossError: the loss became NaN or infinite.
  """
  if steps < 1:
    raise errors.ConfigError(f"--steps must be >= 1, got {steps}")
  if not math.isfinite(learning_rate) or learning_rate <= 0:
    raise errors.ConfigError(f"--learning_rate must be a finite number > 0, got {learning_rate}")
  image = np.asarray(image, np.float32)
  height, width, channels = image.shape
  model = CPPN(channels, 0, units, depth, activation, fourier_frequencies, seed=seed)
  coords = tf.constant(coordinates(height, width))
  target = tf.constant(image.reshape(-1, channels))
  no_latent = tf.zeros([0])
  model(no_latent, coords)
  adam = keras.optimizers.Adam(learning_rate)
  adam.build(model.trainable_variables)

  @tf.function(jit_compile=jit_compile)
  def step():
    with tf.GradientTape() as tape:
      mse = tf.reduce_mean(tf.square(tf.sigmoid(model(no_latent, coords)) - target))
    adam.apply_gradients(zip(tape.gradient(mse, model.trainable_variables),
                             model.trainable_variables))
    return mse

  history = {"mse": []}
  progbar = keras.utils.Progbar(steps, verbose=verbose, unit_name="step",
                                stateful_metrics=["mse", "psnr"])
  for index in range(1, steps + 1):
    mse = float(step())
    if not math.isfinite(mse):
      raise errors.NonFiniteLossError(f"the MSE became {mse} at step {index}; lower "
                                      "--learning_rate")
    history["mse"].append(mse)
    # Updating the bar costs more than a small step: every 10 steps is enough to watch.
    if index % 10 == 0 or index == steps:
      progbar.update(index, values=[("mse", mse), ("psnr", psnr(mse))], finalize=index == steps)
  return model, history


def image_mse(model: CPPN, image: np.ndarray) -> float:
  """MSE of the CPPN rendered at the image's own size against the image ([0, 1] values)."""
  height, width, _ = np.shape(image)
  return float(np.mean(np.square(render(model, None, height, width) - image)))


def load_image(path: str, fit_size: int) -> np.ndarray:
  """An image file resized (antialiased) so that its longer side is fit_size: [H, W, 3] in [0, 1].

  Raises:
    ConfigError: fit_size out of 2..1024. DataError: missing or unreadable file.
  """
  if not 2 <= fit_size <= 1024:
    raise errors.ConfigError(f"--fit_size must be 2..1024 pixels, got {fit_size}")
  from tfgen import style  # pylint: disable=g-import-not-at-top
  return style.load_image(path, fit_size, flag="--image") / 255.0


def fit_file(image_path: str, out: str, fit_size: int = FIT_DEFAULTS["fit_size"],
             scale: float = FIT_DEFAULTS["scale"], comparison: str = "", seed: int = 0,
             **kwargs) -> dict:
  """Reads an image, fits a CPPN to it at fit_size and writes its render at `scale` times the size.

  Everything a user can get wrong (numbers, --out, the image) is checked before the fit.

  Args:
    image_path: a JPEG, PNG, GIF, BMP or WebP file.
    out: the PNG of the render, round(scale·H) x round(scale·W).
    fit_size: the longer side of the image the CPPN is fitted to (the aspect is kept).
    scale: how many times larger the render is than the fitted image.
    comparison: also write this PNG: the fitted target enlarged by pixel repetition (left) beside
      the render (right), both at the render's size ("": none).
    seed: seeds the initial weights.
    **kwargs: fit_image's settings (steps, learning_rate, units, depth, activation,
      fourier_frequencies, verbose, jit_compile).

  Returns:
    {"out", "comparison", "fit_shape" [H, W, 3], "render_shape", "history", "mse" (of the fitted
     function at the fitted size), "psnr", "seconds" (the fit), "render_seconds"}.
  """
  if not math.isfinite(scale) or scale <= 0:
    raise errors.ConfigError(f"--scale must be > 0, got {scale}")
  steps = kwargs.get("steps", FIT_DEFAULTS["steps"])
  rate = kwargs.get("learning_rate", FIT_DEFAULTS["learning_rate"])
  if steps < 1:
    raise errors.ConfigError(f"--steps must be >= 1, got {steps}")
  if not math.isfinite(rate) or rate <= 0:
    raise errors.ConfigError(f"--learning_rate must be a finite number > 0, got {rate}")
  parse_activations(kwargs.get("activation", FIT_DEFAULTS["activation"]))
  viz.check_writable(out)
  if comparison:
    viz.check_writable(comparison)
  image = load_image(image_path, fit_size)
  height, width, _ = image.shape
  big_height, big_width = check_size(round(height * scale), round(width * scale),
                                     "--scale times the fitted size")
  start = time.perf_counter()
  model, history = fit_image(image, seed=seed, **kwargs)
  seconds = time.perf_counter() - start
  mse = image_mse(model, image)
  start = time.perf_counter()
  rendered = to_uint8(render(model, None, big_height, big_width))
  render_seconds = time.perf_counter() - start
  viz.write_png(out, rendered)
  if comparison:
    rows = np.minimum((np.arange(big_height) * height) // big_height, height - 1)
    cols = np.minimum((np.arange(big_width) * width) // big_width, width - 1)
    enlarged = to_uint8(image)[rows][:, cols]
    gap = np.full((big_height, 4, 3), 255, np.uint8)
    viz.write_png(comparison, np.concatenate([enlarged, gap, rendered], axis=1))
  return {"out": out, "comparison": comparison or None, "fit_shape": list(image.shape),
          "render_shape": list(rendered.shape), "history": history, "mse": mse,
          "psnr": psnr(mse), "seconds": seconds, "render_seconds": render_seconds}
