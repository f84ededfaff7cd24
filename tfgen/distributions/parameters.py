"""The location-scale parameters that tfgen's TFP distributions share."""

import tensorflow_probability as tfp


def loc_scale_properties():
  """TFP parameter properties of `loc` (unconstrained) and `scale` (positive, via softplus)."""
  return dict(
      loc=tfp.util.ParameterProperties(),
      scale=tfp.util.ParameterProperties(
          default_constraining_bijector_fn=lambda: tfp.bijectors.Softplus()))


class LocScale:
  """Mixin exposing the `_loc` and `_scale` tensors a distribution stores as `loc` and `scale`."""

  @property
  def loc(self):
    return self._loc

  @property
  def scale(self):
    return self._scale
