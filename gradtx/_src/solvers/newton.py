"""Damped Newton's method from the exact Hessian, for small problems.

The direction solves ``(H + tau I) d = -g`` with ``H`` the Hessian of ``value_fn`` at the
params (raveled into one vector) and ``g`` the gradient, by a Cholesky factorisation.
``tau`` starts at ``damping``; when the factorisation fails (``H + tau I`` is not
positive definite: the Cholesky factor has NaNs), ``tau`` is raised and the
factorisation tried again: Nocedal & Wright, *Numerical Optimization* (2006), Algorithm
3.3, "Cholesky with added multiple of the identity", with the factor 10 of
Levenberg-Marquardt (Levenberg 1944; Marquardt 1963). A line search along ``d`` then
picks the step length (backtracking by default), so the method is globally convergent
and takes the full Newton step (quadratic convergence) near a minimum.

A ``tau`` below that algorithm's first shift, ``beta = 1e-3 max(max|H_ii|, 1)`` (which
the default ``1e-6`` always is), only regularises the factorisation:
when ``H + tau I`` factorises at the first try, one step of iterative refinement against
``H`` (``d <- d + (H + tau I)^-1 (-g - H d)``, the static regularisation of
interior-point solvers) removes most of its bias. In ``H``'s eigenbasis the refined
step is ``-(lambda + 2 tau) / (lambda + tau)**2 g``: within ``(tau / (lambda + tau))**2``
of Newton's ``-g / lambda``, between the damped step and Newton's, so a convex quadratic
is solved in one step. A larger ``tau``, or one raised by the algorithm, is
Levenberg-Marquardt damping and the step is ``-(H + tau I)^-1 g`` exactly.

The Hessian is dense, ``n x n`` for ``n`` params: :func:`newton` refuses more than
``max_params`` of them; :func:`gradtx.hessian_free` needs only Hessian-vector products.
:func:`scale_by_newton` is the direction alone; :func:`newton` chains a line search after
it. The factorisation and the raveling live in :mod:`gradtx._src.solvers.linalg`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.linesearch import scale_by_backtracking_linesearch
from gradtx._src.solvers.linalg import (check_value_fn, damped_cholesky, first_shift,
                                        num_params, ravel)
from gradtx._src.tree.casting import tree_cast_like, widest_float_dtype
from gradtx._src.tree.math import safe_increment, tree_real_vdot, zero_count


class NewtonState(NamedTuple):
  """State of :func:`scale_by_newton`, the direction of :func:`newton`.

  Attributes:
    damping: the ``tau`` of the last step: ``damping``, or what it was raised to.
    num_factorizations: Cholesky factorisations so far (one per step when ``H +
      damping I`` is positive definite).
    num_hessian_evals: Hessians evaluated so far (one per step).
  """

  damping: jax.Array
  num_factorizations: jax.Array
  num_hessian_evals: jax.Array


def _newton_direction(owner: str, damping: Any, max_params: int
                      ) -> base.GradientTransformation:
  """:func:`scale_by_newton`, its errors naming ``owner`` (the constructor called)."""

  def check_size(params):
    n = num_params(params)
    if n > max_params:
      raise ValueError(
          f"{owner}: the params have {n} entries, more than max_params={max_params}; the "
          f"dense {n}x{n} Hessian is unreasonable. Use gtx.hessian_free (Hessian-vector "
          "products, no dense matrix) or gtx.lbfgs, or raise max_params.")

  def init(params):
    check_size(params)
    dtype = widest_float_dtype(params)
    zero = zero_count()
    return NewtonState(damping=jnp.asarray(damping, dtype), num_factorizations=zero,
                       num_hessian_evals=zero)

  def update(updates, state, params=None, *, value_fn=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format(owner))
    check_value_fn(owner, value_fn, "to compute the Hessian")
    check_size(params)
    base.check_same_structure(owner, updates, params)
    dtype = widest_float_dtype(params)
    x, unravel = ravel(params, dtype)
    g, _ = ravel(updates, dtype)
    hessian = jax.hessian(lambda v: value_fn(tree_cast_like(unravel(v), params)))(x)
    hessian = 0.5 * (hessian + hessian.T)
    beta = first_shift(hessian)
    chol, tau, tries = damped_cholesky(hessian, jnp.asarray(damping, dtype), beta)
    solve = lambda r: jax.scipy.linalg.cho_solve((chol, True), r)  # noqa: E731
    direction = -solve(g)
    # A tau that only regularised the factorisation: one step of iterative refinement.
    refine = (tries == 1) & (tau < beta)
    direction = jnp.where(refine, direction + solve(-g - hessian @ direction), direction)
    fallback = jnp.where(jnp.isfinite(g), -g, 0)
    direction = jnp.where(jnp.all(jnp.isfinite(direction)), direction, fallback)
    new_state = NewtonState(
        damping=tau.astype(state.damping.dtype),
        num_factorizations=state.num_factorizations + tries,
        num_hessian_evals=safe_increment(state.num_hessian_evals))
    return tree_cast_like(unravel(direction), updates), new_state

  return base.GradientTransformation(init, update)


@hyperparameters(damping="[0, inf)", max_params="int >= 1")
def scale_by_newton(damping: float = 1e-6, max_params: int = 5000
                    ) -> base.GradientTransformation:
  """The damped Newton direction ``d = -(H + tau I)^-1 g``, refined when ``tau`` only
  regularised the factorisation (module docstring); no step length: :func:`newton`
  chains a line search after it.

  ``update(grads, state, params, value_fn=f)``: ``H`` is ``jax.hessian(f)`` at the raveled
  params, in their widest floating dtype (at least float32); ``g`` the incoming updates.
  If no factorisation succeeds (a Hessian with NaNs) or the direction is not finite, the
  direction is ``-g`` (zeros where ``g`` is not finite), for the line search to handle.

  Args:
    damping: the ``tau`` each step starts from, >= 0 (see :func:`newton`).
    max_params: the largest number of params accepted; beyond it, ``init`` and ``update``
      raise ``ValueError``.

  The state is a :class:`NewtonState`.
  """
  return _newton_direction("scale_by_newton", damping, max_params)


def default_linesearch() -> base.GradientTransformation:
  """Backtracking from the unit step, halving it until the Armijo condition
  ``f(x + a d) <= f(x) + 1e-4 a <g, d>`` holds (at most 30 times); it stores the value and
  gradient at the new params for the next step (Nocedal & Wright 2006, Algorithm 3.1).

  Near a minimum the decrease a Newton step promises, ``-<g, d>/2``, falls below the
  rounding error of ``f`` (once ``|g|`` is about ``sqrt(eps |f| ||H||)``), and no step
  passes the Armijo test although the unit step is the right one: there the unit step is
  taken without a search (and the value and gradient are left for the caller to
  evaluate). The state is the backtracking search's.
  """
  search = scale_by_backtracking_linesearch(
      max_backtracking_steps=30, slope_rtol=1e-4, decrease_factor=0.5,
      increase_factor=math.inf, max_learning_rate=1.0, store_grad=True)

  def update(updates, state, params=None, *, value=None, grad=None, value_fn=None,
             **extra_args):
    def searched(_):
      return search.update(updates, state, params, value=value, grad=grad,
                           value_fn=value_fn, **extra_args)

    if value is None or grad is None:
      return searched(None)  # the search reports what is missing
    value = jnp.asarray(value)
    predicted = -0.5 * tree_real_vdot(grad, updates).astype(state.value.dtype)
    rounding = 10 * jnp.finfo(state.value.dtype).eps * jnp.abs(value)
    unit_step = (predicted >= 0) & (predicted <= rounding) & jnp.isfinite(value)
    return jax.lax.cond(
        unit_step,
        lambda _: (updates, state._replace(value=jnp.full_like(state.value, jnp.inf))),
        searched, None)

  return base.GradientTransformation(search.init, update)


@hyperparameters(damping="[0, inf)", max_params="int >= 1", linesearch="transform | None")
def newton(damping: float = 1e-6, linesearch: base.GradientTransformation | None = None,
           max_params: int = 5000) -> base.GradientTransformation:
  """Damped Newton's method with a line search, for problems of up to a few thousand
  params.

  ``d = -(H + tau I)^-1 g`` (:func:`scale_by_newton`), with ``H`` the exact Hessian of
  ``value_fn`` at the raveled params and ``tau = damping``, raised (``tau <- max(10 tau,
  1e-3 max|H_ii|)``, at most 20 times) until ``H + tau I`` has a Cholesky factorisation;
  then ``p <- p + a d`` with the step ``a`` from ``linesearch``. Nocedal & Wright 2006,
  Algorithms 3.1 and 3.3.

  ``update(grads, state, params, value=f(params), grad=grads, value_fn=f)``; or let
  :func:`gtx.minimize` run it: ``gtx.minimize(f, x0, gtx.newton())``. On a convex quadratic
  the first step lands on the minimum (to ``(damping / lambda_min(H))**2`` relative).

  Args:
    damping: the ``tau`` each step starts from, >= 0. Below ``1e-3 max(max|H_ii|, 1)``
      (as the default is) a ridge that keeps the solve well posed when ``H`` is
      singular, its bias removed by one refinement step (a relative error of about
      ``(damping / lambda_min(H))**2`` in the step); larger, it is Levenberg-Marquardt
      damping, shortening the step towards ``-g / damping``.
    linesearch: the line search along ``d``; ``None`` is backtracking from the unit step
      with Armijo constant 1e-4, halving up to 30 times, storing value and gradient for
      reuse, and the unit step without a search where the decrease is below rounding
      (:func:`default_linesearch`); ``gtx.identity()`` always takes the full Newton step.
    max_params: the largest number of params accepted; beyond it, ``init`` and ``update``
      raise ``ValueError`` (the dense Hessian has ``n**2`` entries): use
      :func:`gtx.hessian_free`.

  The state is ``(NewtonState, line search state)``.
  """
  return chain(_newton_direction("newton", damping, max_params),
               default_linesearch() if linesearch is None else linesearch)
