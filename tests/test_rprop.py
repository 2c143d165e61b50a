"""Rprop against a NumPy transcription of Riedmiller & Braun 1993.

Oracle: the paper's update without weight backtracking, as torch.optim.Rprop implements
it (Igel & Hüsken 2000 call it Rprop-), transcribed for one NumPy array: where the
gradient kept its sign the step grows by ``eta_plus`` (at most ``max_step_size``), where
it flipped the step shrinks by ``eta_minus`` (at least ``min_step_size``), no move is made
and the gradient is forgotten (``dE/dw := 0``), so that the next step neither grows nor
shrinks; every other weight moves by ``-step * sign(g)``. Trajectories over 60 steps on
the mixed-shape pytree, with ``oracles.tolerance``; hand-derived sequences for short runs.
torch itself is the oracle in test_torch_oracle.py; Optax 0.2.8's ``rprop`` lags one step
(optax PR #1725) and is deliberately not followed.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
from conftest import make_params
from oracles import assert_trajectories_close, reference_trajectory, trajectory

# (learning_rate, eta_minus, eta_plus, min_step_size, max_step_size)
CONFIGS = {
    "defaults": (0.01, 0.5, 1.2, 1e-6, 50.0),
    "max_step_reached": (0.1, 0.3, 1.5, 1e-3, 0.2),
    "min_step_reached": (0.05, 0.5, 2.0, 0.02, 1.0),
}


def rprop_rule(lr, eta_minus, eta_plus, min_step, max_step):
  """Riedmiller & Braun 1993, Rprop without backtracking, for one array."""

  def init(p):
    return np.full_like(p, lr), np.zeros_like(p)

  def rule(t, g, p, step, prev):
    del t, p
    agreement = g * prev
    step = np.where(agreement > 0, np.minimum(step * eta_plus, max_step),
                    np.where(agreement < 0, np.maximum(step * eta_minus, min_step), step))
    g = np.where(agreement < 0, 0, g)
    return -np.sign(g) * step, step, g

  return rule, init


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", CONFIGS)
def test_rprop_matches_the_paper(config, dtype):
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    rule, init = rprop_rule(*CONFIGS[config])
    assert_trajectories_close(trajectory(gtx.rprop(*CONFIGS[config]), params),
                              reference_trajectory(rule, init, params), dtype)


def test_first_update_is_a_full_step():
  """Hand-derived: ``-lr * sign(g)`` at step 1 (Optax 0.2.8 emits 0 there)."""
  g = {"w": jnp.array([3.0, -0.1, 0.0]), "b": jnp.array(-2.0)}
  tx = gtx.rprop(0.25)
  updates, _ = tx.update(g, tx.init(g))
  np.testing.assert_array_equal(updates["w"], np.float32([-0.25, 0.25, 0.0]))
  np.testing.assert_array_equal(updates["b"], np.float32(0.25))


def test_sign_flip_skips_one_move_then_resumes():
  """Hand-derived with lr=1, eta=(0.5, 2): gradients g, -g, -g, -g move by
  ``-1, 0 (flip: step 0.5, gradient forgotten), +0.5 (no change), +1 (agreement)``
  times ``sign(g)``; a zero gradient never moves and keeps its step."""
  g = jnp.array([4.0, -1.0, 0.0])
  tx = gtx.rprop(1.0, eta_minus=0.5, eta_plus=2.0)
  state = tx.init(g)
  expected = [-1.0, 0.0, 0.5, 1.0]
  for k, grad in enumerate([g, -g, -g, -g]):
    updates, state = tx.update(grad, state)
    np.testing.assert_array_equal(updates, expected[k] * np.sign(np.asarray(g)))
  rprop_state, _ = state  # chain(scale_by_rprop, scale(-1))
  np.testing.assert_array_equal(rprop_state.step_sizes, [1.0, 1.0, 1.0])


@pytest.mark.parametrize("eta_plus, max_step", [(1.2, 50.0), (1.5, 0.2)])
def test_step_grows_geometrically_up_to_max(eta_plus, max_step):
  """Hand-derived: a constant gradient moves by ``min(lr * eta_plus**(t-1), max)``."""
  with jax.enable_x64(True):
    g = jnp.array([1.0, -3.0], jnp.float64)
    lr = 0.01
    tx = gtx.rprop(lr, eta_plus=eta_plus, max_step_size=max_step)
    state = tx.init(g)
    for t in range(1, 40):
      updates, state = tx.update(g, state)
      step = min(lr * eta_plus**(t - 1), max_step)
      np.testing.assert_allclose(updates, -step * np.sign(np.asarray(g)), rtol=1e-12)


def test_state_layout():
  """One step size and one remembered update per parameter, in the params' dtype."""
  params = make_params()
  state = gtx.scale_by_rprop(0.01).init(params)
  for field in (state.step_sizes, state.prev_updates):
    assert jax.tree.structure(field) == jax.tree.structure(params)
    for s, p in zip(jax.tree.leaves(field), jax.tree.leaves(params)):
      assert s.shape == p.shape and s.dtype == p.dtype
