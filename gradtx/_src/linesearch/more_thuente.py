"""More and Thuente's line search: the strong Wolfe step of MINPACK-2's ``dcsrch``.

The search L-BFGS-B uses (More & Thuente 1994; MINPACK-2 ``dcsrch`` and ``dcstep``). It
keeps an interval ``[stx, sty]`` known to contain a step with sufficient decrease and
small curvature, and picks each trial from a cubic or quadratic fitted to the values and
slopes at both ends and at the last trial, safeguarded so that the interval shrinks.
Unlike the zoom search (:func:`scale_by_zoom_linesearch`), every interpolation uses the
slope the trial has already computed, which on smooth problems means fewer evaluations.

Written without branches: one ``lax.while_loop`` whose body evaluates the loss and its
gradient once and updates a few scalars by selects.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, validation
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.linesearch.common import (check_initial_guess_strategy, initial_guess,
                                           initial_wolfe_state, masked_scale, pack_scalars,
                                           peeled_while_loop, wolfe_inputs)
from gradtx._src.tree.math import (safe_increment, tree_add_scale_like, tree_norm,
                                   tree_real_vdot, tree_where)

# dcsrch's constants: a bracketing step halves the interval unless it shrank by 0.66;
# before bracketing, trials are extrapolated between 1.1 and 4 times the last move.
_P66 = 0.66
_XTRAPL = 1.1
_XTRAPU = 4.0


class MoreThuenteLinesearchInfo(NamedTuple):
  """Diagnostics of the last search.

  Attributes:
    num_linesearch_steps: evaluations of ``value_fn`` in the last search.
    decrease_error: by how much the accepted step misses the sufficient decrease test
      (0: it passes).
    curvature_error: by how much it misses the curvature test (0: it passes).
  """

  num_linesearch_steps: jax.Array
  decrease_error: jax.Array
  curvature_error: jax.Array


class ScaleByMoreThuenteLinesearchState(NamedTuple):
  """State of :func:`scale_by_more_thuente_linesearch`.

  Attributes:
    learning_rate: the step size of the last search.
    value: the loss at the accepted step (``inf`` before the first search).
    grad: the gradient there.
    info: :class:`MoreThuenteLinesearchInfo` of the last search.
    num_fun_evals: evaluations of ``value_fn`` by all searches so far (int32).
  """

  learning_rate: jax.Array
  value: jax.Array
  grad: base.Updates
  info: MoreThuenteLinesearchInfo
  num_fun_evals: jax.Array


def _cubic_gamma(theta, a, b, clamp=False):
  """``sqrt(theta**2 - a*b)``, scaled against overflow as in ``dcstep``."""
  s = jnp.maximum(jnp.maximum(jnp.abs(theta), jnp.abs(a)), jnp.abs(b))
  radical = (theta / s)**2 - (a / s) * (b / s)
  if clamp:
    radical = jnp.maximum(0.0, radical)
  return s * jnp.sqrt(radical)


def dcstep(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax):
  """MINPACK-2's ``dcstep``: the next trial step and the updated interval.

  ``(stx, fx, dx)`` is the end with the least value, ``(sty, fy, dy)`` the other end,
  ``(stp, fp, dp)`` the trial just evaluated. The four cases of More & Thuente's
  Section 4 are all computed and the right one selected. Returns ``(stx, fx, dx, sty,
  fy, dy, stp, brackt)``.
  """
  sgnd = jnp.sign(dp) * jnp.sign(dx)
  # Cases 1-3 fit the cubic through (stx, fx, dx) and (stp, fp, dp).
  theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp

  # Case 1: a higher value. The minimum is bracketed; the cubic step if it is closer to
  # stx than the quadratic one, else their mean.
  gamma = _cubic_gamma(theta, dx, dp)
  gamma1 = jnp.where(stp < stx, -gamma, gamma)
  r = ((gamma1 - dx) + theta) / (((gamma1 - dx) + gamma1) + dp)
  stpc = stx + r * (stp - stx)
  stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx)
  stpf1 = jnp.where(jnp.abs(stpc - stx) <= jnp.abs(stpq - stx), stpc,
                    stpc + (stpq - stpc) / 2.0)

  # Case 2: a lower value, slopes of opposite signs. Bracketed; the step (cubic or
  # secant) farther from stp.
  gamma2 = jnp.where(stp > stx, -gamma, gamma)
  r = ((gamma2 - dp) + theta) / (((gamma2 - dp) + gamma2) + dx)
  stpc = stp + r * (stx - stp)
  secant = stp + (dp / (dp - dx)) * (stx - stp)
  stpf2 = jnp.where(jnp.abs(stpc - stp) > jnp.abs(secant - stp), stpc, secant)

  # Case 3: a lower value, same signs, the slope decreasing in magnitude. The cubic
  # step only if it goes beyond stp (else the bound), safeguarded.
  gamma3 = _cubic_gamma(theta, dx, dp, clamp=True)
  gamma3 = jnp.where(stp > stx, -gamma3, gamma3)
  r = ((gamma3 - dp) + theta) / ((gamma3 + (dx - dp)) + gamma3)
  stpc = jnp.where((r < 0) & (gamma3 != 0), stp + r * (stx - stp),
                   jnp.where(stp > stx, stpmax, stpmin))
  closer = jnp.where(jnp.abs(stpc - stp) < jnp.abs(secant - stp), stpc, secant)
  toward_sty = stp + _P66 * (sty - stp)
  stpf3_bracketed = jnp.where(stp > stx, jnp.minimum(toward_sty, closer),
                              jnp.maximum(toward_sty, closer))
  farther = jnp.where(jnp.abs(stpc - stp) > jnp.abs(secant - stp), stpc, secant)
  stpf3 = jnp.where(brackt, stpf3_bracketed, jnp.clip(farther, stpmin, stpmax))

  # Case 4: a lower value, same signs, the slope not decreasing in magnitude. The cubic
  # through stp and sty if bracketed (bisection if sty's value is not finite), else
  # the bound.
  theta4 = 3.0 * (fp - fy) / (sty - stp) + dy + dp
  gamma4 = _cubic_gamma(theta4, dy, dp)
  gamma4 = jnp.where(stp > sty, -gamma4, gamma4)
  r = ((gamma4 - dp) + theta4) / (((gamma4 - dp) + gamma4) + dy)
  stpc = jnp.where(jnp.isfinite(fy), stp + r * (sty - stp), (stp + sty) / 2.0)
  stpf4 = jnp.where(brackt, stpc, jnp.where(stp > stx, stpmax, stpmin))

  case1 = fp > fx
  case2 = ~case1 & (sgnd < 0.0)
  case3 = ~case1 & ~case2 & (jnp.abs(dp) < jnp.abs(dx))
  stpf = jnp.where(case1, stpf1, jnp.where(case2, stpf2, jnp.where(case3, stpf3, stpf4)))
  brackt = brackt | case1 | case2

  # The new interval: a higher value becomes sty; otherwise stp becomes stx, and the old
  # stx becomes sty when the slopes had opposite signs.
  sty, fy, dy = (jnp.where(case1, stp, jnp.where(case2, stx, sty)),
                 jnp.where(case1, fp, jnp.where(case2, fx, fy)),
                 jnp.where(case1, dp, jnp.where(case2, dx, dy)))
  stx, fx, dx = (jnp.where(case1, stx, stp), jnp.where(case1, fx, fp),
                 jnp.where(case1, dx, dp))
  return stx, fx, dx, sty, fy, dy, stpf, brackt


class _Scalars(NamedTuple):
  """dcsrch's saved scalars and the search's own; the loop carries them packed in one
  vector (``pack_scalars``)."""

  count: jax.Array  # evaluations so far
  done: jax.Array  # 1 once the search has ended
  accepted: jax.Array  # 1 if it ended by accepting the last trial, else it takes stx
  stp: jax.Array  # the next trial; once done, the last one
  f: jax.Array  # value and slope at the last trial
  d: jax.Array
  stage: jax.Array
  brackt: jax.Array
  stx: jax.Array
  fx: jax.Array
  gx: jax.Array
  sty: jax.Array
  fy: jax.Array
  gy: jax.Array
  stmin: jax.Array
  stmax: jax.Array
  width: jax.Array
  width1: jax.Array
  best_value: jax.Array  # the loss at stx (fx is modified in stage 1)


_DONE = _Scalars._fields.index("done")


def _unpack(vector: jax.Array) -> _Scalars:
  return _Scalars(*(vector[i] for i in range(len(_Scalars._fields))))


@hyperparameters(max_linesearch_steps="int >= 1", slope_rtol="[0, 1)", curv_rtol="(0, inf)",
                 xtol="[0, inf)", max_learning_rate="(0, inf]",
                 first_step_length="(0, inf) | None")
def scale_by_more_thuente_linesearch(
    max_linesearch_steps: int = 20,
    slope_rtol: float = 1e-3,
    curv_rtol: float = 0.9,
    xtol: float = 0.1,
    max_learning_rate: float = 1e10,
    initial_guess_strategy: str = "one",
    first_step_length: float | None = None,
) -> base.GradientTransformation:
  r"""More and Thuente's line search for the strong Wolfe conditions (L-BFGS-B's).

  Finds a step size ``eta`` along the incoming direction ``u`` (``phi(eta) = f(w + eta
  u)``) with::

    phi(eta) <= phi(0) + slope_rtol * eta * phi'(0)         (sufficient decrease)
    |phi'(eta)| <= curv_rtol * |phi'(0)|                    (curvature)

  by MINPACK-2's ``dcsrch`` (module docstring); the defaults are L-BFGS-B's (``ftol``,
  ``gtol``, ``xtol``, the largest step). Each trial evaluates ``value_fn`` and its
  gradient once; the value and gradient at the accepted step are kept in the state for
  :func:`value_and_grad_from_state` and :func:`minimize`. Emits ``eta u``.

  Ends without both tests holding (``dcsrch``'s warnings) when the interval is shorter
  than ``xtol`` times its right end, when rounding stops progress, at
  ``max_learning_rate``, or after ``max_linesearch_steps`` evaluations; the step with
  the least value found is then taken (``dcsrch`` evaluates it once more; this search
  kept its gradient), which is no step at all if no trial decreased the loss. A trial
  with a non-finite loss or slope bounds the interval from above and the next trial
  halves the distance to the best step. A direction that is not a descent direction
  (``phi'(0) >= 0``, or not finite) gives a zero update and no evaluation.

  In float32, close to a minimum the decrease a step can make falls below the rounding
  of the loss (around ``|g| ~ sqrt(eps |f| L)``, ``L`` the curvature) and searches fail;
  the zoom search's approximate Wolfe test goes further there.

  With :func:`lbfgs`, ``gtx.lbfgs(linesearch=gtx.scale_by_more_thuente_linesearch(
  first_step_length=1.0))`` takes L-BFGS-B's steps on an unconstrained problem.

  ``update(updates, state, params, *, value, grad, value_fn, **extras)``: ``value`` and
  ``grad`` at ``params``, ``value_fn(params, **kw)`` the loss, ``kw`` the extras it names.

  Args:
    max_linesearch_steps: the most evaluations per search (>= 1; L-BFGS-B: 20).
    slope_rtol: the sufficient decrease constant (``ftol``), in [0, 1).
    curv_rtol: the curvature constant (``gtol``), in (0, inf) and >= ``slope_rtol``.
    xtol: relative interval length at which the search ends, in [0, inf).
    max_learning_rate: the largest step, in (0, inf].
    initial_guess_strategy: the first trial: ``'one'`` (for Newton and quasi-Newton
      directions) or ``'keep'`` (the last accepted step, 1 after a zero step).
    first_step_length: if given (> 0), the first trial of the first search is a step
      of this length, ``first_step_length / ||u||`` (L-BFGS-B: 1).

  References:
    More & Thuente, Line search algorithms with guaranteed sufficient decrease, ACM
    Transactions on Mathematical Software 20(3), 1994.
    Byrd, Lu, Nocedal & Zhu, A limited memory algorithm for bound constrained
    optimization, SIAM Journal on Scientific Computing 16(5), 1995 (L-BFGS-B).
  """
  owner = "scale_by_more_thuente_linesearch"
  validation.ordered(owner, "slope_rtol", slope_rtol, "curv_rtol", curv_rtol)
  check_initial_guess_strategy(owner, initial_guess_strategy)

  def init(params):
    return initial_wolfe_state(ScaleByMoreThuenteLinesearchState,
                               MoreThuenteLinesearchInfo, params)

  def update(updates, state, params=None, *, value=None, grad=None, value_fn=None,
             **extra_args):
    value_and_grad, dtype, grad = wolfe_inputs(owner, updates, state, params, value, grad,
                                               value_fn, extra_args)
    as_dtype = lambda x: jnp.asarray(x).astype(dtype)  # noqa: E731
    finit = as_dtype(value)
    ginit = as_dtype(tree_real_vdot(grad, updates))
    gtest = slope_rtol * ginit
    stpmin, stpmax = jnp.zeros([], dtype), as_dtype(max_learning_rate)

    guess = initial_guess(initial_guess_strategy, state)
    if first_step_length is not None:
      # The first search (the state's value is still inf): a step of that length.
      sq_norm = as_dtype(tree_norm(updates, squared=True))
      unit = first_step_length / jnp.sqrt(jnp.where(sq_norm > 0, sq_norm, 1.0))
      guess = jnp.where(jnp.isinf(state.value) & (sq_norm > 0), unit, guess)
    guess = as_dtype(jnp.minimum(guess, stpmax))

    def iterate(carry):
      """Evaluate the trial ``s.stp``, then one call of ``dcsrch``."""
      vector, _, best_grad = carry
      s = _unpack(vector)
      stp = s.stp
      f, g = value_and_grad(tree_add_scale_like(params, stp, updates))
      g = jax.tree.map(lambda a, b: a.astype(b.dtype), g, grad)
      f, d = as_dtype(f), as_dtype(tree_real_vdot(g, updates))
      count = s.count + 1

      # The tests at the trial (dcsrch's CONVERGENCE and STPMAX/STPMIN warnings).
      ftest = finit + stp * gtest
      stage = jnp.where((s.stage == 1) & (f <= ftest) & (d >= 0), 2, s.stage)
      accept = (((f <= ftest) & (jnp.abs(d) <= curv_rtol * -ginit))
                | ((stp == stpmax) & (f <= ftest) & (d <= gtest))
                | ((stp == stpmin) & ((f > ftest) | (d >= gtest))))

      # The next trial. In stage 1, while the value is not yet below the sufficient
      # decrease line, dcstep works on the modified function psi = phi - gtest * stp.
      finite = jnp.isfinite(f) & jnp.isfinite(d)
      modified = (stage == 1) & (f <= s.fx) & (f > ftest)
      shift = jnp.where(modified, gtest, 0.0)
      stx, fx, gx, sty, fy, gy, new_stp, brackt = dcstep(
          s.stx, s.fx - s.stx * shift, s.gx - shift, s.sty, s.fy - s.sty * shift,
          s.gy - shift, stp, f - stp * shift, d - shift, s.brackt > 0, s.stmin, s.stmax)
      fx, fy = fx + stx * shift, fy + sty * shift
      gx, gy = gx + shift, gy + shift
      # A non-finite trial: the interval's upper end, and halfway back to stx.
      stx, fx, gx = (jnp.where(finite, stx, s.stx), jnp.where(finite, fx, s.fx),
                     jnp.where(finite, gx, s.gx))
      sty, fy, gy = (jnp.where(finite, sty, stp), jnp.where(finite, fy, jnp.inf),
                     jnp.where(finite, gy, 0.0))
      new_stp = jnp.where(finite, new_stp, s.stx + 0.5 * (stp - s.stx))
      brackt = brackt | ~finite
      moved = finite & (stx == stp)
      best_value = jnp.where(moved, f, s.best_value)
      best_grad = tree_where(moved, g, best_grad)

      # Bisect if the bracket did not shrink enough over two steps; keep trials inside
      # the bracket, or within the extrapolation bounds before bracketing.
      bisect = brackt & (jnp.abs(sty - stx) >= _P66 * s.width1)
      new_stp = jnp.where(bisect, stx + 0.5 * (sty - stx), new_stp)
      width1 = jnp.where(brackt, s.width, s.width1)
      width = jnp.where(brackt, jnp.abs(sty - stx), s.width)
      stmin = jnp.where(brackt, jnp.minimum(stx, sty), new_stp + _XTRAPL * (new_stp - stx))
      stmax = jnp.where(brackt, jnp.maximum(stx, sty), new_stp + _XTRAPU * (new_stp - stx))
      new_stp = jnp.clip(new_stp, stpmin, stpmax)
      # dcsrch would now evaluate stx again and stop with a warning; stx's value and
      # gradient are at hand, so stop here with it.
      stuck = brackt & ((new_stp <= stmin) | (new_stp >= stmax)
                        | (stmax - stmin <= xtol * stmax) | ~jnp.isfinite(new_stp))
      done = accept | stuck | (count >= max_linesearch_steps)
      scalars = _Scalars(
          count=count, done=done, accepted=accept, stp=jnp.where(done, stp, new_stp),
          f=f, d=d, stage=stage, brackt=brackt, stx=stx, fx=fx, gx=gx, sty=sty, fy=fy,
          gy=gy, stmin=stmin, stmax=stmax, width=width, width1=width1,
          best_value=best_value)
      return pack_scalars(scalars, dtype), g, best_grad

    zero, width = jnp.zeros([], dtype), stpmax - stpmin
    scalars = _Scalars(
        count=zero, done=~(ginit < 0), accepted=False, stp=guess, f=finit, d=ginit,
        stage=1, brackt=False, stx=zero, fx=finit, gx=ginit, sty=zero, fy=finit, gy=ginit,
        stmin=zero, stmax=guess + _XTRAPU * guess, width=width, width1=width / 0.5,
        best_value=finit)
    # The first trial outside the loop (peeled_while_loop; none along a direction that is
    # not a descent direction).
    vector, trial_grad, best_grad = peeled_while_loop(
        lambda carry: carry[0][_DONE] == 0, iterate, (pack_scalars(scalars, dtype), grad, grad))
    s = _unpack(vector)
    # The last trial if it passed, else stx (no step if nothing decreased the loss, or
    # if the direction is not a descent direction).
    accepted = s.accepted > 0
    stepsize = jnp.where(accepted, s.stp, s.stx)
    value_out = jnp.where(accepted, s.f, s.best_value)
    slope_out = jnp.where(accepted, s.d, s.gx)
    grad_out = tree_where(accepted, trial_grad, best_grad)
    decrease_error = jnp.maximum(value_out - finit - stepsize * gtest, 0.0)
    curvature_error = jnp.maximum(jnp.abs(slope_out) - curv_rtol * jnp.abs(ginit), 0.0)
    count = s.count.astype(jnp.int32)
    new_state = ScaleByMoreThuenteLinesearchState(
        learning_rate=stepsize, value=value_out, grad=grad_out,
        info=MoreThuenteLinesearchInfo(count, decrease_error, curvature_error),
        num_fun_evals=safe_increment(state.num_fun_evals, count))
    return masked_scale(stepsize, updates), new_state

  return base.GradientTransformation(init, update)

