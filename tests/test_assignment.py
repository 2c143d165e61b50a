"""gtx.assignment against Optax 0.2.8's optax.assignment (the oracle: the same index
arrays, in the same order, dtypes included) and against
``scipy.optimize.linear_sum_assignment`` (an independent oracle: the optimal cost, and
the same pairs where the optimum is unique), on batches of random cost matrices:
square, wide, tall, single rows and columns, empty; float32 and float64, and small
integers (many ties, where the tie-breaking must be Optax's). Batches go through
``jax.vmap`` of the solvers, gtx's and Optax's jitted together (one compilation per
shape), one matrix eagerly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import gradtx as gtx

SOLVERS = ["hungarian_algorithm", "base_hungarian_algorithm"]
BATCH = 16


def costs(shape, kind, seed=0):
  rng = np.random.default_rng(seed)
  if kind == "int":
    return jnp.asarray(rng.integers(0, 4, size=(BATCH, *shape)))
  return jnp.asarray(rng.normal(size=(BATCH, *shape)), jnp.dtype(kind))


def solve_batch(name, batch):
  """``jax.vmap`` of gtx's and of Optax's solver on ``batch``, both in one jitted program
  (one compilation): ``((rows, cols), (expected_rows, expected_cols))``."""
  ours, theirs = getattr(gtx.assignment, name), getattr(optax.assignment, name)
  return jax.jit(lambda b: (jax.vmap(ours)(b), jax.vmap(theirs)(b)))(batch)


# Each shape (square, wide, tall, single row, single column) with integer costs or in
# float32, float64 for some.
@pytest.mark.parametrize("shape,kind", [
    ((5, 5), "float32"), ((5, 5), "float64"), ((5, 5), "int"), ((4, 7), "float32"),
    ((4, 7), "int"), ((7, 4), "float64"), ((7, 4), "int"), ((1, 5), "float32"),
    ((5, 1), "float32")], ids=str)
@pytest.mark.parametrize("name", SOLVERS)
def test_matches_optax_and_scipy(name, shape, kind):
  with jax.enable_x64(kind == "float64"):
    batch = costs(shape, kind)
    (rows, cols), (expected_rows, expected_cols) = solve_batch(name, batch)
    assert rows.dtype == expected_rows.dtype and cols.dtype == expected_cols.dtype
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(cols, expected_cols)
    for c, i, j in zip(np.asarray(batch), np.asarray(rows), np.asarray(cols)):
      assert len(set(i)) == len(i) == min(shape) and len(set(j)) == len(j)
      si, sj = scipy.optimize.linear_sum_assignment(c)
      np.testing.assert_allclose(c[i, j].sum(), c[si, sj].sum(), rtol=1e-6)
      if kind != "int":  # continuous costs: the optimum is unique
        assert sorted(zip(i, j)) == sorted(zip(si, sj))


# Optax 0.2.8's output on its docstring's first example (base_hungarian_algorithm's is
# printed in that docstring).
EAGER = {"base_hungarian_algorithm": ([0, 1, 3], [0, 2, 1]),
         "hungarian_algorithm": ([1, 3, 0], [2, 1, 0])}


@pytest.mark.parametrize("name", SOLVERS)
def test_matches_optax_on_optaxs_examples(name):
  """Optax's docstring examples and their transposes (integer costs, ties), jitted; the
  first one eagerly too."""
  ours, theirs = getattr(gtx.assignment, name), getattr(optax.assignment, name)
  eager = ours(jnp.array([[8, 4, 7], [5, 2, 3], [9, 6, 7], [9, 4, 8]]))
  for x, y in zip(eager, EAGER[name]):
    np.testing.assert_array_equal(x, y)
  both = jax.jit(lambda c: (ours(c), theirs(c)))  # one compilation per shape
  examples = [jnp.array([[8, 4, 7], [5, 2, 3], [9, 6, 7], [9, 4, 8]]),
              jnp.array([[90, 80, 75, 70], [35, 85, 55, 65], [125, 95, 90, 95],
                         [45, 110, 95, 115], [50, 100, 90, 100]])]
  for c in examples + [c.T for c in examples]:
    for x, y in zip(*both(c)):
      assert x.dtype == y.dtype
      np.testing.assert_array_equal(x, y)
  i, j = both(examples[0])[0]
  assert examples[0][i, j].sum() == 15


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)], ids=str)
@pytest.mark.parametrize("name", SOLVERS)
def test_empty_matrices_give_empty_assignments(name, shape):
  for x, y in zip(getattr(gtx.assignment, name)(jnp.zeros(shape)),
                  getattr(optax.assignment, name)(jnp.zeros(shape))):
    assert x.shape == y.shape == (0,) and x.dtype == y.dtype


def test_infinite_costs_are_avoided_when_a_finite_assignment_exists():
  c = jnp.array([[jnp.inf, 1.0, 2.0], [3.0, jnp.inf, 1.0], [1.0, 5.0, jnp.inf]])
  for name in SOLVERS:
    i, j = getattr(gtx.assignment, name)(c)
    assert float(c[i, j].sum()) == 3.0, name


def test_names_are_optaxs():
  assert sorted(gtx.assignment.__all__) == sorted(
      n for n in dir(optax.assignment) if not n.startswith("_"))
