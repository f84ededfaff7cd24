r"""PixelSNAIL (Chen et al. 2018), optionally class-conditional, on binarized MNIST.

Run:
  tfgen-train --config=configs/pixelsnail.py --workdir=/tmp/pixelsnail
  tfgen-evaluate --workdir=/tmp/pixelsnail       # exact test NLL
  tfgen-sample --workdir=/tmp/pixelsnail --num=16 --out=pixelsnail.png
  tfgen-sample --workdir=/tmp/pixelsnail --mode=inpaint --num=8 --out=inpaint.png

Variants (configs/pixelsnail.py:OPTION=VALUE,...): blocks=8, channels=64, heads=2, epochs=N,
batch=32, data=binarized_mnist|mnist|fashion_mnist|folder|arrays|tfds:NAME (the last three your
own grey-scale images, 8-bit unless --config.data.binarization=dynamic; docs/data.md),
conditional (class-conditional: needs a labelled data set such as mnist), tiny.

Reference: the PyTorch zoo (pytorch-generative) reports 78.61 nats for PixelSNAIL on dynamically
binarized MNIST; tfgen trains and tests on the fixed binarization (Larochelle & Murray). What
tfgen measured is in docs/pixelsnail.md and docs/results.md.
"""

from tfgen import config as config_lib
from tfgen import models

VARIANT_DEFAULTS = dict(blocks=8, channels=64, heads=2, epochs=50, batch=32,
                        data="binarized_mnist", conditional=False, tiny=False)
VARIANT_CHOICES = dict(data=("binarized_mnist", "mnist", "fashion_mnist", *config_lib.USER_DATA))


def get_config(arg: str = ""):
  opts = config_lib.parse_variant(arg, VARIANT_DEFAULTS, VARIANT_CHOICES)
  config = config_lib.base_config()
  config.data.name = opts["data"]
  if config_lib.is_user_data(opts["data"]):
    config_lib.set_user_data(config, opts["data"], binarized=False)
  config.model = models.model_config("pixelsnail", num_blocks=opts["blocks"],
                                     channels=opts["channels"], num_heads=opts["heads"],
                                     class_conditional=opts["conditional"])
  config_lib.decaying_adam(config, batch_size=opts["batch"], num_epochs=opts["epochs"],
                           checkpoint_every_epochs=1)
  config.train.steps_per_execution = 10
  # Attention over 784 positions is the memory peak: [batch, heads, 784, 784] per block.
  config.eval.batch_size = 64
  # tfgen-tune (docs/tuning.md): exact validation NLL over these.
  space = config.tuning.space
  space.channels = config_lib.search_choice(
      "model.channels", sorted({opts["channels"] // 2, opts["channels"], 2 * opts["channels"]}))
  space.learning_rate = config_lib.search_float("train.learning_rate", 1e-4, 1e-2, log=True)
  if opts["tiny"]:
    config.model.update(num_blocks=1, num_residual=1, channels=8, num_heads=1, key_size=4,
                        value_size=4)
    space.channels = config_lib.search_choice("model.channels", (4, 8))
    config_lib.make_tiny(config, limit=128, steps_per_execution=2)
  return config
