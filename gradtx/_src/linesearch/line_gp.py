"""The probabilistic line search's belief about the loss along the line: a Gaussian
process from noisy values and slopes, and the Wolfe probability it implies.

Prior (Mahsereci & Hennig 2015, section 3.1; the authors' code): the once-integrated
Wiener process started at ``-offset``, ``offset = 10``::

  k(a, b) = m^3 / 3 + |a - b| m^2 / 2,   m = min(a, b) + offset,

whose posterior mean is a cubic spline: a cubic polynomial between neighbouring
observations. Observations at ``t_i`` (the first ``count`` slots of fixed-size arrays)
are values ``y_i ~ N(f(t_i), var_f)`` and slopes ``dy_i ~ N(f'(t_i), var_df)``; the
posterior conditions on all of them jointly, through the Gram matrix ``G`` of values and
slopes. Unused slots are masked out: identity rows in ``G`` and zero kernel entries.

Queries are vectors of times, all answered by one solve with ``G``'s LU factors.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg
from jax.scipy.special import ndtr

from gradtx._src.linesearch.bivariate_normal import upper_strip_probability

OFFSET = 10.0


# The kernel and its derivatives; ``d`` before ``k`` differentiates in the first
# argument, after it in the second.
def k(a, b):
  m = jnp.minimum(a, b) + OFFSET
  return m**3 / 3.0 + 0.5 * jnp.abs(a - b) * m**2


def kd(a, b):
  return jnp.where(a < b, 0.5 * (a + OFFSET)**2,
                   (a + OFFSET) * (b + OFFSET) - 0.5 * (b + OFFSET)**2)


def dk(a, b):
  return kd(b, a)


def dkd(a, b):
  return jnp.minimum(a, b) + OFFSET


class LineGP(NamedTuple):
  """The posterior: observation times, which slots hold one, the Gram matrix's LU
  factors and the weights ``G^-1 [y; dy]`` of the posterior mean."""

  ts: jax.Array
  used: jax.Array
  lu: tuple[jax.Array, jax.Array]
  weights: jax.Array


def condition(ts, ys, dys, count, var_f, var_df) -> LineGP:
  """The posterior given the first ``count`` observations ``(ts, ys, dys)``."""
  n = ts.shape[0]
  used = jnp.arange(n) < count
  pair = used[:, None] & used[None, :]
  a, b = ts[:, None], ts[None, :]
  mask = lambda block: jnp.where(pair, block, 0.0)  # noqa: E731
  eye = jnp.eye(n, dtype=ts.dtype)
  gram = jnp.block([
      [mask(k(a, b)) + eye * jnp.where(used, var_f, 1.0), mask(kd(a, b))],
      [mask(kd(a, b)).T, mask(dkd(a, b)) + eye * jnp.where(used, var_df, 1.0)]])
  lu = jax.scipy.linalg.lu_factor(gram)
  targets = jnp.concatenate([jnp.where(used, ys, 0.0), jnp.where(used, dys, 0.0)])
  return LineGP(ts, used, lu, jax.scipy.linalg.lu_solve(lu, targets))


def _features(gp: LineGP, qs, slope: bool):
  """Rows: the prior covariances of ``f(q)`` (``f'(q)`` with ``slope``) with the observed
  values and slopes, zero in unused slots."""
  q, t = qs[:, None], gp.ts[None, :]
  row = jnp.concatenate([dk(q, t), dkd(q, t)] if slope else [k(q, t), kd(q, t)], axis=1)
  return jnp.where(jnp.concatenate([gp.used, gp.used]), row, 0.0)


def mean_derivatives(gp: LineGP, qs):
  """The posterior mean's first three derivatives at ``qs`` (for its cubic pieces)."""
  q, t = qs[:, None], gp.ts[None, :]
  before = q <= t
  d2 = jnp.concatenate([jnp.where(before, t - q, 0.0), before.astype(qs.dtype)], axis=1)
  d3 = jnp.concatenate([-before.astype(qs.dtype), jnp.zeros_like(d2[:, :1] * t)], axis=1)
  used = jnp.concatenate([gp.used, gp.used])
  return tuple(jnp.where(used, rows, 0.0) @ gp.weights
               for rows in (_features(gp, qs, True), d2, d3))


class Posterior(NamedTuple):
  """The posterior at query times ``t`` (vectors) and at the origin ``0`` (scalars):
  mean and slope, variances, and the covariances the Wolfe conditions need."""

  m: jax.Array  # E f(t)
  dm: jax.Array  # E f'(t)
  v: jax.Array  # var f(t)
  vd: jax.Array  # cov(f(t), f'(t))
  dvd: jax.Array  # var f'(t)
  v0f: jax.Array  # cov(f(0), f(t))
  vd0f: jax.Array  # cov(f'(0), f(t))
  v0df: jax.Array  # cov(f(0), f'(t))
  vd0df: jax.Array  # cov(f'(0), f'(t))
  m0: jax.Array
  dm0: jax.Array
  v0: jax.Array
  vd0: jax.Array
  dvd0: jax.Array


def posterior(gp: LineGP, qs) -> Posterior:
  """The posterior at the times ``qs`` (one solve with ``G`` for all of them)."""
  zero = jnp.zeros([1], qs.dtype)
  fv, fd = _features(gp, qs, False), _features(gp, qs, True)
  f0v, f0d = _features(gp, zero, False), _features(gp, zero, True)
  solved = jax.scipy.linalg.lu_solve(gp.lu, jnp.concatenate([fv, fd, f0v, f0d]).T).T
  q = qs.shape[0]
  gv, gd, g0v, g0d = solved[:q], solved[q:2 * q], solved[2 * q], solved[2 * q + 1]
  rows = lambda x, y: jnp.sum(x * y, axis=1)  # noqa: E731
  return Posterior(
      m=fv @ gp.weights, dm=fd @ gp.weights,
      v=k(qs, qs) - rows(fv, gv), vd=kd(qs, qs) - rows(fv, gd), dvd=dkd(qs, qs) - rows(fd, gd),
      v0f=k(0.0, qs) - fv @ g0v, vd0f=dk(0.0, qs) - fv @ g0d,
      v0df=kd(0.0, qs) - fd @ g0v, vd0df=dkd(0.0, qs) - fd @ g0d,
      m0=f0v[0] @ gp.weights, dm0=f0d[0] @ gp.weights, v0=k(0.0, 0.0) - f0v[0] @ g0v,
      vd0=kd(0.0, 0.0) - f0v[0] @ g0d, dvd0=dkd(0.0, 0.0) - f0d[0] @ g0d)


def cubic_minimum(t, d1, d2, d3):
  """The local minimiser of the cubic with derivatives ``d1, d2, d3`` at ``t``.

  Its slope is the quadratic ``d1 + d2 (s - t) + d3 (s - t)^2 / 2``; of its two roots the
  one where the cubic is lower (the authors' choice: the local minimum). A nearly
  quadratic mean (``|d3| < 1e-9``) has its one extremum; no real root gives ``inf``.
  Safe to differentiate in every case.
  """
  quadratic = jnp.abs(d3) < 1e-9
  vertex = jnp.where(d2 == 0, jnp.inf, t - d1 / jnp.where(d2 == 0, 1.0, d2))
  a = jnp.where(quadratic, 1.0, 0.5 * d3)
  b = d2 - t * d3
  c = d1 - d2 * t + 0.5 * d3 * t**2
  det = b**2 - 4.0 * a * c
  root = jnp.sqrt(jnp.where(det > 0, det, 1.0)) * (det > 0)
  left = (-b - jnp.sign(a) * root) / (2.0 * a)
  right = (-b + jnp.sign(a) * root) / (2.0 * a)
  cubic = lambda s: d1 * (s - t) + 0.5 * d2 * (s - t)**2 + d3 * (s - t)**3 / 6.0  # noqa: E731
  turning = jnp.where(cubic(left) < cubic(right), left, right)
  return jnp.where(quadratic, vertex, jnp.where(det < 0, jnp.inf, turning))


def p_wolfe(post: Posterior, t, c1, c2):
  """The probability that steps ``t`` (where ``post`` was evaluated) meet the Wolfe
  conditions.

  ``a = f(0) - f(t) + c1 t f'(0) >= 0`` and ``0 <= b = f'(t) - c2 f'(0) <= 2 c2 (|f'(0)| +
  2 std f'(0))`` are jointly Gaussian; their probability is a bivariate normal rectangle.
  With both variances below 1e-9 the conditions are decided on the means; a variance
  that is not positive gives 0 (the authors' code, both).
  """
  ma = post.m0 - post.m + c1 * t * post.dm0
  vaa = (post.v0 + (c1 * t)**2 * post.dvd0 + post.v
         + 2.0 * (c1 * t * (post.vd0 - post.vd0f) - post.v0f))
  mb = post.dm - c2 * post.dm0
  vbb = c2**2 * post.dvd0 - 2.0 * c2 * post.vd0df + post.dvd
  vab = (-c2 * (post.vd0 + c1 * t * post.dvd0) + post.v0df + c2 * post.vd0f
         + c1 * t * post.vd0df - post.vd)
  sa, sb = jnp.sqrt(jnp.maximum(vaa, 1e-30)), jnp.sqrt(jnp.maximum(vbb, 1e-30))
  upper = (2.0 * c2 * (jnp.abs(post.dm0) + 2.0 * jnp.sqrt(jnp.maximum(post.dvd0, 0.0)))
           - mb) / sb
  p = upper_strip_probability(-ma / sa, -mb / sb, upper, vab / (sa * sb))
  p = jnp.where((vaa <= 0) | (vbb <= 0), 0.0, p)
  deterministic = (vaa < 1e-9) & (vbb < 1e-9)
  return jnp.where(deterministic, ((ma >= 0) & (mb >= 0)).astype(p.dtype), p)


def expected_improvement(m, s, eta):
  """``E[max(eta - f, 0)]`` for ``f ~ N(m, s^2)``; ``max(eta - m, 0)`` where ``s = 0``."""
  z = (eta - m) / jnp.where(s > 0, s, 1.0)
  ei = (eta - m) * ndtr(z) + s * jnp.exp(-0.5 * z**2) / jnp.sqrt(2.0 * jnp.pi)
  return jnp.where(s > 0, ei, jnp.maximum(eta - m, 0.0))
