r"""PixelCNN (van den Oord et al. 2016) on binarized MNIST.

Run:
  tfgen-train --config=configs/pixelcnn.py --workdir=/tmp/pixelcnn
  tfgen-evaluate --workdir=/tmp/pixelcnn        # exact test NLL
  tfgen-sample --workdir=/tmp/pixelcnn --num=16 --out=pixelcnn.png

Variants (configs/pixelcnn.py:OPTION=VALUE,...): blocks=15, channels=128 (paper scale),
epochs=N, data=binarized_mnist|mnist|fashion_mnist (grey-scale sets with binarization=none
get 256-way softmax pixels: --config.data.binarization=none), tiny.

Reference test NLL on binarized MNIST (nats): PixelCNN 81.30 (van den Oord et al. 2016); a
PyTorch zoo reports 81.45 with dynamic binarization. What tfgen measured is in docs/results.md.
"""

from tfgen import config as config_lib

VARIANT_DEFAULTS = dict(blocks=15, channels=128, epochs=50, data="binarized_mnist", tiny=False)


def get_config(arg: str = ""):
  opts = config_lib.parse_variant(arg, VARIANT_DEFAULTS)
  config = config_lib.base_config()
  config.data.name = opts["data"]
  config.model.name = "pixelcnn"
  config.model.num_blocks = opts["blocks"]
  config.model.channels = opts["channels"]
  train = config.train
  train.batch_size = 64
  train.num_epochs = opts["epochs"]
  train.learning_rate = 1e-3
  train.schedule = "exponential"
  train.final_learning_rate_factor = 0.1
  train.checkpoint_every_epochs = 1
  train.eval_every_epochs = 1
  train.steps_per_execution = 10
  config.eval.batch_size = 100
  if opts["tiny"]:
    config.model.num_blocks = 2
    config.model.channels = 8
    config.data.limit = 128
    config.data.num_validation = 64
    train.batch_size = 32
    train.num_epochs = 2
    train.steps_per_execution = 2
    config.eval.batch_size = 64
  return config
