"""Backtracking line search: Armijo's sufficient decrease, with an optional weak Wolfe
curvature check.

The step shrinks by a constant factor until the loss decreases enough (Nocedal & Wright
2006, Algorithm 3.1; Optax 0.2.8's ``scale_by_backtracking_linesearch``, signature,
defaults and numerics). With ``curv_rtol=`` (an addition to Optax's signature) the step
must also pass the weak Wolfe curvature condition, bracketed as Lewis & Overton (2013)
do. The package docstring (:mod:`gradtx._src.linesearch`) lists the departures from
Optax.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, validation
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.linesearch.common import check_extra_args, fn_kwargs, masked_scale
from gradtx._src.tree.casting import tree_zeros_like, widest_float_dtype
from gradtx._src.tree.math import (safe_increment, tree_add_scale_like, tree_real_vdot,
                                   tree_where, zero_count)


class BacktrackingLinesearchInfo(NamedTuple):
  """Diagnostics of the last search.

  Attributes:
    num_linesearch_steps: evaluations of ``value_fn`` in the last search.
    decrease_error: by how much the accepted step misses the Armijo test (0: it passes;
      ``inf``: no finite value was found and the step is 0).
  """

  num_linesearch_steps: jax.Array
  decrease_error: jax.Array


class ScaleByBacktrackingLinesearchState(NamedTuple):
  """State of :func:`scale_by_backtracking_linesearch`.

  Attributes:
    learning_rate: the step size of the last search (the next starts from
      ``increase_factor`` times it).
    value: the loss at the accepted step (``inf`` before the first search).
    grad: the gradient there, with ``store_grad=True``; otherwise None.
    info: :class:`BacktrackingLinesearchInfo` of the last search.
    num_fun_evals: evaluations of ``value_fn`` by all searches so far (int32).
  """

  learning_rate: jax.Array
  value: jax.Array
  grad: base.Updates | None
  info: BacktrackingLinesearchInfo
  num_fun_evals: jax.Array


class _Backtrack(NamedTuple):
  learning_rate: jax.Array
  new_value: jax.Array
  new_grad: base.Updates
  decrease_error: jax.Array
  iter_num: jax.Array


@hyperparameters(max_backtracking_steps="int >= 0", slope_rtol="[0, 1)",
                 decrease_factor="(0, 1)", increase_factor="[1, inf]",
                 max_learning_rate="(0, inf)", atol="[0, inf)", rtol="[0, inf)",
                 curv_rtol="(0, 1) | None", store_grad="bool", verbose="bool")
def scale_by_backtracking_linesearch(
    max_backtracking_steps: int,
    slope_rtol: float = 1e-4,
    decrease_factor: float = 0.8,
    increase_factor: float = 1.5,
    max_learning_rate: float = 1.0,
    atol: float = 0.0,
    rtol: float = 0.0,
    store_grad: bool = False,
    verbose: bool = False,
    *,
    curv_rtol: float | None = None,
) -> base.GradientTransformation:
  r"""Backtracking line search for Armijo's sufficient decrease (Optax numerics).

  Finds a step size ``eta`` along the incoming direction ``u`` such that::

    f(w + eta u) <= (1 + rtol) f(w) + eta * slope_rtol * <u, grad f(w)> + atol

  starting from ``min(increase_factor * eta_prev, max_learning_rate)`` and multiplying
  by ``decrease_factor`` until the test holds, for at most ``max_backtracking_steps``
  reductions (``max_backtracking_steps + 1`` evaluations). Emits ``eta u``.

  A NaN or infinite loss at a trial point fails the test. If the last trial still has
  no finite loss, the step is 0, the update exactly zero, the state keeps the value (and
  gradient) at ``params``, and the next search starts again from ``max_learning_rate``; a
  finite loss that misses the test is accepted, as in Optax (``info.decrease_error > 0``
  says so). The direction must be a descent
  direction (``<u, grad f(w)> < 0``) for a decrease to exist; for one that is not, the
  test allows no increase beyond ``eta * slope_rtol * <u, grad>`` and usually fails.

  ``update(updates, state, params, *, value, grad, value_fn, **extras)``: ``value`` and
  ``grad`` at ``params``, ``value_fn(params, **kw)`` the loss, ``kw`` the extras it
  names. With ``store_grad=True`` the gradient at the accepted step is computed (from the
  same linearisation as the value) and kept in ``state.grad``, so that
  :func:`value_and_grad_from_state` can reuse value and gradient at the next step.

  The optional curvature check (``curv_rtol=c2``, not in Optax) also asks for the weak
  Wolfe condition ``<grad f(w + eta u), u> >= c2 <grad f(w), u>``: the step is not so
  short that the loss still falls steeply along ``u``. It is what keeps a quasi-Newton
  pair's ``<s, y>`` positive. Every trial then evaluates the gradient too. A trial that
  fails Armijo's test bounds the step from above, one that passes it but fails the
  curvature test bounds it from below (Lewis & Overton's bracketing): below an upper
  bound only, the step shrinks by ``decrease_factor`` as without the check; above a lower
  bound only, it grows by ``1 / decrease_factor`` up to ``max_learning_rate`` (where it is
  taken); between both, it bisects. A search that runs out of trials takes its largest
  step with sufficient decrease, or else ends as without the check. While every trial
  passes the curvature test, the steps are those of the search without it.

  Args:
    max_backtracking_steps: the most reductions of the step per search (>= 0).
    slope_rtol: Armijo's ``c1``, in [0, 1).
    decrease_factor: the step is multiplied by this, in (0, 1), per reduction.
    increase_factor: the first trial is this (>= 1; ``inf`` allowed) times the last
      accepted step, capped by ``max_learning_rate``.
    max_learning_rate: the largest step tried, > 0.
    atol: absolute tolerance of the test, >= 0.
    rtol: relative tolerance of the test, >= 0.
    store_grad: keep the gradient at the accepted step in the state.
    verbose: print diagnostics when a search fails.
    curv_rtol: the curvature check's ``c2``, in (``slope_rtol``, 1); None (the default)
      for none, as in Optax.

  References:
    Nocedal & Wright, Numerical Optimization, 2nd ed., 2006, Algorithm 3.1.
    Vaswani et al., Painless Stochastic Gradient, NeurIPS 2019.
    Lewis & Overton, Nonsmooth optimization via quasi-Newton methods, Mathematical
    Programming 2013, section 4.2 (the weak Wolfe bracketing).
  """
  owner = "scale_by_backtracking_linesearch"
  if curv_rtol is not None:
    validation.ordered(owner, "slope_rtol", slope_rtol, "curv_rtol", curv_rtol)

  def init(params):
    dtype = widest_float_dtype(params)
    return ScaleByBacktrackingLinesearchState(
        learning_rate=jnp.ones([], dtype),
        value=jnp.full([], jnp.inf, dtype),
        grad=tree_zeros_like(params) if store_grad else None,
        info=BacktrackingLinesearchInfo(num_linesearch_steps=zero_count(),
                                        decrease_error=jnp.full([], jnp.inf, dtype)),
        num_fun_evals=zero_count())

  def update(updates, state, params=None, *, value=None, grad=None, value_fn=None,
             **extra_args):
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format(owner))
    check_extra_args(owner, value, grad, value_fn)
    base.check_same_structure(owner, updates, params, grad)
    fn = functools.partial(value_fn, **fn_kwargs(value_fn, extra_args))
    dtype = state.learning_rate.dtype
    value = jnp.asarray(value).astype(dtype)
    slope = tree_real_vdot(grad, updates).astype(dtype)

    def decrease_error(learning_rate, new_value):
      error = new_value - (1.0 + rtol) * value - learning_rate * slope_rtol * slope
      return jnp.maximum(jnp.where(jnp.isnan(error), jnp.inf, error), 0.0)

    def unfinished(search):
      return ~(search.decrease_error <= atol) & (search.iter_num <= max_backtracking_steps)

    def trial(search):
      # The first trial is the guess itself; the step shrinks from the second on.
      learning_rate = jnp.where(search.iter_num > 0,
                                decrease_factor * search.learning_rate,
                                search.learning_rate).astype(dtype)
      new_params = tree_add_scale_like(params, learning_rate, updates)
      if store_grad:
        # One linearisation gives the value now and the gradient if this is the last
        # trial, by transposing it.
        raw_value, linear_fn = jax.linearize(fn, new_params)
        new_value = jnp.asarray(raw_value).astype(dtype)
        error = decrease_error(learning_rate, new_value)
        last = (error <= atol) | (search.iter_num == max_backtracking_steps)
        new_grad = jax.lax.cond(
            last, lambda: jax.linear_transpose(linear_fn, new_params)(
                jnp.ones_like(raw_value))[0],
            lambda: search.new_grad)
        new_grad = jax.tree.map(lambda g, p: g.astype(p.dtype), new_grad, search.new_grad)
      else:
        new_value = jnp.asarray(fn(new_params)).astype(dtype)
        error = decrease_error(learning_rate, new_value)
        new_grad = search.new_grad
      return _Backtrack(learning_rate, new_value, new_grad, error.astype(dtype),
                        search.iter_num + 1)

    # After a failed search (step 0), start again from the largest step.
    previous = jnp.where(state.learning_rate > 0, state.learning_rate, max_learning_rate)
    guess = jnp.minimum(increase_factor * previous, max_learning_rate).astype(dtype)
    search = _Backtrack(guess, value,
                        jax.tree.map(jnp.zeros_like, params) if store_grad else None,
                        jnp.full([], jnp.inf, dtype), zero_count())
    if curv_rtol is None:
      search = jax.lax.while_loop(unfinished, trial, search)
    else:
      search = _weak_wolfe_search(fn, params, updates, grad, slope, guess, decrease_error,
                                  atol, curv_rtol, decrease_factor, max_learning_rate,
                                  max_backtracking_steps, store_grad, dtype)

    # No finite value found: no step, rather than a step to NaN or infinity.
    failed = jnp.isinf(search.decrease_error)
    learning_rate = jnp.where(failed, 0.0, search.learning_rate).astype(dtype)
    if verbose:
      jax.lax.cond(search.decrease_error > atol, lambda: jax.debug.print(
          f"{owner}: no step size with sufficient decrease found; value {{v}}, slope "
          "{s}, step size {lr}, decrease error {e}", v=value, s=slope,
          lr=learning_rate, e=search.decrease_error), lambda: None)
    # A zero step stays at params: keep the value and gradient there.
    new_grad = search.new_grad
    if store_grad:
      stay = jax.tree.map(lambda g, p: jnp.asarray(g).astype(p.dtype), grad, new_grad)
      new_grad = tree_where(failed, stay, new_grad)
    new_state = ScaleByBacktrackingLinesearchState(
        learning_rate=learning_rate,
        value=jnp.where(failed, value, search.new_value).astype(dtype),
        grad=new_grad,
        info=BacktrackingLinesearchInfo(search.iter_num, search.decrease_error),
        num_fun_evals=safe_increment(state.num_fun_evals, search.iter_num))
    return masked_scale(learning_rate, updates), new_state

  return base.GradientTransformation(init, update)


class _Bracket(NamedTuple):
  stepsize: jax.Array
  low: jax.Array  # the largest step with sufficient decrease but too steep a slope
  high: jax.Array  # the smallest step without sufficient decrease (inf: none yet)
  value: jax.Array  # at stepsize
  grad: base.Updates
  decrease_error: jax.Array
  value_low: jax.Array
  grad_low: base.Updates
  decrease_error_low: jax.Array
  done: jax.Array
  count: jax.Array


def _weak_wolfe_search(fn, params, updates, grad, slope, guess, decrease_error, atol,
                       curv_rtol, decrease_factor, max_learning_rate, max_backtracking_steps,
                       store_grad, dtype) -> _Backtrack:
  """:func:`scale_by_backtracking_linesearch` with its curvature check (its docstring):
  Armijo backtracking and the weak Wolfe test, bracketed as Lewis & Overton do."""
  value_and_grad = jax.value_and_grad(fn)
  as_dtype = lambda x: jnp.asarray(x).astype(dtype)  # noqa: E731
  inf = jnp.full([], jnp.inf, dtype)
  # Gradients in the params' dtypes, as the state keeps them.
  like_params = lambda tree: jax.tree.map(  # noqa: E731
      lambda g, p: jnp.asarray(g).astype(jnp.asarray(p).dtype), tree, params)

  def trial(b):
    value, new_grad = value_and_grad(tree_add_scale_like(params, b.stepsize, updates))
    new_grad = like_params(new_grad)
    value = as_dtype(value)
    error = decrease_error(b.stepsize, value).astype(dtype)
    decreases = error <= atol
    flat = as_dtype(tree_real_vdot(new_grad, updates)) >= curv_rtol * slope  # False for NaN
    at_max = b.stepsize >= max_learning_rate
    done = decreases & (flat | at_max)
    high = jnp.where(decreases, b.high, b.stepsize)
    low = jnp.where(decreases, b.stepsize, b.low)
    value_low, grad_low, error_low = tree_where(
        decreases, (value, new_grad, error), (b.value_low, b.grad_low, b.decrease_error_low))
    following = jnp.where(
        jnp.isinf(high), jnp.minimum(low / decrease_factor, max_learning_rate),
        jnp.where(low > 0, 0.5 * (low + high), decrease_factor * high))
    count = b.count + 1
    done = done | (count > max_backtracking_steps)
    return _Bracket(jnp.where(done, b.stepsize, following).astype(dtype), low, high, value,
                    new_grad, error, value_low, grad_low, error_low, done, count)

  zero, grad = jnp.zeros([], dtype), like_params(grad)
  bracket = _Bracket(guess, zero, inf, as_dtype(jnp.nan), grad, inf, as_dtype(jnp.nan), grad,
                     inf, jnp.asarray(False), zero_count())
  bracket = jax.lax.while_loop(lambda b: ~b.done, trial, trial(bracket))
  # Out of trials without both tests: the largest step with sufficient decrease if there
  # is one, else the last trial (as without the curvature check).
  take_low = (bracket.decrease_error > atol) & (bracket.low > 0)
  stepsize, value, new_grad, error = tree_where(
      take_low, (bracket.low, bracket.value_low, bracket.grad_low, bracket.decrease_error_low),
      (bracket.stepsize, bracket.value, bracket.grad, bracket.decrease_error))
  return _Backtrack(stepsize, value, new_grad if store_grad else None, error,
                    bracket.count)
