r"""NADE (Larochelle & Murray 2011) on binarized MNIST.

Run:
  tfgen-train --config=configs/nade.py --workdir=/tmp/nade
  tfgen-evaluate --workdir=/tmp/nade            # exact test NLL
  tfgen-sample --workdir=/tmp/nade --num=16 --out=nade.png

Variants (configs/nade.py:OPTION=VALUE,...): hidden=500, epochs=N,
data=binarized_mnist|mnist|folder|arrays|tfds:NAME (the last three your own images, dynamically
binarized unless --config.data.binarization=none; docs/data.md),
ordering=natural|random, tiny.

Reference test NLL on binarized MNIST (nats): NADE 88.86 (Larochelle & Murray 2011, fixed
binarization, 500 hidden units); a PyTorch zoo reports 85.65 with dynamic binarization.
What tfgen measured is in docs/results.md.
"""

from tfgen import config as config_lib
from tfgen import models

VARIANT_DEFAULTS = dict(hidden=500, epochs=100, data="binarized_mnist", ordering="natural",
                        tiny=False)
VARIANT_CHOICES = dict(data=("binarized_mnist", "mnist", *config_lib.USER_DATA),
                       ordering=("natural", "random"))


def get_config(arg: str = ""):
  opts = config_lib.parse_variant(arg, VARIANT_DEFAULTS, VARIANT_CHOICES)
  config = config_lib.base_config()
  config.data.name = opts["data"]
  if config_lib.is_user_data(opts["data"]):
    config_lib.set_user_data(config, opts["data"], binarized=True)
  # The sequential recurrence (hand-written gradient) compiled by XLA: 4.2-4.9x the blocked prefix sum
  # without XLA on 2 CPU cores (bench/loop_speed.py, docs/speed.md); the same numbers either way.
  config.model = models.model_config("nade", hidden_size=opts["hidden"],
                                     ordering=opts["ordering"], recurrence="sequential")
  config_lib.decaying_adam(config, batch_size=100, num_epochs=opts["epochs"])
  config.train.jit_compile = True
  config.eval.jit_compile = True
  # tfgen-tune (docs/tuning.md): exact validation NLL over these.
  space = config.tuning.space
  space.hidden_size = config_lib.search_choice("model.hidden_size",
                                               sorted({250, 500, 1000, opts["hidden"]}))
  space.learning_rate = config_lib.search_float("train.learning_rate", 1e-4, 1e-2, log=True)
  if opts["tiny"]:
    config.model.hidden_size = 16
    # Without XLA (make_tiny turns it off) the blocked prefix sum is the fast form.
    config.model.recurrence = "blocked"
    space.hidden_size = config_lib.search_choice("model.hidden_size", (8, 16, 32))
    config_lib.make_tiny(config)
  return config
