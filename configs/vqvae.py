r"""VQ-VAE (van den Oord et al. 2017) and its autoregressive prior, in two stages.

Run (binarized MNIST; Fashion-MNIST with data=fashion_mnist and
--config.data.manual_dir=../shared/data/fashion_mnist):
  tfgen-train --config=configs/vqvae.py --workdir=/tmp/vq1 \
      --config.data.manual_dir=../shared/data/binarized_mnist             # stage 1
  tfgen-train --config=configs/vqvae.py:stage=2 --workdir=/tmp/vq2 \
      --config.model.stage1_workdir=/tmp/vq1 \
      --config.data.manual_dir=../shared/data/binarized_mnist             # stage 2: the prior
  tfgen-evaluate --workdir=/tmp/vq2      # the bound log p(x|z_q) + log p(z_q), codebook usage
  tfgen-sample --workdir=/tmp/vq2 --num=64 --out=vq_samples.png
  tfgen-sample --workdir=/tmp/vq2 --mode=reconstructions --num=16 --out=vq_recon.png

Variants (configs/vqvae.py:OPTION=VALUE,...):
  stage=1|2            1: encoder, codebook, decoder; 2: the prior over a stage-1 run's codes
  codes=64, code_size=32, channels=64   codebook size K, entry size D, network width
  codebook=ema|loss    codebook by moving averages, or by the codebook loss
  prior=pixelsnail|gated_pixelcnn|pixelcnn   stage 2's prior, over the 7×7 code grid
  data=binarized_mnist|fashion_mnist|mnist    fashion_mnist and mnist are 8-bit (discretized
                       logistic pixels); binarized_mnist is the fixed binarization (Bernoulli)
  data=folder|arrays|tfds:NAME                your own images, 8-bit (docs/data.md): sides
                       divisible by 4 (the encoder's two stride-2 steps), e.g. data=folder
                       --config.data.path=DIR --config.data.image_size=28
  epochs=N, tiny

Reference: the VQ-VAE paper reports no MNIST likelihood; its comparable number is a bound in
bits/dim on CIFAR-10 (4.67). tfgen reports the same kind of bound, log p(x | z_q(x)) + log p(z_q),
in nats and bits/dim on the test set: docs/vqvae.md and docs/results.md hold what it measured.
"""

from tfgen import config as config_lib
from tfgen import models

VARIANT_DEFAULTS = dict(stage=1, codes=64, code_size=32, channels=64, codebook="ema",
                        prior="pixelsnail", data="binarized_mnist", epochs=20, tiny=False)
VARIANT_CHOICES = dict(stage=(1, 2), codebook=("ema", "loss"),
                       prior=("pixelsnail", "gated_pixelcnn", "pixelcnn"),
                       data=("binarized_mnist", "fashion_mnist", "mnist", *config_lib.USER_DATA))

# Priors over a 7×7 grid: a few layers already see the whole grid.
PRIORS = {
    "pixelsnail": dict(num_blocks=4, num_residual=2, channels=64, num_heads=2, key_size=16,
                       value_size=32, first_kernel_size=3),
    "gated_pixelcnn": dict(num_layers=8, channels=64, first_kernel_size=3),
    "pixelcnn": dict(num_blocks=6, channels=64, first_kernel_size=3),
}
TINY_PRIORS = {
    "pixelsnail": dict(num_blocks=1, num_residual=1, channels=8, num_heads=1, key_size=4,
                       value_size=4, first_kernel_size=3),
    "gated_pixelcnn": dict(num_layers=2, channels=8, first_kernel_size=3),
    "pixelcnn": dict(num_blocks=1, channels=8, first_kernel_size=3),
}


def get_config(arg: str = ""):
  opts = config_lib.parse_variant(arg, VARIANT_DEFAULTS, VARIANT_CHOICES)
  config = config_lib.base_config()
  config.data.name = opts["data"]
  if opts["data"] != "binarized_mnist":
    config.data.binarization = "none"  # 8-bit intensities: discretized logistic pixels.
  sizes = TINY_PRIORS if opts["tiny"] else PRIORS
  if opts["stage"] == 1:
    config.model = models.model_config(
        "vqvae", num_codes=opts["codes"], code_size=opts["code_size"],
        channels=opts["channels"], codebook=opts["codebook"])
  else:
    config.model = models.model_config(
        "vqvae_prior", prior=models.model_config(opts["prior"], **sizes[opts["prior"]]))
  config_lib.decaying_adam(config, batch_size=64 if opts["stage"] == 2 else 128,
                           num_epochs=opts["epochs"], checkpoint_every_epochs=1)
  config.train.steps_per_execution = 10
  config.eval.num_importance_samples = 1  # The bound is deterministic: one posterior draw.
  space = config.tuning.space
  space.learning_rate = config_lib.search_float("train.learning_rate", 1e-4, 1e-2, log=True)
  if opts["stage"] == 1:
    space.num_codes = config_lib.search_choice("model.num_codes", (32, 64, 128, 256))
  if opts["tiny"]:
    if opts["stage"] == 1:
      config.model.update(num_codes=8, code_size=4, channels=8, num_residual=1)
      space.num_codes = config_lib.search_choice("model.num_codes", (4, 8))
    config_lib.make_tiny(config, limit=128, steps_per_execution=2)
  return config
