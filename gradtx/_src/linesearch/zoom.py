"""Zoom line search: the strong Wolfe conditions by an interval search and zoom.

Nocedal & Wright (2006), Algorithms 3.5 and 3.6: phase 1 grows the step until an
interval containing an acceptable step is bracketed, phase 2 shrinks it by cubic,
quadratic or bisection steps; Hager & Zhang's (2006) approximate Wolfe test near a
minimum. Optax 0.2.8's ``scale_by_zoom_linesearch`` (signature, defaults, numerics); the
package docstring (:mod:`gradtx._src.linesearch`) lists the departures.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, validation
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.linesearch.common import (check_initial_guess_strategy, cond_print,
                                           initial_guess, initial_wolfe_state,
                                           masked_scale, pack_scalars, peeled_while_loop,
                                           wolfe_inputs)
from gradtx._src.tree.math import (safe_increment, tree_add_scale_like, tree_real_vdot,
                                   tree_where, zero_count)


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


@hyperparameters(max_linesearch_steps="int >= 1", tol="[0, inf)", increase_factor="(1, inf)",
                 slope_rtol="[0, 1)", curv_rtol="(0, inf]", stepsize_precision="[0, inf)",
                 max_learning_rate="(0, inf) | None", approx_dec_rtol="[0, inf) | None",
                 verbose="bool")
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
  validation.ordered(owner, "slope_rtol", slope_rtol, "curv_rtol", curv_rtol)
  check_initial_guess_strategy(owner, initial_guess_strategy)

  def init(params):
    return initial_wolfe_state(ScaleByZoomLinesearchState, ZoomLinesearchInfo, params)

  def update(updates, state, params=None, *, value=None, grad=None, value_fn=None,
             **extra_args):
    value_and_grad, dtype, grad = wolfe_inputs(owner, updates, state, params, value, grad,
                                               value_fn, extra_args)
    value_init = jnp.asarray(value).astype(dtype)
    slope_init = tree_real_vdot(grad, updates).astype(dtype)
    as_dtype = lambda x: jnp.asarray(x).astype(dtype)  # noqa: E731
    guess = initial_guess(initial_guess_strategy, state)

    def on_line(stepsize):
      """Value, gradient and slope of ``phi`` at ``stepsize``: one evaluation."""
      new_value, new_grad = value_and_grad(tree_add_scale_like(params, stepsize, updates))
      new_grad = jax.tree.map(lambda g, p: g.astype(p.dtype), new_grad, grad)
      return as_dtype(new_value), new_grad, as_dtype(tree_real_vdot(new_grad, updates))

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
      safe_stepsize, safe_value, safe_grad = tree_where(
          decrease_error <= tol, (stepsize, new_value, new_grad),
          (s.safe_stepsize, s.safe_value, s.safe_grad))
      high_is_new = (decrease_error > 0.0) | ((new_value >= s.value) & (s.count > 0))
      low_is_new = (new_slope >= 0.0) & ~high_is_new
      previous = (s.stepsize, s.value, s.slope)
      new = (stepsize, new_value, new_slope)
      low, high = tree_where(low_is_new, (new, previous), (previous, new))
      interval_found = high_is_new | low_is_new | (error <= tol)
      # At the largest step with no interval: the curvature test could only hold at a
      # larger step, so take this one.
      done = (error <= tol) | (at_max & ~interval_found)
      if verbose:
        cond_print(at_max & ~interval_found,
                   f"{owner}: no interval satisfying the curvature condition below "
                   "max_learning_rate; taking step {eta}.", eta=stepsize)
      return s._replace(
          count=safe_increment(s.count), stepsize=stepsize, value=new_value,
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
      safe_stepsize, safe_value, safe_grad = tree_where(
          (decrease_error <= tol) & (new_value < s.safe_value),
          (middle, new_value, new_grad), (s.safe_stepsize, s.safe_value, s.safe_grad))

      high_is_middle = (decrease_error > 0.0) | (new_value >= s.value_low)
      high_is_low = (new_slope * (s.high - s.low) >= 0.0) & ~high_is_middle
      low_is_middle = ~high_is_middle
      old_low = (s.low, s.value_low, s.slope_low)
      old_high = (s.high, s.value_high, s.slope_high)
      new = (middle, new_value, new_slope)
      high = tree_where(high_is_middle, new, old_high)
      high = tree_where(high_is_low, old_low, high)
      low = tree_where(low_is_middle, new, old_low)
      cubic_ref, value_cubic_ref = tree_where(
          high_is_middle | high_is_low, (s.high, s.value_high), (s.low, s.value_low))
      # A bracket below the precision ends the search only once a step with sufficient
      # decrease is known: very steep functions need very small steps.
      presumably_failed = ((s.count + 1) >= max_linesearch_steps) | (
          (delta <= stepsize_precision) & (safe_stepsize > 0.0))
      return s._replace(
          count=safe_increment(s.count), stepsize=middle, value=new_value,
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
        cond_print(use_safe, f"{owner}: curvature condition not satisfied; taking step "
                   "{eta} with sufficient decrease (0: no finite value found).",
                   eta=s.safe_stepsize)
        cond_print(~use_safe, f"{owner}: no step with sufficient decrease found (slope "
                   "at 0: {slope}); taking step {eta} anyway.", slope=slope_init,
                   eta=s.stepsize)
      stepsize, new_value, new_grad = tree_where(
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
        count=zero_count(), stepsize=zero, value=value_init, grad=grad,
        slope=slope_init, decrease_error=inf, curvature_error=inf,
        interval_found=false, done=false, failed=false,
        low=zero, value_low=value_init, slope_low=slope_init,
        high=zero, value_high=value_init, slope_high=slope_init,
        cubic_ref=zero, value_cubic_ref=value_init,
        safe_stepsize=zero, safe_value=value_init, safe_grad=grad)
    # The loop's first iteration (phase 1's first trial, then the failure test) is taken
    # before the loop (peeled_while_loop); where the value at params is not finite, the
    # loop takes the first trial itself.
    search = unpack(peeled_while_loop(
        lambda carry: (carry[0][at["done"]] == 0) & (carry[0][at["failed"]] == 0), step,
        pack(search), take_first=jnp.isfinite(value_init),
        first_body=lambda carry: unless_failed(packed(search_interval)(carry))))
    new_state = ScaleByZoomLinesearchState(
        learning_rate=search.stepsize,
        value=search.value,
        grad=search.grad,
        info=ZoomLinesearchInfo(search.count, search.decrease_error,
                                search.curvature_error),
        num_fun_evals=safe_increment(state.num_fun_evals, search.count))
    return masked_scale(search.stepsize, updates), new_state

  return base.GradientTransformation(init, update)

