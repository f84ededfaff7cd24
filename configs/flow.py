r"""Normalizing flows on 8-bit images: RealNVP, Glow and MAF (tfgen/models/flow.py).

Run (default: RealNVP on the real Fashion-MNIST intensities of ../shared/data/fashion_mnist):

  tfgen-train --config=configs/flow.py --workdir=/tmp/realnvp \
      --config.data.manual_dir=../shared/data/fashion_mnist
  tfgen-evaluate --workdir=/tmp/realnvp          # test bits/dim, one uniform dequantization
  tfgen-sample --workdir=/tmp/realnvp --mode=temperatures --num=8 --out=temperatures.png
  tfgen-export --workdir=/tmp/realnvp --out=/tmp/realnvp_savedmodel

  tfgen-train --config=configs/flow.py:arch=glow --workdir=/tmp/glow \
      --config.data.manual_dir=../shared/data/fashion_mnist

Variants (configs/flow.py:OPTION=VALUE,...):
  arch=realnvp|glow|maf
  data=fashion_mnist|mnist|mnist_5k   8-bit intensities (binarization 'none')
  data=folder|arrays|tfds:NAME       your own images (docs/data.md), e.g. data=folder
                      --config.data.path=DIR --config.data.image_size=28 (sides divisible by
                      2 ** the flow's scales)
  epochs=N            training epochs (default 20)
  tiny                a model and data small enough for tests on a CPU

Protocol: uniform dequantization y = (255 x + u) / 256 with the 1/256 bin width and the logit's
Jacobian counted, so the test number is a lower bound on log P(x) of the 8-bit data, reported in
bits per dimension. The flow papers report one dequantization draw per image (K = 1, the default
here: config.eval.num_importance_samples); `tfgen-evaluate --num_importance_samples=K` averages
K draws inside the log, a tighter bound.

Published numbers (bits/dim, test, uniform dequantization), quoted in docs/flows.md with their
sources: MNIST, RealNVP 1.06 and Glow 1.05 as tabulated by Grathwohl et al. (FFJORD, 2019). What
tfgen measured, with commands, is in docs/results.md.
"""

from tfgen import config as config_lib
from tfgen import models

VARIANT_DEFAULTS = dict(arch="realnvp", data="fashion_mnist", epochs=20, tiny=False)
VARIANT_CHOICES = dict(arch=("realnvp", "glow", "maf"),
                       data=("fashion_mnist", "mnist", "mnist_5k", *config_lib.USER_DATA))
# Sizes a tiny model takes per architecture (tests on a CPU).
TINY_MODELS = {
    "realnvp": dict(hidden_channels=8, num_blocks=1),
    "glow": dict(steps_per_scale=2, hidden_channels=8),
    "maf": dict(num_flows=2, hidden_sizes=(64,)),
}


def get_config(arg: str = ""):
  opts = config_lib.parse_variant(arg, VARIANT_DEFAULTS, VARIANT_CHOICES)
  config = config_lib.base_config()
  config.data.name = opts["data"]
  config.data.binarization = "none"  # Flows model the 8-bit intensities themselves.
  config.model = models.model_config(opts["arch"])
  config_lib.decaying_adam(config, batch_size=64, num_epochs=opts["epochs"],
                           checkpoint_every_epochs=1)
  config.train.steps_per_execution = 20
  # XLA compiles the whole train call: 1.41x and 1.34x the steps/s of MAF (dense MADE layers)
  # on 2 CPU cores; XLA's CPU convolutions (the coupling networks of Real NVP and Glow) are
  # several times slower than oneDNN's (bench/loop_speed.py --parts=models, docs/speed.md).
  config.train.jit_compile = opts["arch"] == "maf"
  # One dequantization draw per test image, the flow literature's protocol.
  config.eval.num_importance_samples = 1
  config.eval.chunk_size = 1
  if opts["tiny"]:
    config.model.update(TINY_MODELS[opts["arch"]])
    config_lib.make_tiny(config)
  # tfgen-tune (docs/tuning.md): the validation bound (K dequantizations, as evaluated) over these.
  space = config.tuning.space
  space.learning_rate = config_lib.search_float("train.learning_rate", 1e-4, 3e-3, log=True)
  if opts["arch"] == "maf":
    flows = config.model.num_flows
    space.num_flows = config_lib.search_choice("model.num_flows",
                                               sorted({max(flows // 2, 1), flows, 2 * flows}))
  else:
    width = config.model.hidden_channels
    space.hidden_channels = config_lib.search_choice(
        "model.hidden_channels", sorted({max(width // 2, 1), width, 2 * width}))
  return config
