"""L-BFGS: a quasi-Newton direction from the last ``m`` steps and gradient changes.

Liu & Nocedal (1989); the two-loop recursion of Nocedal & Wright (2006), Algorithm 7.4.
The direction ``P_k g_k`` applies an inverse-Hessian approximation built from the pairs
``s_j = w_{j+1} - w_j``, ``y_j = g_{j+1} - g_j`` (``rho_j = 1 / <y_j, s_j>``) of the last
``memory_size`` steps, kept as circular buffers in the state, to ``gamma_k I``:
``gamma_k = <s, y> / <y, y>`` of the latest pair (``scale_init_precond=True``) or 1; at the
first step ``gamma_0 = min(1, 1/||g_0||)``, so that the first step has length at most 1.
Numerics, state and defaults are Optax 0.2.8's (``optax.scale_by_lbfgs``, ``optax.lbfgs``).

One addition, which changes nothing where the direction is a descent direction: a
direction that is not finite, or along which the loss does not decrease
(``<P_k g_k, g_k> <= 0`` for ``g_k != 0``, possible after a pair with ``<s, y> <= 0``, i.e.
after a failed line search or on a non-convex loss), is replaced by the first-step
direction ``min(1, 1/||g||) g`` and the memory is cleared; a non-finite gradient gives a
zero direction. Optax would follow such a direction, and the line search then fails.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, combine, scaling
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.linesearch import scale_by_zoom_linesearch
from gradtx._src.tree.casting import tree_zeros_like, widest_float_dtype
from gradtx._src.tree.math import (safe_increment, tree_add_scale_like, tree_norm,
                                   tree_real_vdot, zero_count)


class ScaleByLBFGSState(NamedTuple):
  """State of :func:`scale_by_lbfgs` (Optax's fields).

  Attributes:
    count: steps taken.
    params: the params at the last step.
    updates: the incoming updates (gradients) at the last step.
    diff_params_memory: the last ``memory_size`` steps ``s_j``, stacked on a leading
      axis of each leaf, a circular buffer.
    diff_updates_memory: the matching gradient changes ``y_j``.
    weights_memory: the matching ``rho_j = 1/<y_j, s_j>`` (0 for an empty slot).
  """

  count: jax.Array
  params: base.Params
  updates: base.Updates
  diff_params_memory: base.PyTree
  diff_updates_memory: base.PyTree
  weights_memory: jax.Array


def _two_loop(updates, diff_params_memory, diff_updates_memory, weights_memory,
              identity_scale, memory_idx):
  """``P u`` by Nocedal & Wright's Algorithm 7.4, oldest pair at ``memory_idx``."""
  memory_size = weights_memory.shape[0]
  indices = (memory_idx + jnp.arange(memory_size)) % memory_size

  def pair(idx):
    return jax.tree.map(lambda x: x[idx], (diff_params_memory, diff_updates_memory))

  def newest_to_oldest(vec, idx):
    s, y = pair(idx)
    alpha = weights_memory[idx] * tree_real_vdot(s, vec)
    return tree_add_scale_like(vec, -alpha, y), alpha

  vec, alphas = jax.lax.scan(newest_to_oldest, updates, indices, reverse=True)
  vec = jax.tree.map(lambda v: identity_scale * v, vec)

  def oldest_to_newest(vec, idx_alpha):
    idx, alpha = idx_alpha
    s, y = pair(idx)
    beta = weights_memory[idx] * tree_real_vdot(y, vec)
    return tree_add_scale_like(vec, alpha - beta, s), beta

  vec, _ = jax.lax.scan(oldest_to_newest, vec, (indices, alphas))
  return vec


@hyperparameters(memory_size="int >= 1", scale_init_precond="bool")
def scale_by_lbfgs(memory_size: int = 10,
                   scale_init_precond: bool = True) -> base.GradientTransformation:
  r"""The L-BFGS direction ``P_k u_k`` (Optax numerics; module docstring).

  ``update(updates, state, params)`` first stores the pair ``(params - params_prev,
  updates - updates_prev)`` (so that, chained before a line search, the memory is
  updated with the step the line search accepted), then emits ``P_k u_k``. Chain a
  negation and a line search after it, as :func:`lbfgs` does.

  Args:
    memory_size: the number ``m`` of pairs kept (>= 1).
    scale_init_precond: ``gamma_k = <s, y>/<y, y>`` of the latest pair rather than 1.

  References:
    Liu & Nocedal, On the limited memory BFGS method for large scale optimization,
    Mathematical Programming 1989.
    Nocedal & Wright, Numerical Optimization, 2nd ed., 2006, Algorithms 7.4 and 7.5.
  """
  owner = "scale_by_lbfgs"

  def init(params):
    # Zeros computed from the params, so that under jit the memory takes their sharding
    # (replicated along the leading memory axis).
    zeros = tree_zeros_like(params)
    stacked = jax.tree.map(lambda z: jnp.broadcast_to(z, (memory_size, *z.shape)), zeros)
    return ScaleByLBFGSState(
        count=zero_count(),
        params=zeros,
        updates=zeros,
        diff_params_memory=stacked,
        diff_updates_memory=stacked,
        weights_memory=jnp.zeros([memory_size], widest_float_dtype(params)))

  def update(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format(owner))
    base.check_same_structure(owner, updates, params, state.params)
    first = state.count == 0
    memory_idx = state.count % memory_size
    prev_memory_idx = (state.count - 1) % memory_size

    # 1. The newest pair; undefined at the first step, where it is kept at 0.
    diff_params = jax.tree.map(lambda a, b: a - b, params, state.params)
    diff_updates = jax.tree.map(lambda a, b: a - b, updates, state.updates)
    curvature = tree_real_vdot(diff_updates, diff_params)
    weight = jnp.where(curvature == 0.0, 0.0, 1.0 / curvature)
    diff_params, diff_updates, weight = jax.tree.map(
        lambda x: jnp.where(first, jnp.zeros_like(x), x), (diff_params, diff_updates, weight))
    diff_params_memory, diff_updates_memory, weights_memory = jax.tree.map(
        lambda memory, x: memory.at[prev_memory_idx].set(x),
        (state.diff_params_memory, state.diff_updates_memory, state.weights_memory),
        (diff_params, diff_updates, weight))

    # 2. gamma_k; at the first step min(1, 1/||u||).
    #    (The inner where keeps jax.grad finite at a zero gradient.)
    sq_norm = tree_norm(updates, squared=True)
    first_scale = jnp.where(sq_norm > 0,
                            jnp.minimum(1.0, 1.0 / jnp.sqrt(jnp.where(sq_norm > 0, sq_norm, 1.0))),
                            1.0)
    if scale_init_precond:
      # <y, s>, already reduced for the weight (it differs from the masked pair's only
      # at the first step, where first_scale is used); a reduction less keeps the step's
      # kernel graph narrow enough for XLA:CPU to run it on one thread
      # (benchmarks/README.md, "Two speeds of XLA:CPU").
      numerator = curvature
      denominator = tree_norm(diff_updates, squared=True)
      # (The inner where keeps jax.grad finite at the first step, where both are 0.)
      identity_scale = jnp.where(
          denominator > 0.0, numerator / jnp.where(denominator > 0.0, denominator, 1.0), 1.0)
      identity_scale = jnp.where(first, first_scale, identity_scale)
    else:
      identity_scale = 1.0

    # 3. The two-loop recursion.
    direction = _two_loop(updates, diff_params_memory, diff_updates_memory,
                          weights_memory, identity_scale, memory_idx)

    # 4. Recovery (module docstring): not a descent direction -> first-step direction,
    #    memory cleared. A cond, not a select: the direction is then computed once, as
    #    Optax computes it, not re-fused (and differently rounded) into the select.
    along = tree_real_vdot(updates, direction)
    not_descent = ~jnp.isfinite(along) | ((along <= 0) & (tree_norm(updates, squared=True) > 0))

    def restart(direction, *memory):
      finite = jnp.isfinite(tree_norm(updates, squared=True))
      fallback = jax.tree.map(
          lambda u, d: jnp.where(finite, first_scale * u, 0).astype(d.dtype), updates,
          direction)
      return (fallback, *jax.tree.map(jnp.zeros_like, memory))

    direction, diff_params_memory, diff_updates_memory, weights_memory = jax.lax.cond(
        not_descent, restart, lambda *operands: operands, direction, diff_params_memory,
        diff_updates_memory, weights_memory)

    return direction, ScaleByLBFGSState(
        count=safe_increment(state.count),
        params=params,
        updates=updates,
        diff_params_memory=diff_params_memory,
        diff_updates_memory=diff_updates_memory,
        weights_memory=weights_memory)

  return base.GradientTransformation(init, update)


@hyperparameters(native=("learning_rate",), memory_size="int >= 1",
                 learning_rate="[0, inf) | None", scale_init_precond="bool",
                 linesearch="transform | None")
def lbfgs(
    learning_rate: base.ScalarOrSchedule | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: base.GradientTransformation | None = scale_by_zoom_linesearch(
        max_linesearch_steps=20, initial_guess_strategy="one"),
) -> base.GradientTransformation:
  r"""L-BFGS with a line search (Optax's ``lbfgs``: signature, defaults, numerics).

  ``chain(scale_by_lbfgs(memory_size, scale_init_precond), scale(-1) or
  scale_by_learning_rate(learning_rate), linesearch)``: the update is ``-eta_k P_k g_k``
  with ``P_k`` the L-BFGS inverse-Hessian approximation (:func:`scale_by_lbfgs`) and
  ``eta_k`` found by the line search, by default a zoom line search for the strong Wolfe
  conditions starting from a step of 1 (:func:`scale_by_zoom_linesearch`), whose curvature
  condition keeps ``<s, y> > 0``. ``update(grads, state, params, *, value, grad,
  value_fn)``; with :func:`value_and_grad_from_state` the value and gradient at the new
  params come from the line search, one evaluation of the loss less per step::

    solver = gtx.lbfgs()
    value_and_grad = gtx.value_and_grad_from_state(f)
    state = solver.init(params)
    for _ in range(steps):
      value, grad = value_and_grad(params, state=state)
      updates, state = solver.update(grad, state, params, value=value, grad=grad,
                                     value_fn=f)
      params = gtx.apply_updates(params, updates)

  Args:
    learning_rate: a fixed step (or schedule) instead of ``-1``; None by default, the
      line search choosing the step.
    memory_size: pairs kept (>= 1).
    scale_init_precond: see :func:`scale_by_lbfgs`.
    linesearch: a line search transform (or None for none).

  References:
    Liu & Nocedal, Mathematical Programming 1989; Nocedal & Wright, Numerical
    Optimization, 2nd ed., 2006, Algorithms 7.4, 7.5.
  """
  step = (scaling.scale(-1.0) if learning_rate is None
          else scaling.scale_by_learning_rate(learning_rate))
  return combine.chain(scale_by_lbfgs(memory_size, scale_init_precond), step,
                       base.identity() if linesearch is None else linesearch)

