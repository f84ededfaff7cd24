r"""Convolutional VAE with batch normalization (tfgen/models/conv_vae.py).

Run (the default: binarized MNIST, Bernoulli pixels, 20 epochs of RMSprop with Nesterov
momentum):

  tfgen-train --config=configs/conv_vae.py --workdir=/tmp/conv_vae \
      --config.data.manual_dir=../shared/data/binarized_mnist
  tfgen-evaluate --workdir=/tmp/conv_vae --num_importance_samples=1000
  tfgen-sample --workdir=/tmp/conv_vae --num=64 --out=conv_vae.png

Variants (configs/conv_vae.py:OPTION=VALUE,...):
  data=binarized_mnist|mnist|mnist_5k|fashion_mnist|celeb_a|folder|arrays|tfds:NAME
                      binarized_mnist, mnist and fashion_mnist are binary (Bernoulli pixels);
                      mnist_5k uses 8-bit intensities unless binarize, celeb_a is 64x64 colour;
                      folder, arrays and tfds:NAME are your own images (docs/data.md), 8-bit
                      unless binarize, e.g. data=folder --config.data.path=DIR
                      --config.data.image_size=28
  likelihood=bernoulli|logistic|normal|categorical
                      default: bernoulli for binary data, logistic (discretized) otherwise
  binarize            mnist_5k and your own images: dynamically binarized (Bernoulli) instead
                      of 8-bit intensities
  fixed_scale=F       continuous likelihoods: a fixed scale instead of a learned one
  latent=N            size of z (default 32; 128 on celeb_a)
  optimizer=rmsprop_nesterov|adam
  epochs=N
  k=N, objective=elbo|iwae
  tiny                a model and data small enough for tests on a CPU

There is no paper number for this exact model; docs/conv_vae.md compares it with the MLP VAE of
docs/vae.md (91.90 nats at k=1000 on binarized MNIST after 100 epochs). tfgen measured, default
config with epochs=10: 88.13 nats (k=1000, 0.1622 bits/dim); data=mnist_5k,epochs=30 with the
discretized logistic: 803.83 nats, 1.479 bits/dim, and 810.99 nats (1.492) when rerun after
issue 13 changed the epochs' data order (docs/results.md).
"""

from tfgen import config as config_lib
from tfgen import models

VARIANT_DEFAULTS = dict(data="binarized_mnist", likelihood="", binarize=False, fixed_scale=0.0,
                        latent=0, optimizer="rmsprop_nesterov", epochs=20, k=1,
                        objective="elbo", tiny=False)
VARIANT_CHOICES = dict(
    data=("binarized_mnist", "mnist", "mnist_5k", "fashion_mnist", "celeb_a",
          *config_lib.USER_DATA),
    likelihood=("", "bernoulli", "logistic", "normal", "categorical"),
    optimizer=("rmsprop_nesterov", "adam"), objective=("elbo", "iwae"))


def get_config(arg: str = ""):
  opts = config_lib.parse_variant(arg, VARIANT_DEFAULTS, VARIANT_CHOICES)
  config = config_lib.base_config()
  data = opts["data"]
  config.data.name = data
  binary = data in ("binarized_mnist", "mnist", "fashion_mnist") or opts["binarize"]
  if data in ("mnist_5k", "celeb_a"):
    config.data.binarization = "dynamic" if opts["binarize"] else "none"
  if config_lib.is_user_data(data):
    config_lib.set_user_data(config, data, binarized=opts["binarize"])

  config.model = model = models.model_config(
      "conv_vae", latent_size=opts["latent"] or (128 if data == "celeb_a" else 32),
      hidden_size=512 if data == "celeb_a" else 256,
      likelihood=opts["likelihood"] or ("bernoulli" if binary else "logistic"),
      learned_scale=not opts["fixed_scale"], fixed_scale=opts["fixed_scale"] or 0.1,
      num_importance_samples=opts["k"], objective=opts["objective"])

  train = config.train
  train.batch_size = 100
  train.num_epochs = opts["epochs"]
  train.optimizer = opts["optimizer"]
  train.learning_rate = 1e-3
  train.schedule = "exponential"
  train.final_learning_rate_factor = 0.1
  train.checkpoint_every_epochs = 5
  train.eval_every_epochs = 5
  config.eval.num_importance_samples = 1000
  config.eval.chunk_size = 250

  if opts["tiny"]:
    model.latent_size = 4
    model.channels = 4
    model.hidden_size = 16
    config_lib.make_tiny(config)
    config.eval.num_importance_samples = 10
    config.eval.chunk_size = 4
  return config
