r"""The probabilistic line search: step sizes for noisy mini-batch losses.

Mahsereci & Hennig (2015, 2017). Along the line ``w(t) = w_0 + t alpha_0 d`` a Gaussian
process (:mod:`gradtx._src.linesearch.line_gp`) models the loss from noisy mini-batch
values and slopes. A trial ``t`` is accepted when the probability that it meets the
Wolfe conditions (sufficient decrease ``f(t) <= f(0) + c1 t f'(0)``, and the curvature
condition ``f'(t) >= c2 f'(0)`` kept below ``-c2 f'(0)`` plus two standard deviations
of ``f'(0)``) exceeds ``wolfe_threshold``; otherwise the next trial is the candidate,
among the minima of the posterior mean's cubic pieces and one step beyond the largest
trial, that maximises expected improvement times that probability. After a handful of
evaluations without success the search takes the trial with the lowest posterior mean.

The numerics follow the authors' MATLAB code (``probLineSearch.m``, release 4.0): values
scaled by ``1 / (alpha_0 |f'(0)|)`` so that ``f(0) = 0`` and ``f'(0) = -1``, the noise
levels of the line's first point for all its points, six evaluations then a last one,
``c1 = 0.05``, ``c2 = 0.5``, threshold 0.3, the next search starting at 1.3 times the
accepted step (reset to a running average of accepted steps when it strays by more than
a factor of 100).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, validation
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.linesearch import line_gp
from gradtx._src.tree.casting import tree_zeros_like, widest_float_dtype
from gradtx._src.tree.math import (safe_increment, tree_norm, tree_real_vdot, tree_where,
                                   zero_count)

# probLineSearch.m: "limit = 6" evaluations in the loop, then one more; with the line's
# origin, at most 8 observations per line.
MAX_OBSERVATIONS = 8
_STATS_DECAY = 0.95  # the running average of accepted step sizes
_RESET_FACTOR = 100.0  # a next step this far from that average is reset to it


class ProbabilisticLinesearchInfo(NamedTuple):
  """Diagnostics.

  Attributes:
    num_searches: line searches completed so far (int32).
    num_fallbacks: of those, the ones that ended without a point likely to meet the Wolfe
      conditions (out of evaluations, or a non-finite observation).
    learning_rate: the step size ``t alpha_0`` the last completed search took.
    p_wolfe: the probability of the Wolfe conditions at the last observed trial (0 at a
      line's first point).
  """

  num_searches: jax.Array
  num_fallbacks: jax.Array
  learning_rate: jax.Array
  p_wolfe: jax.Array


class ProbabilisticLinesearchState(NamedTuple):
  """State of :func:`probabilistic_linesearch`.

  Attributes:
    direction: the current line's search direction ``d``.
    alpha0: the step size that ``t = 1`` stands for on the current line (the next line's,
      between lines; 0 before the first).
    alpha_stats: running average of accepted step sizes.
    f0, beta: the loss and ``|f'(0)|`` at the line's origin (the scales of the GP).
    var_f, var_df: the noise variances of scaled values and slopes.
    ts, ys, dys: the line's observations, scaled; the first ``num_observations`` are used.
    num_observations: observations on the current line (0: the next call starts one).
    t: where the params are on the line (scaled): the trial the next call observes.
    extrapolation: how far beyond the largest trial the extrapolation candidate lies.
    info: :class:`ProbabilisticLinesearchInfo`.
  """

  direction: base.Updates
  alpha0: jax.Array
  alpha_stats: jax.Array
  f0: jax.Array
  beta: jax.Array
  var_f: jax.Array
  var_df: jax.Array
  ts: jax.Array
  ys: jax.Array
  dys: jax.Array
  num_observations: jax.Array
  t: jax.Array
  extrapolation: jax.Array
  info: ProbabilisticLinesearchInfo


def _safe_divide(x, y):
  """``x / y`` where ``y`` is nonzero and finite, else 0; safe to differentiate."""
  ok = (y != 0) & jnp.isfinite(y)
  return jnp.where(ok, x / jnp.where(ok, y, 1.0), 0.0)


class _Outcome(NamedTuple):
  ends: jax.Array  # the line ends (a point is taken) ...
  t_end: jax.Array  # ... at this trial,
  here: jax.Array  # which is where the params are now.
  fallback: jax.Array  # No point was likely enough to meet the Wolfe conditions.
  t_next: jax.Array  # Otherwise the next trial,
  extrapolation: jax.Array  # and the extrapolation distance after it.
  p_wolfe: jax.Array  # at the current trial
  t_lowest: jax.Array  # the observed trial with the lowest mean, the origin included


def search_step(ts, ys, dys, count, var_f, var_df, extrapolation, c1, c2, threshold):
  """One step of the search, given the line's ``count >= 2`` observations, the last of
  which (slot ``count - 1``) is where the params are: take a point or pick the next trial
  (``probLineSearch.m``'s loop body, in its order)."""
  n = ts.shape[0]
  index = jnp.arange(n)
  used = index < count
  gp = line_gp.condition(ts, ys, dys, count, var_f, var_df)

  # The cells between sorted trials, the minimum of the mean's cubic in each, and one
  # extrapolation: the candidates for the next trial.
  order = jnp.argsort(jnp.where(used, ts, jnp.inf))
  sorted_ts = ts[order]
  low, high = sorted_ts[:-1], sorted_ts[1:]
  rep = low + 1e-6 * (high - low)
  inside = line_gp.cubic_minimum(rep, *line_gp.mean_derivatives(gp, rep))
  minima = (index[:-1] + 1 < count) & (low < inside) & (inside < high)
  t_ext = jnp.max(jnp.where(used, ts, -jnp.inf)) + extrapolation
  candidates = jnp.concatenate([jnp.where(minima, inside, 0.0), t_ext[None]])

  # The posterior and the Wolfe probabilities at the trials and the candidates. They
  # only decide (which trial, which candidate), so they have no derivative: cut here,
  # jax.grad does not trace them.
  queries = jax.lax.stop_gradient(jnp.concatenate([ts, candidates]))
  post = line_gp.posterior(jax.lax.stop_gradient(gp), queries)
  # One query at a time: XLA computes the bivariate normal probabilities once, where
  # vectorised it would fuse a copy of their few hundred ops into each of their users.
  per_query = post._fields[:9]
  p = jax.lax.map(
      lambda x: line_gp.p_wolfe(post._replace(**dict(zip(per_query, x[1:]))), x[0], c1,
                                c2),
      (queries, *(getattr(post, name) for name in per_query)))
  means, p_obs = jnp.where(used, post.m[:n], jnp.inf), p[:n]
  current = count - 1
  accept = p_obs[current] > threshold
  # Out of evaluations: the trial with the lowest mean, the origin excluded.
  out_of_budget = count >= n
  best_trial = jnp.argmin(jnp.where(index > 0, means, jnp.inf))
  # Nearly deterministic: the lowest mean (origin included) has a slope near 0. (As the
  # authors' code, on the covariance of f and f' there.)
  lowest = jnp.argmin(means)
  certain = (jnp.abs(post.dm[lowest]) < 1e-5) & (post.vd[lowest] < 1e-4)
  # No minimum in the first cell and an ascending mean at 0: the function is steep on
  # this scale; take a point close to the origin.
  steep = ~minima[0] & (post.dm0 > 0)
  # Trials (neither the origin nor the largest) that meet the Wolfe conditions now.
  wolfe = (index > 0) & (index < count - 1) & (p_obs[order] > threshold)
  wolfe_slot = order[jnp.argmin(jnp.where(wolfe, means[order], jnp.inf))]
  take = jnp.select([accept, out_of_budget, certain, steep],
                    [current, best_trial, lowest, -1], wolfe_slot)

  # Otherwise the candidate with the largest expected improvement times Wolfe probability.
  score = line_gp.expected_improvement(
      post.m[n:], jnp.sqrt(jnp.maximum(post.v[n:], 0.0)), jnp.min(means)) * p[n:]
  valid = jnp.concatenate([minima, jnp.ones([1], bool)])
  best = jnp.argmax(jnp.where(valid & ~jnp.isnan(score), score, -jnp.inf))
  return _Outcome(
      ends=accept | out_of_budget | certain | steep | wolfe.any(),
      t_end=jnp.where(take >= 0, ts[take], 0.01 * (low[0] + high[0])),
      here=take == current, fallback=~accept & out_of_budget, t_next=candidates[best],
      extrapolation=jnp.where(best == n - 1, 2.0 * extrapolation, extrapolation),
      p_wolfe=p_obs[current], t_lowest=ts[lowest])


@hyperparameters(initial_step_size="(0, inf)", slope_rtol="(0, 1)", curv_rtol="(0, 1)",
                 wolfe_threshold="[0, 1)", step_size_growth="[1, inf)")
def probabilistic_linesearch(
    initial_step_size: float = 1e-2,
    slope_rtol: float = 0.05,
    curv_rtol: float = 0.5,
    wolfe_threshold: float = 0.3,
    step_size_growth: float = 1.3,
) -> base.GradientTransformation:
  r"""The probabilistic line search (Mahsereci & Hennig 2015): a step size for a search
  direction from noisy mini-batch losses, one evaluation per step.

  Composed after a direction: ``chain(scale(-1.0), probabilistic_linesearch())`` is SGD
  without a learning rate. Every ``update(updates, state, params, *, value, grad,
  value_var=None, grad_var=None)`` receives the mini-batch loss and gradient at the
  params, which are the last trial on the current line ``w(t) = w_0 + t alpha_0 d``. It
  adds that observation to the line's Gaussian process and either

  * takes a point: the probability that the trial meets the Wolfe conditions exceeds
    ``wolfe_threshold``, or (in the authors' order) the evaluations are spent (the trial
    with the lowest posterior mean), the lowest mean has a near-zero, certain slope, the
    mean rises at 0 (a point at 1% of the first cell), or an earlier trial now meets the
    conditions (the one with the lowest mean). Then the next line starts at that point,
    along the incoming ``updates`` there, with ``alpha_0 = step_size_growth * t alpha_0``
    (the running average of accepted steps instead, if that is more than 100 times
    larger or smaller): from here at once when the point is where the params are, else
    the emitted update moves the params to it and the next call starts the line there;
  * or picks the next trial on the same line, among the minima of the posterior mean's
    cubic pieces and ``max(t) + e`` (``e`` = 1, doubled each time it is chosen), the one
    with the largest expected improvement times Wolfe probability,

  and emits the update to the next point to evaluate. A line starts by emitting
  ``alpha_0 d`` (``t = 1``). The first line's ``alpha_0 = initial_step_size / ||d||``:
  the first step moves the params by ``initial_step_size``, whatever the scale of the
  loss or of the direction (the authors' code takes ``alpha_0`` from the caller; their
  TensorFlow port defaults to 0.01 unnormalised).

  ``value_var`` is the variance of the mini-batch mean loss and ``grad_var`` the
  elementwise variance of the mini-batch mean gradient (a tree like ``grad``), both as
  estimated at the line's first point: :func:`probabilistic_linesearch_variances`
  computes them from per-example losses and gradients, as the authors do. Without them
  the observations are taken as exact: the deterministic limit of the search, right
  for full-batch losses, but with mini-batches every trial then looks inconsistent
  with the last and searches end at their evaluation limit more often.

  A non-finite value, gradient or variance at a trial is not added to the GP: the line
  ends at its observed point of lowest posterior mean (its origin included), counted as
  a fallback. At a line's first point (or a zero or non-finite slope ``<grad, d>`` or
  direction there) no line can start: the update is zero and the next call tries again
  from the same params. So the state stays finite and the params only ever move to
  points whose loss and gradient were finite, or along a line from one.

  Like any line search it takes steps that the loss along the current line allows,
  which over a short run can be smaller than a tuned learning rate's: SGD's best rate
  takes steps that the Wolfe conditions reject even on the exact loss
  (``examples/probabilistic_linesearch.py --oracles`` measures this on two problems).

  Args:
    initial_step_size: how far (2-norm) the first trial moves the params, > 0.
    slope_rtol: the sufficient decrease constant ``c1``, in (0, 1); 0.05 as the authors.
    curv_rtol: the curvature constant ``c2``, in (``slope_rtol``, 1); 0.5 as the authors.
    wolfe_threshold: accept when the Wolfe probability exceeds this, in [0, 1); 0.3 as
      the authors ("not sensitive between 0.1 and 0.8").
    step_size_growth: the next line's first trial is this times the accepted step,
      >= 1; 1.3 as the authors.

  References:
    Mahsereci & Hennig, Probabilistic Line Searches for Stochastic Optimization, NeurIPS
    2015; long version JMLR 18(119), 2017. Their MATLAB code ``probLineSearch.m``.
  """
  owner = "probabilistic_linesearch"
  validation.ordered(owner, "slope_rtol", slope_rtol, "curv_rtol", curv_rtol)

  def init(params):
    dtype = widest_float_dtype(params)
    zero, zeros = jnp.zeros([], dtype), jnp.zeros([MAX_OBSERVATIONS], dtype)
    return ProbabilisticLinesearchState(
        direction=tree_zeros_like(params), alpha0=zero, alpha_stats=zero, f0=zero,
        beta=zero, var_f=zero, var_df=zero, ts=zeros, ys=zeros, dys=zeros,
        num_observations=zero_count(), t=zero, extrapolation=jnp.ones([], dtype),
        info=ProbabilisticLinesearchInfo(zero_count(), zero_count(), zero, zero))

  def update(updates, state, params=None, *, value=None, grad=None, value_var=None,
             grad_var=None, **extra_args):
    del params, extra_args
    if value is None or grad is None:
      raise TypeError(
          f"{owner}: update needs the extra arguments value= (the mini-batch loss at the "
          "params) and grad= (its gradient there); call tx.update(updates, state, params, "
          "value=loss, grad=grads), optionally with value_var= and grad_var=.")
    base.check_same_structure(owner, updates, state.direction, grad,
                              *([] if grad_var is None else [grad_var]))
    dtype = state.alpha0.dtype
    wide = lambda tree: jax.tree.map(lambda x: jnp.asarray(x).astype(dtype), tree)  # noqa: E731
    line, new, grad = wide(state.direction), wide(updates), wide(grad)
    y = jnp.asarray(value).astype(dtype)
    var_y = jnp.zeros([], dtype) if value_var is None else jnp.maximum(
        jnp.asarray(value_var).astype(dtype), 0.0)
    slope, slope_new = tree_real_vdot(grad, line), tree_real_vdot(grad, new)
    if grad_var is None:
      var_slope = var_slope_new = jnp.zeros([], dtype)
    else:
      grad_var = jax.tree.map(lambda v: jnp.maximum(v, 0.0), wide(grad_var))
      var_slope = tree_real_vdot(grad_var, jax.tree.map(jnp.square, line))
      var_slope_new = tree_real_vdot(grad_var, jax.tree.map(jnp.square, new))

    # The observation at trial t of the current line, and the search's next move.
    n, alpha0 = state.num_observations, state.alpha0
    mid = n > 0
    finite = jnp.isfinite(y) & jnp.isfinite(slope) & jnp.isfinite(var_y) & jnp.isfinite(
        var_slope)
    slot = (jnp.arange(MAX_OBSERVATIONS) == n) & finite
    ts = jnp.where(slot, state.t, state.ts)
    ys = jnp.where(slot, _safe_divide(y - state.f0, alpha0 * state.beta), state.ys)
    dys = jnp.where(slot, _safe_divide(slope, state.beta), state.dys)
    # Only mid-line is there a search step to take. (As a cond its few hundred scalar
    # ops are computed once: inlined, XLA would fuse a copy of them into every leaf's
    # and state field's output.)
    step = jax.lax.cond(
        mid, lambda: search_step(ts, ys, dys, n + finite, state.var_f, state.var_df,
                                 state.extrapolation, slope_rtol, curv_rtol,
                                 wolfe_threshold),
        lambda: _Outcome(*(jnp.zeros([], bool if i in (0, 2, 3) else dtype)
                           for i in range(len(_Outcome._fields)))))
    ends = mid & (~finite | step.ends)
    t_end = jnp.where(finite, step.t_end, step.t_lowest)
    here = finite & step.here
    continues = mid & ~ends

    # A line that ends sets the next one's alpha_0 (probLineSearch.m's make_outs).
    taken = t_end * alpha0
    stats = jnp.where(ends, _STATS_DECAY * state.alpha_stats + (1 - _STATS_DECAY) * taken,
                      state.alpha_stats)
    grown = step_size_growth * taken
    grown = jnp.where((grown > _RESET_FACTOR * stats) | (grown < stats / _RESET_FACTOR),
                      stats, grown)
    alpha0 = jnp.where(ends, grown, alpha0)

    # A new line from here, along the incoming direction.
    start = ~mid | (ends & here)
    squared_norm = tree_norm(new, squared=True)
    first = alpha0 == 0
    alpha0_line = jnp.where(first, initial_step_size * jax.lax.rsqrt(
        jnp.where(squared_norm > 0, squared_norm, 1.0)), alpha0).astype(dtype)
    beta = jnp.abs(slope_new)
    starts = start & jnp.isfinite(y) & (beta > 0) & jnp.isfinite(beta) & jnp.isfinite(
        var_y) & jnp.isfinite(var_slope_new) & (squared_norm > 0) & jnp.isfinite(
            squared_norm) & (alpha0_line > 0) & jnp.isfinite(alpha0_line)

    coef_new = jnp.where(starts, alpha0_line, 0.0)
    coef_line = jnp.where(continues, step.t_next - state.t,
                          jnp.where(ends & ~here, t_end - state.t, 0.0)) * state.alpha0
    emitted = jax.tree.map(
        lambda u, d, p: (jnp.where(coef_new == 0, 0.0, coef_new * d)
                         + jnp.where(coef_line == 0, 0.0, coef_line * p)).astype(u.dtype),
        updates, new, line)

    zeros = jnp.zeros_like(ts)
    first_slot = jnp.arange(MAX_OBSERVATIONS) == 0
    pick = lambda at_start, going_on, otherwise: jnp.where(  # noqa: E731
        starts, at_start, jnp.where(continues, going_on, otherwise)).astype(dtype)
    info = state.info
    new_state = ProbabilisticLinesearchState(
        direction=tree_where(starts, jax.tree.map(
            lambda d, p: d.astype(p.dtype), new, state.direction), state.direction),
        alpha0=jnp.where(starts, alpha0_line, alpha0).astype(dtype),
        alpha_stats=jnp.where(starts & first, alpha0_line, stats).astype(dtype),
        f0=jnp.where(starts, y, state.f0).astype(dtype),
        beta=jnp.where(starts, beta, state.beta).astype(dtype),
        var_f=jnp.where(starts, _safe_divide(var_y, (alpha0_line * beta)**2),
                        state.var_f).astype(dtype),
        var_df=jnp.where(starts, _safe_divide(var_slope_new, beta**2),
                         state.var_df).astype(dtype),
        ts=pick(zeros, ts, zeros), ys=pick(zeros, ys, zeros),
        dys=pick(jnp.where(first_slot, _safe_divide(slope_new, beta), 0.0), dys, zeros),
        num_observations=jnp.where(starts, 1, jnp.where(continues, n + 1, 0)).astype(
            jnp.int32),
        t=pick(1.0, step.t_next, 0.0),
        extrapolation=pick(1.0, step.extrapolation, 1.0),
        info=ProbabilisticLinesearchInfo(
            num_searches=safe_increment(info.num_searches, ends),
            num_fallbacks=safe_increment(info.num_fallbacks,
                                         ends & (~finite | step.fallback)),
            learning_rate=jnp.where(ends, taken, info.learning_rate).astype(dtype),
            p_wolfe=jnp.where(mid & finite, step.p_wolfe, 0.0).astype(dtype)))
    return emitted, new_state

  return base.GradientTransformation(init, update)


def probabilistic_linesearch_variances(per_example_values: Any,
                                       per_example_grads: Any) -> tuple[jax.Array, Any]:
  """``(value_var, grad_var)`` for :func:`probabilistic_linesearch` from a mini-batch.

  ``per_example_values`` has shape ``[B]`` and each leaf of ``per_example_grads`` a
  leading axis ``B`` (``jax.vmap(jax.value_and_grad(loss), (None, 0))(params, batch)``).
  The variance of a mean of ``B`` examples is their variance over ``B``, estimated as
  the authors' TensorFlow code does: ``(mean(x^2) - mean(x)^2) / (B - 1)``, computed as
  the batch's (biased) variance over ``B - 1``.
  """
  values = jnp.asarray(per_example_values)
  if values.ndim != 1 or values.shape[0] < 2:
    raise ValueError("probabilistic_linesearch_variances: per_example_values must have "
                     f"shape [B] with B >= 2, got shape {values.shape}")
  size = values.shape[0]
  for path, g in jax.tree_util.tree_leaves_with_path(per_example_grads):
    if jnp.ndim(g) < 1 or jnp.shape(g)[0] != size:
      raise ValueError(
          "probabilistic_linesearch_variances: every leaf of per_example_grads needs a "
          f"leading axis of the batch size {size}; {jax.tree_util.keystr(path)} has shape "
          f"{jnp.shape(g)}")
  variance = lambda x: jnp.var(x, axis=0) / (size - 1)  # noqa: E731
  return variance(values), jax.tree.map(variance, per_example_grads)
