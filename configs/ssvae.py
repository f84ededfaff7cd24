r"""The semi-supervised VAE, M2 of Kingma et al. (2014), with few labels.

Run (the default: mnist_5k, 100 labels, 10 per digit, intensities, 100 epochs):

  tfgen-train --config=configs/ssvae.py --workdir=/tmp/ssvae \
      --config.data.manual_dir=../shared/data/mnist_5k
  tfgen-evaluate --workdir=/tmp/ssvae       # classification_error of q(y | x), elbo, nll (k=100)
  tfgen-sample --workdir=/tmp/ssvae --num=100 --out=classes.png      # rows: digits, columns: z
  tfgen-sample --workdir=/tmp/ssvae --mode=analogies --num=10 --out=analogies.png

The default model: q(z | x, y) and p(x | y, z) MLPs with one hidden layer of 500 softplus units
and batch norm, z of 50 (the paper's sizes); the classifier q(y | x) two 3x3 convolution +
max-pool blocks (32, 64 channels) before the 500-unit layer, with dropout 0.2 on its input and
0.5 on its hidden layer; α = 3; Bernoulli cross-entropy on intensities in [0, 1]; Adam 1e-3
decayed to 1e-4; batches of 100 holding 10 labelled images (docs/ssvae.md says why).

Variants (configs/ssvae.py:OPTION=VALUE,...):
  data=mnist_5k|mnist|fashion_mnist|folder|arrays|tfds:NAME
                      labelled data sets; binarized_mnist and celeb_a have no labels, which M2
                      needs (building it on them is a ConfigError); folder (class sub-folders
                      give the labels), arrays (with *_labels) and tfds:NAME are your own
                      images (docs/data.md); labels= must then be a multiple of the classes
  labels=100          number of labelled training images (a multiple of 10)
  alpha=F             weight of the labelled cross-entropy per example (the paper: 0.1)
  latent=50, hidden=500
                      size of z and of the hidden layer of each MLP
  classifier=conv|mlp the paper's classifier is the MLP
  dropout=0.5, input_dropout=0.2
                      dropout of the classifier's hidden layer and input
  unlabelled_weight=1 0 drops the unlabelled bound (an ablation: labelled images only)
  binarize            dynamically binarized images instead of intensities
  epochs=N            training epochs
  tiny                a model and data small enough for tests on a CPU

The paper's number (Table 1, MNIST with 100 labels and 50,000 unlabelled images, M2 alone):
11.97% (± 1.71) test error. tfgen measured on mnist_5k (3,500 training images, 100 labels, the
1,000 test digits), default config: 16.6% test error (21.5% when trained on the 100 labelled
images alone); docs/ssvae.md and docs/results.md.
"""

from tfgen import config as config_lib
from tfgen import models

VARIANT_DEFAULTS = dict(data="mnist_5k", labels=100, alpha=3.0, latent=50, hidden=500,
                        classifier="conv", dropout=0.5, input_dropout=0.2,
                        unlabelled_weight=1.0, binarize=False, epochs=100, tiny=False)
VARIANT_CHOICES = dict(data=("mnist_5k", "mnist", "fashion_mnist", *config_lib.USER_DATA),
                       classifier=("conv", "mlp"))


def get_config(arg: str = ""):
  opts = config_lib.parse_variant(arg, VARIANT_DEFAULTS, VARIANT_CHOICES)
  config = config_lib.base_config()
  config.data.name = opts["data"]
  config.data.num_labels = opts["labels"]
  config.data.labelled_per_batch = 10
  config.data.label_seed = 0
  # Intensities in [0, 1] under a Bernoulli cross-entropy (the usual practice for M2, and what
  # made it learn from the unlabelled images here, docs/ssvae.md); binarize for binary images.
  if not opts["binarize"]:
    config.data.binarization = "none"

  config.model = model = models.model_config(
      "ssvae", latent_size=opts["latent"], hidden_sizes=(opts["hidden"],), batch_norm=True,
      alpha=opts["alpha"], unlabelled_weight=opts["unlabelled_weight"],
      classifier=opts["classifier"], classifier_dropout=opts["dropout"],
      classifier_input_dropout=opts["input_dropout"])

  config_lib.decaying_adam(config, batch_size=100, num_epochs=opts["epochs"],
                           checkpoint_every_epochs=25)
  config.train.steps_per_execution = 35
  config.train.eval_every_epochs = 5
  config.eval.num_importance_samples = 100
  config.eval.chunk_size = 100

  if opts["tiny"]:
    model.latent_size = 4
    model.hidden_sizes = (16,)
    model.classifier = "mlp"
    config_lib.make_tiny(config)
    config.data.binarization = ""  # Binary images, as the export tests feed them.
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
