"""The semi-supervised VAE (M2): its bounds, its loss, the labelled/unlabelled batches, the apps."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen import data
from tfgen import errors
from tfgen import evaluate
from tfgen import sampling
from tfgen import seeding
from tfgen import train
from tfgen.data import pipeline
from tfgen.data import sources
from tfgen.models import ssvae
from tests.conftest import load_config
from tests.conftest import shared_data

tfd = tfp.distributions
CLASSES = 4


@pytest.fixture(scope="module")
def model():
  m = ssvae.SSVAE((6, 6, 1), CLASSES, latent_size=3, hidden_sizes=(8,), alpha=0.7)
  m.build_for_images()
  return m


def _images(num, seed=(3, 4)):
  return tf.cast(tf.random.stateless_uniform((num, 6, 6, 1), seed=seed) < 0.4, tf.float32)


def test_unlabelled_bound_is_the_weighted_labelled_bounds_plus_the_entropy(model):
  x, seed = _images(5), seeding.as_seed(7)
  unlabelled = model.bounds({"image": x}, seed)["elbo"].numpy()
  # L(x, y) for every class, with the same draws of z (one seed for every class at once).
  labelled = np.stack([model.bounds({"image": x, "label": tf.fill([5], y)}, seed)["labelled_elbo"].numpy()
                       for y in range(CLASSES)], 1)  # [B, C]
  q = model.classify(x)
  probs, entropy = q.probs_parameter().numpy(), q.entropy().numpy()
  np.testing.assert_allclose(unlabelled, (probs * labelled).sum(1) + entropy, rtol=1e-5)
  # The same identity in another form: U = log Σ_y exp L(x, y) − KL(q(y | x) ‖ softmax_y L).
  kl = tfd.kl_divergence(q, tfd.Categorical(logits=labelled)).numpy()
  np.testing.assert_allclose(unlabelled, tf.reduce_logsumexp(labelled, 1).numpy() - kl,
                             rtol=1e-5)
  assert np.all(unlabelled <= tf.reduce_logsumexp(labelled, 1).numpy() + 1e-4)


def test_labelled_bound_matches_its_terms(model):
  x, seed, labels = _images(5), seeding.as_seed(2), tf.constant([0, 1, 2, 3, 1])
  bound = model.bounds({"image": x, "label": labels}, seed)["labelled_elbo"]
  # L(x, y) = E_q[log p(x | y, z)] + log p(y) − KL; its mean over many seeds approaches the
  # Monte Carlo estimate with the KL computed from samples, so both estimate the same thing.
  q = model.encode(x, labels=labels)
  z = q.sample(4000, seed=seeding.as_seed(11))
  mc = tf.reduce_mean(model.decode(z, labels=labels).log_prob(x) + model.prior().log_prob(z)
                      - q.log_prob(z), 0) - np.log(CLASSES)
  draws = np.mean([model.bounds({"image": x, "label": labels}, seeding.as_seed(i))["labelled_elbo"].numpy()
                   for i in range(200)], 0)
  np.testing.assert_allclose(draws, mc.numpy(), atol=0.3)
  assert bound.shape == (5,)


def test_loss_combines_labelled_and_unlabelled_terms(model):
  x, seed = _images(6), seeding.as_seed(5)
  labels = tf.constant([2, 0, -1, -1, -1, -1])
  labelled = tf.constant([True, True, False, False, False, False])
  loss, metrics = model.loss({"image": x, "label": labels, "labelled": labelled}, seed,
                             training=False)
  terms = model.bounds({"image": x, "label": tf.maximum(labels, 0)}, seed)
  share = 6 / 2
  expected = np.where(labelled, -terms["labelled_elbo"] + 0.7 * share * terms["cross_entropy"],
                      -terms["elbo"])
  np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)
  assert all(v.shape == (6,) for v in metrics.values())


def test_log_prob_marginalises_the_class(model):
  x, seed = _images(3), seeding.as_seed(1)
  model.importance_chunk_size = 10
  marginal = model.log_prob({"image": x}, seed, num_importance_samples=30).numpy()
  # log p(x | y) for every class, scored as one batch of C·B so that it draws the same z.
  tiled, classes = tf.tile(x, [CLASSES, 1, 1, 1]), tf.repeat(tf.range(CLASSES), 3)
  conditional = model.conditional_log_prob({"image": tiled, "label": classes}, seed,
                                           num_importance_samples=30).numpy().reshape(CLASSES, 3)
  # log p(x) = log Σ_y p(y) p(x | y) with p(y) = 1/C.
  np.testing.assert_allclose(marginal, tf.reduce_logsumexp(conditional, 0).numpy()
                             - np.log(CLASSES), rtol=1e-5)
  model.importance_chunk_size = 500
  many = model.log_prob({"image": x}, seed, num_importance_samples=2000).numpy()
  assert np.all(many >= model.bounds({"image": x}, seed)["elbo"].numpy() - 0.5)


def test_sample_takes_labels_and_decode_without_labels_is_the_mixture(model):
  seed = seeding.as_seed(4)
  images = model.sample(3, seed, labels=tf.constant([1, 1, 2]))
  assert images.shape == (3, 6, 6, 1) and set(np.unique(images)) <= {0.0, 1.0}
  z = model.prior().sample(2, seed=seed)
  x = _images(2)
  per_class = tf.stack([model.decode(z, labels=tf.fill([2], y)).log_prob(x)
                        for y in range(CLASSES)])
  np.testing.assert_allclose(model.decode(z).log_prob(x),
                             tf.reduce_logsumexp(per_class, 0) - np.log(CLASSES), rtol=1e-5)


def test_conv_classifier_with_dropout_is_stochastic_only_in_training():
  m = ssvae.SSVAE((8, 8, 1), 3, latent_size=2, hidden_sizes=(6,), classifier="conv",
                  classifier_dropout=0.5, classifier_input_dropout=0.2)
  m.build_for_images()
  x = _images(4)[:, :1, :1] * tf.ones([4, 8, 8, 1])
  assert m.classify(x).logits.shape == (4, 3)
  np.testing.assert_array_equal(m.classify(x).logits, m.classify(x).logits)
  seed = seeding.as_seed(3)
  dropped = m.classify(x, training=True, seed=seed).logits
  assert not np.allclose(dropped, m.classify(x).logits)
  # Drawn from the seed alone (the loss is a function of weights, batch and seed).
  np.testing.assert_array_equal(dropped, m.classify(x, training=True, seed=seed).logits)
  assert not np.allclose(dropped, m.classify(x, training=True, seed=seeding.as_seed(4)).logits)
  loss, _ = m.loss({"image": x, "label": tf.constant([0, 1, -1, -1])}, seeding.as_seed(0),
                   training=True)
  assert loss.shape == (4,) and np.all(np.isfinite(loss))


def test_bad_settings_are_config_errors():
  with pytest.raises(errors.ConfigError, match="needs labelled classes"):
    ssvae.SSVAE((6, 6, 1), None)
  with pytest.raises(errors.ConfigError, match="unknown classifier"):
    ssvae.SSVAE((6, 6, 1), 3, classifier="rnn")
  with pytest.raises(errors.ConfigError, match="multiple of the 10 classes"):
    pipeline.choose_labelled(np.arange(100) % 10, 15, 10, seed=0)
  with pytest.raises(errors.ConfigError, match="the training split has 1"):
    pipeline.choose_labelled(np.array([0, 0, 1]), 4, 2, seed=0)


def _mnist_5k_config(variant, **data_fields):
  config = load_config("ssvae", variant)
  config.data.manual_dir = str(shared_data("mnist_5k"))
  for name, value in data_fields.items():
    config.data[name] = value
  return config


def test_batches_mix_a_fixed_labelled_subset_with_unlabelled_images():
  config = _mnist_5k_config("tiny", binarization="none", num_labels=30, labelled_per_batch=20)
  loaded = data.load(config.data, 500, seed=0, splits=("train",))
  assert loaded.steps_per_epoch == 3500 // 480
  assert loaded.train_in_graph is None  # The mixed batches come from tf.data.
  with np.load(shared_data("mnist_5k", "mnist_5k.npz")) as raw:
    true_label = {image.tobytes(): int(label)
                  for image, label in zip(raw["images"], raw["labels"])}
  first_labelled = lambda batch: np.round(batch["image"].numpy()[:20, ..., 0] * 255).astype(
      np.uint8)
  seen = {}
  # One pass draws the 30 labelled images 140 times, reshuffled after every 30: all are seen.
  for batch in loaded.train:
    labelled = batch["labelled"].numpy()
    assert labelled[:20].all() and not labelled[20:].any()
    assert np.all(batch["label"].numpy()[20:] == -1)  # Hidden labels.
    for image, label in zip(first_labelled(batch), batch["label"].numpy()[:20]):
      assert true_label[image.tobytes()] == label
      seen[image.tobytes()] = label
  assert len(seen) == 30  # Never more labelled images than configured.
  assert np.bincount(list(seen.values()), minlength=10).tolist() == [3] * 10
  # The label seed alone picks the subset: the same with another shuffle seed, not with
  # another label seed.
  again = data.load(config.data, 500, seed=1, splits=("train",))
  assert all(x.tobytes() in seen for x in first_labelled(next(iter(again.train))))
  config.data.label_seed = 1
  other = data.load(config.data, 500, seed=0, splits=("train",))
  assert not all(x.tobytes() in seen for x in first_labelled(next(iter(other.train))))


def test_semi_supervised_needs_labels():
  images = tf.data.Dataset.from_tensor_slices({"image": np.zeros([8, 2, 2, 1], np.uint8)})
  raw = sources.RawData({"train": images}, {"train": 8}, (2, 2, 1), "fixed")
  with pytest.raises(errors.DataError, match="needs a data set with labels"):
    pipeline._semi_supervised_pipeline(images, 8, raw, 2, 1, 0, 4, 0)  # pylint: disable=protected-access


def test_train_evaluate_and_draw_grids(tmp_path):
  config = _mnist_5k_config("tiny")
  config.train.num_epochs = 1
  workdir = str(tmp_path / "run")
  result = train.train(config, workdir, show_progress=False)
  assert result.step == 3500 // 480
  assert "classification_error" in result.validation_metrics
  results = evaluate.evaluate(workdir, show_progress=False)
  with open(results["json"], encoding="utf-8") as f:
    written = json.load(f)
  assert written["num_examples"] == 1000 and 0 <= written["classification_error"] <= 1
  # −log p(x) with y summed out is at most minus the bound U(x), up to the estimate's noise.
  assert written["nll_nats"] <= -written["elbo"] + 1.0
  classes = sampling.sample_grid(workdir, 30, str(tmp_path / "classes.png"))
  picture = tf.io.decode_png(tf.io.read_file(classes)).numpy()
  assert picture.shape[:2] == (10 * 29 + 1, 3 * 29 + 1)  # Rows: classes; columns: 3 styles.
  analogies = sampling.sample_grid(workdir, 4, str(tmp_path / "analogies.png"),
                                   mode="analogies")
  picture = tf.io.decode_png(tf.io.read_file(analogies)).numpy()
  assert picture.shape[:2] == (4 * 29 + 1, 11 * 29 + 1)  # Original, then every class.
  with pytest.raises(errors.ConfigError, match="unknown --mode"):
    sampling.sample_grid(workdir, 4, str(tmp_path / "x.png"), mode="dance")
  assert os.path.exists(os.path.join(workdir, "samples.png"))
