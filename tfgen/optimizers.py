"""Optimizers named in configs (`config.train.optimizer`)."""

import keras
from keras import ops

from tfgen import registry

OPTIMIZERS = registry.Registry("optimizer")


class RMSpropNesterov(keras.optimizers.Optimizer):
  """RMSprop with Nesterov momentum.

  With mean square s, velocity v, momentum μ and learning rate η:

    s ← ρ s + (1 − ρ) g²
    u = g / (√s + ε)
    v ← μ v − η u
    θ ← θ + μ v − η u          (the Nesterov look-ahead)

  Keras' RMSprop has only classical momentum.

  Args:
    learning_rate: η.
    rho: ρ, decay of the mean square.
    momentum: μ.
    epsilon: ε.
  """

  def __init__(self, learning_rate=1e-3, rho=0.9, momentum=0.9, epsilon=1e-7,
               name="rmsprop_nesterov", **kwargs):
    super().__init__(learning_rate=learning_rate, name=name, **kwargs)
    self.rho, self.momentum, self.epsilon = rho, momentum, epsilon

  def build(self, variables):
    if self.built:
      return
    super().build(variables)
    self._mean_squares = self.add_optimizer_variables(variables, "mean_square")
    self._velocities = self.add_optimizer_variables(variables, "velocity")

  def update_step(self, gradient, variable, learning_rate):
    lr = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    index = self._get_variable_index(variable)
    mean_square, velocity = self._mean_squares[index], self._velocities[index]
    self.assign(mean_square, self.rho * mean_square + (1 - self.rho) * ops.square(gradient))
    step = lr * gradient / (ops.sqrt(mean_square) + self.epsilon)
    self.assign(velocity, self.momentum * velocity - step)
    self.assign_add(variable, self.momentum * velocity - step)

  def get_config(self):
    config = super().get_config()
    config.update(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon)
    return config


@OPTIMIZERS.register("adam")
def adam(config):
  return keras.optimizers.Adam(config.learning_rate, beta_1=config.adam_beta_1,
                               beta_2=config.adam_beta_2, epsilon=config.adam_epsilon)


@OPTIMIZERS.register("rmsprop_nesterov")
def rmsprop_nesterov(config):
  return RMSpropNesterov(config.learning_rate, rho=config.rho, momentum=config.momentum)


@OPTIMIZERS.register("adagrad")
def adagrad(config):
  """Adagrad (Duchi et al. 2011): θ ← θ − η g / √(a₀ + ε + Σ g²), the sum over all steps so far.

  With a₀ = 0 and ε = 1e-6 (the config's defaults) this is the update of MADE's authors' code
  (github.com/mgermain/MADE, MADE/update_rules.py).
  """
  return keras.optimizers.Adagrad(
      config.learning_rate, initial_accumulator_value=config.adagrad_initial_accumulator,
      epsilon=config.adagrad_epsilon)


def build(train_config, precision: str = "float32") -> keras.optimizers.Optimizer:
  """The optimizer `train_config.optimizer`, at the config's initial learning rate.

  With float16 compute it is wrapped in dynamic loss scaling (the training loop scales the loss
  with `optimizer.scale_loss`; apply_gradients unscales and skips steps whose gradients overflow).
  """
  optimizer = OPTIMIZERS.get(train_config.optimizer)(train_config)
  if precision == "mixed_float16":
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer
