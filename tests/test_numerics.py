"""safe_norm, safe_root_mean_squares, safe_increment and scale_gradient.

Oracles: Optax 0.2.8's functions of the same names (values and gradients, exactly), and
closed forms (the gradient of a norm clamped from below is 0 under the clamp, ``x/||x||``
above it; ``scale_gradient``'s gradient is ``scale`` times the plain one).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx

X = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)
NORM_CASES = [
    dict(), dict(ord=1), dict(ord=jnp.inf), dict(axis=0), dict(axis=1, keepdims=True),
    dict(ord="fro", axis=(0, 1)), dict(ord=2, axis=-1),
]


@pytest.mark.parametrize("kwargs", NORM_CASES, ids=map(str, NORM_CASES))
@pytest.mark.parametrize("scale", [1.0, 0.0, 1e-3], ids=["large", "zero", "small"])
def test_safe_norm_matches_optax_in_value_and_gradient(kwargs, scale):
  x = scale * X
  min_norm = 0.5
  ours, theirs = (f(x, min_norm, **kwargs) for f in (gtx.safe_norm, optax.safe_norm))
  assert ours.shape == theirs.shape
  np.testing.assert_array_equal(ours, theirs)
  grads = [jax.grad(lambda x, f=f: jnp.sum(f(x, min_norm, **kwargs)))(x)
           for f in (gtx.safe_norm, optax.safe_norm)]
  assert np.all(np.isfinite(grads[0]))
  np.testing.assert_array_equal(*grads)


def test_safe_norm_gradient_is_zero_under_the_clamp_and_x_over_norm_above():
  small, large = 1e-3 * X, X
  np.testing.assert_array_equal(jax.grad(lambda x: gtx.safe_norm(x, 0.5))(small), 0.0)
  np.testing.assert_allclose(jax.grad(lambda x: gtx.safe_norm(x, 0.5))(large),
                             large / jnp.linalg.norm(large), rtol=1e-6)
  np.testing.assert_array_equal(jax.grad(lambda x: gtx.safe_norm(x, 0.0))(0 * X), 0.0)


@pytest.mark.parametrize("scale", [1.0, 0.0, 1e-3], ids=["large", "zero", "small"])
def test_safe_root_mean_squares_matches_optax(scale):
  x = scale * X
  np.testing.assert_array_equal(gtx.safe_root_mean_squares(x, 0.1),
                                optax.safe_root_mean_squares(x, 0.1))
  grads = [jax.grad(lambda x, f=f: f(x, 0.1))(x)
           for f in (gtx.safe_root_mean_squares, optax.safe_root_mean_squares)]
  assert np.all(np.isfinite(grads[0]))
  np.testing.assert_array_equal(*grads)
  complex_x = x + 1j * x[::-1]
  np.testing.assert_allclose(gtx.safe_root_mean_squares(complex_x, 0.1),
                             optax.safe_root_mean_squares(complex_x, 0.1), rtol=1e-7)


@pytest.mark.parametrize("dtype", ["int32", "float32", "int8"])
def test_safe_increment_saturates_like_optax(dtype):
  info = jnp.iinfo(dtype) if "int" in dtype else jnp.finfo(dtype)
  for count in (0, 5, info.max - 1, info.max):
    count = jnp.asarray(count, dtype)
    ours, theirs = gtx.safe_increment(count), optax.safe_increment(count)
    assert ours.dtype == theirs.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(ours, theirs)
  assert int(gtx.safe_increment(jnp.asarray(info.max, dtype))) == int(info.max)
  assert gtx.safe_int32_increment is gtx.safe_increment
  jitted = jax.jit(gtx.safe_increment)(jnp.asarray(3, dtype))
  np.testing.assert_array_equal(jitted, jnp.asarray(4, dtype))


def test_safe_increment_refuses_booleans():
  with pytest.raises(ValueError, match="safe_increment: cannot increment a count of dtype"):
    gtx.safe_increment(jnp.asarray(True))


@pytest.mark.parametrize("scale", [0.0, 1.0, 0.25, -2.0])
def test_scale_gradient_scales_only_the_gradient(scale):
  tree = {"a": X, "b": (jnp.arange(3.0),)}

  def f(t, fn):
    t = fn(t, scale)
    return jnp.sum(jnp.sin(t["a"])) + jnp.sum(t["b"][0] ** 2)

  plain = jax.grad(lambda t: f(t, lambda t, s: t))(tree)
  ours = jax.grad(lambda t: f(t, gtx.scale_gradient))(tree)
  theirs = jax.grad(lambda t: f(t, optax.scale_gradient))(tree)
  jax.tree.map(np.testing.assert_array_equal, ours, theirs)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, scale * b, rtol=1e-6), ours, plain)
  jax.tree.map(np.testing.assert_array_equal, gtx.scale_gradient(tree, scale), tree)
