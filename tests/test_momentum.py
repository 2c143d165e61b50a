"""add_momentum and bias_correction against NumPy transcriptions of their update rules.

Oracle: the update rules as the transforms' docstrings state them, transcribed for one
NumPy array and run leaf by leaf (``oracles.reference_trajectory``), over 60 steps on the
mixed-shape pytree, with the tolerances of ``oracles.tolerance``; and closed forms for a
constant gradient.
Optax parity of the heavy-ball, Nesterov and EMA traces is in test_optax_oracle.py; the
EMA-Nesterov combination has no Optax counterpart and is covered here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params
from oracles import assert_trajectories_close, reference_trajectory, trajectory

LR = 0.02
DECAY = 0.85
VARIANTS = [dict(), dict(nesterov=True), dict(ema=True), dict(ema=True, nesterov=True)]
IDS = ["heavy_ball", "nesterov", "ema", "ema_nesterov"]


def momentum_rule(decay, nesterov=False, ema=False):
  """The documented rule: ``m = decay*m + u`` (``ema``: ``decay*m + (1-decay)*u``);
  emits ``m``, or with ``nesterov`` ``u + decay*m`` (``ema``: ``(1-decay)*u + decay*m``)."""
  gain = (1 - decay) if ema else 1.0

  def rule(t, g, p, m):
    del t, p
    m = decay * m + gain * g
    emitted = gain * g + decay * m if nesterov else m
    return -LR * emitted, m

  return rule


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_add_momentum_matches_numpy(variant, dtype):
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    ours = trajectory(gtx.chain(gtx.add_momentum(DECAY, **variant), gtx.scale(-LR)), params)
    theirs = reference_trajectory(momentum_rule(DECAY, **variant),
                                  lambda p: (np.zeros_like(p),), params)
    assert_trajectories_close(ours, theirs, dtype)


# Closed forms for a constant gradient g after t steps (geometric sums of decay**k).
CONSTANT_GRADIENT = {
    "heavy_ball": lambda b, t: (1 - b**t) / (1 - b),
    "nesterov": lambda b, t: (1 - b**(t + 1)) / (1 - b),
    "ema": lambda b, t: 1 - b**t,
    "ema_nesterov": lambda b, t: 1 - b**(t + 1),
}


@pytest.mark.parametrize("variant, name", list(zip(VARIANTS, IDS)), ids=IDS)
def test_add_momentum_closed_form_for_a_constant_gradient(variant, name):
  """Hand-derived: e.g. with ``ema=True, nesterov=True`` the trace is ``(1-b**t) g`` and
  the emitted ``(1-b) g + b (1-b**t) g = (1 - b**(t+1)) g``."""
  with jax.enable_x64(True):
    g = {"a": jnp.array([1.0, -2.0, 0.5], jnp.float64), "b": jnp.array(3.0, jnp.float64)}
    tx = gtx.add_momentum(DECAY, **variant)
    state = tx.init(g)
    for t in range(1, 21):
      out, state = tx.update(g, state)
      for o, x in zip(jax.tree.leaves(out), jax.tree.leaves(g)):
        np.testing.assert_allclose(o, CONSTANT_GRADIENT[name](DECAY, t) * x, rtol=1e-13)


def test_ema_nesterov_first_step():
  """Hand-derived: from a zero trace, one step emits ``(1-b) u + b (1-b) u = (1-b**2) u``."""
  u = jnp.array([2.0, -4.0])
  tx = gtx.add_momentum(0.5, ema=True, nesterov=True)
  out, state = tx.update(u, tx.init(u))
  np.testing.assert_array_equal(out, [1.5, -3.0])
  np.testing.assert_array_equal(state.trace, [1.0, -2.0])


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.999])
def test_bias_correction_divides_by_one_minus_decay_power_t(decay):
  """The documented rule: ``u / (1 - decay**t)``, ``t`` counting this transform's calls
  from 1."""
  with jax.enable_x64(True):
    u = {"w": jnp.array([1.0, -3.0], jnp.float64), "b": jnp.array(0.25, jnp.float64)}
    tx = gtx.bias_correction(decay)
    state = tx.init(u)
    for t in range(1, 31):
      out, state = tx.update(u, state)
      assert int(state.count) == t
      for o, x in zip(jax.tree.leaves(out), jax.tree.leaves(u)):
        np.testing.assert_allclose(o, x / (1 - decay**t), rtol=1e-13)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bias_corrected_ema_of_a_constant_is_the_constant(dtype):
  """Hand-derived: ``(1-b**t) g / (1-b**t) = g`` at every step (Kingma & Ba 2015, §3)."""
  with jax.enable_x64(dtype == "float64"):
    g = make_params(jnp.dtype(dtype))
    tx = gtx.chain(gtx.add_momentum(0.9, ema=True), gtx.bias_correction(0.9))
    state = tx.init(g)
    for _ in range(50):
      out, state = tx.update(g, state)
      for o, x in zip(jax.tree.leaves(out), jax.tree.leaves(g)):
        assert o.dtype == x.dtype
        np.testing.assert_allclose(o, x, rtol=1e-5 if dtype == "float32" else 1e-13)


def test_bias_correction_is_not_rounded_to_bfloat16():
  """Hand-derived: ``1 - 0.999**1 = 1e-3``; in bfloat16 ``0.999`` rounds to 1 and the
  correction would divide by zero."""
  u = jnp.ones(3, jnp.bfloat16)
  tx = gtx.bias_correction(0.999)
  out, _ = tx.update(u, tx.init(u))
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), 1000.0, rtol=4e-3)


def test_add_momentum_accumulator_dtype():
  """The trace is stored in ``accumulator_dtype``; updates keep the params' dtype."""
  params = make_params()
  tx = gtx.add_momentum(0.9, accumulator_dtype=jnp.bfloat16)
  state = tx.init(params)
  assert all(m.dtype == jnp.bfloat16 for m in jax.tree.leaves(state.trace))
  out, state = tx.update(params, state)
  assert all(o.dtype == jnp.float32 for o in jax.tree.leaves(out))
  assert all(m.dtype == jnp.bfloat16 for m in jax.tree.leaves(state.trace))


def test_weakly_typed_float64_leaf_is_updated_in_float64():
  """Oracle: Optax's ``trace``. Under x64 a leaf made from a Python scalar
  (``jnp.array(3.0)``, or a bare ``3.0``) is a weakly typed float64; the protocol
  promises that float64 params are updated in float64. gradtx's ``map_leaves`` (now in
  ``gradtx._src.leafwise``) once chose the compute dtype with ``jnp.result_type(u, *xs,
  jnp.float32)``, in which float32 wins over a *weak* float64, so such leaves were
  computed in float32 and cast back (``5.55`` became ``5.55000019``)."""
  with jax.enable_x64(True):
    params = {"weak_array": jnp.array(3.0), "python_float": 2.0,
              "strong": jnp.array([3.0, 2.0], jnp.float64)}
    ours, theirs = gtx.add_momentum(0.85, nesterov=True), optax.trace(0.85, nesterov=True)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for _ in range(10):
      u_ours, s_ours = ours.update(params, s_ours)
      u_theirs, s_theirs = theirs.update(params, s_theirs)
      for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(u_ours),
                              jax.tree.leaves(u_theirs)):
        assert a.dtype == jnp.float64
        np.testing.assert_allclose(a, b, rtol=1e-13, err_msg=jax.tree_util.keystr(path))
