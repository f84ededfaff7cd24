"""The one registry of model classes, keyed by `config.model.name`."""

import ml_collections

from tfgen import errors
from tfgen import registry

MODELS = registry.Registry("model")


def build(model_config, info):
  """Builds the model `model_config.name` for the data set described by `info` (a DataInfo).

  Raises:
    ConfigError: unknown model name or invalid model settings.
  """
  return MODELS.get(model_config.name).from_config(model_config, info)


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
