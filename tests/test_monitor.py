"""``snapshot``, ``monitor`` and ``measure_with_ema`` against Optax 0.2.8.

Oracle: Optax's transforms of the same names in the same chains, step by step over 60
jitted steps on the mixed-shape tree, float32 and float64: a norm and a boolean
measurement averaged with debiasing (the defaults), a tree-valued measurement, a
measuring transform and an undebiased average in another dtype; the states' layout and
values after the steps (``MonitorState(measurements, measure_states)``,
``SnapshotState(measurement)``); the numbers of Optax's docstring example. An average
kept in float32 of float64 measurements agrees to float32 precision only (Optax rounds
``decay * ema`` to float32; gradtx computes it in float64).

One departure, tested against Optax: Optax's ``monitor`` starts with no measurements, so
its state changes structure at the first update; gradtx's starts with zeros of each
measurement's shape, so it can be a ``lax.scan`` carry.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import loss, make_params
from transform_pairs import DTYPES, compare, precision

LR = 0.02


def norm_above(m, threshold):
  return lambda u: m.tree.norm(u) > threshold


CASES = {
    "snapshot": lambda m: m.chain(m.sgd(LR, momentum=0.9), m.snapshot("norm", m.tree.norm),
                                  m.clip_by_global_norm(1.0)),
    "snapshot/tree": lambda m: m.chain(
        m.snapshot("abs", lambda u: jax.tree.map(jnp.abs, u)), m.sgd(LR)),
    "monitor": lambda m: m.chain(
        m.sgd(LR, momentum=0.9),
        m.monitor({"norm": m.tree.norm,
                   "clipped": m.measure_with_ema(norm_above(m, 1.0), 0.9)}),
        m.clip_by_global_norm(1.0)),
    "monitor/transform_and_undebiased": lambda m: m.chain(
        m.monitor({"trace": m.trace(0.5),
                   "norm_ema": m.measure_with_ema(m.tree.norm, 0.8, debias=False)}),
        m.sgd(LR)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  # Optax's monitor starts without measurements (see the departure test below).
  compare(CASES[name], dtype, init_state=not name.startswith("monitor"))


def test_a_narrower_accumulator_matches_optax_to_its_precision():
  """A float32 average of float64 measurements: Optax computes ``decay * ema`` in
  float32 (a Python float times a float32 array), gradtx in float64, so the emitted
  averages differ by float32 rounding; the stored averages are both float32."""
  make = lambda m: m.monitor({"norm": m.measure_with_ema(  # noqa: E731
      m.tree.norm, 0.8, debias=False, accumulator_dtype=jnp.float32)})
  with precision(jnp.float64):
    params = make_params(jnp.float64)
    states = []
    for m in (gtx, optax):
      tx = make(m)
      update, state = jax.jit(tx.update), tx.init(params)
      for k in range(20):
        _, state = update(jax.tree.map(lambda p: jnp.cos(p + k), params), state)
      states.append(state)
    ours, theirs = states
    assert ours.measure_states[0][1].ema.dtype == theirs.measure_states[0][1].ema.dtype \
        == jnp.float32
    np.testing.assert_allclose(ours.measurements["norm"], theirs.measurements["norm"],
                               rtol=1e-6)
    np.testing.assert_allclose(ours.measure_states[0][1].ema,
                               theirs.measure_states[0][1].ema, rtol=1e-6)


def test_state_classes_are_optaxs():
  assert gtx.MonitorState._fields == optax.MonitorState._fields
  assert gtx.SnapshotState._fields == optax.SnapshotState._fields


def test_optax_docstring_example():
  """Optax's monitor docstring: step=0 norm 7.48e-01, EMA 0; step=1 norm 1.27e+00, EMA
  5.26e-01."""
  solver = gtx.chain(
      gtx.sgd(learning_rate=0.1, momentum=0.9),
      gtx.monitor({"norm_before_clip": gtx.tree.norm,
                   "is_clipped_ema": gtx.measure_with_ema(norm_above(gtx, 1.0),
                                                          decay=0.9)}),
      gtx.clip_by_global_norm(1.0))
  params = jnp.array([1.0, 2.0, 3.0])
  state = solver.init(params)
  seen = []
  for _ in range(2):
    updates, state = solver.update(jax.grad(lambda x: jnp.sum(x**2))(params), state)
    params = gtx.apply_updates(params, updates)
    seen.append([float(gtx.tree.get(state, k)) for k in ("norm_before_clip",
                                                         "is_clipped_ema")])
  np.testing.assert_allclose(seen, [[0.748, 0.0], [1.27, 0.526]], rtol=5e-3)


def _scanned(m, steps=5):
  """``steps`` steps of a monitored SGD in a ``lax.scan`` whose carry holds the state."""
  tx = m.chain(m.monitor({"norm": m.tree.norm}), m.sgd(LR))

  def step(carry, _):
    params, state = carry
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return (m.apply_updates(params, updates), state), None

  params = make_params()
  return jax.lax.scan(step, (params, tx.init(params)), length=steps)[0]


def test_monitor_state_can_be_a_scan_carry_unlike_optaxs():
  with pytest.raises(TypeError, match="carry"):
    _scanned(optax)
  params, state = _scanned(gtx)
  # The same as a Python loop of Optax steps.
  tx = optax.chain(optax.monitor({"norm": optax.tree.norm}), optax.sgd(LR))

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params), state)
    return optax.apply_updates(params, updates), state

  expected_params = make_params()
  expected_state = tx.init(expected_params)
  for _ in range(5):
    expected_params, expected_state = step(expected_params, expected_state)
  for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(expected_params)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(state[0].measurements["norm"],
                             expected_state[0].measurements["norm"], rtol=1e-5)


def test_monitor_init_holds_zeros_of_each_measurements_shape():
  params = make_params()
  tx = gtx.monitor({"norm": gtx.tree.norm, "abs": lambda u: jax.tree.map(jnp.abs, u),
                    "ema": gtx.measure_with_ema(norm_above(gtx, 1.0), 0.9)})
  state = tx.init(params)
  _, after = tx.update(params, state, params)
  assert jax.tree.map(jax.typeof, state) == jax.tree.map(jax.typeof, after)
  assert all(not jnp.any(x) for x in jax.tree.leaves(state.measurements))


def test_a_boolean_measurement_is_averaged_as_a_float():
  with precision(jnp.float64):
    tx = gtx.measure_with_ema(norm_above(gtx, 1.0), 0.5)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    assert state[1].ema.dtype == jnp.float64
    average, state = tx.update(params, state)
    np.testing.assert_allclose(average, 1.0)


def test_measures_are_checked():
  with pytest.raises(TypeError, match=r"^monitor: measures\['a'\] must be a gradient"):
    gtx.monitor({"a": 1.0})
  with pytest.raises(TypeError, match=r"^measure_with_ema: measure must be callable"):
    gtx.measure_with_ema(1.0, 0.9)
  with pytest.raises(TypeError, match=r"^snapshot: measure must be callable"):
    gtx.snapshot("a", 1.0)
