"""The D-Adaptation family against Optax 0.2.8: ``contrib.dadapt_adamw`` (Defazio &
Mishchenko 2023) and ``contrib.prodigy`` (Mishchenko & Defazio 2023), and their one
departure: steps with all-zero gradients before any other.

Oracle: Optax, step by step over 60 jitted steps on the mixed-shape tree, float32 and
float64, defaults and a configuration changing every hyperparameter
(``tests/contrib_pairs.py``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from contrib_pairs import DTYPES, assert_same_state_class, compare

CASES = {
    "dadapt_adamw": lambda m: m.contrib.dadapt_adamw(),
    "dadapt_adamw/options": lambda m: m.contrib.dadapt_adamw(
        lambda count: 1.0 / (1.0 + 0.02 * count), betas=(0.8, 0.99), eps=1e-6,
        estim_lr0=1e-4, weight_decay=0.01),
    "prodigy": lambda m: m.contrib.prodigy(),
    "prodigy/options": lambda m: m.contrib.prodigy(
        lambda count: 1.0 / (1.0 + 0.02 * count), betas=(0.8, 0.99), beta3=0.9, eps=1e-6,
        estim_lr0=1e-4, estim_lr_coef=0.5, weight_decay=0.01, safeguard_warmup=True),
}
STATES = {"dadapt_adamw": "DAdaptAdamWState", "prodigy": "ProdigyState"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  ours, theirs, moved = compare(CASES[name], dtype)
  assert moved > 1e-2
  assert_same_state_class(ours, theirs, STATES[name.split("/")[0]])
  d0 = 1e-4 if name.endswith("options") else 1e-6
  assert float(ours.estim_lr) > 10 * d0  # d was adapted


def _zero_then_real(m, name, steps=3):
  params = {"w": jnp.asarray([[0.5, -1.0], [2.0, 0.25]]), "b": jnp.asarray(0.5)}
  tx = getattr(m.contrib, name)()
  state = tx.init(params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  for _ in range(2):
    updates, state = tx.update(zeros, state, params)
    params = m.apply_updates(params, updates)
  after_zeros = state.estim_lr
  for _ in range(steps):
    updates, state = tx.update(jax.tree.map(jnp.sin, params), state, params)
    params = m.apply_updates(params, updates)
  return after_zeros, params


@pytest.mark.parametrize("name", STATES)
def test_zero_gradients_first_keep_the_estimate_where_optax_gets_nan(name):
  """||s||_1 is 0 until a non-zero gradient: Optax's d = max(d, 0 / 0) is NaN for good;
  gradtx keeps d (the authors' PyTorch code skips such a step, leaving d)."""
  theirs_d, theirs = _zero_then_real(optax, name)
  assert np.isnan(theirs_d)
  assert all(np.isnan(x).all() for x in jax.tree.leaves(theirs))
  ours_d, ours = _zero_then_real(gtx, name)
  assert ours_d == np.float32(1e-6)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(ours))


@pytest.mark.parametrize("name", STATES.values())
def test_state_fields_are_optax(name):
  assert getattr(gtx.contrib, name)._fields == getattr(optax.contrib, name)._fields


@pytest.mark.parametrize("name", STATES)
def test_betas_are_checked(name):
  with pytest.raises(ValueError, match=rf"^{name}: betas\[1\] must be in \[0, 1\), got 1.0"):
    getattr(gtx.contrib, name)(betas=(0.9, 1.0))
  with pytest.raises(TypeError, match=f"^{name}: betas must be a pair"):
    getattr(gtx.contrib, name)(betas=0.9)
