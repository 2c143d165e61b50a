"""The one-dimensional shape prototypes of Schaul, Antonoglou & Silver 2014.

"Unit Tests for Stochastic Optimization" (ICLR 2014) builds its test functions from
short pieces, each defined on an interval ``[xs, xe]`` by the value ``fs`` and slope
``fprime`` it must have at ``xs``; a chain of pieces (``"quad_convex-line"``) splits its
interval evenly and starts each piece with the value and slope the previous one ended
with, so that every junction is continuous in value and (except at the kinks the shapes
are made of) in slope. The formulas are those of the authors' implementation
(github.com/IoannisAntonoglou/optimBench, ``factories/prototypes_functions.lua``),
transcribed in float64 NumPy, vectorised over a batch of ``(xs, xe, fs, fprime)``.

Every piece becomes one or two *segments* of one closed form,

  ``f(x) = c0 + c1*u + c2*u**2 + c3*exp(-(k_lin*u + k_abs*|u| + k_sq*u**2))``,
  ``u = x - m``,

so that a whole chain evaluates with the same few array operations whatever its shapes:
lines and kinks are ``c1`` only, quadratics ``c2``, the exponential ``c3`` with
``k_lin``, Gaussian pieces ``k_sq`` and Laplace pieces ``k_abs``. The first segment also
covers ``x < xs`` and the last ``x >= xe``, as in the authors' code.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

SHAPES = ("line", "relu", "abs", "bend", "cliff", "ridge", "exponential", "quad_convex",
          "quad_bowl", "gauss_nonconvex", "gauss_convex", "gauss_bowl",
          "laplace_nonconvex", "laplace_convex", "laplace_bowl")
"""The prototype names, as the authors spell them."""

# Column order of a segment's parameters.
M, C0, C1, C2, C3, K_LIN, K_ABS, K_SQ = range(8)
NUM_PARAMS = 8


def _segment(batch: int, **columns: np.ndarray) -> np.ndarray:
  seg = np.zeros((batch, NUM_PARAMS))
  for name, value in columns.items():
    seg[:, globals()[name.upper()]] = value
  return seg


def _line(xs, fs, slope):
  return _segment(len(xs), m=xs, c0=fs, c1=slope)


def _angle(xs, xe, fs, ls, angle_degrees):
  """A kink: slope ``ls`` up to ``xm``, then the slope at ``angle`` to it.

  ``xm`` splits ``[xs, xe]`` so that both legs have the same length.
  """
  angle = np.radians(angle_degrees)
  le = np.where(angle_degrees == 90, -1 / np.where(ls == 0, np.inf, ls),
                (ls - np.tan(angle)) / (1 + ls * np.tan(angle)))
  gamma = np.sqrt((1 + ls * ls) / (1 + le * le))
  xm = (gamma * xs + xe) / (1 + gamma)
  fm = ls * (xm - xs) + fs
  return [_line(xs, fs, ls), _line(xm, fm, le)], [xm]


def _relu(xs, xe, fs, fp, oldfp):
  root = np.sqrt(1 + fp * fp)
  xm = (xe + xs * root) / (1 + root)
  fm = fp * (xm - xs) + fs
  return [_line(xs, fs, fp), _line(xm, fm, 0.0)], [xm]


def _abs(xs, xe, fs, fp, oldfp):
  return _angle(xs, xe, fs, fp, 2 * np.degrees(np.arctan(fp)) - 180)


def _bend(xs, xe, fs, fp, oldfp):
  # Flat, then the slope the chain had before it went flat (sign +1, the default).
  if np.any(~np.isnan(oldfp) & (fp != 0)):
    raise ValueError("bend: the slope before a bend must be 0 (put it after a relu)")
  slope = np.where(np.isnan(oldfp), fp, oldfp)
  return _angle(xs, xe, fs, np.zeros_like(fp), 180 - np.degrees(np.arctan(slope)))


def _steeper(sign):
  def prototype(xs, xe, fs, fp, oldfp):
    if np.any(fp == 0):
      raise ValueError("cliff/ridge: the slope before it cannot be 0")
    angle = np.degrees(np.arctan(fp) - np.arctan(fp * sign * 10))
    return _angle(xs, xe, fs, fp, angle)
  return prototype


def _exponential(xs, xe, fs, fp, oldfp):
  # a*exp(-b*x) + c with the slope falling 1000-fold over the interval; written from xs.
  b = math.log(1000) / (xe - xs)
  c3 = -fp / b
  return [_segment(len(xs), m=xs, c0=fs - c3, c3=c3, k_lin=b)], []


def _quadratic(xo, xs, fs, fp):
  a = fp / (2 * (xs - xo))
  return [_segment(len(xs), m=xo, c0=fs - a * (xs - xo) ** 2, c2=a)], []


def _quad_convex(xs, xe, fs, fp, oldfp):
  # The slope at xe is 1/10 of the slope at xs (descending) or 10 times it (ascending).
  xo = np.where(fp > 0, (10 * xs - xe) / 9, (xe - 0.1 * xs) / 0.9)
  return _quadratic(xo, xs, fs, fp)


def _quad_bowl(xs, xe, fs, fp, oldfp):
  return _quadratic((xs + xe) / 2, xs, fs, fp)


def _gaussian(mu, c, xs, fs, fp):
  # a - b*exp(-(x-mu)**2/c**2), value fs and slope fp at xs.
  fp = np.where(fp == 0, -1e-7, fp)
  expon = np.exp(-(xs - mu) ** 2 / (c * c))
  b = c * c * fp / (2 * (xs - mu) * expon)
  return [_segment(len(xs), m=mu, c0=fs + b * expon, c3=-b, k_sq=1 / (c * c))], []


def _gauss_nonconvex(xs, xe, fs, fp, oldfp):
  c = 2 * (xe - xs) / (8 - math.sqrt(2))
  fp0 = np.where(fp == 0, -1e-7, fp)
  return _gaussian(np.where(fp0 > 0, xe - 4 * c, xs + 4 * c), c, xs, fs, fp)


def _gauss_convex(xs, xe, fs, fp, oldfp):
  c = 10 * (xe - xs) / (5 * math.sqrt(2) - 1)
  fp0 = np.where(fp == 0, -1e-7, fp)
  return _gaussian(np.where(fp0 > 0, xs - 0.1 * c, xe + 0.1 * c), c, xs, fs, fp)


def _gauss_bowl(xs, xe, fs, fp, oldfp):
  c = 5 * (xe - xs)
  return _gaussian(xs + 0.1 * c, c, xs, fs, fp)


def _laplace(mu, c, xs, fs, fp):
  # a - b*exp(-|x-mu|/c), value fs and slope fp at xs.
  fp = np.where(fp == 0, -1e-7, fp)
  expon = np.exp(-np.abs(xs - mu) / c)
  b = c * fp / (expon * np.sign(xs - mu))
  return [_segment(len(xs), m=mu, c0=fs + b * expon, c3=-b, k_abs=1 / c)], []


def _laplace_nonconvex(xs, xe, fs, fp, oldfp):
  c = (xe - xs) / 7
  fp0 = np.where(fp == 0, -1e-7, fp)
  return _laplace(np.where(fp0 > 0, xs - c, xs + 8 * c), c, xs, fs, fp)


def _laplace_convex(xs, xe, fs, fp, oldfp):
  c = (xe - xs) / 0.9
  fp0 = np.where(fp == 0, -1e-7, fp)
  return _laplace(np.where(fp0 > 0, xs - 0.1 * c, xs + c), c, xs, fs, fp)


def _laplace_bowl(xs, xe, fs, fp, oldfp):
  c = (xe - xs) / 0.2
  return _laplace(xs + 0.1 * c, c, xs, fs, fp)


_GENERATORS = {
    "line": lambda xs, xe, fs, fp, oldfp: ([_line(xs, fs, fp)], []),
    "relu": _relu, "abs": _abs, "bend": _bend,
    "cliff": _steeper(-1), "ridge": _steeper(1),
    "exponential": _exponential,
    "quad_convex": _quad_convex, "quad_bowl": _quad_bowl,
    "gauss_nonconvex": _gauss_nonconvex, "gauss_convex": _gauss_convex,
    "gauss_bowl": _gauss_bowl,
    "laplace_nonconvex": _laplace_nonconvex, "laplace_convex": _laplace_convex,
    "laplace_bowl": _laplace_bowl,
}
assert tuple(_GENERATORS) == tuple(sorted(_GENERATORS, key=SHAPES.index))


def parse_shapes(shapes: str | Sequence[str]) -> tuple[str, ...]:
  """``"quad_convex-line"`` or ``["quad_convex", "line"]`` -> a tuple of names."""
  names = tuple(shapes.split("-")) if isinstance(shapes, str) else tuple(shapes)
  unknown = [n for n in names if n not in _GENERATORS]
  if not names or unknown:
    raise ValueError(f"unknown prototype(s) {unknown or names}; the prototypes are "
                     f"{', '.join(SHAPES)}")
  return names


def num_segments(shapes: Sequence[str]) -> int:
  return sum(2 if n in ("relu", "abs", "bend", "cliff", "ridge") else 1 for n in shapes)


def _numpy_value_and_grad(seg, x):
  u = x - seg[:, M]
  expo = np.exp(-(seg[:, K_LIN] * u + seg[:, K_ABS] * np.abs(u) + seg[:, K_SQ] * u * u))
  f = seg[:, C0] + u * (seg[:, C1] + seg[:, C2] * u) + seg[:, C3] * expo
  darg = seg[:, K_LIN] + seg[:, K_ABS] * np.sign(u) + 2 * seg[:, K_SQ] * u
  return f, seg[:, C1] + 2 * seg[:, C2] * u - seg[:, C3] * expo * darg


def build_chain(shapes: Sequence[str], xs, xe, fs, fprime) -> tuple[np.ndarray, np.ndarray]:
  """The segments of a chain of prototypes, for a batch of scales.

  Args:
    shapes: prototype names, in order along the axis.
    xs, xe, fs, fprime: arrays of one shape ``(B,)``: the chain's interval, its value
      and its slope at ``xs``.

  Returns:
    ``(segments, bounds)``: ``(B, K, 8)`` segment parameters and ``(B, K - 1)`` the
    points where each segment after the first begins.
  """
  xs, xe, fs, fp = (np.asarray(a, np.float64) for a in np.broadcast_arrays(xs, xe, fs,
                                                                          fprime))
  if np.any(xs >= xe):
    raise ValueError("a prototype chain needs xs < xe")
  dx = (xe - xs) / len(shapes)
  oldfp = np.full_like(fp, np.nan)
  segments, bounds = [], []
  start = xs
  for i, name in enumerate(shapes):
    end = start + dx
    segs, kinks = _GENERATORS[name](start, end, fs, fp, oldfp)
    if i:
      bounds.append(start)
    segments += segs
    bounds += kinks
    oldfp = np.where(fp != 0, fp, oldfp)
    # The value and slope the piece ends with: its last segment at its end point.
    fs, fp = _numpy_value_and_grad(segs[-1], end)
    start = end
  return np.stack(segments, 1), np.stack(bounds, 1) if bounds else np.zeros((len(xs), 0))


def evaluate(segments: jax.Array, bounds: jax.Array, x: jax.Array):
  """Value and slope of chains at ``x`` (one point per chain; leading axes broadcast).

  ``segments`` is ``(..., K, 8)``, ``bounds`` ``(..., K - 1)`` (``+inf`` for padding),
  ``x`` ``(...)``. The slope is the closed form's, as the authors' code returns it.
  """
  index = jnp.sum(x[..., None] >= bounds, -1)
  seg = jnp.take_along_axis(segments, index[..., None, None], axis=-2)[..., 0, :]
  u = x - seg[..., M]
  arg = seg[..., K_LIN] * u + seg[..., K_ABS] * jnp.abs(u) + seg[..., K_SQ] * u * u
  expo = jnp.exp(-arg)
  curve = seg[..., C3] * expo
  f = seg[..., C0] + u * (seg[..., C1] + seg[..., C2] * u) + curve
  darg = seg[..., K_LIN] + seg[..., K_ABS] * jnp.sign(u) + 2 * seg[..., K_SQ] * u
  g = seg[..., C1] + 2 * seg[..., C2] * u - curve * darg
  return f, g


class Prototype:
  """A chain of 1-D prototypes: ``proto(x)`` is its value, ``value_and_grad`` adds the
  slope. ``junctions`` are the points where one segment meets the next (the joins
  between pieces, where value and slope are continuous, and the kinks inside ``relu``,
  ``abs``, ``bend``, ``cliff`` and ``ridge``, where only the value is); ``joins`` are
  the former.

  >>> p = prototype("quad_convex-line", xs=0.0, xe=1.0, fs=200.0, fprime=-1.0)
  >>> float(p(0.0)), float(p.value_and_grad(0.0)[1])
  (200.0, -1.0)
  """

  def __init__(self, shapes: tuple[str, ...], xs: float, xe: float, fs: float,
               fprime: float):
    self.shapes = shapes
    self.xs, self.xe, self.fs, self.fprime = xs, xe, fs, fprime
    segments, bounds = build_chain(shapes, [xs], [xe], [fs], [fprime])
    self.segments, self.bounds = segments[0], bounds[0]
    self.junctions = tuple(float(b) for b in self.bounds)
    width = (xe - xs) / len(shapes)
    self.joins = tuple(xs + i * width for i in range(1, len(shapes)))

  def value_and_grad(self, x):
    """``(value, slope)`` at ``x`` (a number or an array of points)."""
    x = jnp.asarray(x, jnp.result_type(float))
    segments = jnp.broadcast_to(jnp.asarray(self.segments, x.dtype),
                                x.shape + self.segments.shape)
    bounds = jnp.broadcast_to(jnp.asarray(self.bounds, x.dtype), x.shape + self.bounds.shape)
    return evaluate(segments, bounds, x)

  def __call__(self, x):
    return self.value_and_grad(x)[0]

  def __repr__(self):
    return (f"prototype({'-'.join(self.shapes)!r}, xs={self.xs}, xe={self.xe}, "
            f"fs={self.fs}, fprime={self.fprime})")


def prototype(shapes: str | Sequence[str], *, xs: float = 0.0, xe: float = 1.0,
              fs: float = 200.0, fprime: float = -1.0) -> Prototype:
  """A chain of the paper's 1-D prototypes on ``[xs, xe]`` (defaults: the 'normal' scale).

  ``shapes`` is a name such as ``"abs"`` or a chain such as ``"quad_convex-cliff-line"``
  (or a sequence of names); the chain starts at ``xs`` with value ``fs`` and slope
  ``fprime``.
  """
  return Prototype(parse_shapes(shapes), float(xs), float(xe), float(fs), float(fprime))
