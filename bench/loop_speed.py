r"""Benchmark: tfgen's training loop side by side with a plain reference loop, in one process.

Each figure is a ratio against a reference measured in the same run, because the machines are
noisy. Run it with nothing else on the machine and record what it prints, with the command, in
docs/results.md.

  python bench/loop_speed.py --manual_dir=../shared/data/binarized_mnist

Parts (`--parts`, default all):
  vae      the one-layer VAE (configs/iwae.py) at batch 20 and 100: a plain loop written the
           usual way (one `tf.function` train step per batch from a tf.data iterator, the same
           model, optimizer and data) against tfgen's loop (`steps_per_execution` steps per
           call), fed by the tf.data pipeline or by in-graph batches (tfgen/data/in_graph.py,
           the default), without and with XLA, and with bfloat16 compute. Prints
           `ratio: X.XX` = tfgen examples/s / plain examples/s.
  ar       NADE and MADE (their configs, batch 100): tfgen's loop as configured now (XLA,
           in-graph batches; NADE's sequential recurrence with its hand-written gradient;
           MADE's masks computed from degrees) against the step of when issue 16 was filed
           ("today's": no XLA, tf.data; NADE's blocked prefix sum; MADE's stored masks).
  eval     the IWAE bound at k=5000 on the one-layer VAE: importance samples per second, without
           and with XLA, against the machine's float32 matrix-multiply rate measured here (the
           fraction of that rate the evaluation reaches, counting the decoder's and the
           importance weights' multiply-adds).
  models   XLA for the other registered models (their paper configs, their batch sizes):
           tfgen's loop with in-graph batches without and with `train.jit_compile`, which
           compiles the whole multi-step call; also the first call's seconds (tracing and
           compilation). Prints `ratio: X.XX` = with XLA / without. The basis for which configs
           turn XLA on by default (docs/speed.md).
  fit      tfgen's loop against Keras' `model.fit` (tfgen/models/fitting.py: the same step) on
           the one-layer VAE at batch 100 and NADE at batch 100: the loop as configured (XLA,
           in-graph batches), the loop fed by tf.data, and `fit` fed by the same tf.data
           pipeline with `jit_compile=True, steps_per_execution=50` (each timed call one `fit`
           of --fit_steps steps). Prints `ratio: X.XX` = examples/s / the loop's. The basis of
           the decision in docs/architecture.md (one training path or two).
  startup  seconds from launching `tfgen-train` (data already prepared) to the end of its first
           compiled train call, from the run's own log; and how much of a 3-epoch run's wall
           time is spent outside training at the steady rate. Then where the start-up's seconds
           go: a fresh process takes tfgen-train's steps one at a time and prints each one's
           wall and CPU seconds (imports, data, model, tracing, XLA compilation and first call).
  torch    a same-run PyTorch yardstick (in the default parts only when `torch` is importable;
           never a dependency of tfgen or its tests): plain PyTorch loops (bench/torch_reference.py:
           nn.Linear modules run eagerly, one Adam step per batch, the same sizes, likelihoods,
           optimizer settings and binarized MNIST training images) against tfgen's loop as
           configured (the config's XLA, in-graph batches), for the VAE at batch 20 and 100,
           MADE with `masks=1` and with 32 masks, and NADE (PyTorch's recurrence as a Python loop
           over the pixels, and as a prefix sum), batch 100. Prints `ratio: X.XX` = tfgen
           examples/s / PyTorch examples/s.

Rounds alternate between the contenders (`--rounds`; the order reversed every other round), and
each figure is the median: of the rates, and of the ratios taken within each round.
"""

import importlib.util
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

_MANUAL_DIR = flags.DEFINE_string("manual_dir", "", "Folder of the binarized MNIST .amat files.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "TFDS data_dir (default: TFDS's).")
_HAS_TORCH = importlib.util.find_spec("torch") is not None
_PARTS = flags.DEFINE_list("parts", ["vae", "ar", "eval", "startup"] + ["torch"] * _HAS_TORCH,
                           "What to measure (also: models, fit; torch where it is importable).")
_SECONDS = flags.DEFINE_float("seconds", 4.0, "Wall seconds per timed measurement.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternating rounds; each figure is the median.")
_STARTUP_EPOCHS = flags.DEFINE_integer("startup_epochs", 3, "Epochs of the start-up run.")
_EVAL_IMAGES = flags.DEFINE_integer("eval_images", 100, "Test images of the k=5000 timing.")
_SHARED_DATA = flags.DEFINE_string(
    "shared_data", "", "Folder of the other data sets' manual files (one folder per data set, "
    "as ../shared/data); default: the folder above --manual_dir.")
_MODEL_SPECS = flags.DEFINE_list(
    "models", ["vsc", "flow:arch=maf", "matnet:fc", "ssvae", "conv_vae"],
    "Config specs of the `models` part. The other convolutional configs are left out by "
    "default: XLA slowed conv_vae 7x here, and the convolutional matnet's first XLA call had "
    "not finished after 8 minutes.")
_FIT_STEPS = flags.DEFINE_integer("fit_steps", 400, "Train steps per `fit` call (part fit).")
_MODEL_STEPS = flags.DEFINE_integer("model_steps", 4, "Train steps per call in the `models` part.")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config(spec):
  name, _, variant = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location(f"bench_{name}",
                                                       ROOT / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(variant)
  config.data.manual_dir, config.data.data_dir = _MANUAL_DIR.value, _DATA_DIR.value
  if config.data.name != "binarized_mnist":
    shared = _SHARED_DATA.value or os.path.dirname(os.path.abspath(_MANUAL_DIR.value))
    config.data.manual_dir = os.path.join(shared, config.data.name)
  return config


def _timed(run_steps, steps_per_call, batch_size):
  """Examples per second of `run_steps(n)` (after one warm-up call), over about --seconds."""
  run_steps(steps_per_call)
  calls, start = 0, time.perf_counter()
  while time.perf_counter() - start < _SECONDS.value:
    run_steps(steps_per_call)
    calls += 1
  return calls * steps_per_call * batch_size / (time.perf_counter() - start)


def _median_rates(contenders, rounds, reference):
  """Medians of contenders {name: thunk returning examples/s} over alternated rounds.

  Returns ({name: median examples/s}, {name: median over rounds of its rate / the reference's
  rate in the same round}). The machine's speed drifts by up to 2x over minutes (a shared VM),
  so a ratio is taken within a round, and the order is reversed every other round so that no
  contender always runs first.
  """
  rates = {name: [] for name in contenders}
  ratios = {name: [] for name in contenders}
  for round_index in range(rounds):
    names = list(contenders)[::-1 if round_index % 2 else 1]
    this_round = {name: contenders[name]() for name in names}
    for name, rate in this_round.items():
      rates[name].append(rate)
      ratios[name].append(rate / this_round[reference])
  return ({name: statistics.median(v) for name, v in rates.items()},
          {name: statistics.median(v) for name, v in ratios.items()})


def _tfgen_runner(spec, batch_size, jit_compile=False, precision="float32", in_graph=True,
                  model_patch=None, **model_fields):
  """(run_steps(n), steps per call) for tfgen's Trainer on config `spec` (with `model_fields`
  set in its config.model), fed as `tfgen-train` feeds it: in-graph batches (the default) or,
  with `in_graph=False`, the tf.data pipeline. `model_patch(model)` alters the built model."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfgen import data
  from tfgen import models
  from tfgen import optimizers
  from tfgen import train

  config = _config(spec)
  config.model.update(model_fields)
  loaded = data.load(config.data, batch_size, splits=("train",))
  with train.compute_precision(precision):
    model = models.build(config.model, loaded.info)
    model.build_for_images()
    if model_patch:
      model_patch(model)
    optimizer = optimizers.build(config.train, precision)
  trainer = train.Trainer(model, optimizer, tf.distribute.get_strategy(), batch_size, 0,
                          loaded.steps_per_epoch, jit_compile=jit_compile)
  config.data.in_graph = in_graph
  batches = train.train_batches_in_graph(loaded, config)
  if batches is None:
    iterator = iter(loaded.train.repeat())
    return (lambda n: trainer.train_steps(iterator, n)), config.train.steps_per_execution
  position = {"epoch": 0, "step": 0}
  batches.start_epoch(0)

  def run_steps(n):
    if position["step"] + n > batches.steps_per_epoch:  # As the loop does at an epoch's end.
      position["epoch"] += 1
      position["step"] = 0
      batches.start_epoch(position["epoch"])
    position["step"] += n
    return trainer.train_steps(batches, n)

  return run_steps, config.train.steps_per_execution


def _plain_runner(spec, batch_size):
  """A train loop written the usual way: one tf.function step per batch, a Python for loop."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfgen import data
  from tfgen import models
  from tfgen import optimizers
  from tfgen import seeding

  config = _config(spec)
  loaded = data.load(config.data, batch_size, splits=("train",))
  model = models.build(config.model, loaded.info)
  model.build_for_images()
  optimizer = optimizers.build(config.train)
  base_seed = seeding.as_seed(0)

  @tf.function
  def step(batch, step_number):
    with tf.GradientTape() as tape:
      per_example_loss, _ = model.loss(batch, seeding.fold_in(base_seed, step_number),
                                       training=True)
      loss = tf.reduce_mean(per_example_loss)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss

  iterator = iter(loaded.train.repeat())
  counter = [0]

  def run_steps(n):
    for _ in range(n):
      step(next(iterator), tf.constant(counter[0], tf.int64))
      counter[0] += 1

  return run_steps, 50


def _stored_masks(model):
  """MADE as it was when issue 16 was filed: every connectivity's masks stored as float32
  constants ([num_masks, fan_in, fan_out] per layer) and gathered at each step, where the model
  now computes a mask from its units' degrees (which XLA fuses into the kernel's product)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  masks = [tf.constant(tf.stack([model.mask(layer, m) for m in range(model.num_masks)]))
           for layer in range(len(model.dense))]
  model._masked = lambda layer, index: (  # pylint: disable=protected-access
      model.dense[layer].kernel * tf.gather(masks[layer], index))


def _measure(runner, batch_size):
  run_steps, per_call = runner
  return lambda: _timed(run_steps, per_call, batch_size)


def _vae_part():
  for batch_size in (20, 100):
    contenders = {
        "plain loop": _measure(_plain_runner("iwae", batch_size), batch_size),
        "tfgen, tf.data": _measure(_tfgen_runner("iwae", batch_size, in_graph=False),
                                   batch_size),
        "tfgen + XLA, tf.data": _measure(_tfgen_runner("iwae", batch_size, True,
                                                       in_graph=False), batch_size),
        "tfgen, in-graph": _measure(_tfgen_runner("iwae", batch_size), batch_size),
        "tfgen + XLA, in-graph (the default)": _measure(_tfgen_runner("iwae", batch_size, True),
                                                        batch_size),
        "tfgen + XLA + bfloat16, in-graph": _measure(
            _tfgen_runner("iwae", batch_size, True, "mixed_bfloat16"), batch_size),
    }
    rates, ratios = _median_rates(contenders, _ROUNDS.value, "plain loop")
    for name, rate in rates.items():
      print(f"vae batch {batch_size}, {name}: {rate:,.0f} examples/s; "
            f"ratio: {ratios[name]:.2f}", flush=True)


def _ar_part():
  # NADE's XLA form is its sequential recurrence (a while loop over the pixels); today's step
  # is the blocked prefix sum without XLA.
  for spec, xla_fields in (("nade", {"recurrence": "sequential"}), ("made", {})):
    today_fields = ({"recurrence": "blocked"} if spec == "nade" else
                    {"model_patch": _stored_masks})
    contenders = {"today": _measure(_tfgen_runner(spec, 100, False, in_graph=False,
                                                  **today_fields), 100),
                  "xla": _measure(_tfgen_runner(spec, 100, True, **xla_fields), 100)}
    rates, ratios = _median_rates(contenders, _ROUNDS.value, "today")
    print(f"{spec} batch 100: today's step {rates['today']:,.0f} examples/s, with XLA and "
          f"in-graph batches {rates['xla']:,.0f}; ratio: {ratios['xla']:.2f}", flush=True)


def _models_part():
  for spec in _MODEL_SPECS.value:
    contenders, first_call = {}, {}
    batch_size = _config(spec).train.batch_size
    for jit in (False, True):
      name = "xla" if jit else "plain"
      run_steps, _ = _tfgen_runner(spec, batch_size, jit)
      start = time.perf_counter()
      run_steps(_MODEL_STEPS.value)
      first_call[name] = time.perf_counter() - start
      contenders[name] = _measure((run_steps, _MODEL_STEPS.value), batch_size)
    rates, ratios = _median_rates(contenders, _ROUNDS.value, "plain")
    print(f"{spec} batch {batch_size}: without XLA {rates['plain']:,.1f} examples/s (first call "
          f"{first_call['plain']:.1f} s), with XLA {rates['xla']:,.1f} (first call "
          f"{first_call['xla']:.1f} s); ratio: {ratios['xla']:.2f}", flush=True)


def _fit_runner(spec, batch_size):
  """(run_steps(n), steps per call) for `model.fit` on config `spec`: the config's optimizer,
  the tf.data pipeline, XLA and steps_per_execution as tfgen-train's loop has them."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfgen import data
  from tfgen import models
  from tfgen import optimizers

  config = _config(spec)
  loaded = data.load(config.data, batch_size, splits=("train",))
  model = models.build(config.model, loaded.info)
  model.build_for_images()
  model.compile(optimizer=optimizers.build(config.train), jit_compile=True,
                steps_per_execution=config.train.steps_per_execution)
  dataset = loaded.train.repeat()

  def run_steps(n):
    model.fit(dataset, epochs=1, steps_per_epoch=n, verbose=0)

  del tf
  return run_steps, _FIT_STEPS.value


def _fit_part():
  for spec in ("iwae", "nade"):
    contenders = {
        "tfgen loop (XLA, in-graph batches: the default)": _measure(
            _tfgen_runner(spec, 100, True), 100),
        "tfgen loop (XLA, tf.data)": _measure(_tfgen_runner(spec, 100, True, in_graph=False),
                                              100),
        "model.fit (XLA, tf.data)": _measure(_fit_runner(spec, 100), 100),
    }
    reference = next(iter(contenders))
    rates, ratios = _median_rates(contenders, _ROUNDS.value, reference)
    for name, rate in rates.items():
      print(f"fit {spec} batch 100, {name}: {rate:,.0f} examples/s; ratio: {ratios[name]:.2f}",
            flush=True)


_TRAIN_IMAGES = []


def _train_images():
  """Binarized MNIST's training images as one float32 NumPy array [N, 28, 28, 1], read once by
  tfgen.data.load (every example once, in order)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tfgen import data

  if not _TRAIN_IMAGES:
    loaded = data.load(_config("iwae").data, 10000, splits=("train",), train_for_eval=True)
    _TRAIN_IMAGES.append(np.concatenate([batch["image"].numpy() for batch in loaded.train]))
  return _TRAIN_IMAGES[0]


def _torch_reference():
  """bench/torch_reference.py, imported only here (it imports torch)."""
  module_spec = importlib.util.spec_from_file_location("bench_torch_reference",
                                                       ROOT / "bench" / "torch_reference.py")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def _torch_part():
  if not _HAS_TORCH:
    print("torch: PyTorch is not importable here; `pip install torch` to measure against it",
          flush=True)
    return
  reference = _torch_reference()
  images = _train_images()
  # (label, config spec, batch, {contender name: (PyTorch NADE form, steps per call)}).
  cases = [("vae batch 20", "iwae", 20, {"PyTorch": ("", 50)}),
           ("vae batch 100", "iwae", 100, {"PyTorch": ("", 50)}),
           ("made masks=1 batch 100", "made:masks=1", 100, {"PyTorch": ("", 2)}),
           ("made 32 masks batch 100", "made", 100, {"PyTorch": ("", 2)}),
           ("nade batch 100", "nade", 100, {
               "PyTorch (recurrence, a Python loop over the pixels)": ("recurrence", 1),
               "PyTorch (prefix sum, torch.cumsum)": ("prefix sum", 1)})]
  for label, spec, batch_size, torch_contenders in cases:
    config = _config(spec)
    contenders = {"tfgen": _measure(_tfgen_runner(spec, batch_size, config.train.jit_compile),
                                    batch_size)}
    for name, (form, steps_per_call) in torch_contenders.items():
      contenders[name] = _measure(
          reference.runner(config, images, batch_size, steps_per_call, form or "recurrence"),
          batch_size)
    rates, ratios = _median_rates(contenders, _ROUNDS.value, "tfgen")
    for name in torch_contenders:
      # ratios[name] is the median of PyTorch / tfgen within rounds; its inverse is the median of
      # tfgen / PyTorch (exactly so for an odd number of rounds).
      print(f"torch {label}: tfgen {rates['tfgen']:,.0f} examples/s, {name} {rates[name]:,.0f}; "
            f"ratio: {1 / ratios[name]:.2f}", flush=True)


def _matmul_flops_per_second(tf):
  """float32 multiply-adds ×2 per second of a 1024×1024 matmul chain on this machine."""
  a = tf.random.stateless_normal([1024, 1024], seed=[0, 1])

  @tf.function
  def chain(x):
    for _ in range(8):
      x = tf.matmul(x, a) * 1e-3
    return x

  chain(a).numpy()
  best = 0.0
  for _ in range(3):
    start = time.perf_counter()
    chain(a).numpy()
    best = max(best, 8 * 2 * 1024 ** 3 / (time.perf_counter() - start))
  return best


def _eval_part():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfgen import data
  from tfgen import models
  from tfgen import seeding

  config = _config("iwae")
  k, batch_size = 5000, 20
  loaded = data.load(config.data, 100, batch_size, splits=("test",))
  model = models.build(config.model, loaded.info)
  model.build_for_images()
  model.importance_chunk_size = config.eval.chunk_size
  batches = list(loaded.test.unbatch().batch(batch_size).take(
      max(_EVAL_IMAGES.value // batch_size, 1)))
  # Multiply-adds per importance sample: the decoder's three layers, the encoder's once per
  # image (negligible at k=5000) left out.
  sizes = [config.model.latent_sizes[0]] + list(config.model.hidden_sizes[0]) + [784]
  flops_per_sample = 2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
  machine = _matmul_flops_per_second(tf)
  print(f"matmul (1024², float32): {machine / 1e9:,.1f} GFLOP/s", flush=True)
  for jit in (False, True):
    terms = tf.function(lambda batch, seed: model.log_prob(batch, seed, k),
                        jit_compile=jit or None)
    terms(batches[0], seeding.as_seed(0)).numpy()
    start = time.perf_counter()
    for i, batch in enumerate(batches):
      terms(batch, seeding.as_seed([1, i])).numpy()
    seconds = time.perf_counter() - start
    rate = len(batches) * batch_size * k / seconds
    print(f"eval k={k}{' + XLA' if jit else ''}: {rate:,.0f} importance samples/s = "
          f"{rate * flops_per_sample / 1e9:,.1f} GFLOP/s in the decoder = "
          f"{rate * flops_per_sample / machine:.2f} of the matmul rate", flush=True)


def _startup_part():
  """Launch to first train call, and what a 3-epoch run spends outside steady training."""
  workdir = tempfile.mkdtemp(prefix="tfgen_startup_")
  command = [sys.executable, "-m", "tfgen.apps.train", "--config=configs/iwae.py",
             f"--config.train.num_epochs={_STARTUP_EPOCHS.value}", f"--workdir={workdir}",
             "--alsologtostderr", f"--config.data.manual_dir={_MANUAL_DIR.value}",
             f"--config.data.data_dir={_DATA_DIR.value}"]
  start = time.time()
  process = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
  wall = time.time() - start
  found = re.search(r"first train call finished at ([0-9.]+)", process.stderr)
  if process.returncode or not found:
    print("startup: the run failed or did not log its first step:\n" + process.stderr[-2000:])
    return
  print(f"startup: {float(found.group(1)) - start:.1f} s from launching tfgen-train to the end "
        "of its first compiled train call (imports, data, model, tracing)", flush=True)
  # Each epoch at the steady rate of the later epochs; the rest of the wall time is overhead.
  rates = [float(r.replace(",", "")) for r in
           re.findall(r"epoch \d+/\d+ step \d+: .* ([0-9.]+) examples/s", process.stderr)]
  if len(rates) >= 2:
    steady = statistics.median(rates[1:])
    training = len(rates) * 50000 / steady  # binarized MNIST's 50,000 training images
    print(f"startup: a {len(rates)}-epoch run takes {wall:.1f} s wall; {training:.1f} s of it is "
          f"training at the steady {steady:,.0f} examples/s, {wall - training:.1f} s is outside "
          "(imports, data, tracing, validation, checkpoints, image grids, exit)", flush=True)
  _startup_phases()


# tfgen-train's start-up, step by step (as tfgen/train.py takes the steps), in a fresh process.
_STARTUP_PHASES = r"""
import os, sys, time
start = time.perf_counter(), time.process_time()
last = list(start)

def phase(name):
  now = time.perf_counter(), time.process_time()
  print(f"phase {now[0] - last[0]:.2f} {now[1] - last[1]:.2f} {name}", flush=True)
  last[:] = now

from tfgen.apps import common
common.quiet_tensorflow_start()
common.lean_keras_start()
import tensorflow as tf
import keras
phase("import TensorFlow and Keras")
import tensorflow_probability as tfp
tfp.distributions.Normal  # TFP loads its modules on first use.
phase("import TensorFlow Probability")
from tfgen import config as config_lib, data, models, optimizers, train
phase("import tfgen (tfgen.train, tfgen.models, tfgen.data)")
config = config_lib.load_file("configs/iwae.py")
config.data.manual_dir, config.data.data_dir = sys.argv[1], sys.argv[2]
keras.utils.set_random_seed(config.seed)
loaded = data.load(config.data, config.train.batch_size, config.eval.batch_size, seed=config.seed)
phase("data: TFDS's import, builder and splits")
batches = train.train_batches_in_graph(loaded, config)
phase("data: the training set read into memory")
model = models.build(config.model, loaded.info)
model.build_for_images()
optimizer = optimizers.build(config.train)
optimizer.build(model.trainable_variables)
trainer = train.Trainer(model, optimizer, tf.distribute.get_strategy(), config.train.batch_size,
                        config.seed, loaded.steps_per_epoch, jit_compile=config.train.jit_compile)
batches.start_epoch(0)
phase("model and optimizer built")
trainer._train_steps.get_concrete_function(batches, tf.constant(1, tf.int64))
phase("tracing the train call")
trainer.train_steps(batches, 1)
phase("XLA compilation and the first call (1 step)")
"""


def _startup_phases():
  """Prints where tfgen-train's start-up goes, step by step, from a fresh process."""
  process = subprocess.run(
      [sys.executable, "-c", _STARTUP_PHASES, _MANUAL_DIR.value, _DATA_DIR.value], cwd=ROOT,
      capture_output=True, text=True, check=False)
  phases = [line.split(" ", 3)[1:] for line in process.stdout.splitlines()
            if line.startswith("phase ")]
  if process.returncode or not phases:
    print("startup phases: the run failed:\n" + process.stderr[-2000:])
    return
  total = sum(float(wall) for wall, _, _ in phases)
  for wall, cpu, name in phases:
    print(f"startup phase: {name}: {float(wall):.2f} s wall, {float(cpu):.2f} s CPU", flush=True)
  print(f"startup phases: {total:.1f} s wall in all (not counting the interpreter's own start "
        "and the flags)", flush=True)


def main(argv):
  del argv
  parts = {"vae": _vae_part, "ar": _ar_part, "eval": _eval_part, "models": _models_part,
           "fit": _fit_part, "torch": _torch_part,
           "startup": _startup_part}
  unknown = sorted(set(_PARTS.value) - set(parts))
  if unknown:
    raise app.UsageError(f"unknown parts {unknown}; known: {sorted(parts)}")
  for name in _PARTS.value:
    parts[name]()


if __name__ == "__main__":
  app.run(main)
