"""Adafactor against Optax 0.2.8: the factored normaliser and the optimizer's chain.

Oracle: Optax's ``scale_by_factored_rms`` and ``adafactor``, step by step over 60 jitted
steps on the mixed-shape tree (scalar, vector, matrix, 3-D), float32 and float64: the
defaults (nothing factored below 128), factored (``min_dim_size_to_factor=3`` factors
the matrix and the 3-D leaf), unfactored, with momentum (in the params' dtype; Optax's
default float32 momentum of float64 params agrees to float32's rounding, see
``test_float32_momentum_of_float64_params``), weight decay with a mask, a schedule, no
parameter scale and no clipping; the final states' fields (``FactoredState(count,
v_row, v_col, v)`` with Optax's ``(1,)`` placeholders, ``EmaState`` for the momentum)
and leaves.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params
from optax_state_oracle import assert_same_state, compare

LR = 0.02
sched = lambda count: 0.05 * 0.97**count  # noqa: E731
no_bias = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731
capped = lambda step, rate: jnp.minimum(0.95, 1.0 - (step + 1.0)**-rate)  # noqa: E731


def descending(make):
  return lambda m: m.chain(make(m), m.scale(-LR))


CASES = {
    "scale_by_factored_rms": descending(lambda m: m.scale_by_factored_rms()),
    "scale_by_factored_rms/factored": descending(lambda m: m.scale_by_factored_rms(
        decay_rate=0.7, min_dim_size_to_factor=3, epsilon=1e-20)),
    "scale_by_factored_rms/unfactored_decay_rate_fn": descending(
        lambda m: m.scale_by_factored_rms(factored=False, min_dim_size_to_factor=2,
                                          decay_rate_fn=capped)),
    "adafactor": lambda m: m.adafactor(),
    "adafactor/factored_momentum_decay": lambda m: m.adafactor(
        LR, min_dim_size_to_factor=3, momentum=0.9, dtype_momentum=None,
        weight_decay_rate=0.01, weight_decay_mask=no_bias),
    "adafactor/unfactored_plain": lambda m: m.adafactor(
        sched, min_dim_size_to_factor=3, factored=False, multiply_by_parameter_scale=False,
        clipping_threshold=None, decay_rate=0.9, eps=1e-20),
    "adafactor/momentum_clipped": lambda m: m.adafactor(
        LR, min_dim_size_to_factor=2, clipping_threshold=0.5, momentum=0.5,
        dtype_momentum=None),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  with jax.enable_x64(dtype == "float64"):
    compare(CASES[name], make_params(jnp.dtype(dtype)), dtype)


def test_float32_momentum_of_float64_params():
  """Optax's default dtype_momentum=float32 with float64 params: the momentum is stored
  in float32 by both. Optax computes decay * m in float32 (m's dtype) before adding the
  float64 update, gradtx's momentum (gtx.ema) in float64, so the two agree to float32's
  rounding of that product (the 60-step comparisons keep the momentum in the params'
  dtype, where they agree to float64's)."""
  with jax.enable_x64(True):
    params = make_params(jnp.float64)
    make = lambda m: m.adafactor(LR, min_dim_size_to_factor=3, momentum=0.9)  # noqa: E731
    state = compare(make, params, "float64", tol=dict(rtol=1e-6, atol=1e-8), steps=10)
  assert state[-2].ema["nested"]["cube"].dtype == jnp.float32


def test_factored_state_layout():
  """Optax's layout: a factored leaf keeps v_row without its largest axis and v_col
  without its second largest, and (1,) placeholders elsewhere."""
  params = make_params()
  state = gtx.scale_by_factored_rms(min_dim_size_to_factor=3).init(params)
  assert type(state).__name__ == "FactoredState"
  assert type(state)._fields == optax.FactoredState._fields
  shapes = jax.tree.map(jnp.shape, state._asdict())
  assert shapes["v_row"] == {"scalar": (1,), "vector": (1,),
                             "nested": {"matrix": (3,), "cube": (2, 3)}}
  assert shapes["v_col"] == {"scalar": (1,), "vector": (1,),
                             "nested": {"matrix": (4,), "cube": (2, 4)}}
  assert shapes["v"] == {"scalar": (), "vector": (5,),
                         "nested": {"matrix": (1,), "cube": (1,)}}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_decay_offset_restarts_the_schedule(dtype):
  """decay_offset=3 from a state at count 5 (fine-tuning a restored run): the decay is
  that of step 2, in both libraries."""
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    grads = jax.tree.map(lambda p: jnp.cos(p) + 0.5, params)
    states, updates = [], []
    for m in (gtx, optax):
      tx = m.adafactor(LR, min_dim_size_to_factor=3, decay_offset=3)
      state = tx.init(params)
      state = (state[0]._replace(count=jnp.asarray(5, jnp.int32)), *state[1:])
      for _ in range(3):
        u, state = jax.jit(tx.update)(grads, state, params)
      states.append(state)
      updates.append(u)
    assert_same_state(*states, dtype)
    for a, b in zip(jax.tree.leaves(updates[0]), jax.tree.leaves(updates[1])):
      np.testing.assert_allclose(a, b, rtol=1e-12 if dtype == "float64" else 2e-6)


def test_unfactored_step_is_the_papers_rms_normalisation():
  """Shazeer & Stern 2018, Algorithm 4, first step (beta = 1 - 1**-0.8 = 0): v = g**2
  + eps_1, the update g / sqrt(v) = sign(g); clipped to RMS 1 and scaled by
  max(rms(p), 1e-3)."""
  p = jnp.asarray([0.5, -2.0, 1.0, 0.0])
  g = jnp.asarray([3.0, -0.5, 0.0, 1.0])
  tx = gtx.adafactor()
  updates, _ = tx.update(g, tx.init(p), p)
  rms_sign = jnp.sqrt(jnp.mean(jnp.sign(g)**2))
  expected = -jnp.sign(g) / jnp.maximum(1.0, rms_sign) * jnp.sqrt(jnp.mean(p**2))
  np.testing.assert_allclose(updates, expected, rtol=1e-6)
