"""Delta-bar-delta against a NumPy transcription of Jacobs 1988.

Oracle: ``dbd_rule`` below, the delta-bar-delta rule for one array: ``Delta eps = kappa``
where ``delta_bar(t-1) * delta(t) > 0``, ``-phi * eps`` where it is ``< 0`` (here
``decay = 1 - phi``), 0 otherwise; ``delta_bar(t) = (1-theta) delta(t) + theta
delta_bar(t-1)``; ``w -= lr * eps * delta``; with gradtx's clamp of ``eps`` to
``[min_gain, max_gain]`` (not in the paper). Trajectories over 60 steps on the mixed-shape
pytree, in float32 and float64, with ``oracles.tolerance``; one configuration drives gains
into both clamps (asserted from the oracle's counts). Hand-derived gain sequences for
short runs.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
from gradtx._src.delta_bar_delta import delta_bar_delta, scale_by_local_gain
from conftest import make_params
from oracles import assert_trajectories_close, reference_trajectory, trajectory


def dbd_rule(lr, kappa, decay, theta, min_gain=1e-3, max_gain=100.0, clamped=None):
  """Jacobs 1988, delta-bar-delta, for one array; counts the gains the clamp moved."""
  clamped = {"min": 0, "max": 0} if clamped is None else clamped

  def init(p):
    return np.ones_like(p), np.zeros_like(p)

  def rule(t, g, p, eps, delta_bar):
    del t, p
    agreement = delta_bar * g
    eps = np.where(agreement > 0, eps + kappa,
                   np.where(agreement < 0, eps * decay, eps))
    clamped["min"] += int(np.sum(eps < min_gain))
    clamped["max"] += int(np.sum(eps > max_gain))
    eps = np.clip(eps, min_gain, max_gain)
    delta_bar = (1 - theta) * g + theta * delta_bar
    return -lr * eps * g, eps, delta_bar

  return rule, init


# (learning_rate, increment, decay, theta, min_gain, max_gain)
CONFIGS = {
    "defaults": (0.02, 0.05, 0.95, 0.7, 1e-3, 100.0),
    "both_clamps": (0.05, 0.5, 0.5, 0.7, 0.2, 4.0),
    "last_gradient_only": (0.05, 0.1, 0.8, 0.0, 0.5, 2.0),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", CONFIGS)
def test_delta_bar_delta_matches_jacobs(config, dtype):
  lr, increment, decay, theta, min_gain, max_gain = CONFIGS[config]
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    clamped = {"min": 0, "max": 0}
    rule, init = dbd_rule(*CONFIGS[config], clamped=clamped)
    theirs = reference_trajectory(rule, init, params)
    if config == "defaults":
      tx = delta_bar_delta(lr, increment, decay, theta)
    else:
      tx = gtx.chain(scale_by_local_gain(increment, decay, theta, min_gain, max_gain),
                     gtx.scale_by_learning_rate(lr))
    assert_trajectories_close(trajectory(tx, params), theirs, dtype)
    if config == "both_clamps":
      assert clamped["min"] > 0 and clamped["max"] > 0, clamped


def test_gain_sequence_by_hand():
  """Gradients g, g, -g, -g, 0 with increment 0.25, decay 0.5, theta 0.5 (exact in
  binary). The trace starts at 0, so step 1 keeps the gain 1; then: agree (1.25);
  disagree with the trace g*(0.5+0.25) (0.625); the trace (0.375 - 0.5)g = -0.125g now
  agrees with -g (0.875); a zero gradient keeps the gain. Emits gain * u."""
  g = jnp.array([2.0, -1.0, 0.0])
  tx = scale_by_local_gain(0.25, 0.5, 0.5)
  state = tx.init(g)
  expected_gains = [1.0, 1.25, 0.625, 0.875, 0.875]
  for grad, gain in zip([g, g, -g, -g, 0 * g], expected_gains):
    updates, state = tx.update(grad, state)
    nonzero = np.asarray(g) != 0
    np.testing.assert_array_equal(np.asarray(state.gain)[nonzero], gain)
    np.testing.assert_array_equal(updates, gain * np.asarray(grad))
  # The zero coordinate never agrees or disagrees: its gain stays 1.
  assert float(state.gain[2]) == 1.0


def test_gains_are_clamped():
  """A constant gradient grows the gain by ``increment`` per step up to ``max_gain``; an
  alternating one shrinks it by ``decay`` down to ``min_gain``."""
  with jax.enable_x64(True):
    g = jnp.array([1.0, -3.0], jnp.float64)
    tx = scale_by_local_gain(0.5, 0.5, 0.5, min_gain=0.1, max_gain=3.0)
    state = tx.init(g)
    for t in range(1, 8):
      _, state = tx.update(g, state)
      np.testing.assert_array_equal(state.gain, min(1.0 + 0.5 * (t - 1), 3.0))
    for t in range(1, 8):
      _, state = tx.update(g * (-1.0)**t, state)
      np.testing.assert_array_equal(state.gain, max(3.0 * 0.5**t, 0.1))


def test_state_layout():
  """One gain and one trace per parameter; gains at least float32 (in bfloat16 an
  increment of 0.05 would be lost once the gain reaches 16)."""
  params = {"w": jnp.zeros((2, 3), jnp.bfloat16), "b": jnp.zeros(3)}
  state = scale_by_local_gain().init(params)
  assert state.gain["w"].dtype == jnp.float32 and state.trace["w"].dtype == jnp.bfloat16
  assert state.gain["b"].dtype == state.trace["b"].dtype == jnp.float32
  np.testing.assert_array_equal(state.gain["w"], 1.0)
  tx = scale_by_local_gain(increment=0.05, max_gain=100.0)
  state = tx.init(params)
  ones = jax.tree.map(jnp.ones_like, params)
  update = jax.jit(tx.update)
  for _ in range(400):
    _, state = update(ones, state)
  np.testing.assert_allclose(state.gain["w"], 1.0 + 0.05 * 399, rtol=1e-4)


@pytest.mark.parametrize("name, kwargs, message", [
    ("scale_by_local_gain", dict(increment=-0.5), "increment must be in [0, inf)"),
    ("scale_by_local_gain", dict(decay=0.0), "decay must be in (0, 1]"),
    ("scale_by_local_gain", dict(decay=1.5), "decay must be in (0, 1]"),
    ("scale_by_local_gain", dict(theta=1.0), "theta must be in [0, 1)"),
    ("scale_by_local_gain", dict(theta=-0.5), "theta must be in [0, 1)"),
    ("scale_by_local_gain", dict(min_gain=0.0), "min_gain must be in (0, inf)"),
    ("scale_by_local_gain", dict(max_gain=0.0), "max_gain must be in (0, inf]"),
    ("scale_by_local_gain", dict(min_gain=2.0, max_gain=1.0),
     "min_gain must be <= max_gain, got 2.0 > 1.0"),
    ("delta_bar_delta", dict(learning_rate=-0.1), "learning_rate must be in [0, inf)"),
    ("delta_bar_delta", dict(increment=-0.5), "increment must be in [0, inf)"),
    ("delta_bar_delta", dict(decay=0.0), "decay must be in (0, 1]"),
    ("delta_bar_delta", dict(theta=1.0), "theta must be in [0, 1)"),
])
def test_invalid_hyperparameters(name, kwargs, message):
  factory = {"scale_by_local_gain": scale_by_local_gain,
             "delta_bar_delta": delta_bar_delta}[name]
  if name == "delta_bar_delta":
    kwargs = {"learning_rate": 0.1, **kwargs}
  with pytest.raises(ValueError, match="^" + re.escape(f"{name}: {message}")):
    factory(**kwargs)


def test_max_gain_may_be_infinite():
  tx = scale_by_local_gain(increment=1.0, max_gain=float("inf"))
  g = jnp.ones(2)
  state = tx.init(g)
  for _ in range(5):
    _, state = tx.update(g, state)
  np.testing.assert_array_equal(state.gain, 5.0)
