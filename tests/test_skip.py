"""``zero_nans``, ``keep_params_nonnegative``, ``skip_not_finite`` and
``skip_large_updates`` against Optax 0.2.8.

Oracle: Optax's functions of the same names. The transforms are compared step by step
over 60 jitted steps on the mixed-shape tree, float32 and float64, with their states
(``ZeroNansState(found_nan)``, ``EmptyState``): ``zero_nans`` on gradients poisoned with
NaNs (and Infs, which it leaves), ``keep_params_nonnegative`` from non-negative params
(the default use) and from params with negative entries. The skip tests (used by
``MultiSteps``, see ``test_multi_steps.py``) are compared on trees with and without
non-finite entries.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import loss, make_params
from transform_pairs import DTYPES, compare, precision

LR = 0.02


def poisoned(m, value):
  """Replaces the gradient entries above 2 by ``value`` (a NaN or an Inf)."""
  return m.stateless(lambda u, p: jax.tree.map(lambda g: jnp.where(g > 2.0, value, g), u))


CASES = {
    "zero_nans": lambda m: m.chain(poisoned(m, jnp.nan), m.zero_nans(), m.sgd(LR)),
    "zero_nans/infs_pass": lambda m: m.chain(poisoned(m, jnp.nan), m.zero_nans(),
                                             m.clip(1.0), poisoned(m, jnp.inf),
                                             m.zero_nans(), m.clip(0.5), m.sgd(LR)),
    "keep_params_nonnegative": lambda m: m.chain(m.sgd(0.1, momentum=0.5),
                                                 m.keep_params_nonnegative()),
}
PARAMS = {"zero_nans": None, "zero_nans/infs_pass": None,
          "keep_params_nonnegative": lambda dt: jax.tree.map(jnp.abs, make_params(dt))}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  result = compare(CASES[name], dtype, params=PARAMS[name])
  with precision(dtype):
    if name.startswith("zero_nans"):
      assert isinstance(result.state[1], gtx.ZeroNansState)
      # The poison acts: the first gradients have entries above 2.
      first = jax.grad(loss)(make_params(dtype))
      assert any(bool(jnp.any(g > 2.0)) for g in jax.tree.leaves(first))
    else:  # some params reached the bound and stayed there
      assert any(bool(jnp.any(p == 0)) for p in jax.tree.leaves(result.path[-1]))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_negative_params_are_moved_to_zero_as_in_optax(dtype):
  make = lambda m: m.chain(m.sgd(0.05), m.keep_params_nonnegative())  # noqa: E731
  compare(make, dtype, steps=50)
  with precision(dtype):
    params = make_params(dtype)
    updates, _ = gtx.keep_params_nonnegative().update(
        jax.tree.map(jnp.zeros_like, params), gtx.EmptyState(), params)
    after = gtx.apply_updates(params, updates)
    for p, a in zip(jax.tree.leaves(params), jax.tree.leaves(after)):
      np.testing.assert_array_equal(a, jnp.maximum(p, 0))


def test_zero_nans_records_where_it_found_nans():
  tx = gtx.zero_nans()
  updates = {"a": jnp.asarray([1.0, jnp.nan]), "b": jnp.asarray([jnp.inf, 2.0])}
  out, state = tx.update(updates, tx.init(updates))
  np.testing.assert_array_equal(out["a"], [1.0, 0.0])
  np.testing.assert_array_equal(out["b"], [jnp.inf, 2.0])
  assert state.found_nan == {"a": True, "b": False}
  assert gtx.ZeroNansState._fields == optax.ZeroNansState._fields


def test_keep_params_nonnegative_needs_the_params():
  assert gtx.NonNegativeParamsState is gtx.EmptyState
  with pytest.raises(ValueError, match="needs the params"):
    gtx.keep_params_nonnegative().update({"w": jnp.ones(2)}, gtx.EmptyState())


TREES = {
    "finite": {"a": jnp.asarray([1.0, -2.0]), "b": {"c": jnp.full((2, 2), 3.0)}},
    "nan_inf": {"a": jnp.asarray([jnp.nan, -2.0]),
                "b": {"c": jnp.asarray([[jnp.inf, 1.0], [-jnp.inf, 0.5]])}},
    "large": {"a": jnp.asarray([10.0, -2.0]), "b": {"c": jnp.full((2, 2), 3.0)}},
}
SKIPS = {
    "skip_not_finite": lambda m: m.skip_not_finite,
    "skip_large_updates": lambda m: functools.partial(m.skip_large_updates,
                                                      max_squared_norm=50.0),
}


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("name", SKIPS)
def test_skip_functions_match_optax(name, tree):
  for dtype in DTYPES:
    with precision(dtype):
      updates = jax.tree.map(lambda x: x.astype(dtype), TREES[tree])
      ours = SKIPS[name](gtx)(updates, jnp.asarray(3), None)
      theirs = SKIPS[name](optax)(updates, jnp.asarray(3), None)
      assert jax.tree.structure(ours) == jax.tree.structure(theirs)
      for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
  expected = {"finite": False, "nan_inf": True, "large": name == "skip_large_updates"}
  assert bool(ours[0]) == expected[tree]
