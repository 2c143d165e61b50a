"""Second-order quantities of a loss ``loss(params, inputs, targets)`` (Optax's
``optax.second_order``): a Hessian-vector product, the Hessian's diagonal and the
diagonal of the observed Fisher information.

Optax 0.2.8 keeps these as deprecated (since 0.2.7, to be removed in 0.2.9); gradtx
keeps their signatures and numerics, without the deprecation warning. The ``v`` they
take and the diagonals they return are vectors over the raveled params
(``jax.flatten_util.ravel_pytree``'s order).
"""

from __future__ import annotations

import abc
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


class LossFn(Protocol):
  """A loss ``loss(params, inputs, targets) -> scalar``."""

  @abc.abstractmethod
  def __call__(self, params: Any, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    ...


def _flat(tree: Any) -> jax.Array:
  return ravel_pytree(tree)[0]


def hvp(loss: LossFn, v: jax.Array, params: Any, inputs: jax.Array,
        targets: jax.Array) -> Any:
  """The Hessian of ``loss`` at ``(params, inputs, targets)`` times ``v``, ``H v``.

  ``v`` is a vector of the raveled params' size; the product is returned as a tree of
  the params' structure. Computed forward-over-reverse (Pearlmutter 1994): the
  directional derivative of ``jax.grad(loss)`` along ``v``, without forming ``H``.
  """
  _, unravel = ravel_pytree(params)
  gradient = jax.grad(lambda p: loss(p, inputs, targets))
  return jax.jvp(gradient, [params], [unravel(v)])[1]


def hessian_diag(loss: LossFn, params: Any, inputs: jax.Array,
                 targets: jax.Array) -> jax.Array:
  """The diagonal of the Hessian of ``loss`` at ``(params, inputs, targets)``, a vector
  over the raveled params: ``H_ii = e_i^T H e_i``, one Hessian-vector product per
  param (``n`` products for ``n`` params, batched with ``vmap``)."""
  basis = jnp.eye(_flat(params).size)
  entry = lambda e: jnp.vdot(e, _flat(hvp(loss, e, params, inputs, targets)))  # noqa: E731
  return jax.vmap(entry)(basis)


def fisher_diag(negative_log_likelihood: LossFn, params: Any, inputs: jax.Array,
                targets: jax.Array) -> jax.Array:
  """The diagonal of the observed Fisher information at ``(params, inputs, targets)``:
  the squared gradient of the negative log-likelihood, ``(d nll / d theta_i)^2``, over
  the raveled params."""
  return jnp.square(_flat(jax.grad(negative_log_likelihood)(params, inputs, targets)))
