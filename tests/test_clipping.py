"""clip, clip_by_global_norm, global_norm and centralize against NumPy.

Oracles: NumPy in float64 on the same values (``np.clip``, ``np.linalg.norm``, the mean
over all axes but the last), and hand-derived cases. Optax parity of ``clip`` and
``clip_by_global_norm`` inside a trajectory is in test_optax_oracle.py; ``centralize``
deliberately departs from Optax: it averages over every axis but the last, the output
axis of JAX's ``(..., in, out)`` kernel layout, where Optax averages over every axis but
the first.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params


def mixed_tree(dtype=jnp.float32, seed=1):
  """``conftest.make_params`` plus a 4-D conv-kernel-like leaf ``(h, w, in, out)``."""
  tree = make_params(dtype, seed)
  kernel = np.random.default_rng(seed).normal(size=(3, 3, 2, 4))
  return {**tree, "kernel": jnp.asarray(kernel, dtype)}


def as_f64(tree):
  return [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("max_delta", [0.0, 0.3, 1.0, 100.0])
def test_clip_matches_numpy(max_delta, dtype):
  with jax.enable_x64(dtype == "float64"):
    updates = mixed_tree(jnp.dtype(dtype))
    out, _ = gtx.clip(max_delta).update(updates, gtx.clip(max_delta).init(updates))
    for o, u in zip(jax.tree.leaves(out), jax.tree.leaves(updates)):
      assert o.dtype == u.dtype
      expected = np.clip(np.asarray(u, np.float64), -max_delta, max_delta)
      np.testing.assert_array_equal(o, jnp.asarray(expected, u.dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_global_norm_matches_numpy(dtype):
  with jax.enable_x64(dtype == "float64"):
    updates = mixed_tree(jnp.dtype(dtype))
    expected = np.linalg.norm(np.concatenate([x.ravel() for x in as_f64(updates)]))
    norm = gtx.global_norm(updates)
    assert norm.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(norm, expected, rtol=1e-6 if dtype == "float32" else 1e-14)


def test_global_norm_of_bfloat16_leaves_accumulates_in_float32():
  """4096 values of ~1.1: their norm, ~70.4, summed and returned in bfloat16 (8 significant
  bits, spacing 0.5 there) is off by ~1e-3; float32 accumulation is good to ~1e-7."""
  rng = np.random.default_rng(0)
  values = [1.1 + 0.01 * rng.normal(size=(64, 64)), 0.5 + 0.01 * rng.normal(size=(7,))]
  tree = [jnp.asarray(v, jnp.bfloat16) for v in values]
  expected = np.linalg.norm(np.concatenate([x.ravel() for x in as_f64(tree)]))
  norm = gtx.global_norm(tree)
  assert norm.dtype == jnp.float32
  np.testing.assert_allclose(norm, expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clip_by_global_norm_below_threshold_is_exact_identity(dtype):
  with jax.enable_x64(dtype == "float64"):
    updates = mixed_tree(jnp.dtype(dtype))
    norm = float(gtx.global_norm(updates))
    tx = gtx.clip_by_global_norm(norm * 1.01)
    out, _ = tx.update(updates, tx.init(updates))
    for o, u in zip(jax.tree.leaves(out), jax.tree.leaves(updates)):
      assert o.dtype == u.dtype
      np.testing.assert_array_equal(o, u)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fraction", [0.999, 0.5, 1e-3])
def test_clip_by_global_norm_above_threshold_rescales(fraction, dtype):
  """``u * max_norm / ||u||`` (NumPy in float64); the result's norm is ``max_norm``."""
  with jax.enable_x64(dtype == "float64"):
    updates = mixed_tree(jnp.dtype(dtype))
    leaves = as_f64(updates)
    norm = np.linalg.norm(np.concatenate([x.ravel() for x in leaves]))
    max_norm = fraction * norm
    tx = gtx.clip_by_global_norm(max_norm)
    out, _ = tx.update(updates, tx.init(updates))
    rtol = 1e-6 if dtype == "float32" else 1e-13
    for o, u in zip(jax.tree.leaves(out), leaves):
      assert o.dtype == jnp.dtype(dtype)
      np.testing.assert_allclose(o, u * max_norm / norm, rtol=rtol)
    np.testing.assert_allclose(gtx.global_norm(out), max_norm, rtol=rtol)


def test_clip_by_global_norm_infinite_threshold_never_clips():
  updates = mixed_tree()
  tx = gtx.clip_by_global_norm(float("inf"))
  out, _ = tx.update(updates, tx.init(updates))
  for o, u in zip(jax.tree.leaves(out), jax.tree.leaves(updates)):
    np.testing.assert_array_equal(o, u)


def test_clip_by_global_norm_of_bfloat16_leaves():
  """bfloat16 leaves (mixed with a float32 one) come back in their own dtype, scaled by
  the float32 factor ``max_norm/||u||`` up to bfloat16's rounding of the result."""
  rng = np.random.default_rng(3)
  tree = {"big": jnp.asarray(1.0 + 0.01 * rng.normal(size=(64, 64)), jnp.bfloat16),
          "small": jnp.asarray(rng.normal(size=(5,)), jnp.bfloat16),
          "f32": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
  leaves = as_f64(tree)
  norm = np.linalg.norm(np.concatenate([x.ravel() for x in leaves]))
  tx = gtx.clip_by_global_norm(8.0)
  out, _ = tx.update(tree, tx.init(tree))
  for o, u, x in zip(jax.tree.leaves(out), jax.tree.leaves(tree), leaves):
    assert o.dtype == u.dtype
    rtol = 8e-3 if u.dtype == jnp.bfloat16 else 1e-6
    np.testing.assert_allclose(np.asarray(o, np.float64), x * 8.0 / norm, rtol=rtol)
  np.testing.assert_allclose(gtx.global_norm(out), 8.0, rtol=1e-2)


def centralized(x):
  """Gradient centralisation in JAX's kernel layout (the mean over every axis but the
  last, the output axis, is subtracted), in NumPy."""
  if x.ndim <= 1:
    return x
  return x - x.mean(axis=tuple(range(x.ndim - 1)), keepdims=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_centralize_matches_numpy(dtype):
  with jax.enable_x64(dtype == "float64"):
    updates = mixed_tree(jnp.dtype(dtype))
    out, _ = gtx.centralize().update(updates, gtx.centralize().init(updates))
    rtol, atol = (1e-6, 1e-6) if dtype == "float32" else (1e-13, 1e-14)
    for o, u in zip(jax.tree.leaves(out), as_f64(updates)):
      assert o.dtype == jnp.dtype(dtype) and o.shape == u.shape
      np.testing.assert_allclose(o, centralized(u), rtol=rtol, atol=atol)
      if u.ndim > 1:
        np.testing.assert_allclose(np.mean(np.asarray(o, np.float64),
                                           axis=tuple(range(u.ndim - 1))), 0.0, atol=atol)


def test_centralize_computes_bfloat16_leaves_in_float32():
  """The mean and the subtraction run in float32; only the result is rounded to bf16."""
  kernel = jnp.asarray(np.random.default_rng(1).normal(3.0, 1.0, size=(64, 3)), jnp.bfloat16)
  out, _ = gtx.centralize().update(kernel, gtx.centralize().init(kernel))
  assert out.dtype == jnp.bfloat16
  exact = centralized(np.asarray(kernel, np.float64))
  np.testing.assert_allclose(np.asarray(out, np.float64), exact, rtol=2.0**-8, atol=2.0**-10)


def test_centralize_by_hand():
  """A Dense kernel ``(in=2, out=2)``: each output column loses its mean;
  vectors and scalars pass unchanged."""
  updates = {"kernel": jnp.array([[1.0, 2.0], [3.0, 6.0]]), "bias": jnp.array([1.0, 5.0]),
             "scale": jnp.array(4.0)}
  out, _ = gtx.centralize().update(updates, gtx.centralize().init(updates))
  np.testing.assert_array_equal(out["kernel"], [[-1.0, -2.0], [1.0, 2.0]])
  np.testing.assert_array_equal(out["bias"], updates["bias"])
  np.testing.assert_array_equal(out["scale"], updates["scale"])


def test_centralize_departs_from_optax_layout():
  """Optax centralises over all axes but the first (torch's ``(out, in)``); gradtx over
  all axes but the last. They agree only after transposing the kernel."""
  kernel = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
  ours, _ = gtx.centralize().update(kernel, gtx.centralize().init(kernel))
  theirs, _ = optax.centralize().update(kernel.T, optax.centralize().init(kernel.T))
  assert not np.allclose(ours, optax.centralize().update(kernel, ())[0])
  np.testing.assert_allclose(ours, theirs.T, rtol=1e-6, atol=1e-6)
