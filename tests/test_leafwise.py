"""The per-array builder, ``gtx.leafwise``: per-leaf state of any shape, leaves that opt
out, counting, and the errors it gives for trees, shapes and dtypes that do not fit.

Oracle: NumPy transcriptions of the rules, run over many steps on a tree of mixed shapes
(scalar, vector, matrix, 3-D) in float32 and float64.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx

SHAPES = {"scalar": (), "vector": (3,), "matrix": (4, 5), "cube": (2, 3, 4)}
STEPS = 30


def make_tree(dtype, seed):
  rng = np.random.default_rng(seed)
  return {k: jnp.asarray(rng.normal(size=s), dtype) for k, s in SHAPES.items()}


class FactoredState(NamedTuple):
  count: jax.Array
  v: Any  # per leaf: (row, col) for leaves of rank >= 2, a full moment otherwise


def factored_rms(decay=0.8, eps=1e-6):
  """A factored second moment (Shazeer & Stern 2018's idea, simplified): for a leaf of
  rank >= 2 keep the EMA of the squares' means over the last axis and over the one
  before it, and normalise by their outer product over their mean; else a full EMA."""

  def init(p):
    if p.ndim >= 2:
      return (gtx.tree_utils.tree_zeros_like(p[..., 0]),
              gtx.tree_utils.tree_zeros_like(p[..., 0, :]))
    return gtx.tree_utils.tree_zeros_like(p)

  def rule(u, v, *, decay, c):
    sq = u * u + eps
    if u.ndim >= 2:
      row, col = v
      row = decay * row + (1 - decay) * sq.mean(-1)
      col = decay * col + (1 - decay) * sq.mean(-2)
      v_hat = (row[..., None] * col[..., None, :]
               / row.mean(-1)[..., None, None]) / c
      return u / jnp.sqrt(v_hat), (row, col)
    v = decay * v + (1 - decay) * sq
    return u / jnp.sqrt(v / c), v

  return gtx.leafwise("factored_rms", rule, state=FactoredState, init=init,
                      hyperparams=dict(decay=decay),
                      scalars=lambda count: dict(c=1 - decay**(count + 1)))


def numpy_factored_rms(grads, decay=0.8, eps=1e-6):
  """The same rule, written for NumPy arrays, one step per gradient tree."""
  state, out = {}, []
  for t, tree in enumerate(grads, start=1):
    c = 1 - decay**t
    step = {}
    for k, u in tree.items():
      u = np.asarray(u, np.float64)
      sq = u * u + eps
      if u.ndim >= 2:
        row, col = state.get(k, (np.zeros(u.shape[:-1]), np.zeros(u.shape[:-2] + u.shape[-1:])))
        row = decay * row + (1 - decay) * sq.mean(-1)
        col = decay * col + (1 - decay) * sq.mean(-2)
        state[k] = (row, col)
        v_hat = row[..., None] * col[..., None, :] / row.mean(-1)[..., None, None] / c
      else:
        v = decay * state.get(k, np.zeros(u.shape)) + (1 - decay) * sq
        state[k] = v
        v_hat = v / c
      step[k] = u / np.sqrt(v_hat)
    out.append(step)
  return out


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_factored_state_matches_numpy(dtype):
  with jax.enable_x64(dtype == jnp.float64):
    params = make_tree(dtype, 0)
    tx = factored_rms()
    state = tx.init(params)
    assert state.v["matrix"][0].shape == (4,) and state.v["matrix"][1].shape == (5,)
    assert state.v["cube"][0].shape == (2, 3) and state.v["cube"][1].shape == (2, 4)
    assert state.v["vector"].shape == (3,)
    grads = [make_tree(dtype, seed) for seed in range(1, STEPS + 1)]
    update = jax.jit(tx.update)
    expected = numpy_factored_rms(grads)
    rtol = 1e-5 if dtype == jnp.float32 else 1e-12
    for t, (g, want) in enumerate(zip(grads, expected)):
      updates, state = update(g, state)
      assert int(state.count) == t + 1
      for k in SHAPES:
        assert updates[k].dtype == dtype
        np.testing.assert_allclose(updates[k], want[k], rtol=rtol, err_msg=f"{k} step {t}")


def test_opted_out_leaves_pass_through_with_zero_size_state():
  tx = gtx.leafwise("matrix_trace", lambda u, m, *, decay: (decay * m + u,) * 2,
                    state=gtx.AddMomentumState, init=gtx.tree_utils.tree_zeros_like,
                    hyperparams=dict(decay=0.5), applies_to=lambda p: jnp.ndim(p) >= 2)
  params = make_tree(jnp.float32, 0)
  state = tx.init(params)
  assert state.trace["vector"].shape == (0,) and state.trace["scalar"].shape == (0,)
  assert state.trace["matrix"].shape == (4, 5)
  grads = make_tree(jnp.float32, 1)
  for _ in range(3):
    updates, state = jax.jit(tx.update)(grads, state)
  np.testing.assert_array_equal(updates["vector"], grads["vector"])
  np.testing.assert_array_equal(updates["scalar"], grads["scalar"])
  np.testing.assert_allclose(updates["matrix"], 1.75 * grads["matrix"], rtol=1e-6)


def test_a_leaf_of_another_shape_is_named_with_both_shapes():
  tx = gtx.adam(0.1)
  state = tx.init({"w": jnp.zeros(3), "b": jnp.zeros(())})
  with pytest.raises(ValueError, match=r"scale_by_adam: the update at \['w'\] has shape "
                     r"\(1,\).*\[\(3,\)\]"):
    tx.update({"w": jnp.ones(1), "b": jnp.ones(())}, state)
  with pytest.raises(ValueError, match=r"\['w'\] has shape \(2, 3\)"):
    tx.update({"w": jnp.ones((2, 3)), "b": jnp.ones(())}, state)


def test_a_factored_state_of_another_shape_is_named():
  tx = factored_rms()
  state = tx.init({"m": jnp.zeros((4, 5))})
  with pytest.raises(ValueError, match=r"factored_rms: the update at \['m'\] has shape "
                     r"\(4, 6\).*\(4,\), \(5,\).*\(4,\), \(6,\)"):
    tx.update({"m": jnp.ones((4, 6))}, state)


def test_an_update_that_does_not_fit_its_param_is_named():
  tx = gtx.add_decayed_weights(0.1)
  with pytest.raises(ValueError, match=r"the update at \['b'\] has shape \(1,\) but its "
                     r"param has shape \(3,\)"):
    tx.update({"b": jnp.ones(1)}, tx.init({"b": jnp.ones(3)}), {"b": jnp.ones(3)})


def test_another_tree_structure_shows_both():
  tx = gtx.sgd(0.1, momentum=0.9)
  state = tx.init({"a": jnp.zeros(2)})
  with pytest.raises(ValueError, match="tree structure of the updates differs"):
    tx.update({"b": jnp.zeros(2)}, state)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_and_boolean_params_and_updates_are_rejected(dtype):
  params = {"w": jnp.ones(2), "steps": jnp.zeros(3, dtype)}
  with pytest.raises(TypeError, match=r"sgd|scale.*the param at \['steps'\] has dtype"):
    gtx.sgd(0.5).init(params)
  tx = gtx.sgd(0.5)
  state = tx.init({"w": jnp.ones(2)})
  with pytest.raises(TypeError, match=r"the update at \['w'\] has dtype int32"):
    tx.update({"w": jnp.array([3, 3], jnp.int32)}, state)


def test_integer_leaves_can_be_kept_out_with_a_mask():
  params = {"w": jnp.ones(2), "steps": jnp.zeros(3, jnp.int32)}
  tx = gtx.masked(gtx.adam(0.1), lambda p: jax.tree.map(
      lambda x: jnp.issubdtype(x.dtype, jnp.floating), p))
  grads = {"w": jnp.ones(2), "steps": jnp.zeros(3, jnp.int32)}
  updates, _ = tx.update(grads, tx.init(params), params)
  assert updates["steps"].dtype == jnp.int32
  np.testing.assert_allclose(updates["w"], -0.1, rtol=1e-4)  # b2**t rounds in float32


def test_rule_sees_at_least_float32_and_results_keep_the_param_dtype():
  seen = []

  def rule(u, m, *, decay):
    seen.append((u.dtype, m.dtype))
    return u + decay * m, u + decay * m

  tx = gtx.leafwise("trace", rule, state=gtx.AddMomentumState,
                    init=gtx.tree_utils.tree_zeros_like, hyperparams=dict(decay=0.999))
  params = {"w": jnp.ones(3, jnp.bfloat16)}
  updates, state = tx.update(params, tx.init(params))
  assert seen == [(jnp.float32, jnp.float32)]
  assert updates["w"].dtype == jnp.bfloat16 and state.trace["w"].dtype == jnp.bfloat16


def test_builder_misuse_is_reported_at_construction():
  with pytest.raises(TypeError, match="give init"):
    gtx.leafwise("x", lambda u, m: (u, m), state=gtx.AddMomentumState)
  with pytest.raises(TypeError, match="scalars.*count"):
    gtx.leafwise("x", lambda u: u, scalars=lambda count: {})
