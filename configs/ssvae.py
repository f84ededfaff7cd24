r"""The semi-supervised VAE, M2 of Kingma et al. (2014), with few labels.

Run (the default: mnist_5k, 100 labels, 10 per class, dynamically binarized, MLP 500 / 50):

  tfgen-train --config=configs/ssvae.py --workdir=/tmp/ssvae \
      --config.data.manual_dir=../shared/data/mnist_5k
  tfgen-evaluate --workdir=/tmp/ssvae --num_importance_samples=100
      # test classification error of q(y | x), the bound U(x) and -log p(x)
  tfgen-sample --workdir=/tmp/ssvae --num=100 --out=classes.png      # rows: classes, columns: z
  tfgen-sample --workdir=/tmp/ssvae --mode=analogies --num=8 --out=analogies.png

Variants (configs/ssvae.py:OPTION=VALUE,...):
  data=mnist_5k|mnist|binarized_mnist|fashion_mnist
                      binarized_mnist has no labels, so it only trains the generative part
                      with labels=0; the others keep `labels` labels
  labels=100          number of labelled training images (a multiple of 10)
  latent=50, hidden=500
                      size of z and of the hidden layer of each MLP (the paper: 50 and 500)
  alpha=F             weight of the labelled cross-entropy per example (the paper: 0.1)
  epochs=N            training epochs
  tiny                a model and data small enough for tests on a CPU

The paper's number (Table 1, MNIST with 100 labels and 50,000 unlabelled images, M2 alone):
11.97% (± 1.71) test error. tfgen measured on mnist_5k (3,500 training images, 100 labels):
see docs/ssvae.md and docs/results.md.
"""

from tfgen import config as config_lib

VARIANT_DEFAULTS = dict(data="mnist_5k", labels=100, alpha=1.0, latent=50, hidden=500,
                        classifier="mlp", dropout=0.0, input_dropout=0.0,
                        unlabelled_weight=1.0, epochs=300, tiny=False)


def get_config(arg: str = ""):
  opts = config_lib.parse_variant(arg, VARIANT_DEFAULTS)
  config = config_lib.base_config()
  config.data.name = opts["data"]
  config.data.num_labels = opts["labels"] if opts["data"] != "binarized_mnist" else 0
  config.data.labelled_per_batch = 10
  config.data.label_seed = 0

  model = config.model
  model.name = "ssvae"
  model.latent_size = opts["latent"]
  model.hidden_sizes = (opts["hidden"],)
  model.activation = "softplus"
  model.batch_norm = True
  model.alpha = opts["alpha"]
  model.classifier = opts["classifier"]
  model.classifier_dropout = opts["dropout"]
  model.classifier_input_dropout = opts["input_dropout"]
  model.unlabelled_weight = opts["unlabelled_weight"]
  model.likelihood = "bernoulli"

  config_lib.decaying_adam(config, batch_size=100, num_epochs=opts["epochs"],
                           checkpoint_every_epochs=25)
  config.train.steps_per_execution = 35
  config.eval.num_importance_samples = 100
  config.eval.chunk_size = 100

  if opts["tiny"]:
    model.latent_size = 4
    model.hidden_sizes = (16,)
    config_lib.make_tiny(config)
    # mnist_5k is stored sorted by digit, so a `limit` would keep only zeros: the tiny variant
    # reads all 3,500 training images in 7 large batches instead.
    config.data.limit = 0
    config.train.batch_size = 500
    config.data.labelled_per_batch = 20
    config.data.num_labels = 20 if config.data.num_labels else 0
    config.eval.batch_size = 500
    config.eval.num_importance_samples = 10
    config.eval.chunk_size = 4
  return config
