"""Kullback-Leibler divergences ``KL(targets || predictions)``, with the predictions
given as log-probabilities: the standard one, with log targets, and the generalised one
for unnormalised measures.

Each sums over ``axis`` (the elements ``where`` is true) and returns one value per
distribution.
"""

import functools
import warnings
from typing import Union

import jax
import jax.numpy as jnp

from gradtx._src.losses._checks import check_floating


def kl_divergence(
    log_predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    axis: Union[int, tuple[int, ...], None] = -1,
    where: Union[jax.typing.ArrayLike, None] = None,
) -> jax.Array:
  r"""``sum_i t_i (log t_i - log_predictions_i)``, with ``0 log 0 = 0``.

  The information gained using the target distribution ``t`` instead of the
  predicted one. A zero target contributes 0 to the value; its gradient with respect
  to ``targets`` there is NaN (the derivative of ``t log t`` at 0 is infinite), as in
  Optax.

  Reference: Kullback and Leibler, *On Information and Sufficiency*, 1951.
  """
  check_floating(log_predictions)
  check_floating(targets)
  log_targets = jnp.where(targets == 0, 0, jnp.log(targets))
  return jnp.sum(targets * (log_targets - log_predictions), axis=axis, where=where)


def kl_divergence_with_log_targets(
    log_predictions: jax.typing.ArrayLike,
    log_targets: jax.typing.ArrayLike,
    axis: Union[int, tuple[int, ...], None] = -1,
    where: Union[jax.typing.ArrayLike, None] = None,
) -> jax.Array:
  """``sum_i exp(log_t_i) (log_t_i - log_predictions_i)``: :func:`kl_divergence`
  with the targets given as log-probabilities too."""
  check_floating(log_predictions)
  check_floating(log_targets)
  loss = jnp.exp(log_targets) * (log_targets - log_predictions)
  return jnp.sum(loss, axis=axis, where=where)


def generalized_kl_divergence(
    log_predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    axis: Union[int, tuple[int, ...], None] = -1,
    where: Union[jax.typing.ArrayLike, None] = None,
) -> jax.Array:
  r"""``sum_i t_i (log t_i - log p_i) + p_i - t_i``, ``p = exp(log_predictions)``:
  the KL divergence extended to unnormalised measures, the Bregman divergence of
  ``f(x) = x log x - x``. Equal to :func:`kl_divergence` on distributions.

  References: Boyd and Vandenberghe, *Convex Optimization*, 2004, p. 90; Bregman,
  *The relaxation method of finding the common point of convex sets*, 1967.
  """
  kl = kl_divergence(log_predictions, targets, axis=axis, where=where)
  mass = jnp.sum(jnp.exp(log_predictions) - targets, axis=axis, where=where)
  return kl + mass


def _deprecated(replacement: str):
  """Warns ``DeprecationWarning`` at each call, as Optax's deprecated aliases do."""

  def decorator(fn):
    message = f"The function {fn.__name__} is deprecated. Please use {replacement} instead."

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      warnings.warn(message, category=DeprecationWarning, stacklevel=2)
      return fn(*args, **kwargs)

    return wrapper

  return decorator


@_deprecated("generalized_kl_divergence")
def convex_kl_divergence(
    log_predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    axis: Union[int, tuple[int, ...], None] = -1,
    where: Union[jax.typing.ArrayLike, None] = None,
) -> jax.Array:
  """Deprecated name of :func:`generalized_kl_divergence` (warns at each call)."""
  return generalized_kl_divergence(log_predictions, targets, axis=axis, where=where)
