"""Neural style transfer: an image with one picture's content and another's style.

The method of Gatys, Ecker & Bethge (2016) optimizes the pixels of an image x, starting from the
content photograph p, so that a VGG19 network trained on ImageNet (Simonyan & Zisserman 2015)
sees in x

  * the content of p: the feature map F of one deep layer (default `block5_conv2`) matches the
    content image's map P,

        L_content = mean((F − P)²)                       # F, P: [H_l·W_l, N_l]

  * the style of the painting a: at several layers l (default block1_conv1 ... block5_conv1, equal
    weights w_l = 1/L), the Gram matrices of the feature maps, normalised by the number of
    positions M_l = H_l·W_l, match those of a,

        G_l = F_lᵀ F_l / M_l                               # [N_l, N_l] channel correlations
        L_style = Σ_l w_l · mean((G_l − A_l)²)

    Gram matrices sum over positions, so they keep which features occur together (colours,
    strokes, textures) and forget where: that is what makes them a style and not a content.

  * and a total-variation penalty, the mean absolute difference between neighbouring pixels
    (values in [0, 1]), against the high-frequency noise that the style term alone leaves:

        L_tv = mean|x[i+1, j] − x[i, j]| + mean|x[i, j+1] − x[i, j]|

  L = content_weight · L_content + style_weight · L_style + tv_weight · L_tv.

Relation to the paper's constants: its L_content = ½ Σ (F − P)² is N_l·M_l/2 times ours and its
E_l = Σ (G − A)² / (4 N_l² M_l²) (unnormalised G) is ours divided by 4; both differences are
constant factors absorbed by the weights, and means keep the balance of the terms the same at any
`size`. The default weights and Adam settings are those of the TensorFlow style-transfer tutorial,
which uses these same normalisations (content 1e4, style 1e-2, Adam with β₁ = 0.99; its learning
rate 0.02 on [0, 1] pixels is about 5 on the 0–255 scale used here, and its total variation weight
30 on a sum over a 512-pixel image is about 2e7 on our per-value mean). Those weights were tuned
with `block5_conv2` as content layer, which is why it is the default here; the paper's own choice
is `block4_conv2` (`content_layer="block4_conv2"`), which holds the content's fine detail more
firmly and may want a smaller content weight.

The image is a tf.Variable in VGG's input space (BGR, ImageNet channel means subtracted, 0–255
scale, as `keras.applications.vgg19.preprocess_input` makes it), kept inside the box of valid
pixels, and optimized with Adam (a compiled step with clipping) or L-BFGS (scipy's L-BFGS-B with
the same box as bounds, the paper's optimizer).

VGG19's ImageNet weights are not downloaded here: they are read from the standard Keras file
`vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` that the user gives (or that Keras has cached
in ~/.keras/models). With random weights (`weights=None`) every code path runs, but the features
mean nothing, so the result is not a real style transfer.

References:
  Gatys, L. A., Ecker, A. S. & Bethge, M. (2016). Image style transfer using convolutional neural
    networks. CVPR 2016, 2414-2423.
  Simonyan, K. & Zisserman, A. (2015). Very deep convolutional networks for large-scale image
    recognition. ICLR 2015.
"""

import math
import os
import re
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from tfgen import errors
from tfgen import viz

VGG19_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG19_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
                     + VGG19_WEIGHTS_FILE)

# The layers of keras.applications.VGG19(include_top=False), input excluded, in network order.
VGG19_LAYERS = (
    "block1_conv1", "block1_conv2", "block1_pool",
    "block2_conv1", "block2_conv2", "block2_pool",
    "block3_conv1", "block3_conv2", "block3_conv3", "block3_conv4", "block3_pool",
    "block4_conv1", "block4_conv2", "block4_conv3", "block4_conv4", "block4_pool",
    "block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4", "block5_pool",
)

DEFAULT_CONTENT_LAYER = "block5_conv2"
DEFAULT_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1",
                        "block5_conv1")
DEFAULT_CONTENT_WEIGHT = 1e4
DEFAULT_STYLE_WEIGHT = 1e-2
DEFAULT_TV_WEIGHT = 2e7
DEFAULT_LEARNING_RATE = 5.0
DEFAULT_SIZE = 256
DEFAULT_STEPS = 500
OPTIMIZERS = ("adam", "lbfgs")

# preprocess_input's "caffe" mode: RGB -> BGR, then these ImageNet means (B, G, R) subtracted.
_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)


def default_weights_path() -> str:
  """Where Keras caches the VGG19 weights file: $KERAS_HOME/models (KERAS_HOME: ~/.keras)."""
  keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
  return os.path.join(keras_home, "models", VGG19_WEIGHTS_FILE)


def find_vgg_weights(vgg_weights: Optional[str] = None, random_weights: bool = False
                     ) -> Optional[str]:
  """The VGG19 weights file to load, or None for random weights.

  Args:
    vgg_weights: the file given with --vgg_weights, or None/"" to look in the Keras cache.
    random_weights: use random weights (no file); excludes `vgg_weights`.

  Raises:
    ConfigError: both given, or no weights file where one was looked for; the message names the
      expected file and where to get it.
  """
  get = (f"download {VGG19_WEIGHTS_URL} (the Keras applications release file) and give it with "
         f"--vgg_weights=PATH or put it at {default_weights_path()}")
  if random_weights:
    if vgg_weights:
      raise errors.ConfigError("--vgg_weights and --random_weights exclude each other")
    return None
  if vgg_weights:
    if not os.path.isfile(vgg_weights):
      raise errors.ConfigError(f"--vgg_weights {vgg_weights!r} is not a file; expected "
                               f"{VGG19_WEIGHTS_FILE}: {get}")
    return vgg_weights
  path = default_weights_path()
  if os.path.isfile(path):
    return path
  raise errors.ConfigError(f"VGG19 ImageNet weights {VGG19_WEIGHTS_FILE} not found: {get} "
                           "(or --random_weights to see the code path run; not a real style "
                           "transfer)")


def vgg19(weights: Optional[str] = None) -> keras.Model:
  """keras.applications.VGG19 without its classifier, frozen, with weights read from a file.

  Args:
    weights: path of vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, or None for a random
      initialization.

  Returns:
    A model from [B, H, W, 3] preprocessed images (any H, W) to block5_pool features.

  Raises:
    DataError: `weights` is not a loadable VGG19 (no top) weights file.
  """
  model = keras.applications.VGG19(include_top=False, weights=None)
  model.trainable = False
  if weights is not None:
    try:
      model.load_weights(weights)
    except Exception as e:  # h5py, Keras and the OS raise many kinds; pylint: disable=broad-except
      detail = " ".join(str(e).split())[:200] or type(e).__name__
      raise errors.DataError(
          f"--vgg_weights {weights!r} is not a loadable VGG19 weights file ({detail}); expected "
          f"{VGG19_WEIGHTS_FILE} from {VGG19_WEIGHTS_URL}") from e
  return model


def check_layers(content_layer: str, style_layers: Sequence[str]) -> Tuple[str, Tuple[str, ...]]:
  """Validates layer names before anything slow; returns them with style layers as a tuple.

  Raises:
    ConfigError: an unknown name (the message lists the valid ones), or no style layer.
  """
  valid = ", ".join(VGG19_LAYERS)
  if content_layer not in VGG19_LAYERS:
    raise errors.ConfigError(f"--content_layer {content_layer!r} is not a VGG19 layer; valid "
                             f"layers: {valid}")
  style_layers = tuple(style_layers)
  if not style_layers:
    raise errors.ConfigError(f"--style_layers is empty; give a comma list of: {valid}")
  for name in style_layers:
    if name not in VGG19_LAYERS:
      raise errors.ConfigError(f"--style_layers: {name!r} is not a VGG19 layer; valid layers: "
                               f"{valid}")
  if len(set(style_layers)) != len(style_layers):
    raise errors.ConfigError(f"--style_layers names a layer twice: {','.join(style_layers)}")
  return content_layer, style_layers


def _min_side(layer: str) -> int:
  """The smallest image side whose feature map at `layer` is still at least 1 pixel."""
  block = int(layer[len("block")])
  return 2 ** (block if layer.endswith("_pool") else block - 1)


def feature_extractor(vgg: keras.Model, layers: Sequence[str]) -> keras.Model:
  """A functional model from [B, H, W, 3] preprocessed images to {layer: [B, H_l, W_l, N_l]}."""
  return keras.Model(vgg.input, {name: vgg.get_layer(name).output for name in layers},
                     name="vgg19_features")


def preprocess(images) -> tf.Tensor:
  """RGB [..., 3] in [0, 255] -> VGG19's input space (BGR, ImageNet means subtracted)."""
  # A tensor, so that preprocess_input cannot modify a caller's numpy array in place.
  return keras.applications.vgg19.preprocess_input(tf.convert_to_tensor(images, tf.float32))


def deprocess(images) -> np.ndarray:
  """VGG19 input space [..., 3] -> uint8 RGB [..., 3]; inverts `preprocess` up to rounding."""
  bgr = np.asarray(images, np.float32) + _BGR_MEAN
  return np.clip(np.round(bgr[..., ::-1]), 0, 255).astype(np.uint8)


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
  """Channel correlations of feature maps, averaged over positions.

  Args:
    features: [B, H, W, N].

  Returns:
    [B, N, N]: G[b, c, d] = Σ_ij features[b, i, j, c] · features[b, i, j, d] / (H·W).
  """
  shape = tf.shape(features)
  positions = tf.cast(shape[1] * shape[2], features.dtype)
  return tf.einsum("bijc,bijd->bcd", features, features) / positions


def content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
  """Mean squared difference of feature maps, [B, H, W, N] each -> scalar."""
  return tf.reduce_mean(tf.square(features - target))


def style_loss(grams: Sequence[tf.Tensor], target_grams: Sequence[tf.Tensor],
               weights: Optional[Sequence[float]] = None) -> tf.Tensor:
  """Σ_l w_l · mean((G_l − A_l)²) over layers; Gram matrices [B, N_l, N_l]; w_l default 1/L."""
  if weights is None:
    weights = [1.0 / len(grams)] * len(grams)
  return tf.add_n([w * tf.reduce_mean(tf.square(g - a))
                   for w, g, a in zip(weights, grams, target_grams)])


def total_variation_loss(images: tf.Tensor) -> tf.Tensor:
  """Mean absolute difference of vertical plus of horizontal neighbours; [B, H, W, C] -> scalar.

  Values are divided by 255 first, so that a weight means the same as on [0, 1] pixels.
  """
  images = images / 255.0
  return (tf.reduce_mean(tf.abs(images[:, 1:] - images[:, :-1]))
          + tf.reduce_mean(tf.abs(images[:, :, 1:] - images[:, :, :-1])))


def load_image(path: str, size: int, flag: str = "--content") -> np.ndarray:
  """Reads an image file and resizes it so that its longer side is `size`, keeping its aspect.

  Args:
    path: a JPEG, PNG, GIF (first frame), BMP or WebP file; grey or RGBA becomes RGB.
    size: the longer side, in pixels, after resizing (up or down).
    flag: the flag that named the file, for error messages.

  Returns:
    float32 [H, W, 3] RGB in [0, 255] with max(H, W) == size.

  Raises:
    DataError: the file is missing or not a readable image.
  """
  if not os.path.isfile(path):
    raise errors.DataError(f"{flag} {path!r} is not a file")
  try:
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  except tf.errors.OpError as e:
    # TensorFlow prefixes the op's name in {{...}}: noise to a user.
    reason = " ".join(re.sub(r"\{\{.*?\}\}", "", e.message).split())[:150]
    raise errors.DataError(f"{flag} {path!r} is not an image TensorFlow can read: {reason}") from e
  height, width = int(image.shape[0]), int(image.shape[1])
  if not height or not width:
    raise errors.DataError(f"{flag} {path!r} is an empty image ({height}x{width})")
  scale = size / max(height, width)
  new_size = (max(1, round(height * scale)), max(1, round(width * scale)))
  # Antialiasing matters when shrinking a photograph: aliasing would add textures to the style.
  resized = tf.image.resize(tf.cast(image, tf.float32), new_size, method="bilinear",
                            antialias=True)
  return np.clip(resized.numpy(), 0.0, 255.0)


def _check_numbers(**values) -> None:
  """Raises ConfigError for a weight < 0 or non-finite, or a count/rate out of range."""
  for name in ("content_weight", "style_weight", "tv_weight"):
    value = values[name]
    if not math.isfinite(value) or value < 0:
      raise errors.ConfigError(f"--{name} must be a finite number >= 0, got {value}")
  if values["content_weight"] == 0 and values["style_weight"] == 0:
    raise errors.ConfigError("--content_weight and --style_weight are both 0: nothing to match")
  lr = values["learning_rate"]
  if not math.isfinite(lr) or lr <= 0:
    raise errors.ConfigError(f"--learning_rate must be a finite number > 0, got {lr}")
  if values["steps"] < 1:
    raise errors.ConfigError(f"--steps must be >= 1, got {values['steps']}")
  if values["save_every"] < 0:
    raise errors.ConfigError(f"--save_every must be >= 0 (0: no intermediate images), got "
                             f"{values['save_every']}")
  if values["optimizer"] not in OPTIMIZERS:
    raise errors.ConfigError(f"--optimizer {values['optimizer']!r} is not one of "
                             f"{', '.join(OPTIMIZERS)}")


def _check_image_size(shape, layers: Sequence[str], what: str, size: int) -> None:
  """Raises ConfigError when an image is too small for the deepest layer used."""
  needed = max(_min_side(name) for name in layers)
  if min(shape[:2]) < needed:
    deepest = max(layers, key=_min_side)
    raise errors.ConfigError(
        f"the {what} image is {shape[0]}x{shape[1]} at --size={size}; layer {deepest} needs at "
        f"least {needed} pixels on each side: raise --size or use shallower layers")


def transfer(content: np.ndarray,
             style: np.ndarray,
             vgg: keras.Model,
             *,
             content_layer: str = DEFAULT_CONTENT_LAYER,
             style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
             content_weight: float = DEFAULT_CONTENT_WEIGHT,
             style_weight: float = DEFAULT_STYLE_WEIGHT,
             tv_weight: float = DEFAULT_TV_WEIGHT,
             steps: int = DEFAULT_STEPS,
             learning_rate: float = DEFAULT_LEARNING_RATE,
             optimizer: str = "adam",
             save_every: int = 0,
             on_save: Optional[Callable[[int, np.ndarray], None]] = None,
             verbose: int = 1,
             jit_compile: bool = True) -> Tuple[np.ndarray, Dict[str, List[float]]]:
  """Optimizes an image, starting from `content`, to have `content`'s content and `style`'s style.

  Args:
    content: float [H, W, 3] RGB in [0, 255]; the result has its shape.
    style: float [H_s, W_s, 3] RGB in [0, 255]; any size (Gram matrices average over positions).
    vgg: the network of `vgg19()`.
    content_layer: the VGG19 layer whose feature map carries the content.
    style_layers: the VGG19 layers whose Gram matrices carry the style, weighted equally.
    content_weight, style_weight, tv_weight: weights of the three loss terms.
    steps: Adam steps, or L-BFGS iterations (each may evaluate the loss more than once).
    learning_rate: Adam's step size, on the 0–255 pixel scale; unused by L-BFGS.
    optimizer: "adam" or "lbfgs".
    save_every: call `on_save(step, image)` every this many steps (0: never).
    on_save: receives the step (1-based) and the uint8 [H, W, 3] image after it.
    verbose: 1 shows a progress bar with the losses, 0 nothing.
    jit_compile: compile the step with XLA (on 2 CPU cores about twice as fast per step at
      256 pixels, for 5-10 s of compilation).

  Returns:
    (uint8 [H, W, 3] RGB image, history) where history maps "loss" (total), "content", "style"
    and "tv" (each term times its weight) to one float per step, evaluated at the image the
    step started from (for L-BFGS: at the image each iteration ended on).

  Raises:
    ConfigError: bad layer names or numbers, or an image too small for the layers.
    NonFiniteLossError: the loss became NaN or infinite.
  """
  content_layer, style_layers = check_layers(content_layer, style_layers)
  _check_numbers(content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
                 learning_rate=learning_rate, steps=steps, save_every=save_every,
                 optimizer=optimizer)
  content = np.asarray(content, np.float32)
  style = np.asarray(style, np.float32)
  layers = [name for name in VGG19_LAYERS if name == content_layer or name in style_layers]
  _check_image_size(content.shape, layers, "content", max(content.shape[:2]))
  _check_image_size(style.shape, style_layers, "style", max(style.shape[:2]))
  extractor = feature_extractor(vgg, layers)

  content_target = extractor(preprocess(content[None]))[content_layer]
  style_features = extractor(preprocess(style[None]))
  style_targets = [gram_matrix(style_features[name]) for name in style_layers]

  image = tf.Variable(preprocess(content[None]), name="image")
  # The box of valid pixels in VGG space: keeps the image displayable, and is L-BFGS-B's bounds.
  low = tf.constant(-_BGR_MEAN)
  high = tf.constant(255.0 - _BGR_MEAN)

  def loss_terms():
    features = extractor(image)
    terms = {
        "content": content_weight * content_loss(features[content_layer], content_target),
        "style": style_weight * style_loss([gram_matrix(features[n]) for n in style_layers],
                                           style_targets),
        "tv": tv_weight * total_variation_loss(image),
    }
    return tf.add_n(list(terms.values())), terms

  @tf.function(jit_compile=jit_compile)
  def value_and_gradient():
    with tf.GradientTape() as tape:
      loss, terms = loss_terms()
    return loss, terms, tape.gradient(loss, image)

  history = {"loss": [], "content": [], "style": [], "tv": []}
  progbar = keras.utils.Progbar(steps, verbose=verbose, unit_name="step",
                                stateful_metrics=list(history))

  def record(step, loss, terms):
    values = {"loss": float(loss), **{k: float(v) for k, v in terms.items()}}
    if not math.isfinite(values["loss"]):
      raise errors.NonFiniteLossError(
          f"the loss became {values['loss']} at step {step}; lower --learning_rate or the "
          "weights")
    for key, value in values.items():
      history[key].append(value)
    progbar.update(step, values=list(values.items()), finalize=step == steps)
    if save_every and on_save is not None and step % save_every == 0 and step < steps:
      on_save(step, deprocess(image.numpy()[0]))

  if optimizer == "adam":
    # β₁ = 0.99 follows the tutorial (a long momentum smooths the noisy style gradients); its
    # ε = 0.1 is for [0, 1] pixels, whose gradients are 255 times those on the 0–255 scale.
    adam = keras.optimizers.Adam(learning_rate, beta_1=0.99, epsilon=0.1 / 255.0)
    adam.build([image])

    @tf.function(jit_compile=jit_compile)
    def adam_step():
      with tf.GradientTape() as tape:
        loss, terms = loss_terms()
      adam.apply_gradients([(tape.gradient(loss, image), image)])
      image.assign(tf.clip_by_value(image, low, high))
      return loss, terms

    for step in range(1, steps + 1):
      loss, terms = adam_step()
      record(step, loss, terms)
  else:
    _lbfgs(image, value_and_gradient, low.numpy(), high.numpy(), steps, record)
  if len(history["loss"]) < steps:
    progbar.update(steps, finalize=True)  # L-BFGS converged early: close the bar.
  return deprocess(image.numpy()[0]), history


def _lbfgs(image: tf.Variable, value_and_gradient, low: np.ndarray, high: np.ndarray,
           steps: int, record) -> None:
  """Runs scipy's L-BFGS-B on `image` for at most `steps` iterations, within [low, high]."""
  from scipy import optimize  # pylint: disable=g-import-not-at-top

  shape = image.shape
  # The last evaluation: the callback reports the losses of the point an iteration accepted,
  # which is almost always the last point its line search evaluated.
  last = {}

  def evaluate(x):
    image.assign(np.reshape(x, shape).astype(np.float32))
    loss, terms, grad = value_and_gradient()
    last.update(x=np.array(x), loss=loss, terms=terms)
    if not np.isfinite(float(loss)):
      raise errors.NonFiniteLossError(f"the loss became {float(loss)} during L-BFGS")
    return float(loss), grad.numpy().astype(np.float64).ravel()

  step = [0]

  def callback(intermediate_result):
    x = intermediate_result.x
    if not np.array_equal(x, last["x"]):
      evaluate(x)
    step[0] += 1
    record(step[0], last["loss"], last["terms"])

  bounds = optimize.Bounds(np.broadcast_to(low, shape).ravel().astype(np.float64),
                           np.broadcast_to(high, shape).ravel().astype(np.float64))
  # gtol = ftol = 0: run the iterations asked for; L-BFGS-B still stops when its line search
  # cannot improve (converged to float precision).
  result = optimize.minimize(evaluate, image.numpy().astype(np.float64).ravel(), jac=True,
                             method="L-BFGS-B", bounds=bounds, callback=callback,
                             options={"maxiter": steps, "maxfun": 5 * steps + 20, "gtol": 0.0,
                                      "ftol": 0.0})
  image.assign(np.reshape(result.x, shape).astype(np.float32))


def step_path(out: str, step: int) -> str:
  """The intermediate image of a step: OUT.png -> OUT_step100.png."""
  root, ext = os.path.splitext(out)
  return f"{root}_step{step}{ext or '.png'}"


def stylize(content_path: str,
            style_path: str,
            out: str,
            *,
            vgg_weights: Optional[str] = None,
            random_weights: bool = False,
            size: int = DEFAULT_SIZE,
            seed: int = 0,
            **kwargs) -> dict:
  """Reads two image files, runs `transfer` and writes the result (and intermediates) as PNG.

  Everything a user can get wrong (numbers, layers, weights file, --out, the images) is checked
  before the network is built, in that order.

  Args:
    content_path, style_path: image files; both are resized so that their longer side is `size`,
      each keeping its own aspect (the style's Gram matrices need no particular shape, and
      stretching a painting would distort its strokes).
    out: the PNG to write; intermediate images go beside it as OUT_stepN.png.
    vgg_weights: the VGG19 weights file (None: the Keras cache, see `find_vgg_weights`).
    random_weights: random VGG19 weights, for tests: not a real style transfer.
    size: the longer side of the images, in pixels.
    seed: seeds the random weights (the optimization itself starts from the content image).
    **kwargs: passed to `transfer` (weights, layers, steps, optimizer, save_every, verbose...).

  Returns:
    {"out", "intermediates" (paths), "shape" ([H, W, 3]), "history", "seconds",
     "random_weights", "weights" (the file used, or None)}.
  """
  kwargs.setdefault("content_layer", DEFAULT_CONTENT_LAYER)
  kwargs.setdefault("style_layers", DEFAULT_STYLE_LAYERS)
  check_layers(kwargs["content_layer"], kwargs["style_layers"])
  numbers = {k: kwargs.get(k, default) for k, default in (
      ("content_weight", DEFAULT_CONTENT_WEIGHT), ("style_weight", DEFAULT_STYLE_WEIGHT),
      ("tv_weight", DEFAULT_TV_WEIGHT), ("learning_rate", DEFAULT_LEARNING_RATE),
      ("steps", DEFAULT_STEPS), ("save_every", 0), ("optimizer", "adam"))}
  _check_numbers(**numbers)
  if size < 16:
    raise errors.ConfigError(f"--size must be >= 16 pixels, got {size}")
  weights = find_vgg_weights(vgg_weights, random_weights)
  viz.check_writable(out)
  content = load_image(content_path, size, "--content")
  style = load_image(style_path, size, "--style")
  layers = [kwargs["content_layer"], *kwargs["style_layers"]]
  _check_image_size(content.shape, layers, "content", size)
  _check_image_size(style.shape, kwargs["style_layers"], "style", size)

  start = time.perf_counter()
  keras.utils.set_random_seed(seed)
  vgg = vgg19(weights)
  intermediates = []

  def on_save(step, image):
    intermediates.append(viz.write_png(step_path(out, step), image))

  result, history = transfer(content, style, vgg, on_save=on_save, **kwargs)
  viz.write_png(out, result)
  return {"out": out, "intermediates": intermediates, "shape": list(result.shape),
          "history": history, "seconds": time.perf_counter() - start,
          "random_weights": weights is None, "weights": weights}
