"""Sampling from a trained run."""

from tfgen import evaluate
from tfgen import seeding
from tfgen import viz


def sample_grid(workdir: str, num: int, out: str, seed: int = 0, num_columns: int = 0,
                mean: bool = True) -> str:
  """Draws `num` images from workdir's newest checkpoint and writes them as a PNG grid.

  Args:
    workdir: a training run's working directory.
    num: number of images.
    out: PNG path.
    seed: the same seed gives the same images.
    num_columns: columns of the grid (0: square).
    mean: pixel probabilities of the last conditional instead of a draw.

  Returns:
    The path written.
  """
  _, _, model, _, _ = evaluate.load_trained(workdir, splits=())
  images = model.sample(num, seed=seeding.as_seed(seed), mean=mean).numpy()
  return viz.write_png(out, viz.image_grid(images, num_columns))
