"""tfgen: likelihood-based deep generative models for images in TensorFlow/Keras 3."""

__version__ = "0.1.0"
