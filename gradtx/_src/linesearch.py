"""Line searches: a step size along a given direction, found by evaluating the loss.

A line search is a transform placed after a search direction ``u`` (the negative
gradient, an L-BFGS or Newton direction): it looks for ``eta`` such that
``f(w + eta u)`` decreases enough, and emits ``eta u``. It reads the loss at the params
(``value=``), its gradient (``grad=``) and the loss as a function of the params
(``value_fn=``) from the extra arguments (Optax's convention); further extras named in
``value_fn``'s signature (a batch, say) are passed on to it.

* :func:`scale_by_backtracking_linesearch`: Armijo's sufficient decrease, the step
  shrunk by a constant factor until it holds (Nocedal & Wright 2006, Algorithm 3.1);
  optionally (``curv_rtol=``, an addition to Optax's signature) also the weak Wolfe
  curvature condition, bracketed as Lewis & Overton (2013) do.
* :func:`scale_by_zoom_linesearch`: the strong Wolfe conditions, an interval search
  followed by zoom with cubic/quadratic interpolation (Nocedal & Wright 2006,
  Algorithms 3.5 and 3.6), with Hager & Zhang's (2006) approximate Wolfe test near a
  minimum.

Both keep the value (and gradient) at the accepted step in their state, so a full-batch
loop need not evaluate the loss again: :func:`value_and_grad_from_state`. Signatures,
defaults and numerics are Optax 0.2.8's, with these departures, all confined to failed
searches or to Optax's errors:

* extra arguments that ``value_fn`` does not name are ignored (API.md: every transform
  ignores extras it does not use) where Optax raises ``TypeError``;
* a direction with non-finite entries whose search fails gives a zero update, where
  Optax emits ``0 * u``, i.e. NaN;
* after a failed search (step size 0), the next search starts from
  ``max_learning_rate`` (backtracking) or 1 (zoom with ``initial_guess_strategy='keep'``)
  instead of from 0, where Optax stays stuck at a zero step forever;
* scalars in the state are held in the params' widest floating dtype, at least float32.

Each state counts, in ``num_fun_evals`` (int32, cumulative over all updates), the
evaluations of ``value_fn`` the line search made; an evaluation of the value and the
gradient together counts as one. Evaluations made by the caller (the loss and gradient
at the params, e.g. by :func:`value_and_grad_from_state` at the first step) are not
counted.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, validation
from gradtx._src.hyperparams import accepts_schedules

ValueFn = Callable[..., jax.Array]

# ---------------------------------------------------------------------------------------
# Tree arithmetic shared by the line searches (and L-BFGS).
# ---------------------------------------------------------------------------------------


def tree_vdot(x: base.PyTree, y: base.PyTree) -> jax.Array:
  """``<x, y>``, the real inner product of two trees (leaves conjugated in ``x``)."""
  total = 0
  for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True):
    a, b = jnp.asarray(a), jnp.asarray(b)
    if jnp.iscomplexobj(a):
      a = jnp.conj(a)
    total = total + jnp.tensordot(a, b, a.ndim, precision=jax.lax.Precision.HIGHEST)
  return jnp.real(total)


def tree_sq_norm(x: base.PyTree) -> jax.Array:
  """``||x||**2``."""
  total = 0
  for a in jax.tree.leaves(x):
    a = jnp.asarray(a)
    total = total + jnp.sum(jnp.square(a.real) + jnp.square(a.imag))
  return jnp.asarray(total)


def tree_add_scale(x: base.PyTree, s: jax.Array, y: base.PyTree) -> base.PyTree:
  """``x + s * y``, each leaf in the dtype of ``x``'s."""
  return jax.tree.map(lambda a, b: (a + s * b).astype(jnp.asarray(a).dtype), x, y)


def state_dtype(params: base.Params) -> Any:
  """The dtype of the scalars a solver keeps: the params' widest real floating dtype,
  at least float32."""
  dtypes = [jnp.finfo(x.dtype).dtype for x in jax.tree.leaves(params)
            if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)]
  if not dtypes:
    return jnp.result_type(float)
  return jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)


def saturating_add(count: jax.Array, k: jax.Array) -> jax.Array:
  """``count + k`` for non-negative ``k``, saturating at the dtype's maximum."""
  count = jnp.asarray(count)
  k = jnp.asarray(k, count.dtype)
  top = jnp.array(jnp.iinfo(count.dtype).max, count.dtype)
  return jnp.where(count > top - k, top, count + k)


def pack_scalars(scalars: Any, dtype: Any) -> jax.Array:
  """``scalars`` (a sequence) as one vector of ``dtype``, ``vector[i] = scalars[i]``.

  A search loop carries a score of scalars. As separate loop outputs each is a kernel of
  its own, and XLA:CPU hands independent kernels to other threads, which for scalars
  costs more than their arithmetic; built by selects over the positions, the vector is
  one kernel (a one-trial More-Thuente search: 4.4 us -> 3.0 us on the CI machine).
  Booleans and counts are held as 0/1 and as exact integers of ``dtype``.
  """
  index = jnp.arange(len(scalars))
  vector = jnp.zeros([len(scalars)], dtype)
  for i, x in enumerate(scalars):
    vector = jnp.where(index == i, jnp.asarray(x).astype(dtype), vector)
  return vector


def masked_scale(step: jax.Array, updates: base.Updates) -> base.Updates:
  """``step * u``, exactly zero where ``step == 0`` even if ``u`` is not finite."""
  return jax.tree.map(
      lambda u: jnp.where(step == 0, 0, step * u).astype(jnp.asarray(u).dtype), updates)


# ---------------------------------------------------------------------------------------
# Extra arguments.
# ---------------------------------------------------------------------------------------


def missing_extra_args_error(owner: str, missing: list[str]) -> TypeError:
  return TypeError(
      f"{owner}: update needs the extra arguments {', '.join(m + '=' for m in missing)}: "
      "value= the loss at params, grad= its gradient there, value_fn= the loss as a "
      "function of the params; call tx.update(grads, state, params, value=value, "
      "grad=grad, value_fn=loss_fn).")


def check_extra_args(owner: str, value: Any, grad: Any, value_fn: Any) -> None:
  missing = [name for name, x in (("value", value), ("grad", grad), ("value_fn", value_fn))
             if x is None]
  if missing:
    raise missing_extra_args_error(owner, missing)
  if not callable(value_fn):
    raise TypeError(f"{owner}: value_fn must be the loss as a function of the params, "
                    f"got {value_fn!r}")


def fn_kwargs(value_fn: ValueFn, extra_args: dict[str, Any]) -> dict[str, Any]:
  """The extras that ``value_fn`` names in its signature (a batch, say)."""
  try:
    names = inspect.signature(value_fn).parameters
  except (TypeError, ValueError):
    return {}
  return {k: v for k, v in extra_args.items() if k in names}


def check_initial_guess_strategy(owner: str, strategy: str) -> None:
  if strategy not in ("one", "keep"):
    raise ValueError(f"{owner}: initial_guess_strategy must be 'one' or 'keep', got "
                     f"{strategy!r}")


def initial_guess(strategy: str, state: Any) -> jax.Array:
  """A Wolfe search's first trial: 1 (``'one'``), or the last accepted step (``'keep'``),
  1 again after a failed search (step 0)."""
  dtype = state.learning_rate.dtype
  if strategy == "one":
    return jnp.ones([], dtype)
  return jnp.where(state.learning_rate > 0, state.learning_rate, 1.0).astype(dtype)


def initial_wolfe_state(state_type: Any, info_type: Any, params: base.Params) -> Any:
  """A Wolfe search's state before its first update: step 1, value ``inf``, a zero
  gradient, ``inf`` errors, no evaluations."""
  dtype = state_dtype(params)
  inf = jnp.full([], jnp.inf, dtype)
  return state_type(
      learning_rate=jnp.ones([], dtype), value=inf,
      grad=jax.tree.map(jnp.zeros_like, params),
      info=info_type(num_linesearch_steps=base.zero_count(), decrease_error=inf,
                     curvature_error=inf),
      num_fun_evals=base.zero_count())


def wolfe_inputs(owner: str, updates: base.Updates, state: Any, params: base.Params,
                 value: Any, grad: Any, value_fn: Any, extra_args: dict[str, Any]
                 ) -> tuple[Callable[..., Any], Any, base.Updates]:
  """A Wolfe search's checked inputs: ``value_and_grad`` of the loss (with the extras it
  names), the dtype of the state's scalars, and ``grad`` in the dtypes of the state's."""
  if params is None:
    raise ValueError(base.NO_PARAMS_MSG.format(owner))
  check_extra_args(owner, value, grad, value_fn)
  base.check_same_structure(owner, updates, params, grad)
  value_and_grad = jax.value_and_grad(
      functools.partial(value_fn, **fn_kwargs(value_fn, extra_args)))
  grad = jax.tree.map(lambda g, p: jnp.asarray(g).astype(p.dtype), grad, state.grad)
  return value_and_grad, state.learning_rate.dtype, grad


# ---------------------------------------------------------------------------------------
# Backtracking (Armijo).
# ---------------------------------------------------------------------------------------


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


@accepts_schedules()
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
  validation.integer(owner, "max_backtracking_steps", max_backtracking_steps, minimum=0)
  validation.check(owner, slope_rtol=(slope_rtol, "[0, 1)"),
                   decrease_factor=(decrease_factor, "(0, 1)"),
                   increase_factor=(increase_factor, "[1, inf]"),
                   max_learning_rate=(max_learning_rate, "(0, inf)"),
                   atol=(atol, "[0, inf)"), rtol=(rtol, "[0, inf)"))
  if curv_rtol is not None:
    validation.check(owner, curv_rtol=(curv_rtol, "(0, 1)"))
    validation.ordered(owner, "slope_rtol", slope_rtol, "curv_rtol", curv_rtol)

  def init(params):
    dtype = state_dtype(params)
    return ScaleByBacktrackingLinesearchState(
        learning_rate=jnp.ones([], dtype),
        value=jnp.full([], jnp.inf, dtype),
        grad=jax.tree.map(jnp.zeros_like, params) if store_grad else None,
        info=BacktrackingLinesearchInfo(num_linesearch_steps=base.zero_count(),
                                        decrease_error=jnp.full([], jnp.inf, dtype)),
        num_fun_evals=base.zero_count())

  def update(updates, state, params=None, *, value=None, grad=None, value_fn=None,
             **extra_args):
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format(owner))
    check_extra_args(owner, value, grad, value_fn)
    base.check_same_structure(owner, updates, params, grad)
    fn = functools.partial(value_fn, **fn_kwargs(value_fn, extra_args))
    dtype = state.learning_rate.dtype
    value = jnp.asarray(value).astype(dtype)
    slope = tree_vdot(grad, updates).astype(dtype)

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
      new_params = tree_add_scale(params, learning_rate, updates)
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
                        jnp.full([], jnp.inf, dtype), base.zero_count())
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
      new_grad = base.tree_select(failed, stay, new_grad)
    new_state = ScaleByBacktrackingLinesearchState(
        learning_rate=learning_rate,
        value=jnp.where(failed, value, search.new_value).astype(dtype),
        grad=new_grad,
        info=BacktrackingLinesearchInfo(search.iter_num, search.decrease_error),
        num_fun_evals=saturating_add(state.num_fun_evals, search.iter_num))
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
    value, new_grad = value_and_grad(tree_add_scale(params, b.stepsize, updates))
    new_grad = like_params(new_grad)
    value = as_dtype(value)
    error = decrease_error(b.stepsize, value).astype(dtype)
    decreases = error <= atol
    flat = as_dtype(tree_vdot(new_grad, updates)) >= curv_rtol * slope  # False for NaN
    at_max = b.stepsize >= max_learning_rate
    done = decreases & (flat | at_max)
    high = jnp.where(decreases, b.high, b.stepsize)
    low = jnp.where(decreases, b.stepsize, b.low)
    value_low, grad_low, error_low = base.tree_select(
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
                     inf, jnp.asarray(False), base.zero_count())
  bracket = jax.lax.while_loop(lambda b: ~b.done, trial, trial(bracket))
  # Out of trials without both tests: the largest step with sufficient decrease if there
  # is one, else the last trial (as without the curvature check).
  take_low = (bracket.decrease_error > atol) & (bracket.low > 0)
  stepsize, value, new_grad, error = base.tree_select(
      take_low, (bracket.low, bracket.value_low, bracket.grad_low, bracket.decrease_error_low),
      (bracket.stepsize, bracket.value, bracket.grad, bracket.decrease_error))
  return _Backtrack(stepsize, value, new_grad if store_grad else None, error,
                    bracket.count)


# ---------------------------------------------------------------------------------------
# Zoom (strong Wolfe).
# ---------------------------------------------------------------------------------------


class ZoomLinesearchInfo(NamedTuple):
  """Diagnostics of the last search.

  Attributes:
    num_linesearch_steps: evaluations of ``value_fn`` in the last search.
    decrease_error: by how much the accepted step misses the (approximate) sufficient
      decrease test (0: it passes).
    curvature_error: by how much it misses the curvature test (0: it passes).
  """

  num_linesearch_steps: jax.Array
  decrease_error: jax.Array
  curvature_error: jax.Array


class ScaleByZoomLinesearchState(NamedTuple):
  """State of :func:`scale_by_zoom_linesearch`.

  Attributes:
    learning_rate: the step size of the last search.
    value: the loss at the accepted step (``inf`` before the first search).
    grad: the gradient there.
    info: :class:`ZoomLinesearchInfo` of the last search.
    num_fun_evals: evaluations of ``value_fn`` by all searches so far (int32).
  """

  learning_rate: jax.Array
  value: jax.Array
  grad: base.Updates
  info: ZoomLinesearchInfo
  num_fun_evals: jax.Array


class _Zoom(NamedTuple):
  """One search: the point last tried, the bracket ``[low, high]`` (``value(low) <=
  value(high)``, not ``low <= high``), and the best point with sufficient decrease."""

  count: jax.Array
  stepsize: jax.Array
  value: jax.Array
  grad: base.Updates
  slope: jax.Array
  decrease_error: jax.Array
  curvature_error: jax.Array
  interval_found: jax.Array
  done: jax.Array
  failed: jax.Array
  low: jax.Array
  value_low: jax.Array
  slope_low: jax.Array
  high: jax.Array
  value_high: jax.Array
  slope_high: jax.Array
  cubic_ref: jax.Array
  value_cubic_ref: jax.Array
  safe_stepsize: jax.Array
  safe_value: jax.Array
  safe_grad: base.Updates


def _cubicmin(a, fa, fpa, b, fb, c, fc):
  """The critical point of the cubic through ``(a, fa)``, ``(b, fb)``, ``(c, fc)`` with
  slope ``fpa`` at ``a`` (NaN if there is none; SciPy's ``_cubicmin``)."""
  db, dc = b - a, c - a
  denom = (db * dc)**2 * (db - dc)
  # A 2x2 product as in Optax (and SciPy): the written-out sums round differently.
  matrix = jnp.array([[dc**2, -(db**2)], [-(dc**3), db**3]])
  residuals = jnp.array([fb - fa - fpa * db, fc - fa - fpa * dc])
  cubic, quadratic = jnp.dot(matrix, residuals, precision=jax.lax.Precision.HIGHEST) / denom
  radical = quadratic * quadratic - 3.0 * cubic * fpa
  return a + (-quadratic + jnp.sqrt(radical)) / (3.0 * cubic)


def _quadmin(a, fa, fpa, b, fb):
  """The critical point of the quadratic through ``(a, fa)``, ``(b, fb)`` with slope
  ``fpa`` at ``a`` (SciPy's ``_quadmin``)."""
  db = b - a
  curvature = (fb - fa - fpa * db) / db**2
  return a - fpa / (2.0 * curvature)


@accepts_schedules()
def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: float | None = None,
    tol: float = 0.0,
    increase_factor: float = 2.0,
    slope_rtol: float = 1e-4,
    curv_rtol: float = 0.9,
    approx_dec_rtol: float | None = 1e-6,
    stepsize_precision: float = 1e-5,
    initial_guess_strategy: str = "keep",
    verbose: bool = False,
) -> base.GradientTransformation:
  r"""Zoom line search for the strong Wolfe conditions (Optax numerics).

  Finds a step size ``eta`` along the incoming direction ``u`` (``phi(eta) = f(w + eta
  u)``, ``phi'`` its slope) with sufficient decrease and small curvature::

    phi(eta) <= phi(0) + slope_rtol * eta * phi'(0) + tol                (Armijo)
    |phi'(eta)| <= curv_rtol * |phi'(0)| + tol                          (curvature)

  where, near a minimum (``phi(eta) <= phi(0) + approx_dec_rtol * |phi(0)|``), the
  Armijo test may be replaced by Hager & Zhang's approximate one, ``phi'(eta) <= (2 *
  slope_rtol - 1) phi'(0)``, which is not lost to rounding (``approx_dec_rtol=None``
  turns this off). Phase 1 tries ``eta_0`` (1, or the last step with
  ``initial_guess_strategy='keep'``), then ``increase_factor`` times larger steps (up
  to ``max_learning_rate``) until an interval containing an acceptable step is
  bracketed; phase 2 shrinks it by cubic, quadratic or bisection steps (Nocedal &
  Wright, Algorithms 3.5, 3.6). Each trial evaluates ``value_fn`` and its gradient once;
  the gradient at the accepted step is kept in the state for
  :func:`value_and_grad_from_state`. Emits ``eta u``.

  Failure: after ``max_linesearch_steps`` trials, or once the bracket is shorter than
  ``stepsize_precision`` with a sufficient-decrease step in hand, the best step with
  sufficient decrease found is taken; if there is none, the last trial (as in Optax;
  ``info`` tells), or no step at all if no trial had a finite loss. A NaN or infinite
  loss at a trial point always fails the tests and bounds the bracket from above. A
  direction that is not a descent direction (``phi'(0) >= 0``) has no acceptable step;
  the search then ends as a failure, with a zero update if nothing finite was found,
  never a NaN one.

  ``update(updates, state, params, *, value, grad, value_fn, **extras)``: ``value`` and
  ``grad`` at ``params``, ``value_fn(params, **kw)`` the loss, ``kw`` the extras it names.

  Args:
    max_linesearch_steps: the most evaluations per search (>= 1).
    max_learning_rate: the largest step tried (> 0), or None for no bound.
    tol: tolerance of both tests, >= 0.
    increase_factor: growth of the step in phase 1, > 1.
    slope_rtol: Armijo's ``c1``, in [0, 1).
    curv_rtol: the curvature test's ``c2``, in (0, inf] and >= ``slope_rtol`` (``inf``
      turns the curvature test off).
    approx_dec_rtol: relative closeness to ``phi(0)`` below which the approximate Wolfe
      test may be used, >= 0, or None.
    stepsize_precision: bracket length below which a sufficient-decrease step is
      accepted without the curvature test, >= 0.
    initial_guess_strategy: ``'one'`` (first trial 1; for Newton and quasi-Newton
      directions) or ``'keep'`` (the last accepted step; for gradient directions).
    verbose: print diagnostics when a search fails.

  References:
    Nocedal & Wright, Numerical Optimization, 2nd ed., 2006, Algorithms 3.5 and 3.6.
    Hager & Zhang, Algorithm 851: CG_DESCENT, ACM TOMS 2006 (approximate Wolfe).
  """
  owner = "scale_by_zoom_linesearch"
  validation.integer(owner, "max_linesearch_steps", max_linesearch_steps)
  validation.check(owner, tol=(tol, "[0, inf)"), increase_factor=(increase_factor, "(1, inf)"),
                   slope_rtol=(slope_rtol, "[0, 1)"), curv_rtol=(curv_rtol, "(0, inf]"),
                   stepsize_precision=(stepsize_precision, "[0, inf)"))
  validation.ordered(owner, "slope_rtol", slope_rtol, "curv_rtol", curv_rtol)
  if max_learning_rate is not None:
    validation.check(owner, max_learning_rate=(max_learning_rate, "(0, inf)"))
  if approx_dec_rtol is not None:
    validation.check(owner, approx_dec_rtol=(approx_dec_rtol, "[0, inf)"))
  check_initial_guess_strategy(owner, initial_guess_strategy)

  def init(params):
    return initial_wolfe_state(ScaleByZoomLinesearchState, ZoomLinesearchInfo, params)

  def update(updates, state, params=None, *, value=None, grad=None, value_fn=None,
             **extra_args):
    value_and_grad, dtype, grad = wolfe_inputs(owner, updates, state, params, value, grad,
                                               value_fn, extra_args)
    value_init = jnp.asarray(value).astype(dtype)
    slope_init = tree_vdot(grad, updates).astype(dtype)
    as_dtype = lambda x: jnp.asarray(x).astype(dtype)  # noqa: E731
    guess = initial_guess(initial_guess_strategy, state)

    def on_line(stepsize):
      """Value, gradient and slope of ``phi`` at ``stepsize``: one evaluation."""
      new_value, new_grad = value_and_grad(tree_add_scale(params, stepsize, updates))
      new_grad = jax.tree.map(lambda g, p: g.astype(p.dtype), new_grad, grad)
      return as_dtype(new_value), new_grad, as_dtype(tree_vdot(new_grad, updates))

    def errors(stepsize, new_value, new_slope):
      decrease = new_value - value_init - slope_rtol * stepsize * slope_init
      if approx_dec_rtol is not None:
        # Hager & Zhang's approximate Wolfe test, only close to phi(0) (their (23), (26)).
        approx = jnp.maximum(new_slope - (2 * slope_rtol - 1.0) * slope_init,
                             new_value - value_init - approx_dec_rtol * jnp.abs(value_init))
        decrease = jnp.minimum(approx, decrease)
      curvature = jnp.abs(new_slope) - curv_rtol * jnp.abs(slope_init)
      nan_is_inf = lambda e: jnp.where(jnp.isnan(e), jnp.inf, e)  # noqa: E731
      return (nan_is_inf(jnp.maximum(decrease, 0.0)),
              nan_is_inf(jnp.maximum(curvature, 0.0)))

    def search_interval(s):
      """Phase 1, Nocedal & Wright's Algorithm 3.5."""
      stepsize = jnp.where(s.count == 0, guess, increase_factor * s.stepsize)
      if max_learning_rate is not None:
        at_max = stepsize >= max_learning_rate
        stepsize = jnp.minimum(stepsize, max_learning_rate)
      else:
        at_max = jnp.asarray(False)
      stepsize = as_dtype(stepsize)
      new_value, new_grad, new_slope = on_line(stepsize)
      decrease_error, curvature_error = errors(stepsize, new_value, new_slope)
      error = jnp.maximum(decrease_error, curvature_error)
      safe_stepsize, safe_value, safe_grad = base.tree_select(
          decrease_error <= tol, (stepsize, new_value, new_grad),
          (s.safe_stepsize, s.safe_value, s.safe_grad))
      high_is_new = (decrease_error > 0.0) | ((new_value >= s.value) & (s.count > 0))
      low_is_new = (new_slope >= 0.0) & ~high_is_new
      previous = (s.stepsize, s.value, s.slope)
      new = (stepsize, new_value, new_slope)
      low, high = base.tree_select(low_is_new, (new, previous), (previous, new))
      interval_found = high_is_new | low_is_new | (error <= tol)
      # At the largest step with no interval: the curvature test could only hold at a
      # larger step, so take this one.
      done = (error <= tol) | (at_max & ~interval_found)
      if verbose:
        _cond_print(at_max & ~interval_found,
                    f"{owner}: no interval satisfying the curvature condition below "
                    "max_learning_rate; taking step {eta}.", eta=stepsize)
      return s._replace(
          count=base.safe_increment(s.count), stepsize=stepsize, value=new_value,
          grad=new_grad, slope=new_slope, decrease_error=decrease_error,
          curvature_error=curvature_error, interval_found=interval_found, done=done,
          failed=(s.count + 1 >= max_linesearch_steps) & ~done,
          low=low[0], value_low=low[1], slope_low=low[2],
          high=high[0], value_high=high[1], slope_high=high[2],
          cubic_ref=low[0], value_cubic_ref=low[1],
          safe_stepsize=safe_stepsize, safe_value=safe_value, safe_grad=safe_grad)

    def zoom(s):
      """Phase 2, Nocedal & Wright's Algorithm 3.6."""
      delta = jnp.abs(s.high - s.low)
      left, right = jnp.minimum(s.high, s.low), jnp.maximum(s.high, s.low)
      cubic = _cubicmin(s.low, s.value_low, s.slope_low, s.high, s.value_high,
                        s.cubic_ref, s.value_cubic_ref)
      use_cubic = (cubic > left + 0.2 * delta) & (cubic < right - 0.2 * delta)
      quad = _quadmin(s.low, s.value_low, s.slope_low, s.high, s.value_high)
      use_quad = ~use_cubic & (quad > left + 0.1 * delta) & (quad < right - 0.1 * delta)
      middle = jnp.where(use_cubic, cubic, s.cubic_ref)
      middle = jnp.where(use_quad, quad, middle)
      middle = as_dtype(jnp.where(~use_cubic & ~use_quad, (s.low + s.high) / 2.0, middle))

      new_value, new_grad, new_slope = on_line(middle)
      decrease_error, curvature_error = errors(middle, new_value, new_slope)
      done = jnp.maximum(decrease_error, curvature_error) <= tol
      safe_stepsize, safe_value, safe_grad = base.tree_select(
          (decrease_error <= tol) & (new_value < s.safe_value),
          (middle, new_value, new_grad), (s.safe_stepsize, s.safe_value, s.safe_grad))

      high_is_middle = (decrease_error > 0.0) | (new_value >= s.value_low)
      high_is_low = (new_slope * (s.high - s.low) >= 0.0) & ~high_is_middle
      low_is_middle = ~high_is_middle
      old_low = (s.low, s.value_low, s.slope_low)
      old_high = (s.high, s.value_high, s.slope_high)
      new = (middle, new_value, new_slope)
      high = base.tree_select(high_is_middle, new, old_high)
      high = base.tree_select(high_is_low, old_low, high)
      low = base.tree_select(low_is_middle, new, old_low)
      cubic_ref, value_cubic_ref = base.tree_select(
          high_is_middle | high_is_low, (s.high, s.value_high), (s.low, s.value_low))
      # A bracket below the precision ends the search only once a step with sufficient
      # decrease is known: very steep functions need very small steps.
      presumably_failed = ((s.count + 1) >= max_linesearch_steps) | (
          (delta <= stepsize_precision) & (safe_stepsize > 0.0))
      return s._replace(
          count=base.safe_increment(s.count), stepsize=middle, value=new_value,
          grad=new_grad, slope=new_slope, decrease_error=decrease_error,
          curvature_error=curvature_error, done=done, failed=presumably_failed & ~done,
          low=low[0], value_low=low[1], slope_low=low[2],
          high=high[0], value_high=high[1], slope_high=high[2],
          cubic_ref=cubic_ref, value_cubic_ref=value_cubic_ref,
          safe_stepsize=safe_stepsize, safe_value=safe_value, safe_grad=safe_grad)

    def take_safe_step(s):
      """On failure: the best sufficient-decrease step, or no step if no trial had a
      finite loss, or else the last trial."""
      use_safe = (s.safe_stepsize > 0.0) | jnp.isinf(s.decrease_error)
      if verbose:
        _cond_print(use_safe, f"{owner}: curvature condition not satisfied; taking step "
                    "{eta} with sufficient decrease (0: no finite value found).",
                    eta=s.safe_stepsize)
        _cond_print(~use_safe, f"{owner}: no step with sufficient decrease found (slope "
                    "at 0: {slope}); taking step {eta} anyway.", slope=slope_init,
                    eta=s.stepsize)
      stepsize, new_value, new_grad = base.tree_select(
          use_safe, (s.safe_stepsize, s.safe_value, s.safe_grad),
          (s.stepsize, s.value, s.grad))
      return s._replace(stepsize=stepsize, value=new_value, grad=new_grad)

    # The loop carries the scalars packed in one vector (pack_scalars).
    scalar_fields = [f for f in _Zoom._fields if f not in ("grad", "safe_grad")]
    at = {f: i for i, f in enumerate(scalar_fields)}

    def pack(s):
      return pack_scalars([getattr(s, f) for f in scalar_fields], dtype), s.grad, s.safe_grad

    def unpack(carry):
      vector, grad_, safe_grad = carry
      values = {f: vector[i] for f, i in at.items()}
      values["count"] = values["count"].astype(jnp.int32)
      for flag in ("interval_found", "done", "failed"):
        values[flag] = values[flag] > 0
      return _Zoom(grad=grad_, safe_grad=safe_grad, **values)

    def packed(phase):
      return lambda carry: pack(phase(unpack(carry)))

    def unless_failed(carry):
      return jax.lax.cond(carry[0][at["failed"]] > 0, packed(take_safe_step),
                          lambda carry: carry, carry)

    def step(carry):
      return unless_failed(jax.lax.cond(carry[0][at["interval_found"]] > 0, packed(zoom),
                                        packed(search_interval), carry))

    zero, false, inf = jnp.zeros([], dtype), jnp.asarray(False), jnp.full([], jnp.inf, dtype)
    search = _Zoom(
        count=base.zero_count(), stepsize=zero, value=value_init, grad=grad,
        slope=slope_init, decrease_error=inf, curvature_error=inf,
        interval_found=false, done=false, failed=false,
        low=zero, value_low=value_init, slope_low=slope_init,
        high=zero, value_high=value_init, slope_high=slope_init,
        cubic_ref=zero, value_cubic_ref=value_init,
        safe_stepsize=zero, safe_value=value_init, safe_grad=grad)
    # The loop's first iteration (phase 1's first trial, then the failure test) before
    # the loop: most quasi-Newton steps take that trial, and the loop then costs one test
    # of its condition instead of an iteration (benchmarks/README.md, "Two speeds of
    # XLA:CPU": L-BFGS on 100-D Rosenbrock runs ~40% faster). In a cond, so that XLA
    # compiles the trial as in the loop (and as Optax's), not fused with the code around
    # it, which would round differently; where the value at params is not finite, the
    # loop takes the first trial itself.
    carry = unless_failed(jax.lax.cond(jnp.isfinite(value_init), packed(search_interval),
                                       lambda carry: carry, pack(search)))
    search = unpack(jax.lax.while_loop(
        lambda carry: (carry[0][at["done"]] == 0) & (carry[0][at["failed"]] == 0), step,
        carry))
    new_state = ScaleByZoomLinesearchState(
        learning_rate=search.stepsize,
        value=search.value,
        grad=search.grad,
        info=ZoomLinesearchInfo(search.count, search.decrease_error,
                                search.curvature_error),
        num_fun_evals=saturating_add(state.num_fun_evals, search.count))
    return masked_scale(search.stepsize, updates), new_state

  return base.GradientTransformation(init, update)


def _cond_print(condition: jax.Array, message: str, **values: Any) -> None:
  jax.lax.cond(condition, lambda: jax.debug.print(message, **values, ordered=True),
               lambda: None)


# ---------------------------------------------------------------------------------------
# Reusing the line search's last evaluation.
# ---------------------------------------------------------------------------------------


def _fields_named(tree: Any, name: str) -> list[Any]:
  """The values of every NamedTuple field or dict key called ``name`` in ``tree``."""
  found = []

  def visit(node):
    if isinstance(node, tuple) and hasattr(node, "_fields"):
      items = zip(node._fields, node)
    elif isinstance(node, dict):
      items = node.items()
    elif isinstance(node, (tuple, list)):
      items = ((None, x) for x in node)
    else:
      return
    for key, child in items:
      if key == name:
        found.append(child)
      else:
        visit(child)

  visit(tree)
  return found


def value_and_grad_from_state(value_fn: ValueFn) -> Callable[..., tuple[jax.Array, Any]]:
  """Like ``jax.value_and_grad(value_fn)``, but reuses the line search's last evaluation.

  Returns ``value_and_grad(params, *args, state, **kwargs)``. A line search in ``state``
  (anywhere in a chain) keeps the loss and gradient at the step it accepted, which are
  the loss and gradient at the params the caller has just moved to; they are returned
  when the stored value is finite, and computed with ``jax.value_and_grad`` otherwise
  (before the first step, whose state holds ``inf``). For full-batch losses only: a
  stochastic loss changes between steps. (Optax's ``value_and_grad_from_state``.)

  Example::

    value_and_grad = gtx.value_and_grad_from_state(loss)
    for _ in range(steps):
      value, grad = value_and_grad(params, state=state)
      updates, state = tx.update(grad, state, params, value=value, grad=grad,
                                 value_fn=loss)
      params = gtx.apply_updates(params, updates)

  Raises:
    ValueError: the state holds no ``value`` and ``grad`` (chain a zoom line search, or a
      backtracking one with ``store_grad=True``), or holds more than one of them.
  """
  owner = "value_and_grad_from_state"

  def value_and_grad(params, *fn_args, state, **fn_kwargs_):
    values, grads = _fields_named(state, "value"), _fields_named(state, "grad")
    if len(values) > 1 or len(grads) > 1:
      raise ValueError(f"{owner}: the state holds {len(values)} fields named 'value' and "
                       f"{len(grads)} named 'grad'; it must hold one line search only.")
    if not values or not grads or grads[0] is None:
      raise ValueError(
          f"{owner}: the state holds no stored value and gradient; chain a line search "
          "that keeps them: scale_by_zoom_linesearch, or "
          "scale_by_backtracking_linesearch(..., store_grad=True).")
    value, grad = values[0], grads[0]

    def compute(params, fn_args, fn_kwargs_):
      v, g = jax.value_and_grad(value_fn)(params, *fn_args, **fn_kwargs_)
      return (jnp.asarray(v).astype(value.dtype),
              jax.tree.map(lambda a, b: a.astype(b.dtype), g, grad))

    return jax.lax.cond(jnp.isfinite(value), lambda *_: (value, grad), compute,
                        params, fn_args, fn_kwargs_)

  return value_and_grad
