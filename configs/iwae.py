r"""VAE and IWAE (Burda, Grosse & Salakhutdinov 2016) on binarized MNIST.

Run (the default: one stochastic layer, k=1, ELBO objective, fixed binarization, 100 epochs):

  tfgen-train --config=configs/iwae.py --workdir=/tmp/run
  tfgen-evaluate --workdir=/tmp/run          # test NLL = -IWAE bound at k=5000

Variants, as `configs/iwae.py:OPTION=VALUE,...`:
  model=vae|iwae      objective: ELBO averaged over k samples, or the IWAE bound
  k=1|5|50            importance samples while training
  layers=1|2          stochastic layers (784-200-200-50, or 784-200-200-100-100-100-50)
  data=binarized_mnist|mnist|omniglot|fashion_mnist|folder|arrays|tfds:NAME
                      mnist, omniglot and fashion_mnist are dynamically binarized; folder,
                      arrays and tfds:NAME are your own images (docs/data.md), dynamically
                      binarized too: data=folder --config.data.path=DIR
                      --config.data.image_size=28
  schedule=budget|paper
                      budget: 100 epochs, batch 20, Adam (ε=1e-4) at 1e-3 decayed
                      exponentially to 1e-4 by the last epoch
                      paper: the IWAE paper's 3280 epochs (3^i epochs at 1e-3·10^(-i/7),
                      i=0..7), batch 20, Adam ε=1e-4, and on mnist its 59,600/400 split
  batch_norm          batch normalization before each hidden activation
  decoder=mlp|cppn    the decoder of x: an MLP to all 784 logits, or a CPPN of z and each
                      pixel's coordinates (decodes at any resolution; docs/cppn.md)
  tiny                a model and data small enough for tests on a CPU

  tfgen-train --config=configs/iwae.py:model=iwae,k=50,layers=2,data=mnist,schedule=paper \
      --workdir=/tmp/iwae_k50_l2

The paper's numbers (Table 1, dynamically binarized MNIST, test NLL in nats, k=5000):
               k=1     k=5     k=50
  VAE  1 layer  86.76   86.47   86.35     IWAE 1 layer   86.76   85.54   84.78
  VAE  2 layers 85.33   85.01   84.78     IWAE 2 layers  85.33   83.89   82.90
`tfgen-reproduce run iwae_table1_fixed` trains and evaluates all twelve (docs/reproduce.md).
tfgen measured, default config (fixed binarization, 100 epochs, batch 20): test NLL 91.62 at k=5000;
every figure with its command is in docs/vae.md and docs/results.md.

Hyperparameter search (config.tuning.space below; docs/tuning.md): learning rate, k, and for one
stochastic layer the latent and hidden sizes, scored by the validation NLL at k=100:

  tfgen-tune --config=configs/iwae.py --tuner=bayesian --max_trials=20 --workdir=/tmp/tune
"""

from tfgen import config as config_lib
from tfgen import models
from tfgen import schedules

VARIANT_DEFAULTS = dict(model="vae", k=1, layers=1, data="binarized_mnist", schedule="budget",
                        batch_norm=False, decoder="mlp", tiny=False)
VARIANT_CHOICES = dict(model=("vae", "iwae"), layers=(1, 2),
                       data=("binarized_mnist", "mnist", "omniglot", "fashion_mnist",
                             *config_lib.USER_DATA),
                       schedule=("budget", "paper"), decoder=("mlp", "cppn"))


def get_config(arg: str = ""):
  opts = config_lib.parse_variant(arg, VARIANT_DEFAULTS, VARIANT_CHOICES)
  config = config_lib.base_config()
  config.data.name = opts["data"]
  if config_lib.is_user_data(opts["data"]):
    config_lib.set_user_data(config, opts["data"], binarized=True)
  # Fashion-MNIST and Omniglot's usual protocol holds out fewer images than MNIST's.
  config.data.num_validation = {"omniglot": 1345}.get(opts["data"], 10000)

  config.model = model = models.model_config(
      "vae", objective={"vae": "elbo", "iwae": "iwae"}.get(opts["model"], opts["model"]),
      num_importance_samples=opts["k"], batch_norm=opts["batch_norm"], decoder=opts["decoder"])
  if opts["layers"] == 1:
    model.latent_sizes = (50,)
    model.hidden_sizes = ((200, 200),)
  else:
    model.latent_sizes = (100, 50)
    model.hidden_sizes = ((200, 200), (100, 100))
  space = config.tuning.space
  space.num_importance_samples = config_lib.search_choice(
      "model.num_importance_samples", sorted({1, 5, opts["k"]}))
  if opts["layers"] == 1:  # One value each; two layers have sizes that differ per layer.
    space.latent_size = config_lib.search_choice("model.latent_sizes", (20, 50, 100))
    space.hidden_size = config_lib.search_choice("model.hidden_sizes", (100, 200, 400))

  train = config.train
  if opts["schedule"] == "paper":
    train.batch_size = 20
    train.num_epochs = schedules.iwae_num_epochs()
    train.schedule = "iwae"
    train.learning_rate = 1e-3
    train.adam_epsilon = 1e-4
    train.checkpoint_every_epochs = 20
    train.eval_every_epochs = 20
    if opts["data"] == "mnist":
      config.data.num_validation = 400
  else:
    # Batch 20 reaches a lower test NLL in 100 epochs than batch 100 (docs/results.md).
    train.batch_size = 20
    train.num_epochs = 100
    train.schedule = "exponential"
    train.learning_rate = 1e-3
    train.final_learning_rate_factor = 0.1
    train.checkpoint_every_epochs = 10
    train.eval_every_epochs = 5
  # XLA, the whole train call compiled: 3.9-4.6x a plain tf.function-per-batch loop at batch 20,
  # 2.9x at batch 100, on 2 CPU cores (bench/loop_speed.py, docs/speed.md).
  train.jit_compile = True
  if opts["decoder"] == "cppn":
    # The cppn decoder holds [draws, images, 784 pixels, cppn_width] activations: 500 draws of
    # 100 images would be 10 GB; 50 draws of 20 images are 200 MB.
    config.eval.chunk_size = 50
    config.eval.batch_size = 20
  space.learning_rate = config_lib.search_float("train.learning_rate", 1e-4, 1e-2, log=True)
  # The same k for every trial, whatever k it trains with.
  config.tuning.objective = "nll"
  config.tuning.num_importance_samples = 100

  if opts["tiny"]:
    model.latent_sizes = tuple(4 for _ in model.latent_sizes)
    model.hidden_sizes = tuple((16,) for _ in model.hidden_sizes)
    model.cppn_width = 8
    model.cppn_depth = 2
    config_lib.make_tiny(config)
    config.eval.num_importance_samples = 10
    config.eval.chunk_size = 4
    if opts["layers"] == 1:
      space.latent_size = config_lib.search_choice("model.latent_sizes", (2, 4, 8))
      space.hidden_size = config_lib.search_choice("model.hidden_sizes", (8, 16, 32))
    space.learning_rate = config_lib.search_float("train.learning_rate", 1e-4, 3e-2, log=True)
    config.tuning.num_importance_samples = 10
  return config
