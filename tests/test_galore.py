"""GaLore (``contrib.galore``, ``scale_by_galore``, ``GaLoreDimensionNumbers``) against
Optax 0.2.8, and the one departure: the SVD in float64 for float64 params.

Oracle: Optax, step by step over 60 jitted steps on the mixed-shape tree (the 4x3 matrix
projected, left; the cube projected as an 8x3 or a 2x12 matrix where dimension numbers
say so; the rest given to the base optimizer unprojected), float32 and float64, defaults
and configurations covering every argument (``tests/contrib_pairs.py``): the params of
every step, and the final state leaf by leaf, the projectors and the base optimizer's
low-rank moments with their shapes and dtypes.

Optax computes the SVD in float32 for every dtype (``grad.astype(jnp.float32)``), gradtx
in the gradient's precision. So in float64 the oracle is Optax with its SVD in float64:
its module's ``jnp`` seen through a namespace whose ``float32`` is ``float64`` (nothing
else of Optax changes); the float64 steps then agree to 1e-12.
``test_float64_svd_departure`` compares with unpatched Optax and shows what the float32
SVD costs: a projector orthonormal to 1e-7 only.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib._galore as optax_galore
import pytest

import gradtx as gtx
from conftest import make_params
from contrib_pairs import DTYPES, assert_same_state_class, compare, precision
from oracles import trajectory


class _Float64Svd(types.ModuleType):
  """``jax.numpy``, except that ``float32`` is ``float64``."""

  float32 = jnp.float64

  def __getattr__(self, name):
    return getattr(jnp, name)


@pytest.fixture
def svd_in_params_precision(monkeypatch):
  """Optax's GaLore with its SVD in float64 (under x64) instead of float32."""
  monkeypatch.setattr(optax_galore, "jnp", _Float64Svd("jax.numpy"))


not_scalar = lambda tree: jax.tree_util.tree_map_with_path(  # noqa: E731
    lambda path, _: "scalar" not in jax.tree_util.keystr(path), tree)


def _dims(m):
  """The matrix (4x3) as it is, the cube (2x3x4) as an 8x3 matrix (axes 0 and 2 are its
  rows): both projected on the left."""
  dims = m.contrib.GaLoreDimensionNumbers
  return {"scalar": None, "vector": None,
          "nested": {"matrix": dims(), "cube": dims(reduction_axis=(0, -1), output_axis=1)}}


def _right_dims(m):
  """A function of the params: the matrix transposed (3x4) and the cube as a 2x12
  matrix, both projected on the right."""
  dims = m.contrib.GaLoreDimensionNumbers
  return lambda params: {"scalar": None, "vector": None,
                         "nested": {"matrix": dims(1, 0), "cube": dims(0, (1, 2))}}


def _matrices(dtype):
  rng = np.random.default_rng(3)
  return {"a": jnp.asarray(rng.normal(size=(5, 3)), dtype),
          "b": jnp.asarray(rng.normal(size=(2, 6)), dtype),
          "v": jnp.asarray(rng.normal(size=(4,)), dtype)}


CASES = {
    # rank 128: the full rank of every matrix; the projector changes the basis only.
    "galore": (lambda m: m.contrib.galore(0.05), None),
    "galore/options": (lambda m: m.contrib.galore(
        lambda count: 0.05 / (1 + 0.05 * count), rank=2, update_proj_gap=7, scale=0.5,
        base_optimizer=m.scale_by_adam(b1=0.8, b2=0.99, nesterov=True),
        weight_decay=0.01, mask=not_scalar, weight_dimension_numbers=_dims(m)), None),
    "scale_by_galore/right": (lambda m: m.chain(m.contrib.scale_by_galore(
        rank=1, update_proj_gap=3, scale=2.0, base_optimizer=m.scale_by_rms(),
        weight_dimension_numbers=_right_dims(m)), m.scale(-0.02)), None),
    # One GaLoreDimensionNumbers for every param of rank >= 2 (here: transposed).
    "scale_by_galore/one_spec": (lambda m: m.chain(m.contrib.scale_by_galore(
        rank=2, update_proj_gap=4,
        weight_dimension_numbers=m.contrib.GaLoreDimensionNumbers(1, 0)), m.scale(-0.05)),
        _matrices),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype, request):
  if dtype == "float64":
    request.getfixturevalue("svd_in_params_precision")
  make, params = CASES[name]
  ours, theirs, moved = compare(make, dtype, params=params)
  assert moved > 1e-2
  assert_same_state_class(ours, theirs, "GaLoreState")


def _galore_state(state):
  return state[0] if isinstance(state, tuple) and not hasattr(state, "_fields") else state


def test_state_shapes_are_the_low_rank_ones():
  """Projectors (m, r) or (n, r), moments (r, n) or (m, r), as Optax's (checked against
  Optax's in test_matches_optax; written out here)."""
  params = make_params()
  left = gtx.contrib.galore(0.1, rank=2, weight_dimension_numbers=_dims(gtx)).init(params)[0]
  assert left.projector["nested"]["matrix"].shape == (4, 2)
  assert left.projector["nested"]["cube"].shape == (8, 2)
  assert left.projector["vector"].shape == (0, 0)
  assert left.base_optimizer_state.mu["nested"]["matrix"].shape == (2, 3)
  assert left.base_optimizer_state.nu["nested"]["cube"].shape == (2, 3)
  assert left.base_optimizer_state.mu["vector"].shape == (5,)
  right = gtx.contrib.scale_by_galore(rank=1, weight_dimension_numbers=_right_dims(gtx)
                                      ).init(params)
  assert right.projector["nested"]["matrix"].shape == (4, 1)
  assert right.projector["nested"]["cube"].shape == (12, 1)
  assert right.base_optimizer_state.mu["nested"]["matrix"].shape == (3, 1)
  assert right.base_optimizer_state.mu["nested"]["cube"].shape == (2, 1)


def test_projector_is_the_top_singular_vectors_and_kept_between_refreshes():
  g = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)), jnp.float32)
  tx = gtx.contrib.scale_by_galore(rank=2, update_proj_gap=3)
  state, update = tx.init(g), jax.jit(tx.update)
  projectors = []
  for k in range(4):
    _, state = update(g * (1 + k) + k * jnp.eye(6, 4), state)
    projectors.append(state.projector)
  u = np.linalg.svd(np.asarray(g, np.float64))[0][:, :2]
  np.testing.assert_allclose(np.abs(u.T @ np.asarray(projectors[0])), np.eye(2), atol=1e-5)
  assert (projectors[1] == projectors[0]).all() and (projectors[2] == projectors[0]).all()
  assert not np.allclose(projectors[3], projectors[0])  # refreshed at step 4 (count 3)


def test_float64_svd_departure():
  """Unpatched Optax in float64: within float32 precision of gradtx over 60 steps, with a
  projector orthonormal to ~1e-7 only; gradtx's is orthonormal to 1e-14."""
  make = lambda m: m.contrib.galore(0.05, rank=2, update_proj_gap=5)  # noqa: E731
  with precision("float64"):
    params = make_params(jnp.float64)
    ours, our_state = trajectory(make(gtx), params, 60, return_state=True)
    theirs, their_state = trajectory(make(optax), params, 60, return_state=True)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    gram = lambda p: np.asarray(p.T @ p) - np.eye(p.shape[1])  # noqa: E731
    our_p = our_state[0].projector["nested"]["matrix"]
    their_p = their_state[0].projector["nested"]["matrix"]
    assert our_p.dtype == their_p.dtype == jnp.float64
    assert np.abs(gram(our_p)).max() < 1e-14
    assert np.abs(gram(their_p)).max() > 1e-9
    assert not np.array_equal(np.asarray(ours[-1]["nested"]["matrix"]),
                              np.asarray(theirs[-1]["nested"]["matrix"]))


def test_bfloat16_params_keep_bfloat16_state_and_updates():
  params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), make_params())
  tx = gtx.contrib.galore(0.1, rank=2)
  state = tx.init(params)
  updates, new_state = jax.jit(tx.update)(jax.tree.map(jnp.cos, params), state, params)
  assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
  assert jax.tree.map(jax.typeof, new_state) == jax.tree.map(jax.typeof, state)
  assert state[0].projector["nested"]["matrix"].dtype == jnp.bfloat16


def test_errors():
  params = make_params()
  with pytest.raises(ValueError, match="^scale_by_galore: GaLore requires tensors with rank"):
    gtx.contrib.scale_by_galore(weight_dimension_numbers={
        "scalar": gtx.contrib.GaLoreDimensionNumbers(), "vector": None,
        "nested": {"matrix": None, "cube": None}}).init(params)
  with pytest.raises(ValueError, match="^scale_by_galore: all axes must be specified"):
    gtx.contrib.scale_by_galore(
        weight_dimension_numbers=gtx.contrib.GaLoreDimensionNumbers()).init(params)
  with pytest.raises(ValueError, match="^scale_by_galore: reduction axes .* disjoint"):
    gtx.contrib.scale_by_galore(
        weight_dimension_numbers=gtx.contrib.GaLoreDimensionNumbers(0, -2)).init(
            params["nested"]["matrix"])
  with pytest.raises(ValueError, match="^scale_by_galore: rank must be an integer >= 1"):
    gtx.contrib.scale_by_galore(rank=0)
  with pytest.raises(TypeError, match="^galore: base_optimizer must be a gradient"):
    gtx.contrib.galore(0.1, base_optimizer=gtx.scale_by_adam)


def test_empty_params():
  tx = gtx.contrib.galore(0.1)
  state = tx.init({})
  updates, _ = tx.update({}, state, {})
  assert updates == {}


def test_state_fields_are_optax():
  assert gtx.contrib.GaLoreState._fields == optax.contrib.GaLoreState._fields
  assert (gtx.contrib.GaLoreDimensionNumbers._fields
          == optax.contrib.GaLoreDimensionNumbers._fields)
  assert gtx.contrib.GaLoreDimensionNumbers() == optax.contrib.GaLoreDimensionNumbers()
