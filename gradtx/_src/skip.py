"""Guards against unwanted updates.

``zero_nans`` replaces NaNs in the updates by zeros and records where it found them;
``keep_params_nonnegative`` shortens the updates that would make a param negative;
``skip_not_finite`` and ``skip_large_updates`` are the tests that
:class:`~gradtx.MultiSteps` (``should_skip_update_fn``) uses to drop a whole micro-step.

Reference: Optax's functions of the same names (same signatures, state fields and
numerics).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Protocol

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.leafwise import leafwise

NonNegativeParamsState = base.EmptyState


def keep_params_nonnegative() -> base.GradientTransformation:
  """Keeps the params non-negative: an update that would take a param below zero takes
  it to zero instead::

    u' = -p  if p + u < 0  else u

  Use it last in a chain (it needs the params, and sees the final update). A param
  that is already negative is moved to zero.
  """
  return leafwise("keep_params_nonnegative", lambda u, p: jnp.where(p + u < 0.0, -p, u),
                  uses_params=True)


class ZeroNansState(NamedTuple):
  """State of :func:`zero_nans`.

  Attributes:
    found_nan: a tree with the params' structure: per param, a boolean scalar, True iff
      its update held a NaN at the last call of ``update``.
  """

  found_nan: Any


def zero_nans() -> base.GradientTransformation:
  """Replaces NaNs in the updates by zeros (Infs pass); ``state.found_nan`` records, per
  param, whether the last update held one."""

  def rule(u, found_nan):
    del found_nan
    is_nan = jnp.isnan(u)
    return jnp.where(is_nan, jnp.zeros_like(u), u), jnp.any(is_nan)

  return leafwise("zero_nans", rule, state=ZeroNansState,
                  init=lambda p: jnp.array(False))


class ShouldSkipUpdateFunction(Protocol):
  """``fn(updates, gradient_step, params) -> (should_skip, skip_state)``.

  Decides whether :class:`~gradtx.MultiSteps` drops a micro-step: ``should_skip`` is a
  boolean scalar array; ``skip_state`` any pytree of arrays (the same structure every
  step), stored in ``MultiStepsState.skip_state`` for monitoring. ``gradient_step``
  counts the inner steps taken (to anneal a threshold, say).
  """

  def __call__(self, updates: base.Updates, gradient_step: jax.Array,
               params: Optional[base.Params]) -> tuple[jax.Array, base.PyTree]:
    ...


def skip_not_finite(updates: base.Updates, gradient_step: jax.Array,
                    params: Optional[base.Params]) -> tuple[jax.Array, dict[str, Any]]:
  """Skip the micro-step if any update holds a NaN or an Inf.

  Returns:
    ``should_skip``, and ``{"should_skip": ..., "num_not_finite": ...}``: the number of
    non-finite entries over all the updates (int32).
  """
  del gradient_step, params
  per_leaf = [jnp.sum(jnp.logical_not(jnp.isfinite(u))) for u in jax.tree.leaves(updates)]
  num_not_finite = jnp.sum(jnp.array(per_leaf))
  should_skip = num_not_finite > 0
  return should_skip, {"should_skip": should_skip, "num_not_finite": num_not_finite}


def skip_large_updates(updates: base.Updates, gradient_step: jax.Array,
                       params: Optional[base.Params],
                       max_squared_norm: Any) -> tuple[jax.Array, dict[str, Any]]:
  """Skip the micro-step if ``||updates||**2`` (over all leaves) is not below
  ``max_squared_norm``, which includes a NaN norm. Give ``max_squared_norm`` with
  ``functools.partial`` to make a :class:`ShouldSkipUpdateFunction`.

  Each leaf's sum of squares is computed in at least float32 (Optax: in the leaf's
  dtype; the same numbers for float32 and float64 updates).

  Returns:
    ``should_skip``, and ``{"should_skip": ..., "norm_squared": ...}``.
  """
  del gradient_step, params

  def sum_squares(u):
    u = jnp.asarray(u)
    u = u.astype(jnp.promote_types(u.dtype, jnp.float32))
    return jnp.sum(u**2)

  norm_sq = jnp.sum(jnp.array([sum_squares(u) for u in jax.tree.leaves(updates)]))
  should_skip = jnp.logical_not(norm_sq < max_squared_norm)
  return should_skip, {"should_skip": should_skip, "norm_squared": norm_sq}
