"""gtx.projections against Optax 0.2.8's optax.projections (the oracle): every
projection on random pytrees of mixed shapes (scalar, vector, matrix, 3-D) in float32
and float64, with the default and a non-default radius, points inside and outside the
set, jitted (a few eagerly too), and their derivatives (``jax.grad`` of ``<P(x), d>``).
Plus what makes them projections (feasible, idempotent, a NumPy oracle for the simplex)
and the one place gradtx departs: scalar box bounds on a tree, which Optax documents but
fails on.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params

TOL = {"float32": dict(rtol=1e-6, atol=1e-7), "float64": dict(rtol=1e-12, atol=1e-14)}
DTYPES = [jnp.float32, jnp.float64]

# name -> (args after the tree, or a function of the direction tree ``a``)
RADIAL = ["projection_simplex", "projection_l1_sphere", "projection_l1_ball",
          "projection_l2_sphere", "projection_l2_ball", "projection_linf_ball"]
CASES = {
    "projection_non_negative": lambda a: (),
    "projection_hypercube": lambda a: (),
    "projection_hypercube/tree_scale": lambda a: (jax.tree.map(jnp.abs, a),),
    "projection_box": lambda a: (jax.tree.map(lambda x: -jnp.abs(x), a),
                                 jax.tree.map(jnp.abs, a)),
    **{name: (lambda a: ()) for name in RADIAL},
    **{f"{name}/scale": (lambda a: (0.7,)) for name in RADIAL},
    # A radius the tree is well inside of (the balls return it unchanged).
    **{f"{name}/inside": (lambda a: (100.0,)) for name in
       ["projection_l1_ball", "projection_l2_ball", "projection_linf_ball"]},
    "projection_vector": lambda a: (a,),
    "projection_hyperplane": lambda a: (a, 0.3),
    "projection_halfspace/outside": lambda a: (a, -5.0),
    "projection_halfspace/inside": lambda a: (a, 50.0),
}


def _optax_hypercube(x, scale=1):
  """Optax's hypercube with its bounds as full trees: Optax's own takes scalar (or
  tree) bounds only for a single array (see the last tests)."""
  lower = jax.tree.map(jnp.zeros_like, x)
  upper = jax.tree.map(lambda leaf, s: jnp.full_like(leaf, s), x,
                       jax.tree.broadcast(scale, x))
  return optax.projections.projection_box(x, lower, upper)


def _inputs(dtype):
  tree = jax.tree.map(lambda x: 1.5 * x, make_params(dtype, seed=1))
  return tree, make_params(dtype, seed=2)


def _fns(case):
  name = case.split("/")[0]
  theirs = _optax_hypercube if name == "projection_hypercube" else getattr(
      optax.projections, name)
  return getattr(gtx.projections, name), theirs


def assert_trees_close(ours, theirs, dtype):
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(ours),
                          jax.tree.leaves(theirs)):
    assert x.dtype == y.dtype, jax.tree_util.keystr(path)
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL[np.dtype(dtype).name],
                               err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_values_and_derivatives_match_optax(case, dtype):
  """Values, and ``jax.grad`` of ``<P(x), d>`` in ``x`` (Optax differentiates the simplex
  family through its custom JVP, the others through jnp), all in one compilation."""
  with jax.enable_x64(dtype == jnp.float64):
    ours, theirs = _fns(case)
    x, a = _inputs(dtype)
    direction = make_params(dtype, seed=3)
    args = CASES[case](a)

    @jax.jit
    def both(x, args):
      along = lambda fn: lambda x: gtx.tree.vdot(fn(x, *args), direction)  # noqa: E731
      return ((ours(x, *args), jax.grad(along(ours))(x)),
              (theirs(x, *args), jax.grad(along(theirs))(x)))

    (value, grad), (expected_value, expected_grad) = both(x, args)
    assert_trees_close(value, expected_value, dtype)
    assert_trees_close(grad, expected_grad, dtype)


@pytest.mark.parametrize("case", ["projection_simplex/scale", "projection_l1_ball",
                                  "projection_l2_sphere", "projection_halfspace/outside"])
def test_eager_values_match_optax(case):
  ours, theirs = _fns(case)
  x, a = _inputs(jnp.float32)
  assert_trees_close(ours(x, *CASES[case](a)), theirs(x, *CASES[case](a)), jnp.float32)


@pytest.mark.parametrize("scale", [1.0, 0.3, 4.0])
def test_simplex_projection_is_feasible_and_matches_a_numpy_oracle(scale):
  """Duchi et al. (2008), Fig. 1, in NumPy float64: sort, find rho, threshold."""
  with jax.enable_x64(True):
    x, _ = _inputs(jnp.float64)
    flat = np.concatenate([np.ravel(v) for v in jax.tree.leaves(x)])
    u = np.sort(flat)[::-1]
    css = np.cumsum(u)
    rho = np.nonzero(u - (css - scale) / np.arange(1, u.size + 1) > 0)[0][-1]
    expected = np.maximum(flat - (css[rho] - scale) / (rho + 1), 0)
    projected = jax.jit(gtx.projections.projection_simplex)(x, scale)
    got = np.concatenate([np.ravel(v) for v in jax.tree.leaves(projected)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    assert got.min() >= 0 and np.isclose(got.sum(), scale, rtol=1e-12)


@pytest.mark.parametrize("name", ["projection_simplex", "projection_l1_ball",
                                  "projection_l2_ball", "projection_linf_ball",
                                  "projection_l1_sphere", "projection_l2_sphere",
                                  "projection_non_negative"])
def test_projections_are_idempotent(name):
  with jax.enable_x64(True):
    fn = jax.jit(getattr(gtx.projections, name))
    x, _ = _inputs(jnp.float64)
    once = fn(x)
    assert_trees_close(fn(once), once, jnp.float64)


def test_balls_bound_the_norm():
  with jax.enable_x64(True):
    x, _ = _inputs(jnp.float64)
    for name, order in [("projection_l1_ball", 1), ("projection_l2_ball", 2),
                        ("projection_linf_ball", jnp.inf)]:
      projected = jax.jit(getattr(gtx.projections, name))(x, 0.7)
      assert gtx.tree.norm(projected, ord=order) <= 0.7 * (1 + 1e-12), name


def test_scalar_box_bounds_on_a_tree_are_broadcast():
  """Optax 0.2.8 documents ``lower``/``upper`` (and the hypercube's ``scale``) as "a
  scalar or tree", but maps ``jnp.clip`` over tree, lower and upper together, so a
  scalar bound raises for any tree that is not a single array. gradtx broadcasts the
  bounds; the result equals Optax's with the bounds given as full trees."""
  x, _ = _inputs(jnp.float32)
  with pytest.raises(ValueError):
    optax.projections.projection_box(x, -0.3, 0.4)
  with pytest.raises(ValueError):
    optax.projections.projection_hypercube(x)
  full = lambda v: jax.tree.map(lambda leaf: jnp.full_like(leaf, v), x)  # noqa: E731
  assert_trees_close(gtx.projections.projection_box(x, -0.3, 0.4),
                     optax.projections.projection_box(x, full(-0.3), full(0.4)),
                     jnp.float32)
  assert_trees_close(gtx.projections.projection_hypercube(x, 0.5),
                     optax.projections.projection_box(x, full(0.0), full(0.5)), jnp.float32)
  # On a single array both accept scalars, with the same result.
  leaf = x["nested"]["cube"]
  assert_trees_close(gtx.projections.projection_hypercube(leaf, 0.5),
                     optax.projections.projection_hypercube(leaf, 0.5), jnp.float32)


def test_names_are_optaxs():
  assert sorted(gtx.projections.__all__) == sorted(
      n for n in dir(optax.projections) if n.startswith("projection_"))
