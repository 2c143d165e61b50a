"""gtx.second_order against Optax 0.2.8's optax.second_order (the oracle) and against
the dense Hessian from ``jax.hessian`` (an independent oracle): hvp, hessian_diag and
fisher_diag on a small regression model whose params are a pytree of mixed shapes
(scalar, vector, matrix, 3-D), in float32 and float64, jitted."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import gradtx as gtx
from conftest import make_params

TOL = {"float32": dict(rtol=1e-6, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-12)}
DTYPES = [jnp.float32, jnp.float64]


def nll(params, inputs, targets):
  """A non-quadratic loss touching every leaf (so the Hessian is not diagonal)."""
  w = params["nested"]["matrix"]  # (4, 3)
  features = jnp.tanh(inputs @ w) * (1 + params["scalar"])  # (batch, 3)
  logits = features @ params["nested"]["cube"].reshape(3, 8)[:, :5] + params["vector"]
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), targets[:, None], 1))


def problem(dtype):
  rng = np.random.default_rng(0)
  params = make_params(dtype)
  inputs = jnp.asarray(rng.normal(size=(6, 4)), dtype)
  targets = jnp.asarray(rng.integers(0, 5, size=6))
  v = jnp.asarray(rng.normal(size=ravel_pytree(params)[0].size), dtype)
  return params, inputs, targets, v


def optax_call(name, *args):
  with warnings.catch_warnings():  # Optax deprecates these (removed in 0.2.9)
    warnings.simplefilter("ignore", DeprecationWarning)
    return jax.jit(getattr(optax.second_order, name), static_argnums=0)(*args)


def assert_close(ours, theirs, dtype):
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL[np.dtype(dtype).name])


@jax.jit
def dense_hessian(params, inputs, targets):
  flat, unravel = ravel_pytree(params)
  return jax.hessian(lambda f: nll(unravel(f), inputs, targets))(flat)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hvp_matches_optax_and_the_dense_hessian(dtype):
  with jax.enable_x64(dtype == jnp.float64):
    params, inputs, targets, v = problem(dtype)
    ours = jax.jit(gtx.second_order.hvp, static_argnums=0)(nll, v, params, inputs, targets)
    assert_close(ours, optax_call("hvp", nll, v, params, inputs, targets), dtype)
    dense = dense_hessian(params, inputs, targets) @ v
    np.testing.assert_allclose(ravel_pytree(ours)[0], dense, rtol=1e-4 if dtype ==
                               jnp.float32 else 1e-11, atol=1e-5 if dtype == jnp.float32
                               else 1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hessian_diag_matches_optax_and_the_dense_hessian(dtype):
  with jax.enable_x64(dtype == jnp.float64):
    params, inputs, targets, _ = problem(dtype)
    ours = jax.jit(gtx.second_order.hessian_diag, static_argnums=0)(nll, params, inputs,
                                                                    targets)
    assert ours.shape == (ravel_pytree(params)[0].size,)
    assert_close(ours, optax_call("hessian_diag", nll, params, inputs, targets), dtype)
    np.testing.assert_allclose(ours, jnp.diag(dense_hessian(params, inputs, targets)),
                               rtol=1e-4 if dtype == jnp.float32 else 1e-11,
                               atol=1e-5 if dtype == jnp.float32 else 1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fisher_diag_is_the_squared_gradient_as_in_optax(dtype):
  with jax.enable_x64(dtype == jnp.float64):
    params, inputs, targets, _ = problem(dtype)
    ours = gtx.second_order.fisher_diag(nll, params, inputs, targets)
    assert_close(ours, optax_call("fisher_diag", nll, params, inputs, targets), dtype)
    grad = ravel_pytree(jax.grad(nll)(params, inputs, targets))[0]
    np.testing.assert_array_equal(ours, grad**2)


def test_names_are_optaxs():
  assert sorted(gtx.second_order.__all__) == sorted(
      n for n in dir(optax.second_order) if not n.startswith("_"))
