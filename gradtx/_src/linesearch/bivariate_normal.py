"""Rectangle probabilities of the standard bivariate normal distribution.

``P(X > h, Y > k)`` for ``(X, Y)`` standard normal with correlation ``r``, by the method
of Drezner & Wesolowsky (1990) as Genz (2004) refines it: for ``|r| < 0.925`` a Gauss-
Legendre quadrature of Sheppard's integral over ``asin(r)``; closer to ``r = +-1`` an
expansion around the singular case plus a quadrature of the remainder. Written without
branches, as every case is a few dozen flops: both cases are computed and one is selected.

The probabilistic line search (:mod:`gradtx._src.linesearch.probabilistic`) integrates
this density over its rectangle of Wolfe conditions, as the authors' code calls Genz's
``bvn``.

References:
  Drezner & Wesolowsky, On the computation of the bivariate normal integral, Journal of
  Statistical Computation and Simulation 35, 1990.
  Genz, Numerical computation of rectangular bivariate and trivariate normal and t
  probabilities, Statistics and Computing 14, 2004.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

# Genz's 20-point rule, which he uses for |r| >= 0.75 (6 and 12 points below): the nodes
# of Gauss-Legendre on [-1, 1] moved to [0, 2], where Genz's integrands are written.
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(20)
_NODES = _NODES + 1.0
_TWO_PI = 2.0 * math.pi


def _upper_orthant(h, k, r):
  """``P(X > h, Y > k)`` for finite ``h``, ``k`` and ``|r| <= 1`` (Genz's ``bvnu``),
  elementwise."""
  dtype = jnp.result_type(h, k, r)
  h, k, r = (jnp.asarray(v, dtype)[..., None] for v in (h, k, r))  # quadrature last
  x = jnp.asarray(_NODES, dtype)
  w = jnp.asarray(_WEIGHTS, dtype)
  hk = h * k

  # |r| < 0.925: Phi(-h) Phi(-k) + 1/(2 pi) int_0^asin(r) exp(-(h^2 + k^2 - 2 h k sin t)
  # / (2 cos^2 t)) dt, with t = x asin(r) / 2.
  half_asin = 0.5 * jnp.arcsin(jnp.clip(r, -1.0, 1.0))
  sn = jnp.sin(half_asin * x)
  central = (jnp.sum(w * jnp.exp((sn * hk - 0.5 * (h * h + k * k)) / (1.0 - sn**2)), -1)
             * half_asin[..., 0] / _TWO_PI + ndtr(-h[..., 0]) * ndtr(-k[..., 0]))

  # |r| >= 0.925: reflect to r > 0, expand around r = 1 (Drezner & Wesolowsky's
  # equation (3)), integrate the remainder.
  k = jnp.where(r < 0, -k, k)
  hk = jnp.where(r < 0, -hk, hk)
  near_one = jnp.abs(r) >= 1.0
  as_ = jnp.where(near_one, 1.0, 1.0 - r * r)
  a = jnp.sqrt(as_)
  bs = (h - k)**2
  c = (4.0 - hk) / 8.0
  d = (12.0 - hk) / 80.0
  exponent = -0.5 * (bs / as_ + hk)
  tail = jnp.where(exponent > -100.0,
                   a * jnp.exp(jnp.minimum(exponent, 0.0))
                   * (1.0 - c * (bs - as_) * (1.0 - d * bs) / 3.0 + c * d * as_**2), 0.0)
  b = jnp.sqrt(bs)
  tail = jnp.where(hk > -100.0,
                   tail - jnp.exp(-0.5 * jnp.maximum(hk, -100.0)) * math.sqrt(_TWO_PI)
                   * ndtr(-b / a) * b * (1.0 - c * bs * (1.0 - d * bs) / 3.0), tail)
  xs = (0.5 * a * x)**2
  exponents = -0.5 * (bs / xs + hk)
  rs = jnp.sqrt(1.0 - xs)
  terms = jnp.exp(jnp.minimum(exponents, 0.0)) * (
      1.0 + c * xs * (1.0 + 5.0 * d * xs)
      - jnp.exp(-0.5 * hk * xs / (1.0 + rs)**2) / rs)
  tail = (0.5 * a * jnp.sum(jnp.where(exponents > -100.0, w * terms, 0.0), -1, keepdims=True)
          - tail) / _TWO_PI
  tail = jnp.where(near_one, 0.0, tail)
  between = jnp.where(h < 0, ndtr(k) - ndtr(h), ndtr(-h) - ndtr(-k))
  outer = jnp.where(r > 0, tail + ndtr(-jnp.maximum(h, k)),
                    jnp.where(h >= k, -tail, between - tail))[..., 0]

  return jnp.clip(jnp.where(jnp.abs(r[..., 0]) < 0.925, central, outer), 0.0, 1.0)


def upper_orthant_probability(h, k, r):
  """``P(X > h, Y > k)`` for the standard bivariate normal with correlation ``r``,
  elementwise. ``h`` and ``k`` may be infinite: ``P(X > inf, .) = 0``, ``P(X > -inf, Y >
  k) = Phi(-k)``.
  """
  h, k, r = jnp.broadcast_arrays(*(jnp.asarray(v) for v in (h, k, r)))
  finite = jnp.isfinite(h) & jnp.isfinite(k)
  inner = _upper_orthant(jnp.where(finite, h, 0.0), jnp.where(finite, k, 0.0), r)
  either_top = (h == jnp.inf) | (k == jnp.inf)
  edge = jnp.where(h == -jnp.inf, jnp.where(k == -jnp.inf, 1.0, ndtr(-k)), ndtr(-h))
  return jnp.where(either_top, 0.0, jnp.where(finite, inner, edge))


def upper_strip_probability(x_low, y_low, y_high, r):
  """``P(X > x_low, y_low < Y < y_high)`` for the standard bivariate normal with
  correlation ``r`` (Genz's ``bvn`` with ``x_high = inf``), clipped to [0, 1], elementwise.
  """
  both = upper_orthant_probability(jnp.stack([x_low, x_low]), jnp.stack([y_low, y_high]),
                                   jnp.stack([r, r]))
  return jnp.clip(both[0] - both[1], 0.0, 1.0)
