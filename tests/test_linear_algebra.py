"""power_iteration, matrix_inverse_pth_root and nnls.

Oracles: Optax 0.2.8's functions of the same names (same iterations, so agreement to a few
ulps), and the exact answers: NumPy's symmetric eigendecomposition (the dominant
eigenpair; ``A^(-1/p) = V diag(w^(-1/p)) V^T``) and SciPy's active-set NNLS.
``matrix_inverse_pth_root`` departs from Optax for ``p`` that are not powers of two,
where Optax raises the iterate to the nearest power of two instead (the test shows
Optax's root 5-13% off and gradtx's exact).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import gradtx as gtx

TOL = {"float32": dict(rtol=2e-6, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-13)}
DTYPES = ["float32", "float64"]


def spd(n, seed=0):
  a = np.random.default_rng(seed).normal(size=(n, n))
  return a @ a.T + 0.5 * np.eye(n)


def exact_root(m, p):
  w, v = np.linalg.eigh(m)
  return (v * w**(-1.0 / p)) @ v.T


@pytest.mark.parametrize("dtype", DTYPES)
def test_power_iteration_matches_optax_and_the_dominant_eigenpair(dtype):
  with jax.enable_x64(dtype == "float64"):
    m = jnp.asarray(spd(6), dtype)
    w, v = np.linalg.eigh(np.asarray(m, np.float64))
    for kwargs in (dict(), dict(key=jax.random.PRNGKey(3), num_iters=500,
                                error_tolerance=1e-9)):
      ours = gtx.power_iteration(m, **kwargs)
      theirs = optax.power_iteration(m, **kwargs)
      for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, **TOL[dtype])
    eigenvalue, vector = gtx.power_iteration(m, num_iters=1000, error_tolerance=1e-12)
    np.testing.assert_allclose(eigenvalue, w[-1], rtol=1e-4)
    np.testing.assert_allclose(np.abs(vector), np.abs(v[:, -1]), atol=1e-2)


def test_power_iteration_on_a_matrix_free_product_of_pytrees():
  diag = {"a": jnp.asarray([1.0, 4.0]), "b": jnp.asarray([[2.0, 0.5]])}
  product = lambda v: jax.tree.map(jnp.multiply, diag, v)  # noqa: E731
  v0 = jax.tree.map(jnp.ones_like, diag)
  ours = gtx.power_iteration(product, v0=v0, num_iters=200, error_tolerance=1e-7)
  theirs = optax.power_iteration(product, v0=v0, num_iters=200, error_tolerance=1e-7)
  np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
               ours[1], theirs[1])
  np.testing.assert_allclose(ours[0], 4.0, rtol=1e-5)
  with pytest.raises(ValueError, match="v0 must be given"):
    gtx.power_iteration(product)


@pytest.mark.parametrize("p, dtype", [(1, "float32"), (2, "float64"), (4, "float64"),
                                      (8, "float32")])
def test_matrix_inverse_pth_root_matches_optax_for_powers_of_two(p, dtype):
  with jax.enable_x64(dtype == "float64"):
    m = jnp.asarray(spd(5), dtype)
    (root, error), (expected, expected_error) = (
        f(m, p) for f in (gtx.matrix_inverse_pth_root, optax.matrix_inverse_pth_root))
    assert root.dtype == expected.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(root, expected, **TOL[dtype])
    np.testing.assert_allclose(error, expected_error, rtol=1e-5, atol=1e-7)
    # The float32 iteration constants bound the accuracy, as in Optax.
    np.testing.assert_allclose(root, exact_root(spd(5), p), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("p", [3, 5])
def test_matrix_inverse_pth_root_is_exact_where_optax_rounds_p_to_a_power_of_two(p):
  m = spd(5)
  exact = exact_root(m, p)
  ours, _ = gtx.matrix_inverse_pth_root(jnp.asarray(m, jnp.float32), p)
  theirs, _ = optax.matrix_inverse_pth_root(jnp.asarray(m, jnp.float32), p)
  relative = lambda x: np.abs(np.asarray(x) - exact).max() / np.abs(exact).max()  # noqa
  assert relative(ours) < 1e-4
  assert relative(theirs) > 0.05


def test_matrix_inverse_pth_root_with_a_traced_p_and_a_1x1_matrix():
  m = jnp.asarray(spd(4), jnp.float32)
  traced = jax.jit(gtx.matrix_inverse_pth_root)(m, jnp.float32(4))
  np.testing.assert_allclose(traced[0], optax.matrix_inverse_pth_root(m, 4)[0], rtol=1e-5,
                             atol=1e-6)
  one = jnp.asarray([[4.0]])
  np.testing.assert_allclose(gtx.matrix_inverse_pth_root(one, 2)[0],
                             optax.matrix_inverse_pth_root(one, 2)[0], rtol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rhs", ["vector", "matrix"])
def test_nnls_matches_optax_and_scipy(rhs, dtype):
  rng = np.random.default_rng(1)
  a = rng.normal(size=(8, 5))
  b = rng.normal(size=(8,) if rhs == "vector" else (8, 2))
  with jax.enable_x64(dtype == "float64"):
    A, B = jnp.asarray(a, dtype), jnp.asarray(b, dtype)  # noqa: N806
    for kwargs in (dict(iters=50), dict(iters=50, unroll=4, L=30.0)):
      ours, theirs = gtx.nnls(A, B, **kwargs), optax.nnls(A, B, **kwargs)
      assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
      np.testing.assert_allclose(ours, theirs, **TOL[dtype])
    solution = gtx.nnls(A, B, 3000)
  columns = b.reshape(8, -1).T
  exact = np.stack([scipy.optimize.nnls(a, column)[0] for column in columns], axis=-1)
  np.testing.assert_allclose(np.asarray(solution).reshape(5, -1), exact, atol=1e-4)
  assert np.all(np.asarray(solution) >= 0)


def test_nnls_checks_shapes():
  with pytest.raises(ValueError, match="nnls: A must be"):
    gtx.nnls(jnp.ones((3, 2)), jnp.ones(4), 5)
