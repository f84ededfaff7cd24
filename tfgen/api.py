"""tfgen from Python: `tfgen.build`, `tfgen.load` (and `tfgen.data.load`, `tfgen.from_preset`).

    import tfgen
    model = tfgen.build("nade", image_shape=(28, 28, 1), hidden_size=500)
    data = tfgen.data.load("binarized_mnist", batch_size=100, manual_dir="../shared/data/...")
    model.compile(optimizer="adam")
    model.fit(data.train, epochs=5, validation_data=data.validation)
    model = tfgen.load("/tmp/run")           # a tfgen-train run: best/ or its newest checkpoint

Hyperparameters have one home, the model's constructor defaults, which the configs read too
(`tfgen.models.model_config`); `build` takes the same names as `--config.model.NAME`.
See docs/python.md.
"""

from typing import Optional, Sequence

from tfgen import errors
from tfgen.data import pipeline


def build(name: str, image_shape: Optional[Sequence[int]] = None, *, data=None,
          binarized: Optional[bool] = None, num_classes: Optional[int] = None,
          **hyperparameters):
  """A new, built (weights created) model of the registered family `name`.

  Args:
    name: a registered model (`tfgen.models.MODELS.names()`): "vae", "nade", "realnvp", ...
    image_shape: (H, W, C) of the images; or give `data`.
    data: what the model is for, instead of image_shape: a `tfgen.data.Data` (from
      `tfgen.data.load`) or its `DataInfo`; its shape, binarization and classes are used.
    binarized: with image_shape: whether pixels are binary ({0, 1}) or 8-bit intensities.
      None: binary where the model takes binary pixels, else 8-bit (the flows).
    num_classes: with image_shape: classes of the labels, for class-conditional models.
    **hyperparameters: the model's config fields (`tfgen.models.model_config(name)` lists them
      with their defaults).

  Raises:
    ConfigError: unknown model or hyperparameter, invalid values, or neither image_shape nor data.
  """
  from tfgen import models  # pylint: disable=g-import-not-at-top
  config = models.model_config(name, **hyperparameters)
  if data is not None:
    info = getattr(data, "info", data)
    if not isinstance(info, pipeline.DataInfo):
      raise errors.ConfigError(f"data must be a tfgen.data.Data or DataInfo, got "
                               f"{type(data).__name__}")
    return _built(models.build(config, info))
  if image_shape is None:
    raise errors.ConfigError("give image_shape=(H, W, C) or data=tfgen.data.load(...)")
  shape = tuple(int(d) for d in image_shape)
  if len(shape) != 3 or min(shape) < 1:
    raise errors.ConfigError(f"image_shape must be (height, width, channels), got {image_shape}")
  if binarized is None:
    try:
      return _built(models.build(config, _info(shape, True, num_classes)))
    except errors.ConfigError:
      binarized = False  # A model of 8-bit intensities (the flows).
  return _built(models.build(config, _info(shape, binarized, num_classes)))


def _info(shape, binary: bool, num_classes) -> pipeline.DataInfo:
  return pipeline.DataInfo("python", shape, "fixed" if binary else "none", {},
                           num_classes=num_classes)


def _built(model):
  model.build_for_images()
  return model


def load(workdir: str):
  """The model of a tfgen-train run: its best validation epoch's weights (best/) when trained
  with early stopping, else its newest checkpoint's; built, not compiled.

  Raises:
    WorkdirError / ConfigError: workdir holds no run, or its files are damaged (one line).
  """
  from tfgen import evaluate  # pylint: disable=g-import-not-at-top
  return evaluate.load_trained(workdir, splits=()).model
