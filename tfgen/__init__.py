"""tfgen: likelihood-based deep generative models for images in TensorFlow/Keras 3.

From Python (docs/python.md):

    import tfgen
    model = tfgen.build("nade", image_shape=(28, 28, 1))   # any registered model
    data = tfgen.data.load("binarized_mnist", manual_dir=DIR)
    model.compile(optimizer="adam"); model.fit(data.train, epochs=5)
    model = tfgen.load("/tmp/run")                        # a tfgen-train run
    model = tfgen.from_preset("vae_binarized_mnist")      # a trained model shipped in tfgen

The names below are imported on first use, so `import tfgen` stays cheap for the command-line
apps, which import only what their command needs.
"""

import importlib

__version__ = "0.1.0"

# Public name -> (module, attribute or None for the module itself).
_API = {
    "build": ("tfgen.api", "build"),
    "load": ("tfgen.api", "load"),
    "from_preset": ("tfgen.presets", "from_preset"),
    "list_presets": ("tfgen.presets", "list_presets"),
    "data": ("tfgen.data", None),
    "models": ("tfgen.models", None),
}

__all__ = sorted(_API)


def __getattr__(name):
  if name not in _API:
    raise AttributeError(f"module 'tfgen' has no attribute {name!r}")
  module_name, attribute = _API[name]
  module = importlib.import_module(module_name)
  return module if attribute is None else getattr(module, attribute)


def __dir__():
  return sorted(list(globals()) + list(_API))
