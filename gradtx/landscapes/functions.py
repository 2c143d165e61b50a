"""Classic test functions for optimizers, with their domains, start points and minima.

Definitions and minima as collected by Jamil & Yang 2013 ("A literature survey of
benchmark functions for global optimization problems") and Surjanovic & Bingham's
Virtual Library of Simulation Experiments (sfu.ca/~ssurjano); the start points are the
customary ones where there is a custom (Rosenbrock's (-1.2, 1)), otherwise a point a
few steps from the minimum with the function's difficulty between them.

Each function is a :class:`Landscape`: ``rosenbrock(x)`` is the value at ``x`` (a 1-D
array; differentiable with ``jax.grad``), and ``rosenbrock(n=10)`` (keyword arguments
only, or none) is a configured copy.

>>> import jax.numpy as jnp
>>> float(himmelblau(jnp.array([3.0, 2.0])))
0.0
>>> rosenbrock(n=4).start
(-1.2, 1.0, -1.2, 1.0)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Landscape:
  """A test function with what is known about it.

  Attributes:
    name: its name.
    fn: ``x -> value`` for a 1-D array ``x`` of ``dim`` entries.
    domain: ``(low, high)`` per coordinate: the usual search (and plotting) box.
    start: the start point optimizers are run from.
    minima: the global minimisers (all of them where there are several; none for the
      saddle, which is unbounded below).
    minimum: the global minimum value (``-inf`` for the saddle).
    options: the keyword arguments it was built with (``n``, ``condition_number``).
  """

  name: str
  fn: Callable[[jax.Array], jax.Array] = dataclasses.field(repr=False)
  domain: tuple[tuple[float, float], ...]
  start: tuple[float, ...]
  minima: tuple[tuple[float, ...], ...]
  minimum: float
  options: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)
  factory: Callable[..., "Landscape"] = dataclasses.field(default=None, repr=False,
                                                          compare=False)

  @property
  def dim(self) -> int:
    return len(self.start)

  def __call__(self, x=None, /, **options):
    if x is None:
      return self.factory(**{**self.options, **options})
    if options:
      raise TypeError(f"{self.name}: call it on a point, or with keyword options only")
    x = jnp.asarray(x)
    if x.ndim != 1 or x.shape[0] != self.dim:
      raise ValueError(f"{self.name}: expected a point of shape ({self.dim},), got "
                       f"{x.shape}; for another dimension use {self.name}(n=...)")
    return self.fn(x)


def _landscape(factory):
  """Turns ``factory(**options) -> Landscape fields`` into a configured default Landscape."""

  def build(**options):
    fields = factory(**options)
    return Landscape(options=options, factory=build, **fields)

  build.__name__ = factory.__name__
  build.__doc__ = factory.__doc__
  return build()


def _box(n, low, high):
  return ((low, high),) * n


def _check_n(name, n, least=1):
  if int(n) != n or n < least:
    raise ValueError(f"{name}: n must be an integer >= {least}, got {n}")
  return int(n)


@_landscape
def sphere(n: int = 2):
  """``sum(x**2)``; minimum 0 at 0."""
  n = _check_n("sphere", n)
  return dict(name="sphere", fn=lambda x: jnp.sum(x * x), domain=_box(n, -2.0, 2.0),
              start=(1.5,) * n, minima=((0.0,) * n,), minimum=0.0)


@_landscape
def ill_conditioned_quadratic(condition_number: float = 100.0, n: int = 2):
  """``0.5 * sum(h_i * x_i**2)``, curvatures ``h`` log-spaced from 1 to the condition
  number (``0.5*(x**2 + kappa*y**2)`` in 2-D); minimum 0 at 0."""
  n = _check_n("ill_conditioned_quadratic", n)
  if not condition_number >= 1:
    raise ValueError("ill_conditioned_quadratic: condition_number must be in [1, inf), "
                     f"got {condition_number}")
  h = tuple(float(condition_number) ** (i / max(n - 1, 1)) for i in range(n))
  return dict(name="ill_conditioned_quadratic",
              fn=lambda x: 0.5 * jnp.sum(jnp.asarray(h, x.dtype) * x * x),
              domain=_box(n, -2.0, 2.0), start=(1.5,) + (1.0,) * (n - 1),
              minima=((0.0,) * n,), minimum=0.0)


@_landscape
def rosenbrock(n: int = 2):
  """``sum(100*(x[i+1] - x[i]**2)**2 + (1 - x[i])**2)`` (Rosenbrock 1960); minimum 0 at
  ``(1, ..., 1)``; start ``(-1.2, 1, -1.2, 1, ...)``."""
  n = _check_n("rosenbrock", n, 2)
  return dict(name="rosenbrock",
              fn=lambda x: jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2),
              domain=((-2.0, 2.0),) + ((-1.0, 3.0),) * (n - 1),
              start=tuple(-1.2 if i % 2 == 0 else 1.0 for i in range(n)),
              minima=((1.0,) * n,), minimum=0.0)


@_landscape
def beale():
  """``(1.5 - x + xy)**2 + (2.25 - x + xy**2)**2 + (2.625 - x + xy**3)**2``; minimum 0
  at (3, 0.5)."""
  def fn(p):
    x, y = p[0], p[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2
  return dict(name="beale", fn=fn, domain=_box(2, -4.5, 4.5), start=(1.0, 1.5),
              minima=((3.0, 0.5),), minimum=0.0)


@_landscape
def booth():
  """``(x + 2y - 7)**2 + (2x + y - 5)**2``; minimum 0 at (1, 3)."""
  return dict(name="booth",
              fn=lambda p: (p[0] + 2 * p[1] - 7) ** 2 + (2 * p[0] + p[1] - 5) ** 2,
              domain=_box(2, -10.0, 10.0), start=(-6.0, -6.0), minima=((1.0, 3.0),),
              minimum=0.0)


@_landscape
def himmelblau():
  """``(x**2 + y - 11)**2 + (x + y**2 - 7)**2`` (Himmelblau 1972); four minima of value
  0: (3, 2), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848127)."""
  return dict(name="himmelblau",
              fn=lambda p: (p[0] ** 2 + p[1] - 11) ** 2 + (p[0] + p[1] ** 2 - 7) ** 2,
              domain=_box(2, -5.0, 5.0), start=(0.0, 0.0),
              minima=((3.0, 2.0), (-2.805118086952745, 3.131312518250573),
                      (-3.779310253377747, -3.283185991286170),
                      (3.584428340330492, -1.848126526964404)),
              minimum=0.0)


@_landscape
def matyas():
  """``0.26*(x**2 + y**2) - 0.48*x*y``; minimum 0 at (0, 0), along a flat valley."""
  return dict(name="matyas",
              fn=lambda p: 0.26 * (p[0] ** 2 + p[1] ** 2) - 0.48 * p[0] * p[1],
              domain=_box(2, -10.0, 10.0), start=(8.0, 6.0), minima=((0.0, 0.0),),
              minimum=0.0)


_MCCORMICK_X = (1 - 2 * math.pi / 3) / 2


@_landscape
def mccormick():
  """``sin(x + y) + (x - y)**2 - 1.5x + 2.5y + 1``; minimum ``-sqrt(3)/2 - pi/3
  ~ -1.913223`` at ``((1 - 2pi/3)/2, (-1 - 2pi/3)/2) ~ (-0.547198, -1.547198)``."""
  return dict(name="mccormick",
              fn=lambda p: (jnp.sin(p[0] + p[1]) + (p[0] - p[1]) ** 2 - 1.5 * p[0]
                            + 2.5 * p[1] + 1),
              domain=((-1.5, 4.0), (-3.0, 4.0)), start=(3.0, 3.0),
              minima=((_MCCORMICK_X, _MCCORMICK_X - 1),),
              minimum=-math.sqrt(3) / 2 - math.pi / 3)


# The minimiser of x**4 - 16x**2 + 5x: the negative root of 4x**3 - 32x + 5.
_STYBLINSKI_X = -2.903534027771178


@_landscape
def styblinski_tang(n: int = 2):
  """``0.5 * sum(x**4 - 16x**2 + 5x)``; minimum ``-39.166166 n`` at ``x_i = -2.903534``;
  a local minimum near ``x_i = 2.7468`` in every coordinate."""
  n = _check_n("styblinski_tang", n)
  per = 0.5 * (_STYBLINSKI_X**4 - 16 * _STYBLINSKI_X**2 + 5 * _STYBLINSKI_X)
  return dict(name="styblinski_tang",
              fn=lambda x: 0.5 * jnp.sum(x**4 - 16 * x**2 + 5 * x),
              domain=_box(n, -5.0, 5.0), start=(0.0,) * n, minima=((_STYBLINSKI_X,) * n,),
              minimum=per * n)


@_landscape
def three_hump_camel():
  """``2x**2 - 1.05x**4 + x**6/6 + xy + y**2``; minimum 0 at (0, 0), two local minima."""
  return dict(name="three_hump_camel",
              fn=lambda p: (2 * p[0] ** 2 - 1.05 * p[0] ** 4 + p[0] ** 6 / 6 + p[0] * p[1]
                            + p[1] ** 2),
              domain=_box(2, -2.0, 2.0), start=(-1.5, 1.5), minima=((0.0, 0.0),),
              minimum=0.0)


@_landscape
def goldstein_price():
  """Goldstein & Price 1971; minimum 3 at (0, -1), several local minima."""
  def fn(p):
    x, y = p[0], p[1]
    a = 1 + (x + y + 1) ** 2 * (19 - 14 * x + 3 * x**2 - 14 * y + 6 * x * y + 3 * y**2)
    b = 30 + (2 * x - 3 * y) ** 2 * (18 - 32 * x + 12 * x**2 + 48 * y - 36 * x * y
                                     + 27 * y**2)
    return a * b
  return dict(name="goldstein_price", fn=fn, domain=_box(2, -2.0, 2.0), start=(0.5, 1.0),
              minima=((0.0, -1.0),), minimum=3.0)


@_landscape
def rastrigin(n: int = 2):
  """``10n + sum(x**2 - 10cos(2 pi x))``; minimum 0 at 0, a local minimum near every
  integer point."""
  n = _check_n("rastrigin", n)
  return dict(name="rastrigin",
              fn=lambda x: 10 * n + jnp.sum(x * x - 10 * jnp.cos(2 * jnp.pi * x)),
              domain=_box(n, -5.12, 5.12), start=(2.3,) * n, minima=((0.0,) * n,),
              minimum=0.0)


def _ackley(x):
  mean_square = jnp.mean(x * x)
  # sqrt has an infinite slope at 0; the (symmetric) subgradient there is 0.
  positive = mean_square > 0
  radius = jnp.where(positive, jnp.sqrt(jnp.where(positive, mean_square, 1.0)), 0.0)
  return (-20 * jnp.exp(-0.2 * radius) - jnp.exp(jnp.mean(jnp.cos(2 * jnp.pi * x)))
          + jnp.e + 20)


@_landscape
def ackley(n: int = 2):
  """``-20 exp(-0.2 sqrt(mean(x**2))) - exp(mean(cos(2 pi x))) + e + 20`` (Ackley 1987);
  minimum 0 at 0 (a cone point: the gradient taken there is the subgradient 0)."""
  n = _check_n("ackley", n)
  return dict(name="ackley", fn=_ackley, domain=_box(n, -5.0, 5.0), start=(3.0,) * n,
              minima=((0.0,) * n,), minimum=0.0)


@_landscape
def saddle():
  """``x**2 - y**2``: a saddle point at (0, 0), unbounded below (no minimum)."""
  return dict(name="saddle", fn=lambda p: p[0] ** 2 - p[1] ** 2, domain=_box(2, -2.0, 2.0),
              start=(1.5, 1e-3), minima=(), minimum=-math.inf)


FUNCTIONS = {f.name: f for f in (sphere, ill_conditioned_quadratic, rosenbrock, beale,
                                  booth, himmelblau, matyas, mccormick, styblinski_tang,
                                  three_hump_camel, goldstein_price, rastrigin, ackley,
                                  saddle)}
"""Every classic function by name (default configuration)."""
