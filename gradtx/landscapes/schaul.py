"""The unit tests of Schaul, Antonoglou & Silver 2014, as arrays.

"Unit Tests for Stochastic Optimization" (ICLR 2014). A test case is a function of one,
two or ten parameters: each coordinate has a chain of shape prototypes (see
:mod:`gradtx.landscapes.prototypes`) with a scale and a noise, the coordinates are
combined by the L1 norm, the input is optionally rotated by a random orthonormal matrix
and the gradient field optionally curled; 1-D cases may be non-stationary. The case list
and every constant are those of the authors' implementation
(github.com/IoannisAntonoglou/optimBench, ``experiments/function_definitions.lua`` and
``factories/*.lua``): 45 one-dimensional shapes under 10 noises (the 8 single prototypes)
or 4 (the chains), 4 scales and 4 kinds of non-stationarity; 15 two-dimensional and 15
ten-dimensional combinations. Where their code departs from what their name convention
documents, the documented meaning is kept (see :func:`suite`).

Noise (applied per coordinate, to the value ``f`` and slope ``g`` of the 1-D function
at its argument ``x``): additive Gaussian ``f + x*s*n``, ``g + s*n`` with ``n ~ N(0, 1)``
(s = 0.01, 0.1, 10); additive Cauchy (s = 1); multiplicative log-normal ``f*exp(s*n)``,
``g*exp(s*n)`` (s = 0.1, 1, 10); mask-out, ``f`` and ``g`` set to zero with probability
p = 0.1 or 0.9. Non-stationarity changes the function every 10 steps: scale drift draws
fresh slopes ``fprime*exp(0.1*n)`` and rebuilds the chain, noise drift scales the noise
by ``exp(0.5*n)``, and a moving optimum shifts the function by a Gaussian random walk of
step 0.1.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import zlib
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp

from gradtx.landscapes import prototypes

NOISES = {
    "noiseless": ("none", 0.0),
    "gauss_add_low": ("additive", 0.01),
    "gauss_add_normal": ("additive", 0.1),
    "gauss_add_high": ("additive", 10.0),
    "gauss_mul_low": ("multiplicative", 0.1),
    "gauss_mul_normal": ("multiplicative", 1.0),
    "gauss_mul_high": ("multiplicative", 10.0),
    "maskout_high": ("maskout", 0.9),
    "maskout_low": ("maskout", 0.1),
    "cauchy_add_normal": ("cauchy", 1.0),
}
"""Noise name -> (kind, sigma or mask-out probability), from the authors' list."""

SCALES = {
    "normal": (0.0, 1.0, 200.0, -1.0),
    "steep": (0.0, 1.0, 200.0, -10.0),
    "saddle": (0.0, 1.0, 200.0, 1.0),
    "flat": (0.0, 1.0, 2.0, -0.1),
}
"""Scale name -> (xs, xe, fs, fprime) of every chain on that coordinate."""

NONSTATIONARITY = {"none": 0.0, "scale": 0.1, "noise": 0.5, "offset": 0.1}
"""Kind -> the standard deviation of its log-normal (scale, noise) or Gaussian (offset)
change, made every :data:`PERIOD` steps."""

PERIOD = 10
CURL_SCALE = 1.0
KINDS = ("none", "additive", "multiplicative", "cauchy", "maskout")


@dataclasses.dataclass(frozen=True)
class Case:
  """One unit test: per coordinate a chain of prototypes, a noise and a scale."""

  shapes: tuple[tuple[str, ...], ...]
  noise: tuple[str, ...]
  scale: tuple[str, ...]
  rotated: bool = False
  curled: bool = False
  nonstationarity: str = "none"

  def __post_init__(self):
    if not len(self.shapes) == len(self.noise) == len(self.scale):
      raise ValueError("Case: shapes, noise and scale need one entry per coordinate")
    for name in self.noise:
      if name not in NOISES:
        raise ValueError(f"Case: unknown noise {name!r}; one of {', '.join(NOISES)}")
    for name in self.scale:
      if name not in SCALES:
        raise ValueError(f"Case: unknown scale {name!r}; one of {', '.join(SCALES)}")
    if self.nonstationarity not in NONSTATIONARITY:
      raise ValueError(f"Case: unknown non-stationarity {self.nonstationarity!r}; one of "
                       f"{', '.join(NONSTATIONARITY)}")
    if self.dim == 1 and (self.rotated or self.curled):
      raise ValueError("Case: a 1-D case cannot be rotated or curled")

  @property
  def dim(self) -> int:
    return len(self.shapes)

  @property
  def name(self) -> str:
    """``shapes noise scale [rotated] [curl] [drift]``, runs of equal coordinates as
    ``name*count``: ``abs,quad_bowl*9 gauss_add_low*10 normal*10 rotated``."""
    parts = [_runs("-".join(s) for s in self.shapes), _runs(self.noise), _runs(self.scale)]
    parts += ["rotated"] * self.rotated + ["curl"] * self.curled
    if self.nonstationarity != "none":
      parts.append(f"drift:{self.nonstationarity}")
    return " ".join(parts)

  @property
  def group(self) -> str:
    """The family it belongs to in the summary (a column block of the paper's figure)."""
    if self.dim > 1:
      return f"{self.dim}-D" + (" rotated/curl" if self.rotated or self.curled else "")
    if self.nonstationarity != "none":
      return f"1-D drift: {dict(scale='scale', noise='noise', offset='optimum')[self.nonstationarity]}"
    return "1-D " + {"none": "noiseless", "additive": "additive noise",
                     "multiplicative": "multiplicative noise", "cauchy": "Cauchy noise",
                     "maskout": "mask-out"}[NOISES[self.noise[0]][0]]

  @property
  def uid(self) -> int:
    """A stable 31-bit id of the name: the case's noise depends on it and the seed only,
    so a filtered suite gives each case the results it has in the full one."""
    return zlib.crc32(self.name.encode()) & 0x7FFFFFFF

  def evaluate(self, x, *, seed: int = 0, step: int = 0, steps: int = 100):
    """``(value, grad, expected_value)`` of this case at ``x`` on step ``step`` of a run
    with ``seed``: the noisy value and gradient an optimizer sees, and the noise-free
    value it is scored on."""
    # Imported here: the arrays module builds on this one.
    from gradtx.landscapes.arrays import build_group, objective  # pylint: disable=C0415
    group = build_group([self], seeds=[seed], steps=steps)
    x = jnp.asarray(x, jnp.float32).reshape(self.dim)
    problem = jax.tree.map(lambda a: a[0, 0], group.problem_arrays())
    return objective(problem, x, jnp.asarray(step))

  def __repr__(self):
    return f"Case({self.name!r})"


def _runs(items: Iterable[str]) -> str:
  out = []
  for name, run in itertools.groupby(items):
    count = len(list(run))
    out.append(name if count == 1 else f"{name}*{count}")
  return ",".join(out)


def _per_dim(spec: str) -> tuple[str, ...]:
  """``"abs|1|quad_bowl|9|"`` -> ``("abs",) + ("quad_bowl",) * 9``."""
  tokens = spec.split("|")
  assert tokens[-1] == "" and len(tokens) % 2 == 1, spec
  return tuple(itertools.chain.from_iterable(
      [name] * int(count) for name, count in zip(tokens[0:-1:2], tokens[1:-1:2])))


_ALL_NOISES = ",".join(f"{n}|1|" for n in NOISES)
_ADD = "noiseless|1|,gauss_add_low|1|,gauss_add_normal|1|,gauss_add_high|1|"
_ALL_SCALES = ",".join(f"{s}|1|" for s in SCALES)
_SINGLE_1D = ("line", "quad_bowl", "abs", "bend", "relu", "gauss_bowl", "cliff", "ridge")
_CHAINS_1D = (
    "quad_convex-line", "gauss_nonconvex-line", "gauss_convex-line",
    "laplace_nonconvex-line", "laplace_convex-line", "exponential",
    "quad_convex-exponential", "gauss_nonconvex-exponential", "gauss_convex-exponential",
    "laplace_nonconvex-exponential", "laplace_convex-exponential", "line-exponential",
    "quad_convex-relu", "gauss_nonconvex-relu", "gauss_convex-relu", "laplace_convex-relu",
    "gauss_nonconvex-gauss_convex-gauss_bowl-gauss_convex-gauss_nonconvex",
    "laplace_nonconvex-laplace_convex-laplace_bowl-laplace_convex-laplace_nonconvex",
    "line-quad_bowl-line", "quad_convex-abs-quad_convex", "quad_convex-cliff-quad_convex",
    "quad_convex-cliff-gauss_nonconvex", "quad_convex-quad_bowl-gauss_nonconvex",
    "quad_convex-abs-gauss_nonconvex", "cliff-exponential", "cliff-quad_bowl",
    "quad_convex-cliff-quad_bowl", "quad_bowl-cliff-exponential", "relu-bend-line",
    "quad_convex-relu-bend-line", "gauss_nonconvex-relu-line", "relu-bend-quad_bowl",
    "quad_convex-relu-bend-quad_bowl", "gauss_nonconvex-relu-bend-quad_bowl",
    "relu-bend-exponential", "quad_convex-relu-bend-exponential",
    "gauss_nonconvex-relu-bend-exponential")
_N2 = "noiseless|2|,gauss_add_normal|2|,gauss_add_low|1|gauss_add_high|1|,gauss_add_high|1|gauss_add_low|1|"
_N10 = "noiseless|10|,gauss_add_low|10|,gauss_add_normal|10|,gauss_add_high|10|"
_LAPLACE3 = "laplace_convex-laplace_nonconvex-quad_convex"
# (shapes per dim, noise variants, scale variants, rotations, curls)
_MULTI = (
    ("quad_bowl|2|", _N2, "normal|2|,steep|2|,saddle|2|,flat|2|", (True, False), (False,)),
    ("abs|1|quad_bowl|1|", _N2, "normal|2|,steep|1|normal|1|,normal|1|steep|1|",
     (False, True), (False, True)),
    ("quad_bowl|1|line|1|", _N2, "normal|2|,steep|1|normal|1|", (False,), (False,)),
    ("line|2|", _N2, "normal|2|", (False,), (False,)),
    ("relu|1|line|1|", _N2, "normal|2|", (False,), (False,)),
    ("exponential|1|line|1|", _N2, "normal|2|,steep|1|normal|1|", (False,), (False,)),
    ("abs|1|line|1|", _N2, "normal|2|,steep|1|normal|1|", (False,), (False,)),
    ("abs|2|", _N2, "normal|2|", (False, True), (False, True)),
    ("cliff|1|abs|1|", _N2, "normal|2|,steep|1|normal|1|", (False,), (False,)),
    ("cliff|1|line|1|", _N2, "normal|2|", (False, True), (False, True)),
    ("cliff|1|quad_bowl|1|", _N2, "normal|2|", (False, True), (False, True)),
    ("exponential|1|quad_bowl|1|", _N2, "normal|2|", (False,), (False,)),
    ("gauss_nonconvex|1|abs|1|", _N2, "saddle|1|normal|1|", (False,), (False,)),
    ("gauss_nonconvex|1|quad_bowl|1|", _N2, "saddle|1|normal|1|", (False,), (False,)),
    (f"{_LAPLACE3}|2|", _N2, "normal|2|,saddle|1|normal|1|", (False,), (False,)),
    ("quad_bowl|10|", _N10 + ",gauss_mul_low|10|,gauss_mul_normal|10|,gauss_mul_high|10|",
     "normal|10|,steep|10|,saddle|10|,flat|10|", (False,), (False,)),
    (f"{_LAPLACE3}|10|", _N10, "normal|10|,saddle|1|normal|9|", (False,), (False,)),
    ("abs|1|quad_bowl|9|", _N10, "normal|10|,normal|1|saddle|9|,normal|1|steep|9|",
     (False,), (False,)),
    ("quad_bowl|1|line|9|", _N10, "normal|10|,steep|1|normal|9|", (False,), (False,)),
    ("line|10|", _N10, "normal|10|", (False,), (False,)),
    ("relu|1|line|9|", _N10, "normal|10|", (False,), (False,)),
    ("exponential|1|line|9|", _N10, "normal|10|,steep|1|normal|9|", (False,), (False,)),
    ("abs|1|line|9|", _N10, "normal|10|,steep|1|normal|9|", (False,), (False,)),
    ("abs|10|", _N10, "normal|10|", (False, True), (False, True)),
    ("cliff|1|abs|9|", _N10, "normal|10|,steep|1|normal|9|", (False,), (False,)),
    ("cliff|1|line|9|", _N10, "normal|10|", (False, True), (False, True)),
    ("cliff|1|quad_bowl|9|", _N10, "normal|10|", (False, True), (False,)),
    ("exponential|1|quad_bowl|9|", _N10, "normal|10|", (False,), (False,)),
    ("gauss_nonconvex|1|abs|9|", _N10, "saddle|1|normal|9|", (False,), (False,)),
    ("gauss_nonconvex|1|quad_bowl|9|", _N10, "saddle|1|normal|9|", (False,), (False,)),
)


@functools.lru_cache(maxsize=None)
def suite() -> tuple[Case, ...]:
  """Every case of the authors' suite (3732 cases: 3404 1-D, 188 2-D, 140 10-D).

  Three departures from the authors' code, each where it contradicts their documented
  name convention: a per-dimension list (``steep|1|normal|9|``) is applied in the order
  written (their expansion reverses it); a bare ``normal`` scale means ``normal`` on
  every coordinate (their parser drops it); and noise drift is not listed for noiseless
  and mask-out cases, where their code runs it as the stationary case again.
  """
  cases = []
  for shapes, noises in [(s, _ALL_NOISES) for s in _SINGLE_1D] + [(s, _ADD) for s in _CHAINS_1D]:
    for noise, scale, drift in itertools.product(noises.split(","), SCALES,
                                                 NONSTATIONARITY):
      noise = _per_dim(noise)
      if drift == "noise" and NOISES[noise[0]][0] in ("none", "maskout"):
        continue
      cases.append(Case((prototypes.parse_shapes(shapes),), noise, (scale,),
                        nonstationarity=drift))
  for shapes, noises, scales, rotations, curls in _MULTI:
    shapes = tuple(prototypes.parse_shapes(s) for s in _per_dim(shapes))
    for noise, scale, rotated, curled in itertools.product(
        noises.split(","), scales.split(","), rotations, curls):
      cases.append(Case(shapes, _per_dim(noise), _per_dim(scale), rotated, curled))
  return tuple(cases)


def select(cases: Sequence[Case] | None = None, filter=None) -> tuple[Case, ...]:
  """The cases (default: the whole :func:`suite`) that ``filter`` keeps.

  ``filter`` is ``None`` (all), a string (kept if it is a substring of the case's name or
  its group: ``"1-D"``, ``"quad_bowl"``, ``"drift:offset"``), a sequence of strings (any
  of them), or a predicate ``Case -> bool``.
  """
  cases = suite() if cases is None else tuple(cases)
  if filter is None:
    return cases
  if isinstance(filter, str):
    filter = (filter,)
  if not callable(filter):
    words = tuple(filter)
    filter = lambda c: any(w in c.name or w in c.group for w in words)  # noqa: E731
  return tuple(c for c in cases if filter(c))
