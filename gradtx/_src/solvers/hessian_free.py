"""Hessian-free optimisation: truncated Newton steps from curvature-vector products.

Martens, "Deep learning via Hessian-free optimization", ICML 2010. Each step minimises
the damped quadratic model of the objective around the params ``x``::

  phi(p) = g.p + 1/2 p.(B + lambda I)p

by conjugate gradient (CG), where ``B`` is the Hessian (``curvature='hessian'``,
Hessian-vector products by forward-over-reverse differentiation, Pearlmutter 1994) or the
Gauss-Newton matrix ``J^T H_L J`` of a model ``output_fn`` composed with a convex loss
``loss_fn`` (``curvature='gauss_newton'``, Schraudolph 2002), which is positive
semi-definite. ``B`` is never formed: CG needs only ``B v``, which costs about as much as
a gradient. The pieces of Martens' algorithm (his section numbers):

* CG starts from the previous step's solution times 0.95 (4.5; from zero if that has a
  worse model value), stops after ``cg_max_iters`` iterations, at negative curvature, or
  when the model value made too little relative progress over the last ``k = max(10,
  0.1 i)`` iterations: ``(phi_i - phi_{i-k}) / phi_i < k * cg_tol`` (4.4).
* Levenberg-Marquardt damping (4.1): with the reduction ratio ``rho = (f(x + p) - f(x)) /
  phi(p)``, ``lambda *= 3/2`` if ``rho < 1/4`` and ``lambda *= 2/3`` if ``rho > 3/4``.
* Optional diagonal preconditioner ``(diag(B) + lambda)^0.75`` (4.7); Martens' diagonal
  is the empirical Fisher's, which needs per-example gradients; here ``diag(B)`` is
  estimated by Hutchinson probes (``E[v * Bv]`` for random signs ``v``; Bekas, Kokiopoulou
  & Saad 2007), one product per step, averaged over steps.
* Optional CG-iteration backtracking (4.6, ``cg_backtracking=True``): CG keeps its
  iterates at iterations ``ceil(1.3**j)``; after CG, ``f`` is evaluated at them from the
  last backwards while it does not increase, and the step is the last iterate reached
  (its model value gives ``rho``). CG's final iterate, not the chosen one, warm-starts
  the next step, as Martens does.
* Martens' backtracking line search (4.6) on the step: ``a p`` for the first ``a`` in
  1, 0.8, 0.8**2, ... (at most ``MAX_BACKTRACKS`` reductions) with ``f(x + a p) <= f(x) +
  1e-2 a g.p``; if none passes, no step (a zero update). A NaN or infinite value fails
  the test, so non-finite numbers never reach the params; the damping then rises by the
  rule above (``rho < 1/4``). Another line search transform can replace this one.

:func:`scale_by_hessian_free` is the step ``p`` alone, with the damping adapted; chained
before a line search it is :func:`hessian_free` with that line search. CG itself lives
in :mod:`gradtx._src.solvers.linalg`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.solvers.linalg import check_value_fn, conjugate_gradient_saving, ravel
from gradtx._src.tree.casting import tree_cast_like, tree_zeros_like, widest_float_dtype
from gradtx._src.tree.math import zero_count

WARM_START_DECAY = 0.95  # Martens 2010, section 4.5
ARMIJO = 1e-2  # Martens 2010, section 4.6
BACKTRACK_FACTOR = 0.8  # Martens 2010, section 4.6
MAX_BACKTRACKS = 30  # 0.8**30 = 1.2e-3
PRECONDITIONER_EXPONENT = 0.75  # Martens 2010, section 4.7
SAVE_GROWTH = 1.3  # Martens 2010, section 4.6: CG iterates kept at ceil(1.3**j)
DIAGONAL_DECAY = 0.95  # averaging of the Hutchinson estimates over steps


class HessianFreeState(NamedTuple):
  """State of :func:`scale_by_hessian_free` (and of :func:`hessian_free` without a
  ``linesearch``).

  Attributes:
    damping: the current Levenberg-Marquardt ``lambda``.
    solution: the last CG solution ``p`` (in the params' structure), the next warm start.
    diagonal: the running estimate of ``diag(B)`` for the preconditioner (params'
      structure), or an empty array without one.
    key: the random key of the Hutchinson probes (empty without a preconditioner).
    rho: the last reduction ratio (1 before the first step and after a zero step; 0
      when ``f(x + p)`` was not finite or the model predicted no decrease, so that
      the state stays finite).
    num_fun_evals: evaluations of the objective (``f(x)`` when ``value=`` is not given,
      ``f(x + p)`` every step, and the backtracking line search's).
    num_cg_iters: CG iterations so far (one curvature-vector product each).
  """

  damping: jax.Array
  solution: base.Params
  diagonal: Any
  key: jax.Array
  rho: jax.Array
  num_fun_evals: jax.Array
  num_cg_iters: jax.Array


def save_points(max_iters: int) -> tuple[int, ...]:
  """The CG iterations whose iterates CG-backtracking keeps: the distinct
  ``ceil(1.3**j)``, ``j >= 0``, up to ``max_iters`` (1, 2, 3, 4, 5, 7, 9, 11, 14, ...)."""
  points, j = [], 0
  while (i := math.ceil(SAVE_GROWTH**j - 1e-9)) <= max_iters:
    if not points or i != points[-1]:
      points.append(i)
    j += 1
  return tuple(points)


def _cg_backtrack(objective: Callable[[jax.Array], jax.Array], x: jax.Array,
                  p: jax.Array, value: jax.Array, phi: jax.Array, iterations: jax.Array,
                  saved: jax.Array, saved_phi: jax.Array, saves_at: tuple[int, ...]
                  ) -> tuple[jax.Array, ...]:
  """Martens' CG-iteration backtracking: from CG's final iterate ``p`` (``value = f(x +
  p)``, model value ``phi``), step back through the kept iterates of earlier iterations
  while ``f`` does not increase (a non-finite ``f`` counts as ``+inf``). Returns the
  chosen iterate, ``f`` (``inf`` if not finite) and the model value there, and the
  evaluations made."""
  earlier = jnp.sum(jnp.asarray(saves_at, jnp.int32) < iterations)
  # A final iterate with a non-finite value is worse than any finite one.
  value = jnp.where(jnp.isfinite(value), value, jnp.inf)

  def going(carry):
    k, _, _, _, more, _ = carry
    return more & (k >= 0)

  def back(carry):
    k, p, f, phi, _, evals = carry
    q = saved[k]
    f_q = objective(x + q)
    f_q = jnp.where(jnp.isfinite(f_q), f_q, jnp.inf)
    better = f_q <= f
    return (k - 1, jnp.where(better, q, p), jnp.where(better, f_q, f),
            jnp.where(better, saved_phi[k], phi), better, evals + 1)

  start = (earlier - 1, p, value, phi, jnp.ones([], bool), jnp.zeros([], jnp.int32))
  _, p, f, phi, _, evals = jax.lax.while_loop(going, back, start)
  return p, f, phi, evals


def _curvature_product(curvature: str, objective: Callable[[jax.Array], jax.Array],
                       output_fn: Callable[[jax.Array], Any] | None,
                       loss_fn: Callable[[Any], jax.Array] | None,
                       x: jax.Array) -> Callable[[jax.Array], jax.Array]:
  """``v -> B v`` at ``x``, linearised once so that each product is one linear pass."""
  if curvature == "hessian":
    _, hvp = jax.linearize(jax.grad(objective), x)
    return hvp
  outputs, jvp = jax.linearize(output_fn, x)
  vjp = jax.linear_transpose(jvp, x)
  _, loss_hvp = jax.linearize(jax.grad(loss_fn), outputs)
  return lambda v: vjp(loss_hvp(jvp(v)))[0]


def _backtrack(objective: Callable[[jax.Array], jax.Array], x: jax.Array, p: jax.Array,
               value: jax.Array, new_value: jax.Array, slope: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
  """Martens' line search: ``a p`` for the first ``a = 0.8**j`` with ``f(x + a p) <= f(x)
  + 1e-2 a g.p`` (``new_value = f(x + p)``), or zeros; and the evaluations it made."""

  def fails(carry):
    a, f_a, j = carry
    return ~(f_a <= value + ARMIJO * a * slope) & (j < MAX_BACKTRACKS)

  def shrink(carry):
    a, _, j = carry
    a = BACKTRACK_FACTOR * a
    return a, objective(x + a * p), j + 1

  one = jnp.ones([], x.dtype)
  a, f_a, j = jax.lax.while_loop(fails, shrink, (one, new_value, jnp.zeros([], jnp.int32)))
  accepted = f_a <= value + ARMIJO * a * slope
  return jnp.where(accepted, a * p, 0), j


# The hyperparameters of scale_by_hessian_free and hessian_free (which adds linesearch).
_SPECS = dict(damping="(0, inf)", cg_tol="[0, inf)", cg_max_iters="int >= 1", seed="int >= 0",
              curvature="{'hessian', 'gauss_newton'}", cg_backtracking="bool",
              preconditioner="{'diagonal'} | None", output_fn="callable | None",
              loss_fn="callable | None")


def _hessian_free_step(owner: str, damping: Any, cg_max_iters: int, cg_tol: Any,
                       curvature: str, preconditioner: str | None,
                       output_fn: Callable[[base.Params], Any] | None,
                       loss_fn: Callable[[Any], jax.Array] | None, seed: int,
                       cg_backtracking: bool, martens_search: bool
                       ) -> base.GradientTransformation:
  """The step ``p`` of :func:`scale_by_hessian_free`, or with ``martens_search`` the step
  ``a p`` of Martens' backtracking line search (which shares the evaluation of ``f(x +
  p)`` with the reduction ratio); errors name ``owner`` (the constructor called)."""
  default_output_fn, default_loss_fn = output_fn, loss_fn

  def init(params):
    dtype = widest_float_dtype(params)
    zero = zero_count()
    if preconditioner is None:
      diagonal, key = jnp.zeros([0], dtype), jnp.zeros([0], jnp.uint32)
    else:
      diagonal = tree_zeros_like(params)
      key = jax.random.key_data(jax.random.PRNGKey(seed))
    return HessianFreeState(damping=jnp.asarray(damping, dtype),
                            solution=tree_zeros_like(params),
                            diagonal=diagonal, key=key, rho=jnp.ones([], dtype),
                            num_fun_evals=zero, num_cg_iters=zero)

  def update(updates, state, params=None, *, value=None, value_fn=None, output_fn=None,
             loss_fn=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format(owner))
    base.check_same_structure(owner, updates, params)
    output_fn = output_fn or default_output_fn
    loss_fn = loss_fn or default_loss_fn
    if curvature == "gauss_newton":
      if output_fn is None or loss_fn is None:
        raise ValueError(f"{owner}: curvature='gauss_newton' needs output_fn= (params -> "
                         "model outputs) and loss_fn= (outputs -> scalar loss), as extras "
                         f"to update or as arguments of {owner}")
      if value_fn is None:
        value_fn = lambda p: loss_fn(output_fn(p))  # noqa: E731
    else:
      check_value_fn(owner, value_fn, "for its Hessian-vector products")

    dtype = widest_float_dtype(params)
    x, unravel = ravel(params, dtype)
    g, _ = ravel(updates, dtype)
    as_params = lambda v: tree_cast_like(unravel(v), params)  # noqa: E731
    objective = lambda v: jnp.asarray(value_fn(as_params(v))).astype(dtype)  # noqa: E731
    outputs = None if output_fn is None else (lambda v: output_fn(as_params(v)))
    product = _curvature_product(curvature, objective, outputs, loss_fn, x)
    lam = state.damping
    matvec = lambda v: product(v) + lam * v  # noqa: E731

    diagonal, key = state.diagonal, state.key
    precondition = lambda r: r  # noqa: E731
    if preconditioner == "diagonal":
      key, probe_key = jax.random.split(jax.random.wrap_key_data(key))
      key = jax.random.key_data(key)
      probe = jax.random.rademacher(probe_key, x.shape, dtype)
      estimate = jnp.abs(probe * product(probe))
      previous, _ = ravel(state.diagonal, dtype)
      d = jnp.where(jnp.all(previous == 0), estimate,
                    DIAGONAL_DECAY * previous + (1 - DIAGONAL_DECAY) * estimate)
      d = jnp.where(jnp.isfinite(d), d, 0)
      diagonal = tree_cast_like(unravel(d), params)
      scale = (d + lam) ** PRECONDITIONER_EXPONENT
      precondition = lambda r: r / scale  # noqa: E731

    warm, _ = ravel(state.solution, dtype)
    saves_at = save_points(cg_max_iters) if cg_backtracking else ()
    p, phi, iterations, saved, saved_phi = conjugate_gradient_saving(
        matvec, g, WARM_START_DECAY * warm, cg_max_iters, cg_tol, precondition, saves_at)
    p = jnp.where(jnp.isfinite(p), p, 0)
    solution = p  # the next warm start: CG's last iterate, also after backtracking
    evals = 1
    if value is None:
      value = objective(x)
      evals += 1
    value = jnp.asarray(value).astype(dtype)
    new_value = objective(x + p)
    if cg_backtracking:
      p, new_value, phi, backtracks = _cg_backtrack(objective, x, p, new_value, phi,
                                                    iterations, saved, saved_phi, saves_at)
      evals = evals + backtracks
    slope = jnp.vdot(g, p)
    rho = (new_value - value) / phi
    rho = jnp.where(jnp.isfinite(new_value) & (phi < 0) & jnp.isfinite(rho), rho, 0.0)
    # Nothing to do (a zero step that changes nothing): the model was exact, and the
    # damping stays as it is.
    idle = (phi == 0) & (new_value == value)
    rho = jnp.where(idle, 1.0, rho)
    factor = jnp.where(idle, 1.0, jnp.where(rho < 0.25, 1.5, jnp.where(rho > 0.75, 2 / 3, 1.0)))
    finfo = jnp.finfo(dtype)
    new_lam = jnp.clip(lam * factor, finfo.tiny, 1 / finfo.eps)
    if martens_search:
      step, backtracks = _backtrack(objective, x, p, value, new_value, slope)
      evals = evals + backtracks
    else:
      step = p
    new_state = HessianFreeState(
        damping=new_lam.astype(state.damping.dtype),
        solution=tree_cast_like(unravel(solution), params), diagonal=diagonal, key=key,
        rho=rho.astype(state.rho.dtype),
        num_fun_evals=state.num_fun_evals + evals,
        num_cg_iters=state.num_cg_iters + iterations)
    return tree_cast_like(unravel(step), updates), new_state

  return base.GradientTransformation(init, update)


@hyperparameters(**_SPECS)
def scale_by_hessian_free(damping: float = 1.0, cg_max_iters: int = 50,
                          cg_tol: float = 5e-4, curvature: str = "hessian",
                          preconditioner: str | None = None,
                          output_fn: Callable[[base.Params], Any] | None = None,
                          loss_fn: Callable[[Any], jax.Array] | None = None,
                          seed: int = 0,
                          cg_backtracking: bool = False) -> base.GradientTransformation:
  """The Hessian-free step ``p`` (Martens 2010), with no line search: :func:`hessian_free`
  chains one after it.

  Each update: ``p`` approximately minimises ``g.p + 1/2 p.(B + lambda I)p`` by at most
  ``cg_max_iters`` CG iterations (warm-started at ``0.95 p_prev``; with
  ``cg_backtracking``, the CG iterate Martens' CG-iteration backtracking picks); the
  reduction ratio ``rho = (f(x + p) - f(x)) / phi(p)`` adapts ``lambda`` (x3/2 below
  1/4, x2/3 above 3/4). Emits ``p``, the step the line search after it scales.
  ``gtx.chain(gtx.scale_by_hessian_free(...), linesearch)`` is
  ``gtx.hessian_free(..., linesearch=linesearch)``.

  ``update(grads, state, params, value=f(x), value_fn=f)`` for ``curvature='hessian'``;
  for ``curvature='gauss_newton'`` the model and the loss (``output_fn=``, ``loss_fn=``)
  as extras or given here. The arguments are :func:`hessian_free`'s, but for
  ``linesearch``. The state is a :class:`HessianFreeState`.
  """
  return _hessian_free_step("scale_by_hessian_free", damping, cg_max_iters, cg_tol,
                            curvature, preconditioner, output_fn, loss_fn, seed,
                            cg_backtracking, martens_search=False)


@hyperparameters(**_SPECS, linesearch="transform | None")
def hessian_free(damping: float = 1.0, cg_max_iters: int = 50, cg_tol: float = 5e-4,
                 curvature: str = "hessian",
                 linesearch: base.GradientTransformation | None = None,
                 preconditioner: str | None = None,
                 output_fn: Callable[[base.Params], Any] | None = None,
                 loss_fn: Callable[[Any], jax.Array] | None = None,
                 seed: int = 0,
                 cg_backtracking: bool = False) -> base.GradientTransformation:
  """Hessian-free optimisation (Martens 2010): truncated CG on damped curvature products.

  Each update: ``p`` approximately minimises ``g.p + 1/2 p.(B + lambda I)p`` by at most
  ``cg_max_iters`` CG iterations (warm-started at ``0.95 p_prev``); the reduction ratio
  ``rho = (f(x + p) - f(x)) / phi(p)`` adapts ``lambda`` (x3/2 below 1/4, x2/3 above 3/4);
  the update is ``a p`` with ``a`` the first of 1, 0.8, 0.8**2, ... that gives
  ``f(x + a p) <= f(x) + 0.01 a g.p`` (zero if none of 31 does), or, with a
  ``linesearch``, that line search's step along ``p``. Details: the module docstring.

  ``update(grads, state, params, value=f(x), value_fn=f)`` for ``curvature='hessian'``;
  for ``curvature='gauss_newton'`` the model and the loss (``output_fn=``, ``loss_fn=``)
  as extras or given here, the objective being ``value_fn`` if given, else
  ``loss_fn(output_fn(params))``. ``gtx.minimize(f, x0, gtx.hessian_free())`` runs it.

  Args:
    damping: the initial ``lambda``, > 0 (Martens' choice, 1, is scale-dependent: the
      rule adapts it within a few steps).
    cg_max_iters: the cap on CG iterations per step, >= 1 (Martens uses 250 for deep
      autoencoders; 50 suits problems that are not as ill-conditioned).
    cg_tol: the relative-progress tolerance of CG's stopping test, >= 0 (Martens'
      ``epsilon = 5e-4``; 0 runs ``cg_max_iters`` iterations unless CG converges).
    curvature: ``'hessian'`` (exact Hessian-vector products of ``value_fn``) or
      ``'gauss_newton'`` (``J^T H_L J v``; positive semi-definite for a convex loss,
      which is what Martens uses).
    linesearch: ``None`` for Martens' backtracking above (which shares the evaluation
      of ``f(x + p)`` with the reduction ratio); or a line search transform
      (``gtx.scale_by_backtracking_linesearch(...)``) run along ``p``, chained after
      :func:`scale_by_hessian_free`.
    preconditioner: ``None``, or ``'diagonal'`` for ``M = (d + lambda)^0.75`` with ``d``
      a Hutchinson estimate of ``|diag(B)|`` (one extra curvature product per step).
    output_fn: for ``'gauss_newton'``: params -> model outputs (any pytree).
    loss_fn: for ``'gauss_newton'``: outputs -> scalar loss, convex in the outputs.
    seed: the seed of the Hutchinson probes.
    cg_backtracking: Martens' CG-iteration backtracking (module docstring): the step is
      the CG iterate, among those kept at iterations ``ceil(1.3**j)`` and the last,
      reached by stepping back from the last while ``f`` does not increase (one
      evaluation per iterate tried). Helps where truncated CG overshoots for the true
      objective (deep networks far from a minimum); off by default.
  """
  tx = _hessian_free_step("hessian_free", damping, cg_max_iters, cg_tol, curvature,
                          preconditioner, output_fn, loss_fn, seed, cg_backtracking,
                          martens_search=linesearch is None)
  return tx if linesearch is None else chain(tx, linesearch)
