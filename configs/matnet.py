r"""Matryoshka Networks (Bachman 2016): deep hierarchical VAEs, on binarized MNIST.

Run (the fully connected variant of the 20-epoch comparison in docs/matnet.md):

  tfgen-train --config=configs/matnet.py:fc --workdir=/tmp/matnet_fc \
      --config.data.manual_dir=../shared/data/binarized_mnist
  tfgen-evaluate --workdir=/tmp/matnet_fc --num_importance_samples=1000
  tfgen-sample --workdir=/tmp/matnet_fc --num=64 --out=matnet.png

  tfgen-train --config=configs/matnet.py:conv --workdir=/tmp/matnet_conv   # paper scale; GPU
  tfgen-evaluate --workdir=/tmp/matnet_conv --num_importance_samples=2500  # the paper's k

Variants, as `configs/matnet.py:OPTION=VALUE,...`:
  conv                convolutional MatNet at about the paper's scale (the default): 64-channel
                      residual states, 5 stochastic modules at 7x7 and 5 at 14x14, 4 latent
                      channels per position
  fc                  fully connected MatNet: 4 modules, 256-unit states, 32 latents per module
  fc_modules=N        fully connected with N modules (the paper's depth study); implies fc
  fc_width=W, fc_latent=Z
                      fully connected state width and latents per module
  objective=elbo|iwae, k=K
                      training objective and its number of importance samples
  warmup=EPOCHS       KL warm-up: the KL weight rises linearly from 0 to 1 over EPOCHS epochs
  free_bits=NATS      free bits per module (ELBO objective only)
  epochs=N, batch=B   Adam at 1e-3 decayed exponentially to 1e-4 by the last epoch
  data=binarized_mnist|mnist|omniglot|mnist_5k|folder|arrays|tfds:NAME
                      the last three your own images, dynamically binarized (docs/data.md)
  tiny                a model and data small enough for tests on a CPU (with conv or fc)

The paper's number: binarized MNIST test NLL ≤ 78.5 nats (IWAE bound with 2500 samples, the
convolutional MatNet; dynamically binarized MNIST, as quoted from the paper's table and not
re-checked here). tfgen measured, `fc` (4 modules, 20 epochs, 2 CPU cores): test NLL 91.00 nats
at k=1000, against 97.79 for the one-layer VAE of configs/iwae.py after the same 20 epochs; every
figure with its command is in docs/matnet.md and docs/results.md.
"""

from tfgen import config as config_lib
from tfgen import errors
from tfgen import models

VARIANT_DEFAULTS = dict(conv=False, fc=False, fc_modules=0, fc_width=256, fc_latent=32,
                        objective="elbo", k=1, warmup=0.0, free_bits=0.0, epochs=0, batch=0,
                        data="binarized_mnist", tiny=False)
VARIANT_CHOICES = dict(objective=("elbo", "iwae"),
                       data=("binarized_mnist", "mnist", "omniglot", "mnist_5k",
                             *config_lib.USER_DATA))


def get_config(arg: str = ""):
  opts = config_lib.parse_variant(arg, VARIANT_DEFAULTS, VARIANT_CHOICES)
  fc = opts["fc"] or opts["fc_modules"] > 0
  if fc and opts["conv"]:
    raise errors.ConfigError(f"config variant {arg!r} asks for both conv and fc")
  config = config_lib.base_config()
  config.data.name = opts["data"]
  if config_lib.is_user_data(opts["data"]):
    config_lib.set_user_data(config, opts["data"], binarized=True)
  config.data.num_validation = {"omniglot": 1345}.get(opts["data"], 10000)

  config.model = model = models.model_config(
      "matnet", architecture="fc" if fc else "conv", fc_modules=opts["fc_modules"] or 4,
      fc_width=opts["fc_width"], fc_latent=opts["fc_latent"], conv_modules=(5, 5),
      objective=opts["objective"], num_importance_samples=opts["k"],
      free_bits=opts["free_bits"], kl_warmup_epochs=opts["warmup"])

  batch = opts["batch"] or 100
  epochs = opts["epochs"] or (20 if fc else 200)
  config_lib.decaying_adam(config, batch_size=batch, num_epochs=epochs,
                           checkpoint_every_epochs=5 if fc else 10)
  # XLA compiles the whole train call: 1.12x and 1.24x the steps/s of the fully connected
  # network on 2 CPU cores; XLA's CPU convolutions are several times slower than oneDNN's
  # (bench/loop_speed.py --parts=models, docs/speed.md).
  config.train.jit_compile = fc
  if not fc:
    # 100 images x 50 draws of 14x14x64 states per chunk keep evaluation within a few GB.
    config.eval.chunk_size = 50

  if opts["tiny"]:
    model.fc_modules = opts["fc_modules"] or 2
    model.fc_width, model.fc_latent = 16, 4
    model.conv_modules, model.conv_channels, model.conv_latent_channels = (1, 1), 8, 2
    config_lib.make_tiny(config)
    config.eval.num_importance_samples = 10
    config.eval.chunk_size = 4
  return config
