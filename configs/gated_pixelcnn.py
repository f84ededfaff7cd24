r"""Gated PixelCNN (van den Oord et al. 2016b), optionally class-conditional, on binarized MNIST.

Run:
  tfgen-train --config=configs/gated_pixelcnn.py --workdir=/tmp/gated
  tfgen-evaluate --workdir=/tmp/gated           # exact test NLL
  tfgen-sample --workdir=/tmp/gated --num=16 --out=gated.png

Colour (8-bit RGB, R | G | B channel masks in the horizontal stack; docs/autoregressive.md):
  tfgen-train --config=configs/gated_pixelcnn.py:data=photo_crops --workdir=/tmp/gated_colour \
    --config.data.manual_dir=../shared/data/photos
  tfgen-train --config=configs/gated_pixelcnn.py:data=celeb_a,output=logistic_mixture \
    --workdir=/tmp/gated_celeb_a

Variants (configs/gated_pixelcnn.py:OPTION=VALUE,...): layers=15, channels=64, epochs=N,
data=binarized_mnist|mnist|fashion_mnist|photo_crops|celeb_a (the last two colour, 8-bit),
data=folder|arrays|tfds:NAME (your own images, grey or colour, 8-bit unless
--config.data.binarization=dynamic; docs/data.md; e.g. data=folder --config.data.path=DIR
--config.data.image_size=28; conditional needs class sub-folders or labels),
conditional (class-conditional: needs a labelled data set such as mnist; sample a chosen digit
with tfgen-sample --label=3), output=categorical|logistic_mixture (PixelCNN++'s mixture per
pixel; 8-bit data only), mixtures=M (its components; 0 keeps the model's default), tiny.

Reference: a PyTorch zoo reports 81.50 nats for Gated PixelCNN on dynamically binarized MNIST.
What tfgen measured is in docs/results.md.
"""

from tfgen import config as config_lib
from tfgen import models

VARIANT_DEFAULTS = dict(layers=15, channels=64, epochs=50, data="binarized_mnist",
                        conditional=False, output="categorical", mixtures=0, tiny=False)
VARIANT_CHOICES = dict(data=("binarized_mnist", "mnist", "fashion_mnist", "photo_crops",
                             "celeb_a", *config_lib.USER_DATA),
                       output=("categorical", "logistic_mixture"))

COLOUR_DATA = ("photo_crops", "celeb_a")


def get_config(arg: str = ""):
  opts = config_lib.parse_variant(arg, VARIANT_DEFAULTS, VARIANT_CHOICES)
  config = config_lib.base_config()
  config.data.name = opts["data"]
  if config_lib.is_user_data(opts["data"]):
    config_lib.set_user_data(config, opts["data"], binarized=False)
  config.model = models.model_config("gated_pixelcnn", num_layers=opts["layers"],
                                     channels=opts["channels"],
                                     class_conditional=opts["conditional"],
                                     output=opts["output"])
  if opts["mixtures"]:
    config.model.num_mixtures = opts["mixtures"]
  config_lib.decaying_adam(config, batch_size=64, num_epochs=opts["epochs"],
                           checkpoint_every_epochs=1)
  config.train.steps_per_execution = 10
  # tfgen-tune (docs/tuning.md): exact validation NLL over these.
  space = config.tuning.space
  space.channels = config_lib.search_choice(
      "model.channels", sorted({opts["channels"] // 2, opts["channels"], 2 * opts["channels"]}))
  space.learning_rate = config_lib.search_float("train.learning_rate", 1e-4, 1e-2, log=True)
  if opts["tiny"]:
    config.model.num_layers = 3
    config.model.channels = 8
    # Colour layers split their maps into three groups: 4 maps are too few for that.
    space.channels = config_lib.search_choice(
        "model.channels", (6, 12, 24) if (opts["data"] in COLOUR_DATA or
                                         config_lib.is_user_data(opts["data"])) else (4, 8, 16))
    config_lib.make_tiny(config, limit=128, steps_per_execution=2)
  return config
