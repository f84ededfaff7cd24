"""The one registry of model classes, keyed by `config.model.name`."""

import keras
import ml_collections

from tfgen import config as config_lib
from tfgen import errors
from tfgen import registry
from tfgen import workdir as workdir_lib



def _keras_serializable(name: str, cls) -> None:
  """Makes `keras.saving.load_model` find the class of a saved model ("tfgen>NAME")."""
  keras.saving.register_keras_serializable(package="tfgen", name=name)(cls)
  cls.config_name = name


MODELS = registry.Registry("model", on_register=_keras_serializable)


def build(model_config, info):
  """Builds the model `model_config.name` for the data set described by `info` (a DataInfo).

  Raises:
    ConfigError: unknown model name or invalid model settings.
  """
  model = MODELS.get(model_config.name).from_model_config(model_config, info)
  model.data_info = info  # What export and `get_config` record of the data.
  return model


def model_config(name: str, **overrides) -> ml_collections.ConfigDict:
  """`config.model` for model `name`: every hyperparameter with its one default (the model's
  constructor keywords), then `overrides`.

  Raises:
    ConfigError: unknown model name, or an override the model does not take.
  """
  fields = MODELS.get(name).hyperparameters()
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise errors.ConfigError(f"model {name!r} takes no {unknown[0]!r}; its fields: "
                             f"{', '.join(sorted(fields))}")
  fields.update(overrides)
  config = ml_collections.ConfigDict({"name": name})
  for key, value in fields.items():
    # Nested sequences stay tuples, so a command-line override of a field keeps its type.
    config[key] = value
  return config


def load_frozen(workdir: str):
  """The model of another run, rebuilt from its config and newest checkpoint, frozen.

  For models built on a trained one (a VQ-VAE prior on its stage-1 codes): the weights are not
  trainable, so the training loop's optimizer never touches them; they are part of the new
  model, so its own checkpoints hold them too.

  Raises:
    WorkdirError: workdir holds no run, no data description or no checkpoint that fits.
  """
  saved = config_lib.load_from_workdir(workdir)
  info = workdir_lib.load_data_info(workdir)
  if info is None:
    raise errors.WorkdirError(f"{workdir!r} records no data description (data_info.json); "
                              "was it trained by tfgen-train?")
  model = build(saved.model, info)
  model.build_for_images()
  workdir_lib.restore_model(model, workdir)
  model.trainable = False
  return model
