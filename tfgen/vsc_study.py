"""Variational Sparse Coding against the VAE as the latent size grows: the paper's two figures.

Tonolini et al. (2019) compare, on MNIST and Fashion-MNIST, the test ELBO of VSC (α = 0.2, 0.5)
and of the VAE (α = 1) against the number of latent dimensions, and the accuracy of a classifier
on the latent codes (VSC α = 0.01 against the VAE). This module runs that grid with the one
training loop and evaluation (tfgen.train, tfgen.evaluate), one workdir per point,

    ROOT/DATA/vae_l{J}          α = 1, the VAE limit of the same model
    ROOT/DATA/vsc_a{α}_l{J}     VSC with prior activity α

and draws the figures from the runs' evaluation JSON files:

    tfgen-vsc-study run  --workdir=ROOT --data=fashion_mnist --manual_dir=../shared/data/fashion_mnist
    tfgen-vsc-study plot --workdir=ROOT --out_dir=docs/images --results_md=docs/results.md

Every point is configs/vsc.py with `data`, `latent`, `alpha` and `epochs` set (784-400-J MLP,
Adam, batch 100, a validation split of 10,000 carved from the training set); its test-split
evaluation with k = 1 importance sample gives the ELBO (the bound the paper plots, not an
importance-weighted NLL) and the latent-code classification accuracy (tfgen/probes.py). A point
whose evaluation JSON exists is skipped, and an unfinished one resumes from its checkpoint, so
`run` can be stopped and started again; points are taken in an order (latents coarse to fine)
that makes early partial figures span the whole axis.

References:
  Tonolini, Jensen & Murray-Smith, "Variational Sparse Coding", UAI 2019 (Figures 3 and 5).
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

from tfgen import errors
from tfgen import files

# The grid: the paper's comparisons at latent sizes this machine can afford.
LATENTS = (10, 25, 50, 100, 200)
ELBO_ALPHAS = (0.2, 0.5)
CODE_ALPHA = 0.01
VAE_ALPHA = 1.0
ALPHAS = (VAE_ALPHA, CODE_ALPHA) + ELBO_ALPHAS
# Training epochs per data set (the config's schedule: Adam decay, KL warm-up over the first
# third, the relaxation's sharpness over the first half, all scaled to these).
DEFAULT_EPOCHS = {"fashion_mnist": 12, "mnist_5k": 60}
EVAL_IMPORTANCE_SAMPLES = 1
CONFIG_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "vsc.py")
DATA_TITLES = {"fashion_mnist": "Fashion-MNIST", "mnist_5k": "MNIST (mnist_5k)"}
TABLE_MARKERS = ("<!-- tfgen-vsc-study begin -->", "<!-- tfgen-vsc-study end -->")


class StudyError(errors.TfgenError):
  """Unknown data set, an empty grid, damaged evaluation files, a results file without markers."""


@dataclasses.dataclass(frozen=True)
class Point:
  data: str
  latent: int
  alpha: float

  @property
  def name(self) -> str:
    return f"vae_l{self.latent}" if self.alpha == VAE_ALPHA else f"vsc_a{self.alpha:g}_l{self.latent}"

  def workdir(self, root: str) -> str:
    return os.path.join(root, self.data, self.name)

  def config_spec(self, epochs: int) -> str:
    return (f"{CONFIG_FILE}:data={self.data},latent={self.latent},alpha={self.alpha:g},"
            f"epochs={epochs}")


def _coarse_to_fine(latents: Sequence[int]) -> List[int]:
  """Smallest, largest, then the middles: a partial run already spans the axis."""
  latents = sorted(set(latents))
  if len(latents) <= 2:
    return latents
  order = [latents[0], latents[-1]]
  rest = latents[1:-1]
  while rest:
    middle = rest.pop(len(rest) // 2)
    order.append(middle)
  return order


def grid(data: str, latents: Sequence[int] = LATENTS,
         alphas: Sequence[float] = ALPHAS) -> List[Point]:
  """The points to run, in the order `run` takes them."""
  if data not in DEFAULT_EPOCHS:
    raise StudyError(f"unknown data set {data!r}; the study runs on "
                     f"{', '.join(sorted(DEFAULT_EPOCHS))}")
  if not latents or not alphas:
    raise StudyError("the grid is empty: give at least one latent size and one alpha")
  for value in latents:
    if int(value) < 1:
      raise StudyError(f"latent sizes must be >= 1, got {value}")
  for value in alphas:
    if not 0 < float(value) <= 1:
      raise StudyError(f"alpha must be in (0, 1], got {value}")
  return [Point(data, int(latent), float(alpha))
          for latent in _coarse_to_fine(latents) for alpha in alphas]


def evaluation_file(workdir: str) -> str:
  return os.path.join(workdir, f"evaluation_test_k{EVAL_IMPORTANCE_SAMPLES}.json")


def run(root: str, data: str, manual_dir: Optional[str] = None,
        latents: Sequence[int] = LATENTS, alphas: Sequence[float] = ALPHAS,
        epochs: Optional[int] = None, overrides: Optional[Dict[str, str]] = None,
        show_progress: bool = True) -> List[str]:
  """Trains and evaluates every missing point of the grid.

  Args:
    root: folder of the runs (ROOT/DATA/NAME/).
    data: "fashion_mnist" or "mnist_5k".
    manual_dir: where the data's files are (config.data.manual_dir).
    latents, alphas: the grid (α = 1 is the VAE).
    epochs: training epochs of every point (default DEFAULT_EPOCHS[data]).
    overrides: further FIELD=VALUE config overrides (as tfgen-train's --config.FIELD=VALUE).
    show_progress: progress bars.

  Returns:
    The workdirs evaluated by this call (points already evaluated are skipped).
  """
  # TensorFlow is imported here so that `plot` and argument errors answer at once.
  from tfgen import config as config_lib
  from tfgen import evaluate as evaluate_lib
  from tfgen import reproduce
  from tfgen import train as train_lib
  from absl import logging

  points = grid(data, latents, alphas)
  epochs = int(epochs or DEFAULT_EPOCHS[data])
  if epochs < 1:
    raise StudyError(f"epochs must be >= 1, got {epochs}")
  done = []
  for point in points:
    workdir = point.workdir(root)
    if os.path.exists(evaluation_file(workdir)):
      logging.info("%s: evaluated already, skipped", workdir)
      continue
    config = config_lib.load_file(point.config_spec(epochs))
    if manual_dir:
      config.data.manual_dir = manual_dir
    reproduce.apply_overrides(config, overrides or {})
    logging.info("%s: training %d epochs", workdir, epochs)
    train_lib.train(config, workdir, show_progress=show_progress)
    evaluate_lib.evaluate(workdir, num_importance_samples=EVAL_IMPORTANCE_SAMPLES, split="test",
                          show_progress=show_progress)
    done.append(workdir)
  return done


@dataclasses.dataclass
class Measured:
  point: Point
  elbo: float
  accuracy: Optional[float]
  active_dimensions: Optional[float]
  active_units: Optional[float]
  epochs: int


def _total(value):
  """active_units is a list with one count per stochastic layer."""
  return None if value is None else float(sum(value) if isinstance(value, list) else value)


def collect(root: str, data: str) -> List[Measured]:
  """The evaluated points under ROOT/DATA, sorted by alpha then latent size."""
  folder = os.path.join(root, data)
  measured = []
  if not os.path.isdir(folder):
    return measured
  for name in sorted(os.listdir(folder)):
    path = evaluation_file(os.path.join(folder, name))
    if not os.path.exists(path):
      continue
    try:
      with open(path, encoding="utf-8") as f:
        results = json.load(f)
      with open(os.path.join(folder, name, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
      model = config["model"]
      point = Point(data, int(model["latent_size"]), float(model["alpha"]))
      measured.append(Measured(
          point, float(results["elbo"]), results.get("code_classification_test_accuracy"),
          results.get("active_dimensions_per_image"), _total(results.get("active_units")),
          int(config["train"]["num_epochs"])))
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise StudyError(f"{path} or its config.json is damaged ({e}); delete the run's folder "
                       "to redo it") from e
  return sorted(measured, key=lambda m: (m.point.alpha, m.point.latent))


def _label(alpha: float) -> str:
  return "VAE" if alpha == VAE_ALPHA else f"VSC α = {alpha:g}"


def _series(measured: Sequence[Measured], alphas: Sequence[float], value):
  out = {}
  for alpha in alphas:
    points = [(m.point.latent, value(m)) for m in measured if m.point.alpha == alpha]
    points = [(x, y) for x, y in points if y is not None]
    if points:
      out[alpha] = sorted(points)
  return out


def plot(root: str, out_dir: str, datasets: Sequence[str] = tuple(DEFAULT_EPOCHS)) -> List[str]:
  """Writes vsc_elbo_vs_latent.png and vsc_accuracy_vs_latent.png (one panel per data set).

  Returns:
    The paths written.
  """
  import matplotlib
  matplotlib.use("Agg")  # No display: files only.
  from matplotlib import pyplot as plt

  measured = {data: collect(root, data) for data in datasets}
  measured = {data: m for data, m in measured.items() if m}
  if not measured:
    raise StudyError(f"no evaluated runs under {root} for {', '.join(datasets)}; run "
                     "`tfgen-vsc-study run` first")
  os.makedirs(out_dir, exist_ok=True)
  figures = (
      ("vsc_elbo_vs_latent.png", "test ELBO (nats)", (VAE_ALPHA,) + ELBO_ALPHAS,
       lambda m: m.elbo),
      ("vsc_accuracy_vs_latent.png", "latent-code classification accuracy (test)",
       (VAE_ALPHA, CODE_ALPHA), lambda m: m.accuracy),
  )
  written = []
  for filename, ylabel, alphas, value in figures:
    fig, axes = plt.subplots(1, len(measured), figsize=(5 * len(measured), 3.8), squeeze=False)
    for ax, (data, points) in zip(axes[0], measured.items()):
      for alpha, series in _series(points, alphas, value).items():
        xs, ys = zip(*series)
        ax.plot(xs, ys, marker="o", label=_label(alpha))
      epochs = sorted({m.epochs for m in points})
      ax.set_title(f"{DATA_TITLES.get(data, data)} ({'/'.join(map(str, epochs))} epochs)")
      ax.set_xscale("log")
      ax.set_xticks(sorted({m.point.latent for m in points}))
      ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
      ax.set_xlabel("latent dimensions")
      ax.set_ylabel(ylabel)
      ax.grid(alpha=0.3)
      ax.legend()
    fig.tight_layout()
    path = os.path.join(out_dir, filename)
    fig.savefig(path + ".tmp.png", dpi=100)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
    written.append(path)
  return written


def table(root: str, datasets: Sequence[str] = tuple(DEFAULT_EPOCHS)) -> str:
  """The measured points as a Markdown table."""
  lines = ["| data | model | latent dims | epochs | test ELBO | code accuracy | dims used per "
           "image (γ > 0.5) | active units |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]

  def number(value, fmt):
    return "—" if value is None else format(value, fmt)

  for data in datasets:
    for m in collect(root, data):
      accuracy = None if m.accuracy is None else 100 * m.accuracy
      lines.append(f"| {DATA_TITLES.get(data, data)} | {_label(m.point.alpha)} | "
                   f"{m.point.latent} | {m.epochs} | {m.elbo:.2f} | {number(accuracy, '.1f')}% | "
                   f"{number(m.active_dimensions, '.2f')} | {number(m.active_units, '.0f')} |")
  if len(lines) == 2:
    raise StudyError(f"no evaluated runs under {root}; run `tfgen-vsc-study run` first")
  return "\n".join(lines)


def write_table(root: str, results_md: str,
                datasets: Sequence[str] = tuple(DEFAULT_EPOCHS)) -> None:
  """Replaces the text between TABLE_MARKERS in results_md with `table(root)`."""
  try:
    files.replace_between_markers(results_md, *TABLE_MARKERS, table(root, datasets))
  except OSError as e:
    raise StudyError(f"cannot rewrite {results_md!r}: {e.strerror or e}") from e
  except ValueError as e:
    raise StudyError(str(e)) from e
