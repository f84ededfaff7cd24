r"""Plain PyTorch training loops of the one-layer VAE, MADE and NADE: the yardstick of
`bench/loop_speed.py --parts=torch`.

Each loop is written the usual way in PyTorch: an `nn.Module` of `nn.Linear` layers run eagerly
(no `torch.compile`), one `torch.optim.Adam` step per batch from a Python `for` loop, batches
gathered from the training set held as one tensor along a fresh permutation every epoch. Sizes,
likelihoods, optimizer and hyperparameters are read from the tfgen config the run compares
with (configs/iwae.py, configs/made.py, configs/nade.py), so the two sides train the same model
on the same data:

  vae   784-200-200-(50 loc, 50 softplus scale + 1e-4) tanh encoder, 50-200-200-784 tanh
        decoder to Bernoulli logits; one reparameterised draw per image (k=1), the loss
        −log p(x | z) (binary cross-entropy with logits, summed over the pixels) plus the KL to
        N(0, I) in closed form, averaged over the batch: tfgen's ELBO with `analytic_kl`.
  made  one hidden layer of 8,000 ReLU units, `MaskedLinear` layers (an `nn.Linear` times a
        mask buffer registered with `register_buffer`). The connectivities are tfgen's: the
        config's ordering, and `num_masks` sets of hidden degrees drawn as tfgen draws them
        (numpy RandomState(seed + 1), each degree in [1, D − 1]). With several masks each step
        draws one set uniformly and writes its masks into the buffers (computed from the
        degrees, as tfgen computes them); with `masks=1` the buffers are set once.
  nade  500 sigmoid hidden units with tied input weights W [D, H], c, V [D, H], b, Bernoulli
        conditionals. Two forms: "recurrence" is the O(DH) recurrence as pytorch-generative
        writes it, a Python loop over the 784 pixels carrying a_{d+1} = a_d + W_d x_d, with
        autograd through the loop; "prefix sum" computes every a_d at once with `torch.cumsum`
        over x_d W_d ([B, D, H]), also O(DH) work.

The differences from tfgen, none of which changes the work of a step: Keras' Adam adds ε to
√v, PyTorch's to the bias-corrected √(v / (1 − β₂ᵗ)) (the same update once 1 − β₂ᵗ ≈ 1, after
a few thousand steps); the learning rate stays at the config's initial one (as in the tfgen loop
this is timed against, whose schedule moves only between epochs); the random draws (order of
the examples, the VAE's noise, MADE's mask per step) come from PyTorch's generator, not
tfgen's; the initial weights are Glorot-uniform with zero biases as Keras', drawn by PyTorch
(NADE's V as a [D, H] matrix, where tfgen's [D, H, 1] gives Keras' Glorot other fans).
PyTorch runs eagerly on 2 threads (`torch.set_num_threads(2)`, OpenMP); tfgen compiles with XLA.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

torch.set_num_threads(2)


class Batches:
  """Shuffled batches of a training set held in memory: a new permutation every epoch, the last
  incomplete batch dropped (as tfgen's loop does)."""

  def __init__(self, images: np.ndarray, batch_size: int, seed: int = 0):
    self.images = torch.from_numpy(np.ascontiguousarray(
        images.reshape(len(images), -1), dtype=np.float32))
    self.batch_size = batch_size
    self.generator = torch.Generator().manual_seed(seed)
    self.order, self.position = None, len(self.images)

  def __iter__(self):
    return self

  def __next__(self) -> torch.Tensor:
    if self.position + self.batch_size > len(self.images):
      self.order = torch.randperm(len(self.images), generator=self.generator)
      self.position = 0
    indices = self.order[self.position:self.position + self.batch_size]
    self.position += self.batch_size
    return self.images[indices]


def _keras_init(module: nn.Module) -> nn.Module:
  """Glorot-uniform weights and zero biases in every nn.Linear, as Keras' Dense starts."""
  for layer in module.modules():
    if isinstance(layer, nn.Linear):
      nn.init.xavier_uniform_(layer.weight)
      if layer.bias is not None:
        nn.init.zeros_(layer.bias)
  return module


def _mlp(sizes, activation):
  layers = []
  for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
    layers += [nn.Linear(fan_in, fan_out), activation()]
  return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


def _bernoulli_nll(logits, x):
  """−log p(x) of Bernoulli pixels with these logits, summed over the pixels, [B]."""
  return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


class VAE(nn.Module):
  """The one-layer VAE: Gaussian q(z | x), N(0, I) prior, Bernoulli p(x | z), tanh MLPs."""

  def __init__(self, data_size=784, hidden_sizes=(200, 200), latent_size=50, min_scale=1e-4,
               num_samples=1):
    super().__init__()
    self.min_scale, self.num_samples = min_scale, num_samples
    self.encoder = _mlp([data_size, *hidden_sizes, 2 * latent_size], nn.Tanh)
    self.decoder = _mlp([latent_size, *reversed(hidden_sizes), data_size], nn.Tanh)
    _keras_init(self)

  def loss(self, x):
    """The negative ELBO averaged over the batch: the k draws' distortion averaged, plus the KL
    in closed form."""
    loc, raw_scale = self.encoder(x).chunk(2, dim=-1)
    scale = F.softplus(raw_scale) + self.min_scale
    if self.num_samples == 1:  # Reparameterised draws.
      z = loc + scale * torch.randn_like(loc)
      distortion = _bernoulli_nll(self.decoder(z), x)
    else:
      z = loc + scale * torch.randn((self.num_samples, *loc.shape))
      logits = self.decoder(z)
      distortion = _bernoulli_nll(logits, x.expand(logits.shape)).mean(0)
    kl = (0.5 * (loc.square() + scale.square() - 1.0) - scale.log()).sum(-1)
    return (distortion + kl).mean()


class MaskedLinear(nn.Linear):
  """nn.Linear whose weight is multiplied by a mask buffer [out_features, in_features]."""

  def __init__(self, in_features, out_features):
    super().__init__(in_features, out_features)
    self.register_buffer("mask", torch.ones(out_features, in_features))

  def forward(self, x):
    return F.linear(x, self.weight * self.mask, self.bias)


def made_degrees(order, hidden_sizes, num_masks, seed):
  """Per layer, ([num_masks, fan_in] degrees, [num_masks, fan_out] thresholds) of tfgen's MADE
  with one ordering for all masks: unit j keeps the weight from unit i when threshold_j ≥
  degree_i. The hidden degrees are drawn as tfgen/models/made.py draws them."""
  d = len(order)
  degrees_in = np.empty(d, np.int64)
  degrees_in[order] = np.arange(1, d + 1)
  rng = np.random.RandomState(seed + 1)
  per_mask = []
  for _ in range(num_masks):
    degrees, hidden = degrees_in, []
    for size in hidden_sizes:
      degrees = rng.randint(min(int(degrees.min()), d - 1), d, size=size)
      hidden.append(degrees)
    fan_in = [degrees_in] + hidden
    fan_out = hidden + [degrees_in - 1]  # Output d sees units of degree < m(x_d).
    per_mask.append(list(zip(fan_in, fan_out)))
  return [tuple(torch.from_numpy(np.stack([m[layer][end] for m in per_mask]))
                for end in (0, 1)) for layer in range(len(hidden_sizes) + 1)]


class MADE(nn.Module):
  """MADE with `num_masks` connectivities, one drawn per step (`next_mask`)."""

  def __init__(self, data_size=784, hidden_sizes=(8000,), num_masks=1, order=None, seed=0,
               generator=None):
    super().__init__()
    order = np.arange(data_size) if order is None else np.asarray(order)
    sizes = [data_size, *hidden_sizes, data_size]
    self.layers = nn.ModuleList(_keras_init(MaskedLinear(a, b))
                                for a, b in zip(sizes[:-1], sizes[1:]))
    self.num_masks = num_masks
    self.generator = generator or torch.Generator().manual_seed(seed)
    for layer, (degrees, thresholds) in enumerate(made_degrees(order, hidden_sizes, num_masks,
                                                               seed)):
      self.register_buffer(f"degrees_{layer}", degrees)
      self.register_buffer(f"thresholds_{layer}", thresholds)
    self.set_mask(0)

  @torch.no_grad()
  def set_mask(self, index: int):
    """Writes connectivity `index`'s masks into the layers' mask buffers."""
    for i, layer in enumerate(self.layers):
      degrees = getattr(self, f"degrees_{i}")[index]
      thresholds = getattr(self, f"thresholds_{i}")[index]
      layer.mask.copy_(thresholds[:, None] >= degrees[None, :])

  def next_mask(self):
    """Draws the step's connectivity among the `num_masks` (nothing to do with one mask)."""
    if self.num_masks > 1:
      self.set_mask(int(torch.randint(self.num_masks, (), generator=self.generator)))

  def forward(self, x):
    for layer in self.layers[:-1]:
      x = F.relu(layer(x))
    return self.layers[-1](x)

  def loss(self, x):
    self.next_mask()
    return _bernoulli_nll(self(x), x).mean()


class NADE(nn.Module):
  """NADE with tied input weights; `form` "recurrence" (a Python loop over the pixels, as
  pytorch-generative writes it) or "prefix sum" (torch.cumsum over all pixels at once)."""

  FORMS = ("recurrence", "prefix sum")

  def __init__(self, data_size=784, hidden_size=500, order=None, form="recurrence"):
    super().__init__()
    if form not in self.FORMS:
      raise ValueError(f"unknown NADE form {form!r}; known: {self.FORMS}")
    self.form = form
    self.register_buffer("order", torch.from_numpy(
        np.arange(data_size) if order is None else np.asarray(order)))
    self.input_weight = nn.Parameter(nn.init.xavier_uniform_(
        torch.empty(data_size, hidden_size)))  # W, rows in the ordering
    self.hidden_bias = nn.Parameter(torch.zeros(hidden_size))  # c
    self.output_weight = nn.Parameter(nn.init.xavier_uniform_(
        torch.empty(data_size, hidden_size)))  # V
    self.output_bias = nn.Parameter(torch.zeros(data_size))  # b

  def forward(self, x):
    """Logits of every conditional p(x_{o(d)} | x_{o(<d)}), in the ordering, [B, D]."""
    if self.form == "prefix sum":
      contributions = x[:, :, None] * self.input_weight  # W_d x_d, [B, D, H]
      before = F.pad(torch.cumsum(contributions[:, :-1], dim=1), (0, 0, 1, 0))
      hidden = torch.sigmoid(self.hidden_bias + before)
      return (hidden * self.output_weight).sum(-1) + self.output_bias
    a = self.hidden_bias.expand(x.shape[0], -1)
    logits = []
    for d in range(x.shape[1]):
      hidden = torch.sigmoid(a)
      logits.append(hidden @ self.output_weight[d] + self.output_bias[d])
      a = a + x[:, d:d + 1] * self.input_weight[d]
    return torch.stack(logits, dim=1)

  def loss(self, x):
    x = x[:, self.order]
    return _bernoulli_nll(self(x), x).mean()


def _ordering(model_config, size):
  if model_config.get("ordering", "natural") == "natural":
    return np.arange(size)
  seed = model_config.get("ordering_seed", model_config.get("seed", 0))
  return np.random.RandomState(seed).permutation(size)


def build_model(config, data_size: int, form: str = "recurrence") -> nn.Module:
  """The PyTorch module of a tfgen config's model (vae with one stochastic layer and the ELBO;
  made without reordered masks or a direct connection; nade); `form` is NADE's.

  Raises:
    ValueError: a model or setting the reference does not have.
  """
  model = config.model
  if model.name == "vae":
    if (len(model.latent_sizes) != 1 or model.get("objective", "elbo") != "elbo"
        or model.get("batch_norm", False) or model.get("decoder", "mlp") != "mlp"
        or model.get("activation", "tanh") != "tanh" or not model.get("analytic_kl", True)):
      raise ValueError("the PyTorch VAE is the one-layer ELBO model with tanh MLPs")
    return VAE(data_size, tuple(model.hidden_sizes[0]), model.latent_sizes[0],
               model.get("min_scale", 1e-4), model.get("num_importance_samples", 1))
  if model.name == "made":
    if model.get("reorder_masks", False) or model.get("direct_connection", False):
      raise ValueError("the PyTorch MADE has one ordering and no direct connection")
    return MADE(data_size, tuple(model.hidden_sizes), model.get("num_masks", 1),
                _ordering(model, data_size), model.get("seed", 0))
  if model.name == "nade":
    return NADE(data_size, model.hidden_size, _ordering(model, data_size), form)
  raise ValueError(f"no PyTorch reference of model {model.name!r}")


def runner(config, images: np.ndarray, batch_size: int, steps_per_call: int,
           form: str = "recurrence", seed: int = 0):
  """(run_steps(n), steps_per_call) training the PyTorch version of `config`'s model on
  `images` ([N, ...] {0, 1} float) at `batch_size`, with the config's Adam."""
  if config.train.optimizer != "adam":
    raise ValueError(f"the PyTorch loops use Adam, the config has {config.train.optimizer!r}")
  torch.manual_seed(seed)
  data_size = int(np.prod(images.shape[1:]))
  model = build_model(config, data_size, form)
  model.train()
  train = config.train
  optimizer = torch.optim.Adam(model.parameters(), lr=train.learning_rate,
                               betas=(train.adam_beta_1, train.adam_beta_2),
                               eps=train.adam_epsilon)
  batches = Batches(images, batch_size, seed)

  def run_steps(n):
    for _ in range(n):
      loss = model.loss(next(batches))
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()
    return loss

  return run_steps, steps_per_call
