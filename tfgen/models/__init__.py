"""tfgen models. Importing this package registers every model in `MODELS`."""

from tfgen.models import vae  # Registers "vae". pylint: disable=unused-import
from tfgen.models.base import GenerativeModel, LatentVariableModel
from tfgen.models.registry import MODELS, build

__all__ = ["GenerativeModel", "LatentVariableModel", "MODELS", "build"]
