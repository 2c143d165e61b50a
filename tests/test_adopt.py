"""ADOPT (``contrib.adopt``, ``contrib.scale_by_adopt``) against Optax 0.2.8, its first
steps against the paper, and the one departure (a bfloat16 ``mu_dtype`` momentum decayed
by ``b1`` rounded to bfloat16 in Optax).

Oracle: Optax, step by step over 60 jitted steps on the mixed-shape tree, float32 and
float64, defaults and configurations changing every argument (``tests/contrib_pairs.py``:
initial state, params after every step, final state leaf by leaf); Taniguchi et al.
2024, Algorithm 1 (the first gradient only initialises ``nu``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import loss, make_params
from contrib_pairs import DTYPES, assert_same_state_class, compare

CASES = {
    "adopt": lambda m: m.contrib.adopt(1e-2),
    "adopt/options": lambda m: m.contrib.adopt(
        lambda count: 3e-2 / (1.0 + 0.05 * count), b1=0.8, b2=0.99, eps=1e-4,
        nesterov=True, clip_value_fn=lambda count: 0.5 * count**0.3),
    "adopt/no_clipping": lambda m: m.contrib.adopt(2e-2, use_clipping=False),
    "scale_by_adopt": lambda m: m.chain(m.contrib.scale_by_adopt(), m.scale(-1e-2)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  ours, theirs, moved = compare(CASES[name], dtype)
  assert moved > 0.1
  assert_same_state_class(ours, theirs, "ScaleByAdamState")


def test_state_fields_are_optax():
  params = make_params()
  ours = gtx.contrib.scale_by_adopt().init(params)
  theirs = optax.contrib.scale_by_adopt().init(params)
  assert type(ours)._fields == type(theirs)._fields == ("count", "mu", "nu")


@pytest.mark.parametrize("nesterov", [False, True])
def test_first_step_only_initialises_nu(nesterov):
  """Algorithm 1: v_0 = g_0**2, m_0 = 0, and the params move from the second step."""
  params = make_params()
  tx = gtx.contrib.scale_by_adopt(nesterov=nesterov)
  grads = jax.grad(loss)(params)
  updates, state = tx.update(grads, tx.init(params), params)
  for u, mu, nu, g in zip(*map(jax.tree.leaves, (updates, state.mu, state.nu, grads))):
    np.testing.assert_array_equal(u, 0)
    np.testing.assert_array_equal(mu, 0)
    np.testing.assert_array_equal(nu, g**2)
  # The second step: m_1 = (1 - b1) clip(g_1 / max(sqrt(v_0), eps), c(1) = 1).
  updates, _ = tx.update(grads, state, params)
  b1 = 0.9
  expected = (1 - b1) * (1 + b1 if nesterov else 1) * np.sign(grads["vector"])
  np.testing.assert_allclose(updates["vector"], expected, rtol=1e-6)


def _unrolled_loss(m, params, steps=3):
  tx = m.contrib.adopt(0.1)
  state = tx.init(params)
  for _ in range(steps):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = m.apply_updates(params, updates)
  return loss(params)


def test_gradient_through_the_optimizer_matches_optax():
  """nu starts at 0, where sqrt has an infinite derivative; gradtx's zeros are computed
  from the params (to follow their sharding), so its sqrt must have a finite one there
  for the gradient not to be NaN."""
  with jax.enable_x64(True):
    params = make_params(jnp.float64)
    ours = jax.jit(jax.grad(lambda p: _unrolled_loss(gtx, p)))(params)
    theirs = jax.jit(jax.grad(lambda p: _unrolled_loss(optax, p)))(params)
  for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)


def _three_steps(m):
  """Three steps of scale_by_adopt with mu in bfloat16, on the same float32 gradient:
  the first sets nu = g**2, the second stores mu = (1 - b1) sign(g), and the third
  emits (1 - b1) x + b1 mu, with x = g / sqrt(nu) = +-1."""
  params = {"w": jnp.asarray([0.75, -1.5, 2.0, -0.25], jnp.float32)}
  grads = jax.grad(loss)(params)
  tx = m.contrib.scale_by_adopt(mu_dtype=jnp.bfloat16)
  state = tx.init(params)
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
  return updates["w"], state, np.sign(grads["w"])


def test_bfloat16_momentum_is_decayed_by_b1_not_by_b1_rounded_to_bfloat16():
  """The departure: Optax multiplies the bfloat16 momentum by b1 in bfloat16 (a weakly
  typed b1 takes the momentum's dtype), i.e. by 0.8984375 instead of 0.9; gradtx
  computes in float32 and rounds only the stored momentum."""
  b1 = 0.9
  ours, state, sign = _three_steps(gtx)
  theirs, optax_state, _ = _three_steps(optax)
  mu = np.asarray(jnp.asarray((1 - b1) * sign, jnp.bfloat16), np.float32)  # stored mu_2
  x = sign * np.float32(1)
  np.testing.assert_allclose(ours, (1 - b1) * x + np.float32(b1) * mu, rtol=1e-6)
  b1_rounded = np.float32(jnp.asarray(b1, jnp.bfloat16))
  assert b1_rounded == 0.8984375
  product = np.asarray(jnp.asarray(b1_rounded * mu, jnp.bfloat16), np.float32)
  np.testing.assert_allclose(theirs, (1 - b1) * x + product, rtol=1e-6)
  assert np.abs(ours - theirs).max() > 1e-4
  assert state.mu["w"].dtype == optax_state.mu["w"].dtype == jnp.bfloat16


def test_hyperparameters_are_checked():
  with pytest.raises(ValueError, match=r"^adopt: b2 must be in \[0, 1\), got 1.0"):
    gtx.contrib.adopt(1e-3, b2=1.0)
  with pytest.raises(TypeError, match="^scale_by_adopt: clip_value_fn"):
    gtx.contrib.scale_by_adopt(clip_value_fn=0.25)
