"""The one registry of model classes, keyed by `config.model.name`."""

from tfgen import registry

MODELS = registry.Registry("model")


def build(model_config, info):
  """Builds the model `model_config.name` for the data set described by `info` (a DataInfo).

  Raises:
    ConfigError: unknown model name or invalid model settings.
  """
  return MODELS.get(model_config.name).from_config(model_config, info)
