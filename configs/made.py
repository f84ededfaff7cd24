r"""MADE (Germain et al. 2015) on binarized MNIST.

Run:
  tfgen-train --config=configs/made.py --workdir=/tmp/made
  tfgen-evaluate --workdir=/tmp/made            # exact test NLL (ensemble of num_eval_masks)
  tfgen-sample --workdir=/tmp/made --num=16 --out=made.png

Variants (configs/made.py:OPTION=VALUE,...): hidden=8000 (one hidden layer), layers=1|2,
masks=32 (connectivities trained), eval_masks=1..masks, epochs=N, data=binarized_mnist|mnist,
ordering=natural|random, tiny.

Reference test NLL on binarized MNIST (nats): MADE 88.04 with 32 masks, 86.64 with its best
ensemble (Germain et al. 2015, fixed binarization); a PyTorch zoo reports 84.87 with dynamic
binarization. What tfgen measured is in docs/results.md.
"""

from tfgen import config as config_lib

VARIANT_DEFAULTS = dict(hidden=8000, layers=1, masks=32, eval_masks=1, epochs=100,
                        data="binarized_mnist", ordering="natural", tiny=False)


def get_config(arg: str = ""):
  opts = config_lib.parse_variant(arg, VARIANT_DEFAULTS)
  config = config_lib.base_config()
  config.data.name = opts["data"]
  config.model.name = "made"
  config.model.hidden_sizes = tuple([opts["hidden"]] * opts["layers"])
  config.model.num_masks = opts["masks"]
  config.model.num_eval_masks = opts["eval_masks"]
  config.model.ordering = opts["ordering"]
  config.model.seed = 0
  train = config.train
  train.batch_size = 100
  train.num_epochs = opts["epochs"]
  train.learning_rate = 1e-3
  train.schedule = "exponential"
  train.final_learning_rate_factor = 0.1
  train.checkpoint_every_epochs = 5
  train.eval_every_epochs = 5
  if opts["tiny"]:
    config.model.hidden_sizes = (32,) * opts["layers"]
    config.model.num_masks = 4
    config.model.num_eval_masks = 2
    config.data.limit = 256
    config.data.num_validation = 64
    train.batch_size = 32
    train.num_epochs = 2
    train.checkpoint_every_epochs = 1
    train.eval_every_epochs = 1
    train.steps_per_execution = 4
    config.eval.batch_size = 64
  return config
