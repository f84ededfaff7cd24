"""Properties of NADE, MADE, PixelCNN and Gated PixelCNN."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfgen import errors
from tfgen import seeding
from tfgen.models import made
from tfgen.models import nade
from tfgen.models import pixelcnn
from tfgen.models import pixelsnail

SHAPE = (2, 3, 1)


def _models(shape=SHAPE):
  """(name, model, ordering) for every model, ordering and likelihood worth checking."""
  cases = [
      ("nade", nade.NADE(shape, hidden_size=8), "natural"),
      ("nade_random", nade.NADE(shape, hidden_size=8, ordering="random", ordering_seed=3),
       "random"),
      ("nade_256", nade.NADE(shape, hidden_size=8, num_levels=256), "natural"),
      ("nade_sequential", nade.NADE(shape, hidden_size=8, ordering="random", ordering_seed=1,
                                    recurrence="sequential"), "random"),
      ("made", made.MADE(shape, hidden_sizes=(16, 16), num_masks=3), "natural"),
      ("made_random", made.MADE(shape, hidden_sizes=(16,), ordering="random", seed=2),
       "random"),
      ("made_ensemble", made.MADE(shape, hidden_sizes=(16,), num_masks=4, num_eval_masks=4),
       "natural"),
      # The MADE authors' best MNIST model: orderings redrawn with the connectivity, a direct
      # connection from the inputs, the likelihood averaged over the connectivities.
      ("made_reordered_direct", made.MADE(shape, hidden_sizes=(16, 16), num_masks=3,
                                          num_eval_masks=3, reorder_masks=True,
                                          direct_connection=True), "natural"),
      ("pixelcnn", pixelcnn.PixelCNN(shape, num_blocks=2, channels=8), "natural"),
      ("pixelcnn_256", pixelcnn.PixelCNN(shape, num_blocks=1, channels=8, num_levels=256),
       "natural"),
      ("gated", pixelcnn.GatedPixelCNN(shape, num_layers=3, channels=8), "natural"),
      ("gated_conditional", pixelcnn.GatedPixelCNN(shape, num_layers=2, channels=8,
                                                   class_conditional=True, num_classes=3), "natural"),
      ("pixelsnail", pixelsnail.PixelSNAIL(shape, num_blocks=2, num_residual=1, channels=8,
                                           key_size=4, value_size=4), "natural"),
      ("pixelsnail_256", pixelsnail.PixelSNAIL(shape, num_blocks=1, channels=8, num_levels=256),
       "natural"),
      ("pixelsnail_conditional", pixelsnail.PixelSNAIL(
          shape, num_blocks=2, num_residual=1, channels=8, num_heads=3, class_conditional=True,
          num_classes=3), "natural"),
  ]
  for _, model, _ in cases:
    model.build_for_images()
  return cases


NUM_CASES = 15


def _order(model, ordering):
  size = model.event_size
  return np.arange(size) if ordering == "natural" else np.asarray(model.order)


def _labels(model, n):
  return tf.zeros([n], tf.int32) if model.num_classes else None


@pytest.mark.parametrize("case", range(NUM_CASES))
def test_output_depends_only_on_earlier_pixels(case):
  name, model, ordering = _models((4, 5, 1))[case]
  order = _order(model, ordering)
  position = np.empty_like(order)
  position[order] = np.arange(len(order))
  x = tf.Variable(tf.cast(tf.random.stateless_uniform([1, 4, 5, 1], seed=[1, case]) < 0.5,
                          tf.float32))
  for pixel in range(model.event_size):
    with tf.GradientTape() as tape:
      labels = _labels(model, 1)
      batch = {"image": x, **({} if labels is None else {"label": labels})}
      logits = model._logits_of(batch)[1]  # pylint: disable=protected-access
      out = tf.reshape(logits, [model.event_size, -1])[pixel]
      # A random projection of all 256 logits, so no dependence can cancel out.
      target = tf.reduce_sum(out * tf.random.stateless_normal(tf.shape(out), seed=[pixel, 0]))
    grads = np.abs(tape.gradient(target, x).numpy().reshape(-1))
    later = position >= position[pixel]
    assert np.all(grads[later] == 0), (name, pixel, np.nonzero(grads[later]))


def test_gated_pixelcnn_has_no_blind_spot():
  model = pixelcnn.GatedPixelCNN((8, 8, 1), num_layers=4, channels=8)
  model.build_for_images()
  x = tf.Variable(tf.random.stateless_uniform([1, 8, 8, 1], seed=[4, 4]))
  r, c = 5, 4
  with tf.GradientTape() as tape:
    target = model.logits(x)[0, r, c, 0]
  grads = np.abs(tape.gradient(target, x).numpy()[0, :, :, 0])
  # The receptive field after 4 layers (7x7 first, then 3x3): rows r−6..r−1 within columns
  # c−6..c+6 and the row r to the left. Every one of those pixels must be seen — no blind spot,
  # which a plain PixelCNN has above-right of the pixel.
  for rr in range(max(0, r - 6), r):
    for cc in range(max(0, c - 6), min(8, c + 7)):
      if abs(cc - c) <= 3 + (r - 1 - rr) and rr >= r - 6:
        assert grads[rr, cc] > 0, (rr, cc)
  assert all(grads[r, cc] > 0 for cc in range(max(0, c - 6), c))
  assert grads[r, c] == 0 and np.all(grads[r + 1:] == 0) and np.all(grads[r, c + 1:] == 0)


@pytest.mark.parametrize("case", range(NUM_CASES))
def test_probabilities_of_all_images_sum_to_one(case):
  name, model, _ = _models()[case]
  levels = [0.0, 1.0] if model.num_levels == 2 else None
  if levels is None:
    # 256 levels over 6 pixels is too many to enumerate: all 65,536 images of 1x2 pixels.
    model = type(model)((1, 2, 1), **({"hidden_size": 4} if name.startswith("nade") else
                                     {"num_blocks": 1, "channels": 4}), num_levels=256)
    model.build_for_images()
    grid = np.stack(np.meshgrid(*[np.arange(256)] * 2, indexing="ij"), -1).reshape(-1, 1, 2, 1)
    images = tf.constant(grid / 255.0, tf.float32)
  else:
    images = tf.constant(list(itertools.product(levels, repeat=6)), tf.float32)
    images = tf.reshape(images, [-1, *SHAPE])
  total = 0.0
  for batch in tf.split(images, 4 if model.num_levels == 256 else 1):
    labels = _labels(model, batch.shape[0])
    log_p = model.log_prob({"image": batch, **({} if labels is None else {"label": labels})})
    total += float(tf.reduce_sum(tf.exp(tf.cast(log_p, tf.float64))))
  assert total == pytest.approx(1.0, abs=1e-4), name


@pytest.mark.parametrize("case", range(NUM_CASES))
def test_sampler_matches_the_parallel_conditionals_and_is_reproducible(case):
  name, model, _ = _models((4, 5, 1))[case]
  labels = _labels(model, 3)
  extra = {"labels": labels} if labels is not None else {}
  seed = seeding.as_seed([5, case])
  draws = model.sample(3, seed, **extra)
  np.testing.assert_array_equal(draws, model.sample(3, seed, **extra))
  means = model.sample(3, seed, mean=True, **extra)
  batch = {"image": draws, **({} if labels is None else {"label": labels})}
  logits = model._logits_of(batch)[1]  # pylint: disable=protected-access
  if model.num_levels == 2:
    assert set(np.unique(draws.numpy())) <= {0.0, 1.0}
    expected = tf.sigmoid(logits)
  else:
    expected = tf.reduce_sum(tf.nn.softmax(logits) * tf.range(256, dtype=tf.float32), -1) / 255
  # Each pixel's conditional, computed while sampling, equals the one the whole-image pass gives.
  np.testing.assert_allclose(means, expected, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("case", range(NUM_CASES))
def test_inpainting_never_changes_known_pixels(case):
  name, model, _ = _models((4, 5, 1))[case]
  labels = _labels(model, 4)
  extra = {"labels": labels} if labels is not None else {}
  original = tf.cast(tf.random.stateless_uniform([4, 4, 5, 1], seed=[9, case]) < 0.5, tf.float32)
  if model.num_levels == 256:
    original = tf.round(tf.random.stateless_uniform([4, 4, 5, 1], seed=[9, case]) * 255) / 255
  known = np.zeros([4, 4, 5, 1], bool)
  known[:, :2] = True  # Top half given.
  known[:, 3, 4] = True  # And the last pixel, which comes after every unknown one.
  conditioned_on = tf.where(known, original, -1.0)
  filled = model.sample(4, seeding.as_seed(1), conditioned_on=conditioned_on, **extra).numpy()
  np.testing.assert_array_equal(filled[known], original.numpy()[known], err_msg=name)
  assert np.all(filled[~known] >= 0)


def test_class_conditional_sampling_uses_the_labels():
  model = pixelcnn.GatedPixelCNN((4, 4, 1), num_layers=2, channels=8, class_conditional=True,
                                 num_classes=3)
  model.build_for_images()
  seed = seeding.as_seed(2)
  zero = model.sample(2, seed, mean=True, labels=tf.constant([0, 0])).numpy()
  two = model.sample(2, seed, mean=True, labels=tf.constant([2, 2])).numpy()
  assert not np.allclose(zero, two)


def test_pixelsnail_attention_sees_every_earlier_pixel():
  # One block with 3×3 convolutions: without attention the pixel (r, c) would see only a few
  # rows above and nothing above-right beyond the blind spot's edge.
  model = pixelsnail.PixelSNAIL((6, 7, 1), num_blocks=1, num_residual=1, channels=8,
                                first_kernel_size=3)
  model.build_for_images()
  x = tf.Variable(tf.random.stateless_uniform([1, 6, 7, 1], seed=[4, 5]))
  r, c = 4, 2
  with tf.GradientTape() as tape:
    target = model.logits(x)[0, r, c, 0]
  grads = np.abs(tape.gradient(target, x).numpy()[0, :, :, 0]).reshape(-1)
  t = r * 7 + c
  assert np.all(grads[:t] > 0) and np.all(grads[t:] == 0)


def test_pixelsnail_first_pixel_attends_to_nothing():
  model = pixelsnail.PixelSNAIL((3, 3, 1), num_blocks=1, num_residual=1, channels=4)
  model.build_for_images()
  ones, zeros = tf.ones([1, 3, 3, 1]), tf.zeros([1, 3, 3, 1])
  # The first pixel's conditional is the same whatever the image is.
  np.testing.assert_allclose(model.logits(ones)[0, 0, 0], model.logits(zeros)[0, 0, 0])


@pytest.mark.parametrize("num_levels", [2, 256])
def test_nade_sequential_recurrence_gives_the_blocked_numbers_with_and_without_xla(num_levels):
  blocked = nade.NADE((4, 5, 1), hidden_size=6, num_levels=num_levels, ordering="random")
  sequential = nade.NADE((4, 5, 1), hidden_size=6, num_levels=num_levels, ordering="random",
                         recurrence="sequential")
  for model in (blocked, sequential):
    model.build_for_images()
  sequential.set_weights(blocked.get_weights())
  rng = np.random.RandomState(0)
  images = tf.constant(rng.randint(0, num_levels, (3, 4, 5, 1)) / (num_levels - 1), tf.float32)
  batch = {"image": images}

  def loss_and_gradients(model):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(model.loss(batch, seeding.as_seed(0))[0])
    return loss, tape.gradient(loss, model.trainable_variables)

  want_loss, want_gradients = loss_and_gradients(blocked)
  for jit in (None, True):
    loss, gradients = tf.function(loss_and_gradients, jit_compile=jit)(sequential)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    for got, want in zip(gradients, want_gradients):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_nade_refuses_an_unknown_recurrence():
  with pytest.raises(errors.ConfigError, match="unknown NADE recurrence 'scan'"):
    nade.NADE((2, 2, 1), recurrence="scan")


def test_nade_hand_written_recurrence_gradient_matches_automatic_differentiation():
  # 784 pixels: the backward loop recovers a_d by subtraction, so its drift over a full
  # MNIST-sized image is what this bounds; the inputs' gradient is checked too.
  rng = np.random.RandomState(1)
  size, hidden_size, levels = 784, 32, 3
  inputs = tf.constant((rng.rand(4, size) < 0.2).astype(np.float32))
  weights = [tf.constant(rng.randn(size, hidden_size).astype(np.float32)),  # W, large on purpose
             tf.constant(rng.randn(hidden_size).astype(np.float32)),
             tf.constant(rng.randn(size, hidden_size, levels).astype(np.float32) * 0.3)]
  upstream = tf.constant(rng.randn(4, size, levels).astype(np.float32))

  def reference(x, input_weight, hidden_bias, output_weight):
    a = hidden_bias + tf.cumsum(x[:, :, None] * input_weight, axis=1, exclusive=True)
    return tf.einsum("bdh,dhk->bdk", tf.sigmoid(a), output_weight)

  for function in (reference, nade._recurrence):  # pylint: disable=protected-access
    with tf.GradientTape() as tape:
      tape.watch([inputs, *weights])
      outputs = function(inputs, *weights)
      objective = tf.reduce_sum(outputs * upstream)
    gradients = tape.gradient(objective, [inputs, *weights])
    if function is reference:
      want_outputs, want_gradients = outputs, gradients
  np.testing.assert_allclose(outputs, want_outputs, rtol=1e-4, atol=1e-4)
  for got, want in zip(gradients, want_gradients):
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(tf.reduce_max(tf.abs(want))))


def test_made_reordered_connectivities_each_follow_their_own_ordering():
  model = made.MADE((3, 4, 1), hidden_sizes=(16, 16), num_masks=4, reorder_masks=True,
                    direct_connection=True, seed=1)
  model.build_for_images()
  d = model.event_size
  x = tf.Variable(tf.cast(tf.random.stateless_uniform([1, 3, 4, 1], seed=[2, 3]) < 0.5,
                          tf.float32))
  orders = []
  for mask_index in range(model.num_masks):
    degrees_in = model.layer_degrees[0][0][mask_index].numpy()  # m(x_i) = position + 1
    orders.append(tuple(np.argsort(degrees_in)))
    for pixel in range(d):
      with tf.GradientTape() as tape:
        out = tf.reshape(model._logits_with_mask(x, mask_index), [d])[pixel]  # pylint: disable=protected-access
      grads = np.abs(tape.gradient(out, x).numpy().reshape(-1))
      later = degrees_in >= degrees_in[pixel]
      assert np.all(grads[later] == 0), (mask_index, pixel)
  assert orders[0] == tuple(range(d)) and len(set(orders)) == model.num_masks


def test_made_masks_computed_from_degrees_are_the_stored_masks_of_before():
  # Runs trained before the masks were computed from degrees (when the model stored float
  # masks drawn as below, the paper's rule) must meet the same connectivities from the same seed.
  model = made.MADE((3, 4, 1), hidden_sizes=(7, 5), num_masks=3, ordering="random", seed=2)
  degrees_in = np.empty(12, np.int64)
  degrees_in[model.order] = np.arange(1, 13)
  rng = np.random.RandomState(3)
  for index in range(3):
    degrees, want = degrees_in, []
    for size in (7, 5):
      hidden = rng.randint(min(int(degrees.min()), 11), 12, size=size)
      want.append(hidden[None, :] >= degrees[:, None])  # m(k) >= m(k')
      degrees = hidden
    want.append(degrees_in[None, :] > degrees[:, None])  # m(x_d) > m(k)
    for layer in range(3):
      np.testing.assert_array_equal(model.mask(layer, index), want[layer].astype(np.float32))
  # made_masks (the flows' masks) draws the same from the same generator.
  np.testing.assert_array_equal(
      made.made_masks(degrees_in, (7, 5), 1, np.random.RandomState(3))[2], model.mask(2, 0))


def test_made_orthogonal_kernels_have_orthonormal_rows_or_columns():
  model = made.MADE((4, 5, 1), hidden_sizes=(30, 8), direct_connection=True,
                    kernel_initializer="orthogonal")
  model.build_for_images()
  for kernel in [layer.kernel.numpy() for layer in model.dense] + [model.direct.kernel.numpy()]:
    short = min(kernel.shape)
    gram = kernel.T @ kernel if kernel.shape[0] > kernel.shape[1] else kernel @ kernel.T
    np.testing.assert_allclose(gram, np.eye(short), atol=1e-5)
  # Every layer draws its own kernel (one shared initializer would repeat its draws).
  square = made.MADE((2, 2, 1), hidden_sizes=(4, 4, 4), kernel_initializer="orthogonal")
  square.build_for_images()
  assert not np.allclose(square.dense[1].kernel.numpy(), square.dense[2].kernel.numpy())
  with pytest.raises(errors.ConfigError, match="unknown kernel_initializer 'nope'"):
    made.MADE((2, 2, 1), kernel_initializer="nope")
