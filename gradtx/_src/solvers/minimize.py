"""A compiled full-batch loop: run any transform on a deterministic objective until the
gradient vanishes.

``minimize(fun, x0, tx)`` is the ``scipy.optimize.minimize`` of gradtx: one
``jax.lax.while_loop``, compiled once per ``(fun, tx)``, that calls ``tx.update`` with the
extras a line search or a second-order method needs (``value=``, ``grad=``,
``value_fn=fun``), adds the updates to the params, and stops when the gradient's 2-norm
is at most ``tol``, after ``max_steps`` updates, or once ``stall_steps`` updates in a row
have left the params and the transform's floating-point state unchanged. When a line
search in ``tx`` stored the value and gradient at the params it returned (Optax's
``store_grad=True``, read as ``optax.value_and_grad_from_state`` does), they are used
instead of evaluating ``fun`` again.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.tree.math import all_finite, global_norm, tree_where


class MinimizeResult(NamedTuple):
  """What :func:`minimize` returns; every field describes the returned ``params``.

  Attributes:
    params: the solution (the last params whose value and gradient were finite).
    value: ``fun(params)``.
    grad_norm: the 2-norm of ``jax.grad(fun)(params)`` over all leaves.
    num_steps: the updates applied to ``x0`` to reach ``params``.
    num_fun_evals: evaluations of ``fun`` (each value, or value and gradient, counts one):
      the loop's own plus those counted in the transform's state (every state field
      named ``num_fun_evals``, as line searches and :func:`hessian_free` keep).
    converged: whether ``grad_norm <= tol``.
  """

  params: base.Params
  value: jax.Array
  grad_norm: jax.Array
  num_steps: jax.Array
  num_fun_evals: jax.Array
  converged: jax.Array


def count_fun_evals(state: base.OptState) -> jax.Array:
  """The sum of every field named ``num_fun_evals`` anywhere in ``state``."""
  total = jnp.zeros([], jnp.int32)
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    key = path[-1] if path else None
    if isinstance(key, jax.tree_util.GetAttrKey) and key.name == "num_fun_evals":
      total = total + jnp.asarray(leaf).astype(jnp.int32)
  return total


def _is_named_tuple(node: Any) -> bool:
  return isinstance(node, tuple) and hasattr(node, "_fields")


def stored_value_and_grad(state: base.OptState, params: base.Params) -> tuple[Any, Any]:
  """The ``value`` and ``grad`` a line search stored in ``state`` (the last such pair in
  the state's order, which for a chain is its last line search), or ``(None, None)``.

  A pair counts only when ``grad`` is not ``None`` and has the structure of the params.
  """
  params_def = jax.tree.structure(params)
  nodes = [state]
  while nodes:
    node = nodes.pop()
    if _is_named_tuple(node) and {"value", "grad"} <= set(node._fields):
      if node.grad is not None and jax.tree.structure(node.grad) == params_def:
        return node.value, node.grad
    if isinstance(node, (tuple, list)):
      nodes.extend(node)
    elif isinstance(node, dict):
      nodes.extend(node.values())
  return None, None


def _all_finite(value: jax.Array, grad: base.PyTree) -> jax.Array:
  return jnp.isfinite(value) & all_finite(grad)


class _Carry(NamedTuple):
  params: base.Params
  state: base.OptState
  value: jax.Array
  grad: base.PyTree
  num_steps: jax.Array
  own_evals: jax.Array
  failed: jax.Array  # the last update led to a non-finite value or gradient
  stalled: jax.Array  # consecutive updates after which nothing that could change had


def _unchanged(new: base.PyTree, old: base.PyTree) -> jax.Array:
  """Whether every floating-point leaf of ``new`` equals its leaf in ``old`` (integer
  leaves, such as step counts and random keys, are not compared; a NaN is a change)."""
  same = jnp.ones([], bool)
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old)):
    if jnp.issubdtype(jnp.result_type(a), jnp.inexact):
      same = same & jnp.all(a == b)
  return same


def _run(fun: Callable[[base.Params], jax.Array], tx: base.GradientTransformation,
         x0: base.Params, max_steps: jax.Array, tol: jax.Array,
         stall_steps: jax.Array) -> MinimizeResult:
  value_and_grad = jax.value_and_grad(fun)
  value, grad = value_and_grad(x0)
  zero = jnp.zeros([], jnp.int32)
  carry = _Carry(x0, tx.init(x0), value, grad, zero, jnp.ones([], jnp.int32),
                 ~_all_finite(value, grad), zero)

  def going(c: _Carry) -> jax.Array:
    return ((~c.failed) & (c.num_steps < max_steps) & (c.stalled < stall_steps)
            & (global_norm(c.grad) > tol))

  def step(c: _Carry) -> _Carry:
    updates, state = base.call_update(tx, c.grad, c.state, c.params,
                                      dict(value=c.value, grad=c.grad, value_fn=fun))
    params = base.apply_updates(c.params, updates)
    stored_value, stored_grad = stored_value_and_grad(state, params)
    if stored_value is None:
      value, grad = value_and_grad(params)
      own_evals = c.own_evals + 1
    else:
      like_carry = lambda v, g: (jnp.asarray(v).astype(c.value.dtype),  # noqa: E731
                                 jax.tree.map(lambda a, b: a.astype(b.dtype), g, c.grad))
      reuse = jnp.isfinite(stored_value)
      value, grad = jax.lax.cond(reuse, lambda p: like_carry(stored_value, stored_grad),
                                 lambda p: like_carry(*value_and_grad(p)), params)
      own_evals = c.own_evals + jnp.where(reuse, 0, 1).astype(jnp.int32)
    ok = _all_finite(value, grad)
    keep = lambda new, old: tree_where(ok, new, old)  # noqa: E731
    # Unchanged params give an unchanged value, so the params and the state are compared
    # only then (comparing them every step is costly next to a small L-BFGS step).
    stuck = jax.lax.cond(value == c.value,
                         lambda: _unchanged(params, c.params) & _unchanged(state, c.state),
                         lambda: jnp.zeros([], bool))
    stalled = jnp.where(stuck, c.stalled + 1, 0)
    return _Carry(params=keep(params, c.params), state=state,
                  value=keep(value, c.value), grad=keep(grad, c.grad),
                  num_steps=c.num_steps + ok.astype(jnp.int32), own_evals=own_evals,
                  failed=~ok, stalled=stalled.astype(jnp.int32))

  c = jax.lax.while_loop(going, step, carry)
  grad_norm = global_norm(c.grad)
  converged = _all_finite(c.value, c.grad) & (grad_norm <= tol)
  return MinimizeResult(c.params, c.value, grad_norm, c.num_steps,
                        c.own_evals + count_fun_evals(c.state), converged)


_run_jit = jax.jit(_run, static_argnums=(0, 1))


def _as_int32(n: Any) -> Any:
  # NumPy scalars, not jnp arrays: each jnp.asarray is a host-to-device transfer, as
  # costly as a small problem's whole loop.
  if isinstance(n, jax.core.Tracer):
    return n
  return np.int32(min(int(n), np.iinfo(np.int32).max))


@hyperparameters(schedules=False, max_steps="int >= 0", tol="[0, inf)",
                 stall_steps="int >= 1 | None")
def minimize(fun: Callable[[base.Params], jax.Array], x0: base.Params,
             tx: base.GradientTransformation, *, max_steps: int = 500,
             tol: float = 1e-6, stall_steps: int | None = 10) -> MinimizeResult:
  """Minimises ``fun`` from ``x0`` with the transform ``tx`` in one compiled loop.

  Each step::

    updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=fun)
    params = params + updates
    value, grad = value and gradient of fun at params   (from tx's state if it has them)

  until ``||grad||_2 <= tol`` (over all leaves together) or ``max_steps`` updates. The
  updates are used as they come, so ``tx`` must include its step: ``gtx.sgd(0.1)``,
  ``gtx.adam(1e-2)``, ``gtx.lbfgs()``, ``gtx.newton()``, ``gtx.hessian_free()``.

  It also stops, with ``converged=False``, after ``stall_steps`` updates in a row that
  left every param and every floating-point leaf of ``tx``'s state as they were: from
  there the iteration repeats itself (only counters move). A line search that finds no
  decrease, as happens at the rounding floor of float32 when ``tol`` is below the
  gradient's rounding error (10-D Rosenbrock in float32: about 5e-5), would otherwise
  spend ``max_steps`` failed searches there. A transform still adapting (L-BFGS clearing
  its memory, Hessian-free raising its damping after a failed step) changes its state,
  so it is not stopped.

  If an update leads to a non-finite value or gradient, the loop stops there and returns
  the params before that update (the last finite ones) with ``converged=False``; ``x0``
  itself with a non-finite value or gradient is returned after no step.

  ``fun`` maps params (any pytree) to a scalar; close over the data. The loop is compiled
  once per ``(fun, tx)`` pair (pass the same function object to reuse it) and works
  under ``jax.jit`` and ``jax.vmap``: ``jax.vmap(lambda x: gtx.minimize(f, x, tx))(x0s)``
  solves a batch of problems, each stopping at its own tolerance.

  Args:
    fun: the objective, ``params -> scalar``, differentiable by ``jax.grad``.
    x0: the initial params.
    tx: any gradient transformation; its ``update`` gets ``value=``, ``grad=``, ``value_fn=``
      if it accepts them.
    max_steps: the most updates, an integer >= 0.
    tol: stop when the gradient's 2-norm is at most ``tol``, >= 0.
    stall_steps: stop after this many consecutive updates that changed neither a param
      nor a floating-point state leaf (an integer >= 1), or ``None`` never to stop for
      that. (A schedule that holds the step at 0 for a while is such a stretch too.)

  Returns:
    A :class:`MinimizeResult`.

  Example::

    result = gtx.minimize(lambda w: jnp.sum((A @ w - b) ** 2), jnp.zeros(3), gtx.newton())
  """
  if not isinstance(tx, tuple) or not (hasattr(tx, "init") and hasattr(tx, "update")):
    raise TypeError(f"minimize: tx must be a gradient transformation, got {tx!r}")
  for path, leaf in jax.tree_util.tree_leaves_with_path(x0):
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.inexact):
      where = jax.tree_util.keystr(path) or "x0"
      raise TypeError(f"minimize: x0 must hold floating-point arrays, but {where} has dtype "
                      f"{dtype}; start from floats, e.g. jnp.asarray(x0, jnp.float32)")
  stall_steps = np.iinfo(np.int32).max if stall_steps is None else stall_steps
  return _run_jit(fun, tx, x0, _as_int32(max_steps), tol, _as_int32(stall_steps))
