"""Classic test functions and the Schaul et al. 2014 prototypes against hand-computed numbers.

Oracles: the literature's minima (Jamil & Yang 2013; Surjanovic & Bingham's library) for
the classic functions; for the prototypes, values and slopes worked out by hand from the
authors' formulas (github.com/IoannisAntonoglou/optimBench, prototypes_functions.lua) on
the 'normal' scale (xs=0, xe=1, fs=200, fprime=-1).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx import landscapes
from gradtx.landscapes import arrays, schaul

MINIMA = [(f, m) for f in landscapes.FUNCTIONS.values() for m in f.minima]


@pytest.mark.parametrize("function,point", MINIMA,
                         ids=[f"{f.name}-{i}" for i, (f, _) in enumerate(MINIMA)])
def test_value_and_gradient_at_the_known_minima(function, point):
  with jax.enable_x64(True):
    x = jnp.asarray(point, jnp.float64)
    assert float(function(x)) == pytest.approx(function.minimum, abs=1e-9)
    np.testing.assert_allclose(jax.grad(function)(x), 0.0, atol=1e-7)


@pytest.mark.parametrize("name,point,value", [
    ("himmelblau", (3.0, 2.0), 0.0),
    ("himmelblau", (-2.805118, 3.131312), 0.0),
    ("himmelblau", (-3.779310, -3.283186), 0.0),
    ("himmelblau", (3.584428, -1.848126), 0.0),
    ("goldstein_price", (0.0, -1.0), 3.0),
    ("mccormick", (-0.54719, -1.54719), -1.9133),
    ("styblinski_tang", (-2.903534, -2.903534), -39.16599 * 2),
    ("beale", (3.0, 0.5), 0.0),
    ("booth", (1.0, 3.0), 0.0),
    ("rosenbrock", (1.0, 1.0), 0.0),
    ("three_hump_camel", (0.0, 0.0), 0.0),
    ("matyas", (0.0, 0.0), 0.0),
    ("ackley", (0.0, 0.0), 0.0),
    ("rastrigin", (0.0, 0.0), 0.0),
    ("goldstein_price", (1.2, 0.8), 840.0),  # a local minimum listed in the literature
])
def test_values_from_the_literature(name, point, value):
  assert float(landscapes.FUNCTIONS[name](jnp.asarray(point))) == pytest.approx(value, abs=2e-3)


def test_four_himmelblau_minima_are_distinct_and_all_listed():
  minima = np.asarray(landscapes.himmelblau.minima)
  assert minima.shape == (4, 2)
  assert len({tuple(np.round(m, 3)) for m in minima}) == 4


def test_n_dimensional_versions():
  assert landscapes.rosenbrock(n=5)(jnp.ones(5)) == 0.0
  assert landscapes.rosenbrock(n=5).start == (-1.2, 1.0, -1.2, 1.0, -1.2)
  st = landscapes.styblinski_tang(n=3)
  assert float(st(jnp.asarray(st.minima[0]))) == pytest.approx(-39.16617 * 3, abs=1e-3)
  for name in ("sphere", "rastrigin", "ackley"):
    f = landscapes.FUNCTIONS[name](n=6)
    assert f.dim == 6 and float(f(jnp.zeros(6))) == pytest.approx(0.0, abs=1e-6)
  with pytest.raises(ValueError, match=r"shape \(2,\)"):
    landscapes.himmelblau(jnp.zeros(3))
  with pytest.raises(ValueError, match="n must be"):
    landscapes.rosenbrock(n=1)


def test_ill_conditioned_quadratic_has_the_condition_number_asked_for():
  with jax.enable_x64(True):
    for kappa, n in [(100.0, 2), (1e4, 5)]:
      f = landscapes.ill_conditioned_quadratic(condition_number=kappa, n=n)
      eig = np.linalg.eigvalsh(jax.hessian(f)(jnp.ones(n)))
      assert eig.max() / eig.min() == pytest.approx(kappa)
  with pytest.raises(ValueError, match=r"condition_number must be in \[1, inf\)"):
    landscapes.ill_conditioned_quadratic(condition_number=0.5)


def test_saddle_has_a_stationary_point_and_no_minimum():
  assert landscapes.saddle.minima == () and landscapes.saddle.minimum == -math.inf
  np.testing.assert_allclose(jax.grad(landscapes.saddle)(jnp.zeros(2)), 0.0)
  assert float(landscapes.saddle(jnp.array([0.0, 3.0]))) == -9.0


B = math.log(1000)
# (shapes, x, value, slope), worked out by hand on the normal scale.
HAND = [
    ("line", 0.3, 199.7, -1.0),
    ("quad_bowl", 0.0, 200.0, -1.0),           # (x - 0.5)**2 + 199.75
    ("quad_bowl", 0.5, 199.75, 0.0),
    ("quad_bowl", 1.0, 200.0, 1.0),
    ("quad_convex", 1.0, 200 - 0.45 / 0.81 + 0.45 / 81, -0.1),  # xo = 1/0.9, a = 0.45
    ("abs", 0.25, 199.75, -1.0),               # V with its tip at 0.5
    ("abs", 0.75, 199.75, 1.0),
    ("relu", 0.2, 199.8, -1.0),                # flat after xm = 1/(1 + sqrt 2)
    ("relu", 0.8, 200 - 1 / (1 + math.sqrt(2)), 0.0),
    ("cliff", 0.95, 200 - 1 / (1 + math.sqrt(2 / 101)) + 10 * (0.95 - 1 / (1 + math.sqrt(2 / 101))), 10.0),
    ("ridge", 0.95, 200 - 1 / (1 + math.sqrt(2 / 101)) - 10 * (0.95 - 1 / (1 + math.sqrt(2 / 101))), -10.0),
    ("bend", 0.3, 200.0, 0.0),                 # flat up to xm = 1/(1 + sqrt(1/2))
    ("bend", 0.9, 200 - (0.9 - 1 / (1 + math.sqrt(0.5))), -1.0),
    ("exponential", 0.0, 200.0, -1.0),         # 200 - (1 - exp(-b x))/b, b = ln 1000
    ("exponential", 1.0, 200 - 0.999 / B, -0.001),
    ("gauss_bowl", 0.5, 225 - 25 * math.exp(0.01), 0.0),  # c = 5, mu = 0.5
    ("laplace_bowl", 0.5, 205 - 5 * math.exp(0.1), 0.0),  # c = 5, mu = 0.5
    ("laplace_bowl", 0.25, 205 - 5 * math.exp(0.05), -math.exp(0.05)),
]


@pytest.mark.parametrize("shapes,x,value,slope", HAND)
def test_prototype_value_and_slope_by_hand(shapes, x, value, slope):
  with jax.enable_x64(True):
    p = landscapes.prototype(shapes)
    f, g = p.value_and_grad(x)
    assert float(f) == pytest.approx(value, abs=1e-9)
    assert float(g) == pytest.approx(slope, abs=1e-9)
    if not (shapes == "laplace_bowl" and x == 0.5):   # |x - mu| has no slope at mu
      assert float(jax.grad(p)(jnp.float64(x))) == pytest.approx(float(g), abs=1e-9)


CHAINS = sorted({"-".join(s) for c in schaul.suite() for s in c.shapes})


@pytest.mark.parametrize("scale", list(schaul.SCALES))
@pytest.mark.parametrize("shapes", CHAINS)
def test_chains_start_right_and_are_continuous_at_junctions(shapes, scale):
  xs, xe, fs, fp = schaul.SCALES[scale]
  with jax.enable_x64(True):
    p = landscapes.prototype(shapes, xs=xs, xe=xe, fs=fs, fprime=fp)
    f0, g0 = p.value_and_grad(xs)
    assert float(f0) == pytest.approx(fs, rel=1e-9)
    if not shapes.startswith("bend"):
      assert float(g0) == pytest.approx(fp, rel=1e-6)
    # Both sides of every junction, closer than the shortest segment (a relu after a
    # steep Gaussian tail has a linear leg of length ~5e-8).
    bounds = np.asarray(p.junctions)
    gaps = np.diff(np.concatenate([[xs], bounds, [xe]]))
    h = np.minimum(1e-7, 0.25 * np.minimum(gaps[:-1], gaps[1:]))
    (fl, gl), (fr, gr) = (np.asarray(a) for a in p.value_and_grad(bounds - h)), (
        np.asarray(a) for a in p.value_and_grad(bounds + h))
    steepest = np.maximum(np.abs(gl), np.abs(gr))
    np.testing.assert_array_less(np.abs(fl - fr), 1e-9 * np.maximum(1, np.abs(fl)) + 3 * h * steepest)
    joins = np.array([any(abs(j - k) < 1e-12 for k in p.joins) for j in bounds], bool)
    np.testing.assert_allclose(gl[joins], gr[joins], rtol=1e-4, atol=1e-6)


def test_bend_after_a_nonflat_piece_is_refused():
  with pytest.raises(ValueError, match="bend"):
    landscapes.prototype("line-bend")
  with pytest.raises(ValueError, match="unknown prototype"):
    landscapes.prototype("quad_convex-wiggle")


def test_noise_is_reproducible_from_its_seed():
  case = schaul.Case((("quad_bowl",),), ("gauss_add_normal",), ("normal",))
  a = case.evaluate([0.3], seed=3, step=7)
  b = case.evaluate([0.3], seed=3, step=7)
  c = case.evaluate([0.3], seed=4, step=7)
  for u, v in zip(a, b):
    np.testing.assert_array_equal(u, v)
  assert float(a[1][0]) != float(c[1][0])
  assert float(a[2]) == float(c[2]) == pytest.approx((0.3 - 0.5) ** 2 + 199.75)
  g1 = arrays.build_group([case], seeds=[0, 1], steps=20).arrays["noise"]
  g2 = arrays.build_group([case, schaul.suite()[5]], seeds=[0, 1], steps=20).arrays["noise"]
  np.testing.assert_array_equal(g1[0], g2[0])   # a case's noise does not depend on its batch


def test_noise_statistics_match_their_definitions():
  seeds = list(range(20))
  mask = arrays.build_group([schaul.Case((("line",),), ("maskout_high",), ("normal",))],
                            seeds=seeds, steps=100).arrays["noise"]
  assert np.mean(mask < -1e29) == pytest.approx(0.9, abs=0.02)
  normal = arrays.build_group([schaul.Case((("line",),), ("gauss_add_high",), ("normal",))],
                              seeds=seeds, steps=100).arrays["noise"]
  assert np.mean(normal) == pytest.approx(0.0, abs=0.05)
  assert np.std(normal) == pytest.approx(1.0, abs=0.05)
  case = schaul.Case((("line",),), ("gauss_add_high",), ("normal",))
  _, g, _ = case.evaluate([0.0], seed=0, step=0)
  noise = arrays.build_group([case], seeds=[0], steps=100).arrays["noise"][0, 0, 0, 0]
  assert float(g[0]) == pytest.approx(-1.0 + 10.0 * noise, rel=1e-5)


def test_suite_lists_the_authors_cases():
  cases = schaul.suite()
  dims = [c.dim for c in cases]
  assert len(cases) == 3732 and dims.count(1) == 3404
  assert dims.count(2) == 188 and dims.count(10) == 140
  assert len({c.name for c in cases}) == len(cases)
  assert {c.nonstationarity for c in cases} == set(schaul.NONSTATIONARITY)
  assert sum(c.rotated for c in cases) and sum(c.curled for c in cases)
  assert all(c.nonstationarity == "offset" for c in landscapes.select(filter="drift:offset"))
