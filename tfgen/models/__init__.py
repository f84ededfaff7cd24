"""tfgen models. Importing this package registers every model in `MODELS`."""

# Importing each model module registers it. pylint: disable=unused-import
from tfgen.models import conv_vae
from tfgen.models import flow
from tfgen.models import made
from tfgen.models import matnet
from tfgen.models import nade
from tfgen.models import pixelcnn
from tfgen.models import pixelsnail
from tfgen.models import ssvae
from tfgen.models import vae
from tfgen.models import vqvae
from tfgen.models import vsc
from tfgen.models.autoregressive import AutoregressiveModel
from tfgen.models.base import GenerativeModel, LatentVariableModel
from tfgen.models.registry import MODELS, build, load_frozen, model_config

__all__ = ["AutoregressiveModel", "GenerativeModel", "LatentVariableModel", "MODELS", "build",
           "load_frozen", "model_config"]
