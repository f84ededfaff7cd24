r"""Variational Sparse Coding (Tonolini, Jensen & Murray-Smith 2019).

Run (default: MLP 784-400-200, alpha=0.01, the 5,000 real MNIST digits of ../shared/data/mnist_5k,
grey-scale intensities with a Bernoulli likelihood as in the paper):

  tfgen-train --config=configs/vsc.py --workdir=/tmp/vsc \
      --config.data.manual_dir=../shared/data/mnist_5k
  tfgen-evaluate --workdir=/tmp/vsc     # ELBO, IWAE-bound NLL, active dimensions, code accuracy
  tfgen-sample --workdir=/tmp/vsc --mode=traversal --out=traversal.png
  tfgen-sample --workdir=/tmp/vsc --mode=conditional --label=3 --out=threes.png

The plain VAE of the same architecture, the paper's baseline, is alpha=1:

  tfgen-train --config=configs/vsc.py:alpha=1 --workdir=/tmp/vae200 \
      --config.data.manual_dir=../shared/data/mnist_5k

Variants (configs/vsc.py:OPTION=VALUE,...):
  data=mnist_5k|mnist|fashion_mnist|celeb_a|binarized_mnist|folder|arrays|tfds:NAME
                      the last three your own images, intensities as the others (docs/data.md)
  alpha=0.01          prior probability that a latent dimension is active (1: plain VAE)
  latent=N            latent dimensions (default: the paper's 200, or 800 for CelebA)
  architecture=mlp|conv
  likelihood=bernoulli|logistic|normal
                      bernoulli on intensities as the paper; logistic/normal are discretized
                      over 8-bit levels (proper likelihoods of the data)
  epochs=N            training epochs (default 300 on mnist_5k, 20 on celeb_a, else 100)
  kl_warmup_epochs=N  epochs over which the KL weight grows from 0 to 1 (default: a third of
                      the epochs; 0: none)
  tiny                a model and data small enough for tests on a CPU

The paper reports latent-code classification accuracy rather than likelihoods; its Figure 5 shows
VSC codes (alpha=0.01) keeping their accuracy as the latent size grows to 200 and beyond while the
VAE's falls. What tfgen measured, with commands, is in docs/vsc.md and docs/results.md.
"""

from tfgen import config as config_lib
from tfgen import models

VARIANT_DEFAULTS = dict(data="mnist_5k", alpha=0.01, latent=0, architecture="mlp",
                        likelihood="bernoulli", epochs=0, kl_warmup_epochs=-1, tiny=False)
VARIANT_CHOICES = dict(
    data=("mnist_5k", "mnist", "fashion_mnist", "celeb_a", "binarized_mnist",
          *config_lib.USER_DATA),
    architecture=("mlp", "conv"), likelihood=("bernoulli", "logistic", "normal"))

DEFAULT_EPOCHS = {"mnist_5k": 300, "celeb_a": 20}


def get_config(arg: str = ""):
  opts = config_lib.parse_variant(arg, VARIANT_DEFAULTS, VARIANT_CHOICES)
  config = config_lib.base_config()
  data = opts["data"]
  config.data.name = data
  if data != "binarized_mnist":
    # The paper models grey-scale intensities (a Bernoulli cross-entropy on them).
    config.data.binarization = "none"
  config.data.num_validation = 10000

  config.model = model = models.model_config(
      "vsc", latent_size=opts["latent"] or (800 if data == "celeb_a" else 200),
      alpha=opts["alpha"], architecture=opts["architecture"], likelihood=opts["likelihood"],
      hidden_sizes=(2000, 2000) if data == "celeb_a" and opts["architecture"] == "mlp" else (
          (256,) if opts["architecture"] == "conv" else (400,)))

  epochs = opts["epochs"] or DEFAULT_EPOCHS.get(data, 100)
  batch_size = 100 if data != "celeb_a" else 64
  config_lib.decaying_adam(config, batch_size=batch_size, num_epochs=epochs,
                           checkpoint_every_epochs=max(1, epochs // 10))
  # c grows over the first half of training and stays sharp for the second (the loop turns
  # epochs into steps from the data's own size).
  model.sharpness_warmup_epochs = max(1, epochs // 2)
  # The KL weight grows from 0 to 1 over the first third of training unless told otherwise:
  # without it, α = 0.01 switches off nearly every dimension before the decoder uses any.
  model.kl_warmup_epochs = (opts["kl_warmup_epochs"] if opts["kl_warmup_epochs"] >= 0
                            else epochs // 3)
  config.eval.num_importance_samples = 5000
  # XLA compiles the whole train call: 1.47x and 1.62x the steps/s of the MLP on MNIST, 2 CPU
  # cores; XLA's CPU convolutions are several times slower than oneDNN's (bench/loop_speed.py
  # --parts=models, docs/speed.md).
  config.train.jit_compile = opts["architecture"] == "mlp" and data != "celeb_a"

  if opts["tiny"]:
    model.latent_size = 8
    model.hidden_sizes = (32,) if opts["architecture"] == "mlp" else (16,)
    model.conv_filters = (8, 8)
    config_lib.make_tiny(config)
    model.sharpness_warmup_epochs = 1
    model.kl_warmup_epochs = min(model.kl_warmup_epochs, 0.5)
    config.eval.num_importance_samples = 10
    config.eval.chunk_size = 4
  return config
