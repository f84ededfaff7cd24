"""Learning-rate schedules as functions of the epoch, evaluated on the host once per epoch, and
the warm-up ramp that models' `update_schedules` use (in epochs).

The training loop assigns the value to the optimizer's learning-rate variable, so the compiled
train step never retraces when it changes.
"""

import math

import tensorflow as tf

from tfgen import registry

SCHEDULES = registry.Registry("learning-rate schedule")

# The IWAE paper: stage i = 0..7 runs 3^i epochs at 1e-3 * 10^(-i/7); 3280 epochs in all.
IWAE_STAGES = 8


def iwae_num_epochs() -> int:
  return sum(3**i for i in range(IWAE_STAGES))


@SCHEDULES.register("constant")
def constant(epoch: int, config) -> float:
  del epoch
  return config.learning_rate


@SCHEDULES.register("exponential")
def exponential(epoch: int, config) -> float:
  """Decays geometrically from learning_rate to learning_rate * final_learning_rate_factor."""
  progress = epoch / max(config.num_epochs - 1, 1)
  return config.learning_rate * config.final_learning_rate_factor**progress


@SCHEDULES.register("cosine")
def cosine(epoch: int, config) -> float:
  """Cosine decay from learning_rate to learning_rate * final_learning_rate_factor."""
  progress = epoch / max(config.num_epochs - 1, 1)
  low = config.learning_rate * config.final_learning_rate_factor
  return low + 0.5 * (config.learning_rate - low) * (1 + math.cos(math.pi * progress))


@SCHEDULES.register("iwae")
def iwae(epoch: int, config) -> float:
  """Burda et al.'s schedule, scaled by learning_rate / 1e-3; the last stage continues past 3280."""
  stage, start = 0, 0
  while stage < IWAE_STAGES - 1 and epoch >= start + 3**stage:
    start += 3**stage
    stage += 1
  return config.learning_rate * 10**(-stage / 7)


def learning_rate(epoch: int, train_config) -> float:
  """The learning rate of `epoch` (0-based) under train_config.schedule."""
  return SCHEDULES.get(train_config.schedule)(epoch, train_config)


def linear_warmup(elapsed, duration: float) -> tf.Tensor:
  """min(elapsed / duration, 1) as a float32 scalar tensor; 1 when duration is 0.

  Models call it with the fractional epoch the loop passes to `update_schedules` and a duration
  in epochs.
  """
  if not duration:
    return tf.constant(1.0)
  return tf.minimum(tf.cast(elapsed, tf.float32) / float(duration), 1.0)
