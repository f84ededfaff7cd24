"""The spike-and-slab distribution of Variational Sparse Coding, as a TFP distribution.

Per dimension, with probability γ (`prob_active`) a Normal(μ, σ) "slab", otherwise a point mass
("spike") at 0:

  p(z) = γ · N(z; μ, σ²) + (1 − γ) · δ₀(z).

Densities are with respect to Lebesgue measure plus a unit atom at 0, so `log_prob(0)` is
log(1 − γ) and `log_prob(z ≠ 0)` is log γ + log N(z; μ, σ²). Two spike-and-slab distributions
share that reference measure, so their density ratio is a valid importance weight (the VSC
importance-weighted bound uses it).

Sampling comes in two forms:
  * exact (`sharpness=None`): choose the slab with probability γ, else return 0. Reparameterized
    in μ and σ, not in γ.
  * relaxed (`sharpness=c`): the paper's reparameterization
        z = sigmoid(c · (η + γ − 1)) ⊙ (μ + σ ε),   η ~ U(0, 1), ε ~ N(0, 1),
    differentiable in γ too; c grows during training so the sigmoid approaches the step
    1[η > 1 − γ], which selects the slab with probability γ.

The KL divergence between two spike-and-slab distributions q = (γ, μ, σ) and p = (α, μ₀, σ₀) is

  KL(q ‖ p) = (1 − γ) log((1 − γ)/(1 − α)) + γ log(γ/α) + γ · KL(N(μ, σ²) ‖ N(μ₀, σ₀²)),

which for the VSC prior (α, 0, 1) is the paper's closed form
  −½ γ (1 + log σ² − μ² − σ²) + (1 − γ) log((1 − γ)/(1 − α)) + γ log(γ/α).
It is computed with xlogy, so γ = 0, γ = 1 and α = 1 (the plain VAE) give finite values and
finite gradients.

References:
  Tonolini, Jensen & Murray-Smith, "Variational Sparse Coding", UAI 2019 (PMLR 115).
  Mitchell & Beauchamp, "Bayesian Variable Selection in Linear Regression", JASA 1988.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfgen.distributions import parameters as parameters_lib

tfd = tfp.distributions

_TINY = float(np.finfo(np.float32).tiny)


class SpikeAndSlab(parameters_lib.LocScale, tfd.Distribution):
  """Per-dimension mixture of a Normal slab (probability γ) and a point mass at 0.

  Args:
    loc: float tensor μ, the slab's mean.
    scale: positive float tensor σ, the slab's standard deviation.
    prob_active: float tensor γ in [0, 1], the probability of the slab.
    sharpness: None for exact draws, or a positive scalar c for the relaxed reparameterized
      draws of Variational Sparse Coding (a tensor or tf.Variable, so a schedule can change it).
  """

  def __init__(self, loc, scale, prob_active, sharpness=None, validate_args=False,
               allow_nan_stats=True, name="SpikeAndSlab"):
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      self._loc = tf.convert_to_tensor(loc, tf.float32, name="loc")
      self._scale = tf.convert_to_tensor(scale, tf.float32, name="scale")
      self._prob_active = tf.convert_to_tensor(prob_active, tf.float32, name="prob_active")
      self._sharpness = (None if sharpness is None
                         else tf.convert_to_tensor(sharpness, tf.float32, name="sharpness"))
      super().__init__(
          dtype=tf.float32,
          reparameterization_type=(tfd.NOT_REPARAMETERIZED if sharpness is None
                                   else tfd.FULLY_REPARAMETERIZED),
          validate_args=validate_args, allow_nan_stats=allow_nan_stats,
          parameters=parameters, name=name)

  @classmethod
  def _parameter_properties(cls, dtype, num_classes=None):
    return dict(
        **parameters_lib.loc_scale_properties(),
        prob_active=tfp.util.ParameterProperties(
            default_constraining_bijector_fn=lambda: tfp.bijectors.Sigmoid()),
        sharpness=tfp.util.ParameterProperties(event_ndims=None, is_preferred=False))

  @property
  def sharpness(self):
    return self._sharpness

  def prob_active(self) -> tf.Tensor:
    """γ, the probability that each dimension is drawn from the slab (is non-zero)."""
    return self._prob_active + tf.zeros_like(self._loc)

  def slab(self) -> tfd.Normal:
    return tfd.Normal(self._loc, self._scale)

  def _batch_shape_tensor(self):
    return tf.broadcast_dynamic_shape(
        tf.shape(self._loc), tf.broadcast_dynamic_shape(tf.shape(self._scale),
                                                        tf.shape(self._prob_active)))

  def _batch_shape(self):
    return tf.broadcast_static_shape(
        self._loc.shape, tf.broadcast_static_shape(self._scale.shape, self._prob_active.shape))

  def _event_shape(self):
    return tf.TensorShape([])

  def _event_shape_tensor(self):
    return tf.constant([], tf.int32)

  def _sample_n(self, n, seed=None):
    slab_seed, select_seed = tfp.random.split_seed(seed, n=2)
    shape = tf.concat([[n], self._batch_shape_tensor()], 0)
    slab = self._loc + self._scale * tf.random.stateless_normal(shape, seed=slab_seed)
    # In float32 a slab draw rounds to exactly 0 about once in 1e8 draws; moved off 0 it cannot
    # be mistaken for the spike (log_prob would otherwise score it as one, and as −∞ at γ = 1).
    slab = tf.where(tf.equal(slab, 0.0), tf.fill(tf.shape(slab), _TINY), slab)
    uniform = tf.random.stateless_uniform(shape, seed=select_seed)
    if self._sharpness is None:
      return tf.where(uniform < self._prob_active, slab, tf.zeros_like(slab))
    return tf.sigmoid(self._sharpness * (uniform + self._prob_active - 1.0)) * slab

  def _log_prob(self, z):
    z = tf.convert_to_tensor(z, tf.float32)
    gamma = self.prob_active()
    is_spike = tf.equal(z, 0.0)
    # Safe operands for the branch tf.where discards keep gradients finite at γ = 0 or 1.
    log_spike = tf.math.log(tf.where(is_spike, 1.0 - gamma, 1.0))
    log_slab = tf.math.log(tf.where(is_spike, 1.0, gamma)) + self.slab().log_prob(
        tf.where(is_spike, self._loc, z))
    return tf.where(is_spike, log_spike, log_slab)

  def _mean(self):
    return self._prob_active * self._loc + tf.zeros_like(self._scale)

  def _variance(self):
    gamma = self._prob_active
    return gamma * (self._scale ** 2 + self._loc ** 2) - (gamma * self._loc) ** 2

  def _stddev(self):
    return tf.sqrt(self._variance())


def _kl_bernoulli(q_active: tf.Tensor, p_active: tf.Tensor) -> tf.Tensor:
  """KL between the slab selections, Bernoulli(γ) ‖ Bernoulli(α), finite at 0 and 1."""
  q_inactive, p_inactive = 1.0 - q_active, 1.0 - p_active
  return (tf.math.xlogy(q_active, q_active) - tf.math.xlogy(q_active, p_active)
          + tf.math.xlogy(q_inactive, q_inactive) - tf.math.xlogy(q_inactive, p_inactive))


@tfd.RegisterKL(SpikeAndSlab, SpikeAndSlab)
def _kl_spike_and_slab(q: SpikeAndSlab, p: SpikeAndSlab, name=None):
  """KL(q ‖ p) per dimension (see the module docstring); +inf where q has mass p lacks."""
  with tf.name_scope(name or "kl_spike_and_slab"):
    q_active, p_active = q.prob_active(), p.prob_active()
    slab_kl = tfd.kl_divergence(q.slab(), p.slab())
    # γ · KL(slab) must be 0 where γ = 0 even if the slabs are far apart.
    return _kl_bernoulli(q_active, p_active) + tf.where(
        q_active > 0.0, q_active * slab_kl, tf.zeros_like(slab_kl))
