r"""PixelCNN (van den Oord et al. 2016) on binarized MNIST.

Run:
  tfgen-train --config=configs/pixelcnn.py --workdir=/tmp/pixelcnn
  tfgen-evaluate --workdir=/tmp/pixelcnn        # exact test NLL
  tfgen-sample --workdir=/tmp/pixelcnn --num=16 --out=pixelcnn.png

Colour (8-bit RGB, R | G | B channel masks; docs/autoregressive.md, "Colour images"):
  tfgen-train --config=configs/pixelcnn.py:data=photo_crops --workdir=/tmp/pixelcnn_colour \
    --config.data.manual_dir=../shared/data/photos
  tfgen-train --config=configs/pixelcnn.py:data=celeb_a,output=logistic_mixture \
    --workdir=/tmp/pixelcnn_celeb_a

Variants (configs/pixelcnn.py:OPTION=VALUE,...): blocks=15, channels=128 (paper scale),
epochs=N, data=binarized_mnist|mnist|fashion_mnist (grey-scale sets with binarization=none
get 256-way softmax pixels: --config.data.binarization=none) |photo_crops|celeb_a (colour,
8-bit) |folder|arrays|tfds:NAME (your own images, grey or colour, 8-bit unless
--config.data.binarization=dynamic; docs/data.md), output=categorical|logistic_mixture
(PixelCNN++'s mixture per pixel; 8-bit data only),
mixtures=M (its components; 0 keeps the model's default), tiny.

Reference test NLL on binarized MNIST (nats): PixelCNN 81.30 (van den Oord et al. 2016); a
PyTorch zoo reports 81.45 with dynamic binarization. What tfgen measured is in docs/results.md.
"""

from tfgen import config as config_lib
from tfgen import models

VARIANT_DEFAULTS = dict(blocks=15, channels=128, epochs=50, data="binarized_mnist",
                        output="categorical", mixtures=0, tiny=False)
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
  config.model = models.model_config("pixelcnn", num_blocks=opts["blocks"],
                                     channels=opts["channels"], output=opts["output"])
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
    config.model.num_blocks = 2
    config.model.channels = 8
    # Colour layers split their maps into three groups: 4 maps are too few for that.
    space.channels = config_lib.search_choice(
        "model.channels", (6, 12, 24) if (opts["data"] in COLOUR_DATA or
                                         config_lib.is_user_data(opts["data"])) else (4, 8, 16))
    config_lib.make_tiny(config, limit=128, steps_per_execution=2)
  return config
