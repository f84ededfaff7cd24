"""Learning-rate schedules and the optimizers of the registry."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfgen import config as config_lib
from tfgen import optimizers
from tfgen import schedules


def _train_config(**fields):
  config = config_lib.base_config().train
  for key, value in fields.items():
    config[key] = value
  return config


def test_iwae_schedule_runs_3_to_the_i_epochs_at_1e_3_times_10_to_the_minus_i_over_7():
  config = _train_config(schedule="iwae", learning_rate=1e-3, num_epochs=3280)
  assert schedules.iwae_num_epochs() == 3280
  rates = [schedules.learning_rate(e, config) for e in range(3280)]
  start = 0
  for stage in range(8):
    stage_rates = rates[start:start + 3**stage]
    assert len(stage_rates) == 3**stage
    np.testing.assert_allclose(stage_rates, 1e-3 * 10**(-stage / 7), rtol=1e-12)
    start += 3**stage


def test_exponential_and_cosine_go_from_the_rate_to_its_final_fraction():
  for name in ("exponential", "cosine"):
    config = _train_config(schedule=name, learning_rate=1e-3, num_epochs=100,
                           final_learning_rate_factor=0.1)
    assert schedules.learning_rate(0, config) == pytest.approx(1e-3)
    assert schedules.learning_rate(99, config) == pytest.approx(1e-4)
    rates = [schedules.learning_rate(e, config) for e in range(100)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_rmsprop_nesterov_step_matches_its_formula():
  lr, rho, mu, eps = 0.1, 0.9, 0.9, 1e-7
  optimizer = optimizers.RMSpropNesterov(lr, rho=rho, momentum=mu, epsilon=eps)
  theta = keras.Variable(np.array([1.0, -2.0], np.float32))
  optimizer.build([theta])
  expected, s, v = np.array([1.0, -2.0]), np.zeros(2), np.zeros(2)
  for _ in range(3):
    g = 2 * expected  # Gradient of ||θ||².
    optimizer.apply_gradients([(tf.constant(g, tf.float32), theta)])
    s = rho * s + (1 - rho) * g**2
    u = g / (np.sqrt(s) + eps)
    v = mu * v - lr * u
    expected = expected + mu * v - lr * u
  np.testing.assert_allclose(theta.numpy(), expected, rtol=1e-5)


def test_optimizers_from_config():
  adam = optimizers.build(_train_config(optimizer="adam", adam_epsilon=1e-4))
  assert isinstance(adam, keras.optimizers.Adam) and adam.epsilon == 1e-4
  assert isinstance(optimizers.build(_train_config(optimizer="rmsprop_nesterov")),
                    optimizers.RMSpropNesterov)


def test_adagrad_step_is_the_made_authors_update():
  # θ ← θ − η g / √(ε + Σ g²) with the sum starting at 0 (MADE/update_rules.py, AdaGrad).
  lr, eps = 0.01, 1e-6
  optimizer = optimizers.build(_train_config(optimizer="adagrad", learning_rate=lr))
  theta = keras.Variable(np.array([1.0, -2.0, 0.0], np.float32))
  optimizer.build([theta])
  expected, total = np.array([1.0, -2.0, 0.0]), np.zeros(3)
  for _ in range(3):
    g = 2 * expected  # Gradient of ||θ||²; 0 stays 0 (no division by zero).
    optimizer.apply_gradients([(tf.constant(g, tf.float32), theta)])
    total = total + g**2
    expected = expected - lr * g / np.sqrt(total + eps)
  np.testing.assert_allclose(theta.numpy(), expected, rtol=1e-5)
