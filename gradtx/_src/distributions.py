"""A diagonal Gaussian parametrised by its mean and log standard deviation, Optax's
``multi_normal`` (used to sample perturbations, as in ``optax.perturbations``)."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import jax.scipy.stats.norm


class MultiNormalDiagFromLogScale:
  """``N(loc, diag(exp(log_scale))**2)``, with its parameters exposed.

  ``sample(shape, key)`` draws ``shape + param_shape`` samples ``loc + exp(log_scale) *
  eps``, ``eps ~ N(0, I)``; ``log_prob(x)`` sums the normal log-densities over the
  parameter axes; ``params`` is ``[loc, log_scale]``.
  """

  def __init__(self, loc: jax.typing.ArrayLike, log_scale: jax.typing.ArrayLike):
    self._log_scale = jnp.asarray(log_scale)
    self._scale = jnp.exp(log_scale)
    self._mean = jnp.asarray(loc)
    self._param_shape = jax.lax.broadcast_shapes(self._mean.shape, self._scale.shape)

  def sample(self, shape: Sequence[int], key: jax.Array) -> jax.Array:
    noise = jax.random.normal(key, shape=tuple(shape) + self._param_shape)
    return noise * self._scale + self._mean

  def log_prob(self, x: jax.typing.ArrayLike) -> jax.Array:
    log_prob = jax.scipy.stats.norm.logpdf(x, loc=self._mean, scale=self._scale)
    return jnp.sum(log_prob, axis=[-(i + 1) for i in range(len(self._param_shape))])

  @property
  def log_scale(self) -> jax.Array:
    return self._log_scale

  @property
  def params(self) -> Sequence[jax.Array]:
    return [self._mean, self._log_scale]


def multi_normal(loc: jax.typing.ArrayLike,
                 log_scale: jax.typing.ArrayLike) -> MultiNormalDiagFromLogScale:
  """The diagonal Gaussian with mean ``loc`` and standard deviation ``exp(log_scale)``."""
  return MultiNormalDiagFromLogScale(loc=loc, log_scale=log_scale)
