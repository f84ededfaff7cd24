"""The model contract every tfgen model keeps.

A model is a Keras 3 subclassed model that owns its loss. The training loop, the evaluator, the
samplers and the exporters see only this API, and every method takes the batch dict the data
pipeline yields (`image` float32 [B, H, W, C], and `label` int32 [B] where the data has labels):

  * `loss(batch, seed, training)` -> (per-example loss [B], per-example metrics {name: [B]}). The
    loop averages over the global batch itself, so the loss must not be averaged here.
  * `bounds(batch, seed)` -> per-example log-likelihood terms or bounds {name: [B]} in nats.
  * `log_prob(batch, seed, num_importance_samples=None)` -> per-example log-likelihood [B] in
    nats: exact for fully observed models, an importance-sampled estimate (drawn
    `importance_chunk_size` draws at a time) for latent-variable models.
  * `sample(num, seed, mean=False)` -> images [num, H, W, C]; `mean=True` returns the pixel
    probabilities (or means) of the last conditional instead of a draw.

A model reads from the batch what it needs (class-conditional models read `label`) and nothing
else is passed beside it. What a model can do beyond this, it declares
(tfgen/models/capabilities.py): `signatures()` for export, `sample_modes()` for tfgen-sample,
`evaluation_terms()` / `finish_evaluation()` for tfgen-evaluate, `training_pictures()` for the
loop. The generic code loops over those declarations and never asks what kind of model it holds.

`LatentVariableModel` is the one latent-variable core: a model supplies its log-density terms
(`latent_terms`: log p(x | z), log p(z_l | ·), log q(z_l | ·) per draw and layer) and the core
computes the ELBO, the IWAE bound, rate, distortion, the training objective with KL warm-up and
free bits, the importance-sampled log p(x), and the latent tools (active units, codes,
traversals).

Hyperparameters have one home: the keyword arguments of the model's constructor, with their
defaults. `tfgen.models.registry.model_config(name)` reads them into the config, where config
files and the command line override them, and `from_model_config` passes every field back.

Schedules (KL warm-up, VSC's sharpness) are in epochs: the loop calls `update_schedules(epoch)`
with the fractional epoch of each step, resolved from the data's own size.

Randomness is explicit: every method that draws takes a stateless `seed` (int32 [2]), so results
are reproducible and `tf.function` never depends on hidden random state.
"""

import abc
import dataclasses
import functools
import inspect
import math
import weakref
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors
from tfgen import probes
from tfgen import schedules
from tfgen import seeding
from tfgen import viz
from tfgen.models import capabilities as caps
from tfgen.models import fitting

# model -> its compiled `sample` (GenerativeModel.compiled_sample); weak, so that models that are
# dropped are freed, and outside the model, so that SavedModel export does not see it.
_COMPILED_SAMPLERS = weakref.WeakKeyDictionary()

tfd = tfp.distributions

Metrics = Dict[str, tf.Tensor]
# Draws of the importance-sampled log p(x) made at once per image: bounds memory for any k.
IMPORTANCE_CHUNK_SIZE = 500
# A unit is active when Cov_x(E_q[u]) exceeds this (Burda et al. 2016, section 5.2).
ACTIVE_UNIT_THRESHOLD = 0.01
NUM_GRID_IMAGES = 64
SCORES = {"log_prob": (tf.float32, ()), "bits_per_dim": (tf.float32, ())}


class GenerativeModel(fitting.KerasConventions, keras.Model, metaclass=abc.ABCMeta):
  """Base class of every tfgen model.

  Keras' conventions (compile / fit / evaluate / predict / save / export) come from
  `fitting.KerasConventions`, implemented once for every model.

  Args:
    image_shape: (H, W, C) of the images the model is built for.
  """

  def __new__(cls, *args, **kwargs):
    instance = super().__new__(cls, *args, **kwargs)
    # The constructor's arguments, with the defaults of those not given: `get_config` (saving
    # as .keras) rebuilds the same model from them whatever later defaults become.
    try:
      bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
    except TypeError:
      arguments = None  # __init__ raises the real error.
    else:
      arguments = dict(cls.hyperparameters())
      for name, value in list(bound.arguments.items())[1:]:
        kind = bound.signature.parameters[name].kind
        if kind == inspect.Parameter.VAR_KEYWORD:
          arguments.update(value)
        elif kind != inspect.Parameter.VAR_POSITIONAL:
          arguments[name] = value
    # Past Keras' attribute tracking: a plain record, not model state.
    object.__setattr__(instance, "_constructor_arguments", arguments)
    return instance

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    for name in ("sample", "log_prob"):
      if name in vars(cls) and not getattr(vars(cls)[name], "__isabstractmethod__", False):
        setattr(cls, name, _seed_optional(vars(cls)[name]))

  def constructor_arguments(self) -> Dict:
    """{name: value} of every constructor argument the model was made with (defaults too)."""
    return dict(self._constructor_arguments or {})

  # Draws of the importance-sampled log p(x) made at once; evaluation sets it from
  # config.eval.chunk_size. Exact models ignore it.
  importance_chunk_size = IMPORTANCE_CHUNK_SIZE
  # Validation figures (names of `bounds`, higher is better) that early stopping keeps the best
  # epoch of: the first one validation measured (tfgen/early_stopping.py).
  selection_metrics: Tuple[str, ...] = ("log_prob",)

  def __init__(self, image_shape, **kwargs):
    super().__init__(**kwargs)
    # Keras' Trainer sets `self.loss = None` for compile(); tfgen models never compile and the
    # contract's `loss` is a method, so drop the attribute that would shadow it.
    del self.loss
    self.image_shape = tuple(int(d) for d in image_shape)

  # --- Construction from a config ---------------------------------------------------------------

  @classmethod
  def data_kwargs(cls, info) -> Dict:
    """Constructor arguments that come from the data (a DataInfo), not the config.

    Raises:
      ConfigError: the model cannot model this data set.
    """
    del info
    return {}

  @classmethod
  def hyperparameters(cls) -> Dict:
    """Every constructor keyword with its default, over the class hierarchy: the config fields
    of `config.model` (less those `data_kwargs` fills in)."""
    fields = {}
    for klass in reversed(cls.__mro__):
      if "__init__" not in vars(klass) or not issubclass(klass, GenerativeModel):
        continue
      for name, param in inspect.signature(klass.__init__).parameters.items():
        if name in ("self", "image_shape") or param.default is inspect.Parameter.empty:
          continue
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
          continue
        fields[name] = param.default
    for name in cls.DATA_FIELDS + cls.PYTHON_ONLY_FIELDS:
      fields.pop(name, None)
    return fields

  # Constructor arguments filled in from the data by `data_kwargs`, never from the config.
  DATA_FIELDS: Tuple[str, ...] = ()
  # Constructor arguments only Python passes (objects, not config values).
  PYTHON_ONLY_FIELDS: Tuple[str, ...] = ()

  @classmethod
  def from_model_config(cls, config, info) -> "GenerativeModel":
    """cls(image_shape, **config.model fields, **data_kwargs(info)).

    Raises:
      ConfigError: a field the model does not take, or invalid values.
    """
    fields = {k: v for k, v in config.items() if k != "name"}
    known = cls.hyperparameters()
    unknown = sorted(set(fields) - set(known))
    if unknown:
      raise errors.ConfigError(f"model {config.name!r} takes no config.model.{unknown[0]}; its "
                               f"fields: {', '.join(sorted(known))}")
    fields = {k: fitting.as_tuples(v) for k, v in fields.items()}
    return cls(info.image_shape, **fields, **cls.data_kwargs(info))

  # --- Shapes and inputs ------------------------------------------------------------------------

  @property
  def event_size(self) -> int:
    """Number of pixel values per image (H·W·C)."""
    h, w, c = self.image_shape
    return h * w * c

  def check_images(self, x: tf.Tensor) -> tf.Tensor:
    """Returns x as float32, raising DataError when its trailing shape is not the model's."""
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 4 or (tuple(x.shape[1:]) != self.image_shape
                             and x.shape[1:].is_fully_defined()):
      raise errors.DataError(f"{type(self).__name__} expects images of shape "
                             f"[batch, {', '.join(map(str, self.image_shape))}], got {x.shape}")
    return tf.cast(x, tf.float32)

  def images(self, batch: Dict[str, tf.Tensor]) -> tf.Tensor:
    """The batch's images, checked (see check_images)."""
    if not isinstance(batch, dict):
      raise TypeError(f"{type(self).__name__} takes the batch dict {{'image': ...}}, got "
                      f"{type(batch).__name__}")
    return self.check_images(batch["image"])

  def bits_per_dim(self, log_prob: tf.Tensor) -> tf.Tensor:
    """−log p in bits per pixel value."""
    return -log_prob / (self.event_size * math.log(2.0))

  def build_for_images(self) -> None:
    """Creates every weight by running the model once on a dummy batch."""
    x = tf.zeros((2,) + self.image_shape)
    self.loss({"image": x, "label": tf.zeros([2], tf.int32)}, seed=tf.constant([0, 0]),
              training=False)
    self.built = True  # Keras only sets it through __call__, which the contract never uses.

  def update_schedules(self, epoch: tf.Tensor) -> None:
    """Sets the model's schedule variables (KL warm-up, VSC sharpness, ...) for a train step.

    The training loop calls it in cross-replica context before every step with the step's
    fractional epoch (float32 scalar: step / steps per epoch), so durations are in epochs.
    Schedules live in non-trainable variables: the compiled step reads their values without
    retracing. Models without schedules keep this no-op.
    """
    del epoch

  def step_statistics(self, batch: Dict[str, tf.Tensor], seed: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Sums over this replica's examples that `apply_step_statistics` turns into updates.

    For state that is not learned by gradients, such as a VQ-VAE's codebook kept by exponential
    moving averages. The training loop calls it in each replica with the weights the step's loss
    saw, sums the result over all replicas, and after the gradient update passes the totals to
    `apply_step_statistics` in cross-replica context, so the mirrored state gets one update from
    the global batch and a run on N replicas updates as one on a single device does.
    Default: nothing.
    """
    del batch, seed
    return {}

  def apply_step_statistics(self, totals: Dict[str, tf.Tensor]) -> None:
    """Updates the model's non-gradient state (non-trainable variables) from `step_statistics`
    summed over the replicas; called in cross-replica context."""
    del totals

  # --- The contract -----------------------------------------------------------------------------

  @abc.abstractmethod
  def loss(self, batch: Dict[str, tf.Tensor], seed: tf.Tensor,
           training: bool = False) -> Tuple[tf.Tensor, Metrics]:
    """Per-example training loss and metrics.

    Args:
      batch: dict with `image` float32 [B, H, W, C] (and `label` int32 [B] where present).
      seed: int32 [2] stateless seed.
      training: whether layers such as batch norm use batch statistics.

    Returns:
      loss: float32 [B], what the optimizer minimizes (in nats per example).
      metrics: {name: float32 [B]}, averaged by the loop for logging.
    """

  @abc.abstractmethod
  def bounds(self, batch: Dict[str, tf.Tensor], seed: tf.Tensor) -> Metrics:
    """Per-example log-likelihood terms or bounds in nats, {name: float32 [B]}."""

  @abc.abstractmethod
  def log_prob(self, batch: Dict[str, tf.Tensor], seed: tf.Tensor,
               num_importance_samples=None) -> tf.Tensor:
    """Per-example log p(x) in nats, float32 [B] (exact, or an importance-sampled estimate)."""

  @abc.abstractmethod
  def sample(self, num, seed: tf.Tensor, mean: bool = False) -> tf.Tensor:
    """Draws `num` images, float32 [num, H, W, C]."""

  # --- Declared capabilities --------------------------------------------------------------------

  def log_prob_samples(self, num_importance_samples: int) -> Optional[int]:
    """Draws `log_prob` makes per image when asked for k; None when it is exact."""
    del num_importance_samples
    return None

  def evaluation_terms(self, batch, seed, num_importance_samples) -> Tuple[Metrics, Metrics]:
    """What tfgen-evaluate averages and what it collects, for one batch (compiled).

    Returns:
      terms: {name: [B]} averaged over the split; must hold `log_prob`, the test likelihood.
      collected: {name: [B, ...]} concatenated over the split for `finish_evaluation`.
    """
    terms = dict(self.bounds(batch, seed))
    terms["log_prob"] = self.log_prob(batch, seeding.fold_in(seed, 1),
                                      num_importance_samples=num_importance_samples)
    return terms, {}

  def finish_evaluation(self, results: Dict, collected: Dict[str, np.ndarray],
                        context: caps.EvaluationContext) -> Dict:
    """The results of tfgen-evaluate with what the whole split shows (active units, probes)."""
    del collected, context
    return results

  def training_pictures(self, images: np.ndarray, seed: int) -> Dict[str, np.ndarray]:
    """{name: uint8 picture} written as name.png at each checkpoint; images: validation [N, ...]."""
    del images
    samples = self.compiled_sample(NUM_GRID_IMAGES, seed=seeding.as_seed([seed, 1]), mean=True)
    return {"samples": viz.image_grid(samples.numpy(), 8)}

  def compiled_sample(self, num: int, seed, mean: bool = False, **kwargs) -> tf.Tensor:
    """`sample` run as one compiled graph (traced once per model and argument kind).

    Samplers loop with tf.while_loop over pixels, layers or flow steps; run eagerly, such a
    loop executes step by step from Python (half a minute for a tiny PixelCNN's grid), so the
    pictures of the training loop and tfgen-sample go through this.
    """
    function = _COMPILED_SAMPLERS.get(self)
    if function is None:
      model = weakref.ref(self)  # The cache must not keep the model alive.
      function = tf.function(lambda num, seed, mean, **kw: model().sample(num, seed=seed,
                                                                           mean=mean, **kw))
      _COMPILED_SAMPLERS[self] = function
    return function(num, seed, mean, **kwargs)

  def sample_modes(self) -> Dict[str, caps.SampleMode]:
    """The pictures `tfgen-sample --mode=NAME` can draw."""
    return {"samples": caps.SampleMode(self._samples_picture, help="draw from the model")}

  def picture(self, mode: str = "samples", num: int = 64, seed: int = 0, test=None,
              **request) -> np.ndarray:
    """The uint8 picture [rows, columns, C] of sample mode `mode` (what `tfgen-sample --mode`
    draws; `sample_modes()` lists them): `model.picture("traversals", num=10)`.

    Args:
      mode: a declared sample mode.
      num: images asked for.
      seed: the same seed gives the same picture.
      test: a dataset of test batches, for modes that start from test images.
      **request: further fields of capabilities.SampleRequest (mean, label, num_columns, ...).

    Raises:
      ConfigError: a mode the model does not declare, or one that needs `test`.
    """
    modes = self.sample_modes()
    if mode not in modes:
      raise errors.ConfigError(f"unknown sample mode {mode!r}; this model offers: "
                               f"{', '.join(modes)}")
    if request.get("label", -1) >= 0 and not modes[mode].uses_label:
      raise errors.ConfigError(f"sample mode {mode!r} uses no label: it needs a "
                               "class-conditional model or a mode that picks test images")
    if modes[mode].needs_test_data and test is None:
      raise errors.ConfigError(f"sample mode {mode!r} starts from test images: pass test=DATASET")
    info = getattr(self, "data_info", None)
    request = caps.SampleRequest(num=num, seed=seed, test=test,
                                 model_name=getattr(self, "config_name", ""),
                                 num_classes=info.num_classes if info else None, **request)
    return modes[mode].fn(request)

  def _samples_picture(self, request: caps.SampleRequest) -> np.ndarray:
    images = self.compiled_sample(request.num, seed=seeding.as_seed(request.seed),
                                  mean=request.mean)
    return viz.image_grid(images.numpy(), request.num_columns)

  def signatures(self) -> Dict[str, caps.Signature]:
    """The functions of the SavedModel tfgen-export writes (tfgen/export.py)."""
    return {"sample": self.sample_signature(),
            "log_prob": caps.Signature(
                fn=lambda images, seed: self.scores(self.log_prob({"image": images}, seed)),
                inputs=(caps.Input(caps.IMAGES),), outputs=SCORES)}

  def sample_signature(self, **sample_kwargs) -> caps.Signature:
    """sample(num_samples, seed) -> images (a draw), probabilities (the same draw's means)."""

    def fn(num_samples, seed):
      return {"images": self.sample(num_samples, seed=seed, **sample_kwargs),
              "probabilities": self.sample(num_samples, seed=seed, mean=True, **sample_kwargs)}

    return caps.Signature(fn, (caps.Input(caps.NUM_SAMPLES), caps.Input(caps.SEED)),
                          {"images": (caps.PIXELS, caps.IMAGE),
                           "probabilities": (tf.float32, caps.IMAGE)})

  def labelled_sample_signatures(self, num_classes: int) -> Dict[str, caps.Signature]:
    """`sample` drawing classes uniformly and `sample_labels` drawing given ones, for models whose
    `sample` takes `labels` (class-conditional models); both also return the labels."""
    with_labels = dict(self.sample_signature().outputs, labels=(tf.int32, ()))

    def sample_labels(labels, seed):
      return {"images": self.sample(tf.size(labels), seed, labels=labels),
              "probabilities": self.sample(tf.size(labels), seed, mean=True, labels=labels),
              "labels": labels}

    def sample(num_samples, seed):
      labels = tf.random.stateless_uniform([num_samples], seed=seeding.fold_in(seed, 1),
                                           maxval=num_classes, dtype=tf.int32)
      return sample_labels(labels, seed)

    return {"sample": caps.Signature(sample, (caps.Input(caps.NUM_SAMPLES),
                                              caps.Input(caps.SEED)), with_labels),
            "sample_labels": caps.Signature(
                sample_labels, (caps.Input(caps.LABELS, num_classes), caps.Input(caps.SEED)),
                with_labels)}

  def scores(self, log_prob: tf.Tensor) -> Dict[str, tf.Tensor]:
    return {"log_prob": log_prob, "bits_per_dim": self.bits_per_dim(log_prob)}


def _seed_optional(method):
  """`method(self, first, seed, ...)` callable from Python as `model.sample(64)` or
  `model.log_prob(images)`: a missing seed is drawn from NumPy's global generator (which
  `keras.utils.set_random_seed` seeds), and images stand for the batch {"image": images}.
  tfgen's own code always passes its seeds."""

  @functools.wraps(method)
  def wrapper(self, first, seed=None, *args, **kwargs):
    if seed is None:
      seed = np.random.randint(0, 2**31 - 1, size=2)
    if method.__name__ == "log_prob" and not isinstance(first, dict):
      first = {"image": first}
    return method(self, first, seeding.as_seed(seed), *args, **kwargs)

  return wrapper


def chunked_logmeanexp(log_weights_fn, num_samples, chunk_size: int,
                       seed: tf.Tensor) -> tf.Tensor:
  """log (1/K) Σ exp(log wᵢ) over K = num_samples draws, made chunk_size at a time.

  Memory stays that of one chunk whatever K is; the running log-sum-exp keeps it exact. Chunk i
  draws min(chunk_size, K − i·chunk_size) samples with seed fold_in(seed, i).

  Args:
    log_weights_fn: (num, seed) -> log weights [num, B]; num may be a scalar tensor.
    num_samples: K, a Python int or an int32 scalar tensor (e.g. a SavedModel input).
    chunk_size: largest number of draws per call of log_weights_fn.
    seed: int32 [2].

  Returns:
    float32 [B].
  """
  if isinstance(num_samples, int):
    return _static_chunked_logmeanexp(log_weights_fn, num_samples, chunk_size, seed)
  num_samples = tf.convert_to_tensor(num_samples, tf.int32)
  chunk_size = tf.minimum(tf.constant(chunk_size, tf.int32), num_samples)
  num_chunks = (num_samples + chunk_size - 1) // chunk_size

  def chunk(i):
    size = tf.minimum(chunk_size, num_samples - i * chunk_size)
    return tf.reduce_logsumexp(log_weights_fn(size, seeding.fold_in(seed, i)), axis=0)

  def body(i, total):
    return i + 1, tf.reduce_logsumexp(tf.stack([total, chunk(i)]), axis=0)

  _, total = tf.while_loop(lambda i, _: i < num_chunks, body, (tf.constant(1), chunk(0)))
  return total - tf.math.log(tf.cast(num_samples, tf.float32))


def _static_chunked_logmeanexp(log_weights_fn, num_samples: int, chunk_size: int,
                               seed: tf.Tensor) -> tf.Tensor:
  """chunked_logmeanexp for a Python int K: every chunk has a static size, so XLA compiles it.

  The same draws as the dynamic version (chunk i: seed fold_in(seed, i)): full chunks in a
  while loop, then the remainder.
  """
  chunk_size = min(chunk_size, num_samples)
  num_full, rest = divmod(num_samples, chunk_size)

  def chunk(i, size):
    return tf.reduce_logsumexp(log_weights_fn(size, seeding.fold_in(seed, i)), axis=0)

  def body(i, total):
    return i + 1, tf.reduce_logsumexp(tf.stack([total, chunk(i, chunk_size)]), axis=0)

  total = chunk(0, chunk_size)
  if num_full > 1:
    _, total = tf.while_loop(lambda i, _: i < num_full, body, (tf.constant(1), total))
  if rest:
    total = tf.reduce_logsumexp(tf.stack([total, chunk(num_full, rest)]), axis=0)
  return total - math.log(num_samples)


OBJECTIVES = ("elbo", "iwae")


@dataclasses.dataclass
class LatentTerms:
  """The log-density terms of k draws z ~ q(z | x) of a latent-variable model.

  Attributes:
    log_likelihood: log p(x | z), [k, B].
    log_prior: per stochastic layer, log p(z_l | ·), [k, B]; empty when the draws are relaxed
      (then there are no importance weights, and no IWAE bound).
    log_posterior: per layer, log q(z_l | ·), [k, B] (empty with relaxed draws).
    kl: per layer, KL(q(z_l | ·) ‖ p(z_l | ·)) in closed form, [B] or [k, B] (given the draws
      above); None to estimate the rate from the draws as E_q[log q − log p].
    extra: other per-example metrics, [B].
  """
  log_likelihood: tf.Tensor
  log_prior: Sequence[tf.Tensor] = ()
  log_posterior: Sequence[tf.Tensor] = ()
  kl: Optional[Sequence[tf.Tensor]] = None
  extra: Dict[str, tf.Tensor] = dataclasses.field(default_factory=dict)

  @property
  def log_weights(self) -> tf.Tensor:
    """log p(x, z) − log q(z | x), [k, B]."""
    return self.log_likelihood + tf.add_n(list(self.log_prior)) - tf.add_n(
        list(self.log_posterior))


class LatentVariableModel(GenerativeModel):
  """A model p(x) = ∫ p(x | z) p(z) dz fitted with an amortized posterior q(z | x).

  Subclasses supply `latent_terms` and the distributions (`encode`, `decode`, `prior`); this core
  computes, from k = num_importance_samples draws with log wᵢ = log p(x, z⁽ⁱ⁾) − log q(z⁽ⁱ⁾ | x):

    distortion = −(1/k) Σᵢ log p(x | z⁽ⁱ⁾)
    rate       = Σ_l KL_l  (closed form where given, else (1/k) Σᵢ log q − log p)
    ELBO       = −distortion − rate
    IWAE_k     = log (1/k) Σᵢ wᵢ            (ELBO ≤ IWAE_k ≤ log p(x); Burda et al. 2016)

  and the training objective: "elbo" minimises distortion + β Σ_l max-free-bits(KL_l), "iwae"
  minimises −log (1/k) Σᵢ p(x | z⁽ⁱ⁾) (p(z⁽ⁱ⁾) / q(z⁽ⁱ⁾ | x))^β. β is the KL weight: it rises
  linearly from 0 to 1 over `kl_warmup_epochs` (Sønderby et al. 2016), 1 without warm-up.
  With `free_bits` > 0 a layer whose batch-mean KL is under the allowance pays the allowance, a
  constant (Kingma et al. 2016). The test log-likelihood is IWAE_K with K draws made
  `importance_chunk_size` at a time.

  Args:
    image_shape: (H, W, C).
    objective: "elbo" or "iwae".
    num_importance_samples: k of the training objective and of `bounds`.
    kl_warmup_epochs: epochs over which β rises from 0 to 1 (0: always 1).
    free_bits: nats of KL per layer that cost nothing more (0: none).
  """

  # Whether `bounds` reports each layer's KL as kl_0 (top) … (hierarchical models).
  reports_layer_rates = False
  # The tightest bound on log p(x) that `bounds` gives; the ELBO where there is no IWAE bound.
  selection_metrics = ("iwae_bound", "elbo")

  def __init__(self, image_shape, objective: str = "elbo", num_importance_samples: int = 1,
               kl_warmup_epochs: float = 0.0, free_bits: float = 0.0, **kwargs):
    super().__init__(image_shape, **kwargs)
    if objective not in OBJECTIVES:
      raise errors.ConfigError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    if num_importance_samples < 1:
      raise errors.ConfigError("num_importance_samples must be >= 1")
    if kl_warmup_epochs < 0 or free_bits < 0:
      raise errors.ConfigError("kl_warmup_epochs and free_bits must be >= 0, got "
                               f"{kl_warmup_epochs} and {free_bits}")
    self.objective = objective
    self.num_importance_samples = int(num_importance_samples)
    self.kl_warmup_epochs = float(kl_warmup_epochs)
    self.free_bits = float(free_bits)
    self.kl_weight = self.add_weight(
        shape=(), name="kl_weight", trainable=False,
        initializer="zeros" if self.kl_warmup_epochs else "ones")

  def update_schedules(self, epoch):
    if self.kl_warmup_epochs:
      self.kl_weight.assign(schedules.linear_warmup(epoch, self.kl_warmup_epochs))

  # --- What a latent-variable model supplies ----------------------------------------------------

  @abc.abstractmethod
  def latent_terms(self, batch, num_samples, seed: tf.Tensor,
                   training: bool = False) -> LatentTerms:
    """The log-density terms of num_samples draws z ~ q(z | x) (an int or int32 scalar).

    With training=False the draws must be exact (importance weights are formed from them).
    """

  @abc.abstractmethod
  def encode(self, x: tf.Tensor, training: bool = False) -> tfd.Distribution:
    """q(z | x) for images x [B, H, W, C]; batch shape [B], event shape [latent size]."""

  @abc.abstractmethod
  def decode(self, z: tf.Tensor, training: bool = False) -> tfd.Distribution:
    """p(x | z) for latents z [..., latent size]; event shape [H, W, C]."""

  @abc.abstractmethod
  def prior(self) -> tfd.Distribution:
    """p(z) of the top latent layer; event shape [latent size]."""

  @abc.abstractmethod
  def posterior_means(self, x: tf.Tensor, seed: tf.Tensor) -> List[tf.Tensor]:
    """E_q[z_l] for every stochastic layer l, each [B, size_l] (for active units)."""

  # --- Bounds and objective ---------------------------------------------------------------------

  def _bound_terms(self, terms: LatentTerms, k) -> Tuple[Metrics, List[tf.Tensor]]:
    """The per-example bounds of k draws, and each layer's rate [B]."""
    distortion = -tf.reduce_mean(terms.log_likelihood, axis=0)
    if terms.kl is not None:
      layer_rates = [tf.reduce_mean(kl, axis=0) if kl.shape.rank == 2 else kl for kl in terms.kl]
    else:
      layer_rates = [tf.reduce_mean(lq - lp, axis=0)
                     for lq, lp in zip(terms.log_posterior, terms.log_prior)]
    rate = tf.add_n(layer_rates)
    out = {"elbo": -distortion - rate, "rate": rate, "distortion": distortion}
    if terms.log_prior:
      out["iwae_bound"] = (tf.reduce_logsumexp(terms.log_weights, axis=0)
                           - tf.math.log(tf.cast(k, tf.float32)))
    if self.reports_layer_rates:
      out.update({f"kl_{i}": r for i, r in enumerate(layer_rates)})
    out.update(terms.extra)
    return out, layer_rates

  def loss(self, batch, seed, training=False):
    k = self.num_importance_samples
    terms = self.latent_terms(batch, k, seed, training=training)
    metrics, layer_rates = self._bound_terms(terms, k)
    beta = tf.convert_to_tensor(self.kl_weight)
    if self.objective == "iwae":
      log_w = terms.log_likelihood + beta * (tf.add_n(list(terms.log_prior))
                                             - tf.add_n(list(terms.log_posterior)))
      loss = -(tf.reduce_logsumexp(log_w, axis=0) - math.log(k))
    else:
      penalties = layer_rates
      if self.free_bits > 0:
        penalties = [tf.where(tf.reduce_mean(r) < self.free_bits,
                              tf.fill(tf.shape(r), self.free_bits), r) for r in layer_rates]
      loss = metrics["distortion"] + beta * tf.add_n(penalties)
    metrics["kl_weight"] = tf.fill(tf.shape(loss), beta)
    return loss, metrics

  def bounds(self, batch, seed):
    """ELBO, IWAE bound (training k), rate and distortion per example [B], in nats."""
    k = self.num_importance_samples
    return self._bound_terms(self.latent_terms(batch, k, seed, training=False), k)[0]

  def log_weights(self, batch, num_samples, seed) -> tf.Tensor:
    """log p(x, z) − log q(z | x) for num_samples exact draws z ~ q(z | x), [num_samples, B]."""
    return self.latent_terms(batch, num_samples, seed, training=False).log_weights

  def log_prob(self, batch, seed, num_importance_samples=None) -> tf.Tensor:
    """IWAE_K estimate of log p(x), float32 [B] in nats, drawn importance_chunk_size at a time.

    K defaults to the model's `num_importance_samples` (its training k).
    """
    self.images(batch)
    # Not `or`: under tf.function a tensor k would turn it into a conditional on an integer.
    k = self.num_importance_samples if num_importance_samples is None else num_importance_samples
    return chunked_logmeanexp(lambda n, s: self.log_weights(batch, n, s), k,
                              self.importance_chunk_size, seed)

  def log_prob_samples(self, num_importance_samples):
    return num_importance_samples

  # --- Codes ------------------------------------------------------------------------------------

  def codes(self, x: tf.Tensor) -> tf.Tensor:
    """The deterministic code of each image, E_q[z_1], [B, latent size] (features for probes)."""
    return self.encode(self.check_images(x)).mean()

  def prob_active(self, x: tf.Tensor) -> tf.Tensor:
    """Per image and latent dimension, the probability the code uses it, [B, latent size].

    1 everywhere for dense codes; sparse codes (VSC) return their posterior's γ.
    """
    return tf.ones_like(self.codes(x))

  def reconstruct(self, x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Pixel means of p(x | z) at one draw z ~ q(z | x), [B, H, W, C]."""
    z = self.encode(self.check_images(x)).sample(seed=seed)
    return self.decode(z).mean()

  def code_size(self) -> int:
    """Size of the code `encode` gives and `decode` takes."""
    return int(self.encode(tf.zeros((1,) + self.image_shape)).event_shape[-1])

  # --- Declared capabilities --------------------------------------------------------------------

  def evaluation_terms(self, batch, seed, num_importance_samples):
    terms, _ = super().evaluation_terms(batch, seed, num_importance_samples)
    means = self.posterior_means(self.images(batch), seeding.fold_in(seed, 2))
    return terms, {f"posterior_means_{l}": m for l, m in enumerate(means)}

  def finish_evaluation(self, results, collected, context):
    """Adds active units per layer and, on labelled data, the latent-code probe."""
    results = dict(results)
    layers = sorted((k for k in collected if k.startswith("posterior_means_")),
                    key=lambda k: int(k.rsplit("_", 1)[1]))
    variances = [np.var(collected[k], axis=0) for k in layers]
    results["active_units"] = [int(np.sum(v > ACTIVE_UNIT_THRESHOLD)) for v in variances]
    results["latent_units"] = [int(v.size) for v in variances]
    if context.classify_codes and context.num_classes:
      splits = context.load_splits(("train", "validation", context.split))
      probe = probes.classify_codes(self, splits["train"], splits["validation"],
                                    splits[context.split], context.num_classes)
      results.update(probe.as_dict())
    return results

  def training_pictures(self, images, seed):
    pictures = super().training_pictures(images, seed)
    originals = images[:32]
    reconstructions = self.reconstruct(originals, seed=seeding.as_seed([seed, 2])).numpy()
    pictures["reconstructions"] = viz.reconstruction_pairs(originals, reconstructions)
    return pictures

  def sample_modes(self):
    modes = super().sample_modes()
    modes["traversal"] = caps.SampleMode(
        self._traversal_picture, needs_test_data=True, uses_label=True,
        help="sweep the most used latent dimensions of --num_images test images")
    return modes

  def _traversal_picture(self, request):
    steps = 9
    images = caps.test_images(request, request.num_images, request.label)
    return viz.image_grid(traversal_images(self, images, num_steps=steps), steps)

  def signatures(self):
    size = self.code_size()
    code = (tf.float32, (size,))

    def log_prob(images, num_importance_samples, seed):
      return self.scores(self.log_prob({"image": images}, seed, num_importance_samples))

    def encode(images, seed):
      q = self.encode(images)
      return {"loc": q.mean(), "scale": q.stddev(), "latents": q.sample(seed=seed)}

    def decode(latents, seed):
      del seed
      p = self.decode(latents)
      return {"images": tf.cast(p.mode(), tf.float32), "probabilities": p.mean()}

    return {
        "sample": self.sample_signature(),
        "log_prob": caps.Signature(
            log_prob, (caps.Input(caps.IMAGES), caps.Input(caps.NUM_IMPORTANCE_SAMPLES)), SCORES,
            draws_per_item=lambda num_importance_samples: tf.minimum(
                num_importance_samples, self.importance_chunk_size)),
        "encode": caps.Signature(encode, (caps.Input(caps.IMAGES),),
                                 {"loc": code, "scale": code, "latents": code}),
        "decode": caps.Signature(decode, (caps.Input(caps.LATENTS, size),),
                                 {"images": (caps.PIXELS, caps.IMAGE),
                                  "probabilities": (tf.float32, caps.IMAGE)}),
    }

  def call(self, x, training=False):
    return self.encode(x, training=training).mean()


def diagonal_normal(params: tf.Tensor, min_scale: float) -> tfd.Distribution:
  """Splits [..., 2d] into a location and a softplus scale; event shape [d], float32."""
  loc, raw_scale = tf.split(tf.cast(params, tf.float32), 2, axis=-1)
  return tfd.Independent(tfd.Normal(loc, tf.nn.softplus(raw_scale) + min_scale), 1)


def standard_normal(size: int) -> tfd.Distribution:
  """N(0, I) over [size]."""
  return tfd.Independent(tfd.Normal(tf.zeros([size]), tf.ones([size])), 1)


def traversal_codes(codes, usage, num_dimensions: int = 8, num_steps: int = 9,
                    span: float = 3.0) -> tf.Tensor:
  """Codes of latent traversals: per image, its most used dimensions swept over [−span, span].

  Dimensions are ranked by how surely the image uses them (γ for sparse codes), then by the
  code's magnitude; each of the top `num_dimensions` is set in turn to `num_steps` values while
  the rest of the code stays as it is.

  Args:
    codes: E_q[z] per image, [N, J].
    usage: probability that each image uses each dimension, [N, J].
    num_dimensions: rows per image.
    num_steps: columns.
    span: the sweep runs from −span to span (prior standard deviations).

  Returns:
    [N, num_dimensions, num_steps, J].
  """
  latent_size = int(codes.shape[-1])
  num_dimensions = min(num_dimensions, latent_size)
  # Usage first; the magnitude only orders dimensions used equally surely (dense codes).
  score = usage + 1e-3 * tf.tanh(tf.abs(codes))
  top = tf.math.top_k(score, k=num_dimensions).indices
  values = tf.linspace(-span, span, num_steps)
  base = tf.tile(codes[:, None, None, :], [1, num_dimensions, num_steps, 1])
  sweep = tf.one_hot(top, latent_size)[:, :, None, :]
  return base * (1.0 - sweep) + sweep * values[None, None, :, None]


def traversal_images(model: LatentVariableModel, images, num_dimensions: int = 8,
                     num_steps: int = 9, span: float = 3.0) -> np.ndarray:
  """Decoded latent traversals of images [N, H, W, C] (see traversal_codes).

  Rows sweep the dimensions each image uses (γ > 0.5; all of them for dense codes), at most
  `num_dimensions` and at least one per image.

  Returns:
    Pixel means [rows·num_steps, H, W, C], row-major (a grid of num_steps columns).
  """
  codes, usage = model.codes(images), model.prob_active(images)
  traversed = traversal_codes(codes, usage, num_dimensions, num_steps, span)
  num_used = np.clip(np.sum(usage.numpy() > 0.5, axis=1), 1, traversed.shape[1])
  rows = tf.concat([traversed[i, :n] for i, n in enumerate(num_used)], 0)
  return model.decode(tf.reshape(rows, [-1, codes.shape[-1]])).mean().numpy()
