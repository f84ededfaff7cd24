"""tfgen-cppn: compositional pattern-producing networks, images as functions of coordinates.

  tfgen-cppn random --size=256x256 --seed=3 --out=cppn.png      # a random CPPN's image
  tfgen-cppn random --size=1920x1080 --seed=3 --out=wide.png     # the same pattern, any size
  tfgen-cppn interpolate --frames=16 --size=128 --out=strip.png  # a latent interpolation strip
  tfgen-cppn interpolate --frames=32 --size=256 --out=anim.gif   # ... as an animated GIF
  tfgen-cppn fit --image=flower.jpg --fit_size=64 --scale=10 --out=flower_x10.png \
      --comparison=flower_side_by_side.png                       # image regression, 10x render

Sizes are WIDTHxHEIGHT (or one number for a square). `random` and `interpolate` draw the weights
and latents from --seed (the same seed gives the same picture); `fit` fits a CPPN of the
coordinates alone to an image resized to --fit_size (longer side) by MSE with Adam and renders
it at --scale times that size. A VAE trained with the cppn decoder renders at any resolution
with `tfgen-sample --mode=hires_samples --scale=4`. See docs/cppn.md.
"""

from absl import app
from absl import flags
from absl import logging

from tfgen.apps import common

MODES = ("random", "interpolate", "fit")

_OUT = flags.DEFINE_string("out", None, "PNG to write (interpolate: .gif writes an animated "
                           "GIF); default cppn_MODE.png.")
_SIZE = flags.DEFINE_string("size", "256x256", "random, interpolate: WIDTHxHEIGHT in pixels, or "
                            "N for NxN (interpolate: of each frame).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the weights and latents (fit: of the initial "
                             "weights).")
_FRAMES = flags.DEFINE_integer("frames", 8, "interpolate: frames, both ends included.")
_FRAME_MS = flags.DEFINE_integer("frame_ms", 100, "interpolate to a .gif: milliseconds per "
                                 "frame.", lower_bound=10)
_CHANNELS = flags.DEFINE_integer("channels", 3, "random, interpolate: 1 (grey) or 3 (RGB).")
_LATENT_SIZE = flags.DEFINE_integer("latent_size", None, "random, interpolate: size of z "
                                    "(default 8).")
_UNITS = flags.DEFINE_integer("units", None, "Hidden units per layer (default: random 32, fit "
                              "128).")
_DEPTH = flags.DEFINE_integer("depth", None, "Hidden layers (default 4).")
_ACTIVATION = flags.DEFINE_string("activation", None, "Hidden activation, or a comma list "
                                  "cycled over the layers: tanh, sin, gaussian, relu, softplus, "
                                  "... (default tanh).")
_FOURIER = flags.DEFINE_integer("fourier_frequencies", None, "Fourier features sin/cos(2^k pi "
                                "x), k < F, of each coordinate (default: random 0, fit 4).")
_ZOOM = flags.DEFINE_float("zoom", None, "random, interpolate: coordinates are multiplied by "
                           "this (default 2; larger shows more of the pattern).")
_WEIGHT_STD = flags.DEFINE_float("weight_std", None, "random, interpolate: standard deviation "
                                 "of the N(0, s^2) weights (default 1).")
_IMAGE = flags.DEFINE_string("image", None, "fit: the image to fit (JPEG, PNG, GIF, BMP, WebP).")
_FIT_SIZE = flags.DEFINE_integer("fit_size", 64, "fit: longer side in pixels of the image the "
                                 "CPPN is fitted to (the aspect is kept).")
_STEPS = flags.DEFINE_integer("steps", 2000, "fit: Adam steps on all pixels.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 3e-3, "fit: Adam's step size.")
_SCALE = flags.DEFINE_float("scale", 10.0, "fit: the render is this many times the fitted size.")
_COMPARISON = flags.DEFINE_string("comparison", "", "fit: also write this PNG, the fitted image "
                                  "enlarged by pixel repetition beside the render.")
_JIT_COMPILE = flags.DEFINE_bool("jit_compile", True, "fit: compile the step with XLA.")

# Network flags of each mode, passed on only when given so that each mode keeps its defaults.
_NETWORK_FLAGS = {"random": ("latent_size", "units", "depth", "activation",
                             "fourier_frequencies", "zoom", "weight_std"),
                  "fit": ("units", "depth", "activation", "fourier_frequencies")}
_NETWORK_FLAGS["interpolate"] = _NETWORK_FLAGS["random"]
# Every flag that only some modes use, and the modes' own.
_MODE_FLAGS = {"random": ("size", "channels") + _NETWORK_FLAGS["random"],
               "fit": ("image", "fit_size", "steps", "learning_rate", "scale", "comparison",
                       "jit_compile") + _NETWORK_FLAGS["fit"]}
_MODE_FLAGS["interpolate"] = _MODE_FLAGS["random"] + ("frames", "frame_ms")


def _given(names):
  return {name: flags.FLAGS[name].value for name in names if flags.FLAGS[name].present}


def main(argv):
  from tfgen import errors  # pylint: disable=g-import-not-at-top
  # The command line is checked before TensorFlow's import (seconds).
  if len(argv) > 2 and argv[1] in MODES:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[2:])} (tfgen-cppn takes one "
                         "mode)")
  if len(argv) != 2 or argv[1] not in MODES:
    given = " ".join(argv[1:]) or "none"
    raise errors.ConfigError(f"give one mode, {', '.join(MODES)} (got: {given}); e.g. "
                             "tfgen-cppn random --size=256x256 --seed=3 --out=cppn.png")
  mode = argv[1]
  # A flag of another mode is a mistake (e.g. --scale to random, which would ignore it).
  foreign = sorted(name for names in _MODE_FLAGS.values() for name in names
                   if name not in _MODE_FLAGS[mode] and flags.FLAGS[name].present)
  if foreign:
    raise errors.ConfigError(f"--{foreign[0]} is not used by mode {mode}")
  common.import_keras()
  from tfgen import cppn  # Imported after flag parsing so --help is fast.
  from tfgen import viz  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  out = _OUT.value or f"cppn_{mode}.png"
  network = _given(_NETWORK_FLAGS[mode])
  if mode == "fit":
    if not _IMAGE.value:
      raise errors.ConfigError("fit needs --image=FILE, the picture to fit")
    result = cppn.fit_file(_IMAGE.value, out, fit_size=_FIT_SIZE.value, scale=_SCALE.value,
                           comparison=_COMPARISON.value, seed=_SEED.value, steps=_STEPS.value,
                           learning_rate=_LEARNING_RATE.value, jit_compile=_JIT_COMPILE.value,
                           **network)
    fit_h, fit_w, _ = result["fit_shape"]
    big_h, big_w, _ = result["render_shape"]
    history = result["history"]["mse"]
    print(f"fitted {fit_w}x{fit_h} in {len(history)} steps ({result['seconds']:.1f} s): MSE "
          f"{history[0]:.4g} -> {result['mse']:.4g}, PSNR {result['psnr']:.2f} dB; wrote the "
          f"{big_w}x{big_h} render to {result['out']} ({result['render_seconds']:.1f} s)"
          + (f" and the comparison to {result['comparison']}" if result["comparison"] else ""))
    return
  height, width = cppn.parse_size(_SIZE.value)
  if _CHANNELS.value not in (1, 3):
    raise errors.ConfigError(f"--channels must be 1 or 3, got {_CHANNELS.value}")
  network["channels"] = _CHANNELS.value
  if "activation" in network:
    cppn.parse_activations(network["activation"])
  gif = mode == "interpolate" and out.lower().endswith(".gif")
  viz.check_writable(out)
  if mode == "random":
    viz.write_png(out, cppn.random_image(_SEED.value, height, width, **network))
    print(f"wrote a {width}x{height} random CPPN image (seed {_SEED.value}) to {out}")
    return
  frames = cppn.random_interpolation(_SEED.value, _FRAMES.value, height, width, **network)
  if gif:
    viz.write_gif(out, frames, _FRAME_MS.value)
  else:
    viz.write_png(out, viz.image_grid(frames / 255.0, len(frames)))
  print(f"wrote {len(frames)} {width}x{height} frames of a latent interpolation (seed "
        f"{_SEED.value}) to {out}" + (" (animated GIF)" if gif else " (one row)"))


def run():
  common.run(main, "tfgen-cppn", __name__)


if __name__ == "__main__":
  run()
