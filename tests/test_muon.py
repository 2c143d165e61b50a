"""Muon (``contrib.muon``, ``scale_by_muon``, ``MuonDimensionNumbers``) against Optax
0.2.8, the Newton-Schulz iteration against its purpose, and Optax's failure on
``scale_by_muon``'s default dimension numbers.

Oracles: Optax, step by step over 60 jitted steps on the mixed-shape tree (the scalar and
the vector go to Adam, the matrix to Muon, the cube to Adam or, with dimension numbers,
to Muon as a batch or a flattened matrix), float32 and float64, defaults and
configurations covering every argument (``tests/contrib_pairs.py``); an SVD of the
orthogonalised matrix.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from contrib_pairs import DTYPES, assert_same_state_class, compare

not_scalar = lambda tree: jax.tree_util.tree_map_with_path(  # noqa: E731
    lambda path, _: "scalar" not in jax.tree_util.keystr(path), tree)


def _dims(m):
  """Muon for the matrix and for the cube (as one (2, 12) matrix); Adam for the rest."""
  dims = m.contrib.MuonDimensionNumbers
  return {"scalar": None, "vector": None,
          "nested": {"matrix": dims(), "cube": dims(reduction_axis=0, output_axis=(1, 2))}}


def _batched_dims(m):
  """A function of the params: the cube as a batch of two (4, 3) matrices (axis 0 is
  the batch), the vector and scalar to Adam (a prefix: one None for the subtree)."""
  dims = m.contrib.MuonDimensionNumbers
  return lambda params: {"scalar": None, "vector": None,
                         "nested": {"matrix": dims(1, 0), "cube": dims(2, -2)}}


CASES = {
    "muon": lambda m: m.contrib.muon(0.02),
    "muon/options": lambda m: m.contrib.muon(
        0.02, ns_coeffs="dion", beta=0.9, eps=1e-7, weight_decay=0.01,
        weight_decay_mask=not_scalar, nesterov=False, adaptive=True,
        preconditioning="aol", adam_b1=0.8, adam_b2=0.99, adam_eps_root=1e-12,
        adam_weight_decay=0.02, adam_learning_rate=lambda count: 0.01 / (1 + count),
        consistent_rms=0.2),
    "muon/dims": lambda m: m.contrib.muon(
        0.02, ns_coeffs=((3.0, -3.2, 1.2), (3.4445, -4.7750, 2.0315)), ns_steps=3,
        preconditioning="schatten", muon_weight_dimension_numbers=_dims(m)),
    "muon/batched_dims": lambda m: m.contrib.muon(
        lambda count: 0.02 / (1 + 0.1 * count), ns_steps=4, preconditioning="spectral",
        muon_weight_dimension_numbers=_batched_dims(m)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  ours, theirs, moved = compare(CASES[name], dtype)
  assert moved > 1e-2
  assert_same_state_class(ours, theirs, "MuonState")


def _matrices(dtype):
  rng = np.random.default_rng(1)
  return {"a": jnp.asarray(rng.normal(size=(4, 3)), dtype),
          "b": jnp.asarray(rng.normal(size=(2, 3, 5)), dtype)}


SCALE_BY_MUON = {
    # One matrix: Optax's default dimension numbers work for a single array.
    "scale_by_muon": (lambda m: m.chain(m.contrib.scale_by_muon(), m.scale(-0.05)),
                      lambda dtype: jnp.asarray(np.random.default_rng(2).normal(size=(5, 3)),
                                                dtype)),
    "scale_by_muon/options": (lambda m: m.chain(m.contrib.scale_by_muon(
        ns_coeffs=(3.0, -3.2, 1.2), ns_steps=6, beta=0.9, eps=1e-6, nesterov=False,
        adaptive=True, weight_dimension_numbers={
            "a": m.contrib.MuonDimensionNumbers(),
            "b": m.contrib.MuonDimensionNumbers((0, 1), 2)}), m.scale(-0.05)), _matrices),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SCALE_BY_MUON)
def test_scale_by_muon_matches_optax(name, dtype):
  make, params = SCALE_BY_MUON[name]
  ours, theirs, moved = compare(make, dtype, params=params)
  assert moved > 1e-2
  assert_same_state_class(ours, theirs, "MuonState")


def test_a_low_precision_momentum_is_decayed_in_float32():
  """mu_dtype=bfloat16 stores M in bfloat16; gradtx computes beta M + (1 - beta) G in
  float32 from the stored M (as its other transforms: at least float32), where Optax
  multiplies beta M in bfloat16 (a Python float times a bfloat16 array) first."""
  rng = np.random.default_rng(3)
  params = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
  g1, g2 = (jnp.asarray(rng.normal(size=(3, 2)), jnp.float32) for _ in range(2))
  beta = 0.95
  stored = {}
  for m in (gtx, optax):
    tx = m.contrib.scale_by_muon(beta=beta, mu_dtype=jnp.bfloat16)
    state = tx.init(params)
    for g in (g1, g2):
      _, state = tx.update(g, state)
    stored[m.__name__] = np.asarray(state.mu, np.float32)
  mu1 = np.asarray(jnp.asarray((1 - beta) * g1).astype(jnp.bfloat16), np.float32)
  wide = (1 - beta) * np.asarray(g2) + np.float32(beta) * mu1
  narrow = (1 - beta) * np.asarray(g2) + np.asarray(
      beta * jnp.asarray(mu1).astype(jnp.bfloat16), np.float32)  # beta rounded too
  as_bf16 = lambda x: np.asarray(jnp.asarray(x, jnp.float32).astype(jnp.bfloat16),  # noqa: E731
                                 np.float32)
  np.testing.assert_array_equal(stored["gradtx"], as_bf16(wide))
  np.testing.assert_array_equal(stored["optax"], as_bf16(narrow))


def test_default_dimension_numbers_on_a_tree_where_optax_fails():
  """scale_by_muon(): "None implies that all parameters are 2D matrices"; Optax 0.2.8
  maps over the updates and None together, which fails for any tree but a single array.
  gradtx treats every leaf as a (reduction, output) matrix, as the explicit tree does."""
  params = {"a": jnp.ones((3, 4)), "b": jnp.eye(2)}
  with pytest.raises(ValueError):
    tx = optax.contrib.scale_by_muon()
    tx.update(params, tx.init(params))
  explicit = gtx.contrib.scale_by_muon(weight_dimension_numbers={
      "a": gtx.contrib.MuonDimensionNumbers(), "b": gtx.contrib.MuonDimensionNumbers()})
  default = gtx.contrib.scale_by_muon()
  for x, y in zip(jax.tree.leaves(default.update(params, default.init(params))[0]),
                  jax.tree.leaves(explicit.update(params, explicit.init(params))[0])):
    np.testing.assert_array_equal(x, y)


def test_a_none_entry_passes_its_update_through():
  params = {"w": jnp.asarray([[1.0, 2.0], [3.0, -1.0]]), "b": jnp.asarray([0.5, -0.5])}
  tx = gtx.contrib.scale_by_muon(
      weight_dimension_numbers={"w": gtx.contrib.MuonDimensionNumbers(), "b": None})
  updates, state = tx.update(params, tx.init(params), params)
  np.testing.assert_array_equal(updates["b"], params["b"])
  np.testing.assert_array_equal(state.mu["b"], jnp.zeros(2))


def test_newton_schulz_pushes_the_singular_values_towards_one():
  """M_hat = U diag(3, 1, 0.2) V^T: five quintic steps give U S' V^T with S' in
  [0.5, 1.5] (Jordan) and the same singular vectors."""
  rng = np.random.default_rng(0)
  u, _ = np.linalg.qr(rng.normal(size=(6, 3)))
  v, _ = np.linalg.qr(rng.normal(size=(3, 3)))
  m = (u * np.asarray([3.0, 1.0, 0.2])) @ v.T
  tx = gtx.contrib.scale_by_muon(beta=0.0, nesterov=False)
  with jax.enable_x64(True):
    o = np.asarray(tx.update(jnp.asarray(m), tx.init(jnp.asarray(m)))[0])
  s = np.linalg.svd(o, compute_uv=False)
  assert 0.5 <= s.min() and s.max() <= 1.5, s
  np.testing.assert_allclose(u @ (u.T @ o), o, atol=1e-12)  # same left singular space
  assert np.linalg.norm(o.T @ o - np.eye(3)) < 1.0


def test_coefficients_are_checked_at_construction():
  with pytest.raises(ValueError, match=r"^scale_by_muon: ns_coeffs must have shape \(3,\)"):
    gtx.contrib.scale_by_muon(ns_coeffs=(1.0, 2.0))
  with pytest.raises(ValueError, match="^scale_by_muon: ns_coeffs has 5 rows, one per step, "
                     "more than ns_steps=3"):
    gtx.contrib.muon(0.1, ns_coeffs="dion", ns_steps=3)
  with pytest.raises(ValueError, match="^muon: unknown ns_coeffs preset 'muon'"):
    gtx.contrib.muon(0.1, ns_coeffs="muon")
  with pytest.raises(ValueError, match="^muon: preconditioning must be one of"):
    gtx.contrib.muon(0.1, preconditioning="polar")


def test_classes_are_optax():
  assert gtx.contrib.MuonState._fields == optax.contrib.MuonState._fields
  assert gtx.contrib.MuonDimensionNumbers() == (0, 1)
  assert (gtx.contrib.MuonDimensionNumbers._fields
          == optax.contrib.MuonDimensionNumbers._fields)
