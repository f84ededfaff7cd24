"""tfgen-style: neural style transfer (Gatys et al. 2016): one image's content, another's style.

  tfgen-style --content=photo.jpg --style=painting.jpg --out=styled.png \
      --vgg_weights=vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5
  tfgen-style --content=photo.jpg --style=painting.jpg --out=styled.png --optimizer=lbfgs \
      --steps=200 --save_every=50        # also writes styled_step50.png, ...
  tfgen-style --content=a.png --style=b.png --out=test.png --random_weights --steps=20

VGG19's ImageNet weights are read from the Keras file
vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (--vgg_weights, or ~/.keras/models/), from the
Keras applications release:
https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5
--random_weights runs the same code with a randomly initialized VGG19: not a real style transfer.
See docs/style.md.
"""

from absl import app
from absl import flags
from absl import logging

from tfgen.apps import common

_CONTENT = flags.DEFINE_string("content", None, "The content image (JPEG, PNG, GIF, BMP, WebP).")
_STYLE = flags.DEFINE_string("style", None, "The style image.")
_OUT = flags.DEFINE_string("out", "styled.png", "PNG file to write.")
_CONTENT_WEIGHT = flags.DEFINE_float("content_weight", 1e4, "Weight of the content loss.")
_STYLE_WEIGHT = flags.DEFINE_float("style_weight", 1e-2, "Weight of the style loss.")
_TV_WEIGHT = flags.DEFINE_float("tv_weight", 2e7, "Weight of the total-variation loss (mean "
                                "absolute neighbour difference of [0, 1] pixels).")
_CONTENT_LAYER = flags.DEFINE_string("content_layer", "block5_conv2",
                                     "VGG19 layer whose features carry the content (the paper "
                                     "used block4_conv2).")
_STYLE_LAYERS = flags.DEFINE_list("style_layers", "block1_conv1,block2_conv1,block3_conv1,"
                                  "block4_conv1,block5_conv1",
                                  "VGG19 layers whose Gram matrices carry the style, weighted "
                                  "equally.")
_SIZE = flags.DEFINE_integer("size", 256, "Longer side of the images in pixels; each image keeps "
                             "its aspect.")
_STEPS = flags.DEFINE_integer("steps", 500, "Adam steps or L-BFGS iterations.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 5.0, "Adam's step size on the 0-255 pixel "
                                    "scale (unused by L-BFGS).")
_OPTIMIZER = flags.DEFINE_enum("optimizer", "adam", ["adam", "lbfgs"],
                               "adam, or lbfgs (scipy's L-BFGS-B, the paper's optimizer).")
_VGG_WEIGHTS = flags.DEFINE_string(
    "vgg_weights", None,
    "The VGG19 weights file vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (default: the one "
    "in ~/.keras/models/).")
_RANDOM_WEIGHTS = flags.DEFINE_bool("random_weights", False, "Use a randomly initialized VGG19 "
                                    "(to see the code run): NOT a real style transfer.")
_SAVE_EVERY = flags.DEFINE_integer("save_every", 0, "Also write OUT_stepN.png every N steps "
                                   "(0: none).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random weights of --random_weights.")
_JIT_COMPILE = flags.DEFINE_bool("jit_compile", True, "Compile the step with XLA (faster steps "
                                 "after 5-10 s of compilation).")
flags.mark_flags_as_required(["content", "style"])

_NOT_REAL = ("--random_weights: VGG19 has random weights, so this is NOT a real style transfer "
             "(it only shows the code path working)")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.import_keras()
  from tfgen import style  # Imported after flag parsing so --help is fast.
  logging.set_verbosity(logging.WARNING)
  if _RANDOM_WEIGHTS.value:
    print(f"WARNING: {_NOT_REAL}", flush=True)
  result = style.stylize(
      _CONTENT.value, _STYLE.value, _OUT.value, vgg_weights=_VGG_WEIGHTS.value,
      random_weights=_RANDOM_WEIGHTS.value, size=_SIZE.value, seed=_SEED.value,
      content_layer=_CONTENT_LAYER.value, style_layers=_STYLE_LAYERS.value,
      content_weight=_CONTENT_WEIGHT.value, style_weight=_STYLE_WEIGHT.value,
      tv_weight=_TV_WEIGHT.value, steps=_STEPS.value, learning_rate=_LEARNING_RATE.value,
      optimizer=_OPTIMIZER.value, save_every=_SAVE_EVERY.value, jit_compile=_JIT_COMPILE.value)
  history = result["history"]
  height, width, _ = result["shape"]
  print(f"wrote {height}x{width} image to {result['out']} after {len(history['loss'])} "
        f"{_OPTIMIZER.value} steps in {result['seconds']:.1f} s; loss "
        f"{history['loss'][0]:.4g} -> {history['loss'][-1]:.4g} (content "
        f"{history['content'][-1]:.4g}, style {history['style'][-1]:.4g}, tv "
        f"{history['tv'][-1]:.4g})")
  if result["intermediates"]:
    print(f"intermediate images: {', '.join(result['intermediates'])}")
  if result["random_weights"]:
    print(f"WARNING: {_NOT_REAL}", flush=True)


def run():
  common.run(main, "tfgen-style", __name__)


if __name__ == "__main__":
  run()
