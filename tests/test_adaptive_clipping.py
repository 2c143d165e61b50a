"""Per-block RMS clipping, adaptive gradient clipping and per-example clipping against
Optax 0.2.8.

Oracles: Optax's transforms of the same names, step by step over 60 jitted steps on the
mixed-shape tree (scalar, vector, matrix, 3-D), float32 and float64, defaults and a
non-default configuration (AGC over given axes on a tree without its scalar, which has
no axis 0); Optax's ``unitwise_norm``/``unitwise_clip`` on arrays of every rank it
knows; Optax's per-example clips on a batch of per-example gradients of a small model
(thresholds 0, one that clips some examples, inf). The papers' definitions are checked
on hand-made values.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params
from optax_state_oracle import compare

LR = 0.02


def descending(make):
  return lambda m: m.chain(make(m), m.scale(-LR))


CASES = {
    "clip_by_block_rms": descending(lambda m: m.clip_by_block_rms(1.0)),
    "clip_by_block_rms/tight": descending(lambda m: m.clip_by_block_rms(0.05)),
    "adaptive_grad_clip": descending(lambda m: m.adaptive_grad_clip(0.1)),
    "adaptive_grad_clip/eps": descending(lambda m: m.adaptive_grad_clip(0.5, eps=0.3)),
}
# Given axes need leaves that have them: no scalar (and for two axes, no vector).
NO_SCALAR_CASES = {
    "adaptive_grad_clip/axis": descending(lambda m: m.adaptive_grad_clip(0.1, axis=0)),
    "adaptive_grad_clip/axes": descending(lambda m: m.adaptive_grad_clip(0.2, eps=1e-2,
                                                                         axis=(0, -1))),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", [*CASES, *NO_SCALAR_CASES])
def test_matches_optax(name, dtype):
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    if name in NO_SCALAR_CASES:
      del params["scalar"]
      if name.endswith("/axes"):
        del params["vector"]
      params["nested"]["cube"] = params["nested"]["cube"][None]  # 4-D
    compare({**CASES, **NO_SCALAR_CASES}[name], params, dtype)


def test_state_classes_are_optax_aliases():
  for name in ["ClipState", "ClipByGlobalNormState", "AdaptiveGradClipState"]:
    assert getattr(gtx, name) is gtx.EmptyState
    assert getattr(gtx, name)._fields == getattr(optax, name)._fields
  for name in ["adaptive_grad_clip", "clip_by_block_rms", "per_example_global_norm_clip",
               "per_example_layer_norm_clip", "unitwise_clip", "unitwise_norm"]:
    assert hasattr(gtx.transforms, name) and hasattr(optax.transforms, name)
    top_level = getattr(gtx, name, None)
    assert top_level is None or top_level is getattr(gtx.transforms, name)
    assert (top_level is None) == (not hasattr(optax, name))


@pytest.mark.parametrize("shape", [(), (5,), (1, 4), (4, 3), (2, 3, 4), (2, 2, 3, 4),
                                   (2, 1, 2, 3, 2)])
@pytest.mark.parametrize("axis", [None, -1])
def test_unitwise_norm_and_clip_match_optax(shape, axis):
  if shape == () and axis is not None:
    return
  rng = np.random.default_rng(len(shape))
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  g = jnp.asarray(rng.normal(size=shape), jnp.float32)
  ours = gtx.transforms.unitwise_norm(x, axis=axis)
  theirs = optax.transforms.unitwise_norm(x, axis=axis)
  assert ours.shape == theirs.shape == x.shape
  np.testing.assert_allclose(ours, theirs, rtol=1e-6)
  max_norm = 0.5 * ours
  np.testing.assert_allclose(
      gtx.transforms.unitwise_clip(gtx.transforms.unitwise_norm(g, axis), max_norm, g),
      optax.transforms.unitwise_clip(optax.transforms.unitwise_norm(g, axis), max_norm, g),
      rtol=1e-6)


def test_unitwise_norm_refuses_six_dimensions_without_axes():
  with pytest.raises(ValueError, match="give axis="):
    gtx.transforms.unitwise_norm(jnp.ones((1, 2, 1, 2, 1, 2)))
  assert gtx.transforms.unitwise_norm(jnp.ones((1, 2, 1, 2, 1, 2)), axis=1).shape == (
      1, 2, 1, 2, 1, 2)


def test_agc_clips_each_unit_to_a_fraction_of_its_weights_norm():
  """Brock et al. 2021, eq. 3, per output unit (a column of an (in, out) kernel):
  g -> lambda * max(||w||, eps) / ||g|| * g where ||g|| / max(||w||, eps) > lambda."""
  w = jnp.asarray([[3.0, 0.0], [4.0, 0.0]])  # column norms 5 and 0 (-> eps)
  g = jnp.asarray([[0.3, 1.0], [0.4, 0.0]])  # column norms 0.5 and 1
  tx = gtx.adaptive_grad_clip(0.05, eps=1e-3)
  updates, _ = tx.update(g, tx.init(w), w)
  np.testing.assert_allclose(updates[:, 0], 0.25 / 0.5 * g[:, 0], rtol=1e-6)
  np.testing.assert_allclose(updates[:, 1], 0.05 * 1e-3 / 1.0 * g[:, 1], rtol=1e-6)
  loose = gtx.adaptive_grad_clip(1.0)
  np.testing.assert_allclose(loose.update(g, loose.init(w), w)[0][:, 0], g[:, 0])


def test_block_rms_clip():
  u = {"a": jnp.asarray([3.0, -4.0]), "b": jnp.asarray([0.1, 0.1])}  # rms 3.54, 0.1
  tx = gtx.clip_by_block_rms(1.0)
  clipped, _ = tx.update(u, tx.init(u))
  np.testing.assert_allclose(jnp.sqrt(jnp.mean(clipped["a"]**2)), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(clipped["b"], u["b"])


# --- per-example clipping ------------------------------------------------------------


def per_example_grads(dtype):
  """Per-example gradients of a small model, batch of 6 on axis 0 of every leaf."""
  rng = np.random.default_rng(3)
  params = {"w": jnp.asarray(rng.normal(size=(4, 3)), dtype),
            "b": jnp.asarray(rng.normal(size=(3,)), dtype),
            "s": jnp.asarray(0.7, dtype)}
  xs = jnp.asarray(rng.normal(size=(6, 4)) * np.arange(1, 7)[:, None], dtype)

  def example_loss(p, x):
    return jnp.sum(jnp.tanh(x @ p["w"] + p["b"]) ** 2) * p["s"]

  return jax.vmap(jax.grad(example_loss), in_axes=(None, 0))(params, xs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("clip", [0.0, 3.0, float("inf")])
def test_per_example_global_norm_clip_matches_optax(clip, dtype):
  with jax.enable_x64(dtype == "float64"):
    grads = per_example_grads(jnp.dtype(dtype))
    ours = jax.jit(gtx.per_example_global_norm_clip)(grads, clip)
    theirs = jax.jit(optax.per_example_global_norm_clip)(grads, clip)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
      assert a.dtype == b.dtype and a.shape == b.shape
      np.testing.assert_allclose(a, b, rtol=1e-12 if dtype == "float64" else 1e-6)
    if 0 < clip < float("inf"):
      assert 0 < int(ours[1]) < 6  # some examples clipped, not all: both branches taken


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("clip", [0.0, 3.0])
def test_per_example_layer_norm_clip_matches_optax(clip, uniform, dtype):
  with jax.enable_x64(dtype == "float64"):
    grads = per_example_grads(jnp.dtype(dtype))
    ours = jax.jit(gtx.per_example_layer_norm_clip, static_argnums=2)(grads, clip, uniform)
    theirs = jax.jit(optax.per_example_layer_norm_clip, static_argnums=2)(grads, clip,
                                                                          uniform)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
      assert a.dtype == b.dtype and a.shape == b.shape
      np.testing.assert_allclose(a, b, rtol=1e-12 if dtype == "float64" else 1e-6)


def test_per_example_clip_is_dp_sgds():
  """Abadi et al. 2016, Algorithm 1: each example scaled by min(1, C / ||g_i||), summed
  (Optax's docstring example)."""
  grads = [jnp.array([[0, 0, 0], [0, 3, 4], [4, 0, 3], [3, 4, 0]])]
  total, clipped = gtx.per_example_global_norm_clip(grads, 1.25)
  np.testing.assert_allclose(total[0], [1.75, 1.75, 1.75])
  assert int(clipped) == 3
  total, clipped = gtx.per_example_layer_norm_clip(grads, jnp.inf)
  np.testing.assert_allclose(total[0], [7.0, 7.0, 7.0])
  assert [int(c) for c in clipped] == [0]


def test_per_example_clip_needs_a_batch_axis():
  with pytest.raises(ValueError, match="batch of examples on axis 0"):
    gtx.per_example_global_norm_clip({"a": jnp.ones((3, 2)), "b": jnp.ones((2,))}, 1.0)
  with pytest.raises(ValueError, match="l2_norm_clip must be in"):
    gtx.per_example_global_norm_clip({"a": jnp.ones((3, 2))}, -1.0)
