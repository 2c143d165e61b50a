"""The linear algebra of the raveled solvers (:func:`newton`, :func:`hessian_free`).

Both work on the params raveled into one vector: :func:`ravel` and :func:`num_params`
give it; :func:`check_value_fn` checks for the objective they differentiate. Newton's
method factorises the damped Hessian (:func:`damped_cholesky`, Nocedal & Wright 2006,
Algorithm 3.3); Hessian-free solves the damped curvature system by preconditioned
conjugate gradient with Martens' (2010) stopping test (:func:`conjugate_gradient`).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gradtx._src import base

# Retries of the factorisation, each with tau = max(10 tau, beta): from beta = 1e-3 times
# the Hessian's largest diagonal entry, 20 retries reach 1e17 times it, past any shift a
# finite Hessian needs.
MAX_FACTORIZATIONS = 21


def ravel(tree: base.PyTree, dtype: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
  """The leaves of ``tree`` in ``dtype``, as one vector, and the function undoing it."""
  return ravel_pytree(jax.tree.map(lambda x: jnp.asarray(x).astype(dtype), tree))


def num_params(params: base.Params) -> int:
  return sum(math.prod(jnp.shape(x)) for x in jax.tree.leaves(params))


def check_value_fn(owner: str, value_fn: Any, needed_for: str) -> None:
  if value_fn is None:
    raise ValueError(f"{owner}: update needs the objective as value_fn= (a function of the "
                     f"params returning the scalar loss) {needed_for}; call "
                     "update(grads, state, params, value_fn=loss) or use gtx.minimize")


# --- the damped Cholesky factorisation ---------------------------------------------------


def first_shift(hessian: jax.Array) -> jax.Array:
  """Algorithm 3.3's ``beta``: the smallest shift it adds once a factorisation failed."""
  return 1e-3 * jnp.maximum(jnp.max(jnp.abs(jnp.diag(hessian))), 1.0)


def damped_cholesky(hessian: jax.Array, damping: jax.Array, beta: jax.Array
                    ) -> tuple[jax.Array, ...]:
  """The Cholesky factor of ``hessian + tau I`` for the first ``tau`` that works (``tau``
  from ``damping``, then ``max(10 tau, beta)``), tau and the number of factorisations
  (NaNs in the factor if none worked)."""
  n = hessian.shape[0]
  eye = jnp.eye(n, dtype=hessian.dtype)

  def factor(tau):
    return jnp.linalg.cholesky(hessian + tau * eye)

  def failed(carry):
    chol, _, tries = carry
    return ~jnp.all(jnp.isfinite(chol)) & (tries < MAX_FACTORIZATIONS)

  def retry(carry):
    _, tau, tries = carry
    tau = jnp.maximum(10 * tau, beta)
    return factor(tau), tau, tries + 1

  return jax.lax.while_loop(failed, retry, (factor(damping), damping, jnp.ones([], jnp.int32)))


# --- conjugate gradient ------------------------------------------------------------------


def conjugate_gradient(matvec: Callable[[jax.Array], jax.Array], g: jax.Array,
                       x0: jax.Array, max_iters: int, tol: float,
                       precondition: Callable[[jax.Array], jax.Array] = lambda r: r
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Minimises ``phi(x) = g.x + 1/2 x.A x`` (``A x = -g``) by preconditioned CG from ``x0``.

  ``matvec(v) = A v``; ``precondition(r) = M^-1 r``. Stops after ``max_iters``
  iterations, at a direction of non-positive curvature (keeping the iterate before it),
  when the residual is down to rounding error (``|r| <= 100 eps |g|``), or by Martens'
  relative-progress test: ``(phi_i - phi_{i-k}) / phi_i < k * tol`` over the last ``k =
  max(10, 0.1 i)`` iterations (Martens 2010, section 4.4). Returns ``(x, phi(x),
  iterations)``.
  """
  x, phi, iterations, _, _ = conjugate_gradient_saving(matvec, g, x0, max_iters, tol,
                                                       precondition, ())
  return x, phi, iterations


def conjugate_gradient_saving(matvec: Callable[[jax.Array], jax.Array], g: jax.Array,
                              x0: jax.Array, max_iters: int, tol: Any,
                              precondition: Callable[[jax.Array], jax.Array],
                              saves_at: tuple[int, ...]) -> tuple[jax.Array, ...]:
  """:func:`conjugate_gradient`, also returning the iterates at the iterations
  ``saves_at`` (stacked, ``(len(saves_at), n)``; rows past the last iteration are 0) and
  their model values (Martens' CG-iteration backtracking steps back through them)."""
  dtype = g.dtype
  # A residual this small is rounding noise: CG has converged.
  resolution = (100 * jnp.finfo(dtype).eps) ** 2 * jnp.vdot(g, g)
  r = matvec(x0) + g
  phi0 = 0.5 * jnp.vdot(x0, r + g)
  # A warm start worse than zero is dropped (phi(0) = 0).
  worse = ~(phi0 <= 0)
  x0 = jnp.where(worse, 0, x0)
  r = jnp.where(worse, g, r)
  phi0 = jnp.where(worse, 0, phi0)
  y = precondition(r)
  ry = jnp.vdot(r, y)
  phis = jnp.zeros([max_iters + 1], dtype).at[0].set(phi0)
  slots = np.full([max_iters + 1], -1, np.int32)
  slots[list(saves_at)] = np.arange(len(saves_at), dtype=np.int32)
  saved = jnp.zeros((len(saves_at),) + x0.shape, dtype)

  def going(carry):
    i, _, _, _, _, _, _, _, done = carry
    return (i < max_iters) & ~done

  def body(carry):
    i, x, r, p, ry, phi, phis, saved, _ = carry
    ap = matvec(p)
    curvature = jnp.vdot(p, ap)
    negative = ~(curvature > 0)
    alpha = ry / curvature
    x_new = x + alpha * p
    r_new = r + alpha * ap
    y_new = precondition(r_new)
    ry_new = jnp.vdot(r_new, y_new)
    p_new = -y_new + (ry_new / ry) * p
    phi_new = 0.5 * jnp.vdot(x_new, r_new + g)
    i_new = i + 1
    k = jnp.maximum(10, (i_new // 10))
    phi_k = phis[jnp.maximum(i_new - k, 0)]
    stalled = (i_new > k) & (phi_new < 0) & ((phi_new - phi_k) / phi_new < k * tol)
    solved = ~(jnp.vdot(r_new, r_new) > resolution)
    bad = negative | ~jnp.isfinite(phi_new)
    keep = lambda new, old: jnp.where(bad, old, new)  # noqa: E731
    x_new = keep(x_new, x)
    if saves_at:
      slot = jnp.asarray(slots)[i_new]
      row = jnp.maximum(slot, 0)
      saved = saved.at[row].set(jnp.where(slot >= 0, x_new, saved[row]))
    return (i_new, x_new, keep(r_new, r), keep(p_new, p), keep(ry_new, ry),
            keep(phi_new, phi), phis.at[i_new].set(keep(phi_new, phi)), saved,
            bad | stalled | solved)

  start = (jnp.zeros([], jnp.int32), x0, r, -y, ry, phi0, phis, saved,
           ~(jnp.vdot(r, r) > resolution))
  iterations, x, _, _, _, phi, phis, saved, _ = jax.lax.while_loop(going, body, start)
  return x, phi, iterations, saved, phis[np.asarray(saves_at, np.int32)]
