"""Latent-code classification: how much of the class a model's codes carry.

The measure Variational Sparse Coding uses to compare codes: encode every image to its
deterministic code (the posterior mean, `model.codes(x)`), fit a multinomial logistic regression
on the training split's codes, and report its accuracy on the test split's. The features are
standardized with the training codes' statistics; the L2 penalty is chosen among
`L2_PENALTIES` by accuracy on the validation split, so no choice sees the test labels. The
regression is fitted to convergence with L-BFGS on the whole training set, so the result does
not depend on a learning rate or an epoch count.
"""

import dataclasses
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import errors

L2_PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1)
MAX_ITERATIONS = 500


@dataclasses.dataclass
class ProbeResult:
  """Accuracy of a logistic regression on codes.

  Attributes:
    test_accuracy: fraction of test codes classified correctly.
    validation_accuracy: the same on the validation split (which chose the penalty).
    train_accuracy: on the training codes themselves.
    l2_penalty: the chosen penalty.
    num_train, num_test: examples in those splits.
  """

  test_accuracy: float
  validation_accuracy: float
  train_accuracy: float
  l2_penalty: float
  num_train: int
  num_test: int

  def as_dict(self, prefix: str = "code_classification_") -> Dict[str, float]:
    return {prefix + k: v for k, v in dataclasses.asdict(self).items()}


def encode_split(model, dataset: tf.data.Dataset):
  """Codes [N, J] (float64) and labels [N] of a batched split."""
  encode = tf.function(model.codes)
  codes, labels = [], []
  for batch in dataset:
    if "label" not in batch:
      raise errors.DataError("latent-code classification needs a data set with labels")
    codes.append(encode(batch["image"]).numpy())
    labels.append(batch["label"].numpy())
  return np.concatenate(codes).astype(np.float64), np.concatenate(labels)


def fit_logistic_regression(features: np.ndarray, labels: np.ndarray, num_classes: int,
                            l2_penalty: float) -> np.ndarray:
  """Weights [J + 1, num_classes] (last row: biases) minimizing mean cross-entropy + L2."""
  x = tf.constant(np.concatenate([features, np.ones([len(features), 1])], 1), tf.float64)
  y = tf.constant(labels, tf.int32)
  num_features = features.shape[1]
  penalized = tf.constant(np.r_[np.ones(num_features), 0.0][:, None], tf.float64)

  @tf.function
  def loss_and_gradient(flat):
    return tfp.math.value_and_gradient(lambda w: _loss(w, x, y, penalized, l2_penalty,
                                                       num_classes), flat)

  start = tf.zeros([(num_features + 1) * num_classes], tf.float64)
  result = tfp.optimizer.lbfgs_minimize(loss_and_gradient, start,
                                        max_iterations=MAX_ITERATIONS, tolerance=1e-8)
  return tf.reshape(result.position, [num_features + 1, num_classes]).numpy()


def _loss(flat, x, y, penalized, l2_penalty, num_classes):
  weights = tf.reshape(flat, [-1, num_classes])
  logits = tf.matmul(x, weights)
  cross_entropy = tf.reduce_mean(
      tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
  return cross_entropy + l2_penalty * tf.reduce_sum(tf.square(weights * penalized))


def _accuracy(weights, features, labels) -> float:
  logits = np.concatenate([features, np.ones([len(features), 1])], 1) @ weights
  return float(np.mean(np.argmax(logits, 1) == labels))


def classify_codes(model, train: tf.data.Dataset, validation: tf.data.Dataset,
                   test: tf.data.Dataset, num_classes: int,
                   l2_penalties: Sequence[float] = L2_PENALTIES,
                   max_train_examples: Optional[int] = None) -> ProbeResult:
  """Fits the logistic-regression probe on train codes; accuracy on test codes.

  Args:
    model: a LatentVariableModel.
    train, validation, test: batched splits with `image` and `label`.
    num_classes: number of classes.
    l2_penalties: candidates, chosen by validation accuracy.
    max_train_examples: use at most this many training codes (None: all).

  Returns:
    A ProbeResult.
  """
  train_x, train_y = encode_split(model, train)
  if max_train_examples:
    train_x, train_y = train_x[:max_train_examples], train_y[:max_train_examples]
  valid_x, valid_y = encode_split(model, validation)
  test_x, test_y = encode_split(model, test)
  mean, std = train_x.mean(0), train_x.std(0)
  # Dimensions no training code uses carry nothing; a unit scale keeps them at 0, not NaN.
  std = np.where(std > 1e-8, std, 1.0)
  standardize = lambda v: (v - mean) / std
  train_x, valid_x, test_x = standardize(train_x), standardize(valid_x), standardize(test_x)
  best = None
  for penalty in l2_penalties:
    weights = fit_logistic_regression(train_x, train_y, num_classes, penalty)
    accuracy = _accuracy(weights, valid_x, valid_y)
    if best is None or accuracy > best[0]:
      best = (accuracy, penalty, weights)
  validation_accuracy, penalty, weights = best
  return ProbeResult(test_accuracy=_accuracy(weights, test_x, test_y),
                     validation_accuracy=validation_accuracy,
                     train_accuracy=_accuracy(weights, train_x, train_y), l2_penalty=penalty,
                     num_train=len(train_y), num_test=len(test_y))
