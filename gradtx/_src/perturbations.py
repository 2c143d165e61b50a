"""Differentiable Monte-Carlo smoothing of a function by random perturbations of its
input (Optax's ``optax.perturbations``).

``make_perturbed_fun(f, ...)`` returns ``key, x -> mean_k f(x + sigma z_k)`` whose
derivatives of every order are the score-function (REINFORCE) estimates of those of
``f_sigma(x) = E_z f(x + sigma z)`` (Berthet et al. 2020, "Learning with Differentiable
Perturbed Optimizers"), so ``f`` itself need not be differentiable. Signatures,
defaults and the use of the key (one key per sample, then one per leaf) are Optax
0.2.8's, so a key gives the same numbers.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from gradtx._src.tree.math import tree_add_scale, tree_scale, tree_sum
from gradtx._src.tree.random import tree_random_like

PyTree = Any


class _Distribution:
  """A parameterless noise distribution: equal to any other of its name (Optax's
  included), as they sample and score alike."""

  def __eq__(self, other):
    return (type(other).__name__ == type(self).__name__
            and callable(getattr(other, "sample", None))
            and callable(getattr(other, "log_prob", None)))

  def __hash__(self):
    return hash(type(self).__name__)


class Normal(_Distribution):
  """The standard normal distribution: samples and the log-density up to a constant,
  ``-z^2 / 2``."""

  def sample(self, key: jax.typing.ArrayLike, sample_shape: tuple[int, ...] = (),
             dtype: jax.typing.DTypeLike = float) -> jax.Array:
    return jax.random.normal(key, sample_shape, dtype)

  def log_prob(self, inputs: jax.Array) -> jax.Array:
    return -0.5 * inputs**2


class Gumbel(_Distribution):
  """The standard Gumbel distribution: samples and the log-density ``-z - exp(-z)``."""

  def sample(self, key: jax.typing.ArrayLike, sample_shape: tuple[int, ...] = (),
             dtype: jax.typing.DTypeLike = float) -> jax.Array:
    return jax.random.gumbel(key, sample_shape, dtype)

  def log_prob(self, inputs: jax.Array) -> jax.Array:
    return -inputs - jnp.exp(-inputs)


def _magic_box(x: jax.Array) -> jax.Array:
  """Foerster et al.'s (2018) DiCE operator: 1 in value, ``exp(x - x)`` whose
  derivative is the derivative of ``x`` (times 1), at every order."""
  return jnp.exp(x - jax.lax.stop_gradient(x))


def make_perturbed_fun(fun: Callable[[PyTree], PyTree], num_samples: int = 1000,
                       sigma: jax.typing.ArrayLike = 0.1, noise=Gumbel(),
                       use_baseline=True) -> Callable[[jax.Array, PyTree], PyTree]:
  r"""A differentiable stochastic approximation of ``fun`` (a pytree -> pytree map).

  The returned ``f(key, x)`` averages, over ``num_samples`` draws ``z`` of ``noise``
  (one key per draw from ``jax.random.split(key, num_samples)``, then one per leaf),

  .. math::
    \mathrm{box}(\log\mu(z)) \, f(y) + (1 - \mathrm{box}(\log\mu(z))) \, f(x),
    \qquad y = \mathrm{stop\_gradient}(x + \sigma z), \quad z = (y - x) / \sigma

  where ``box`` is the DiCE "magic box" (1 in value) and the second term, the baseline
  ``f(x)`` at the unperturbed input (with ``use_baseline``), reduces the variance. Its
  value estimates ``E f(x + sigma z)`` and its derivatives of any order (through JAX's
  autodiff) are the score-function estimates of that expectation's, using values of
  ``fun`` only.

  Args:
    fun: the function to smooth, from a pytree to a pytree of arrays.
    num_samples: the number of perturbations averaged over.
    sigma: the scale of the perturbations.
    noise: an object with ``sample(key, shape, dtype)`` and ``log_prob(z)``, like
      :class:`Gumbel` (the default) or :class:`Normal`.
    use_baseline: subtract the baseline ``f(x)`` (control variate).

  Returns:
    ``f(key, x)``, with ``fun``'s signature after a leading PRNG key.

  References: Berthet et al. 2020 (arXiv:2002.08676); Foerster et al. 2018, DiCE
  (arXiv:1802.05098); Salimans et al. 2017 (arXiv:1703.03864).
  """

  def one_sample(key, x, baseline):
    z = tree_random_like(key, x, sampler=noise.sample)
    perturbed = jax.lax.stop_gradient(jax.tree.map(lambda x, z: x + sigma * z, x, z))
    # The noise recovered from the perturbed point: its dependence on x carries the score.
    z = jax.tree.map(lambda x, y: (y - x) / sigma, x, perturbed)
    box = _magic_box(tree_sum(jax.tree.map(noise.log_prob, z)))
    out = tree_scale(box, fun(perturbed))
    if use_baseline:
      out = tree_add_scale(out, 1 - box, baseline)
    return out

  def perturbed_fun(key, x):
    baseline = fun(jax.lax.stop_gradient(x)) if use_baseline else None
    samples = jax.vmap(one_sample, in_axes=(0, None, None))(
        jax.random.split(key, num_samples), x, baseline)
    return jax.tree.map(lambda s: jnp.mean(s, axis=0), samples)

  return perturbed_fun
