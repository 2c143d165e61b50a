"""MADGRAD (``contrib.madgrad``, ``contrib.scale_by_madgrad``) against Optax 0.2.8 and a
float64 NumPy transcription of the paper's Algorithm 1, and the one departure: Optax
rounds ``lambda = (lr + eps) sqrt(k + 1)`` to float32 also for float64 params.

Oracles: Optax, step by step over 60 jitted steps on the mixed-shape tree, defaults and
a configuration changing every argument: float32 to Optax's tolerance
(``tests/contrib_pairs.py``); float64 to 1e-12 relative against Optax's own arithmetic
with only that rounding put back, and against the NumPy transcription; and to Optax
itself, as it is, within what its float32 ``lambda`` costs (1e-5 relative).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params
from contrib_pairs import (STEPS, assert_same_state_class, assert_states_close, compare,
                           find, layout, precision)
from gradtx._src import madgrad as madgrad_module
from oracles import assert_trajectories_close, reference_trajectory, trajectory

schedule = lambda count: 0.05 / (1.0 + 0.01 * count)  # noqa: E731
CASES = {
    "madgrad": (lambda m: m.contrib.madgrad(1e-2), dict(lr=1e-2)),
    "madgrad/options": (lambda m: m.contrib.madgrad(schedule, momentum=0.5,
                                                    weight_decay=0.01, eps=1e-5),
                        dict(lr=schedule, momentum=0.5, weight_decay=0.01, eps=1e-5)),
    "scale_by_madgrad": (lambda m: m.contrib.scale_by_madgrad(2e-2), dict(lr=2e-2)),
}


@pytest.mark.parametrize("name", CASES)
def test_float32_matches_optax(name):
  ours, theirs, moved = compare(CASES[name][0], "float32")
  assert moved > 0.1
  assert_same_state_class(ours, theirs, "MadgradState")
  assert int(find(ours, "MadgradState").count) == STEPS


def _with_optax_float32_weight(learning_rate, momentum=0.9, weight_decay=0.0, eps=1e-6):
  """gradtx's MADGRAD rule with ``lambda`` computed as Optax 0.2.8 computes it:
  ``(lr + eps) * jnp.sqrt(count + 1)``, the root of the int32 count being float32."""

  def rounded(count):
    rate = learning_rate(count) if callable(learning_rate) else learning_rate
    return dict(weight=(rate + eps) * jnp.sqrt(count + 1))

  tx = gtx.leafwise("scale_by_madgrad", madgrad_module._madgrad_rule,
                    state=gtx.contrib.MadgradState,
                    init=lambda p: (jnp.zeros_like(p), jnp.zeros_like(p), jnp.array(p)),
                    hyperparams=dict(momentum=momentum, eps=eps), scalars=rounded,
                    uses_params=True)
  return gtx.chain(gtx.add_decayed_weights(weight_decay), tx)


OPTAX_ROUNDED = {
    "madgrad": lambda: _with_optax_float32_weight(1e-2),
    "madgrad/options": lambda: _with_optax_float32_weight(schedule, momentum=0.5,
                                                          weight_decay=0.01, eps=1e-5),
}


@pytest.mark.parametrize("name", OPTAX_ROUNDED)
def test_float64_is_optax_but_for_the_float32_weight(name):
  """Optax's float64 run is gradtx's arithmetic, step for step to 1e-12, once ``lambda``
  is rounded to float32 as Optax rounds it: that rounding is the only difference."""
  make, _ = CASES[name]
  with precision("float64"):
    params = make_params(jnp.float64)
    ours = trajectory(OPTAX_ROUNDED[name](), params)
    theirs = trajectory(make(optax), params)
    assert_trajectories_close(ours, theirs, jnp.float64)


def _numpy_madgrad(lr, momentum=0.9, weight_decay=0.0, eps=1e-6):
  """Algorithm 1 of the paper, per array in float64 NumPy (as in the authors' PyTorch
  code: eps added to the learning rate and to the cube root; L2 weight decay)."""

  def init(x):
    return np.zeros_like(x), np.zeros_like(x), x.copy()

  def rule(t, g, x, grad_sum_sq, s, x0):
    g = g + weight_decay * x
    rate = lr(t - 1) if callable(lr) else lr
    weight = (rate + eps) * np.sqrt(t)
    grad_sum_sq = grad_sum_sq + weight * g**2
    s = s + weight * g
    z = x0 - s / (np.cbrt(grad_sum_sq) + eps)
    return ((1 - momentum) * z + momentum * x) - x, grad_sum_sq, s, x0

  return init, rule


@pytest.mark.parametrize("name", CASES)
def test_float64_matches_the_paper_in_numpy(name):
  make, kwargs = CASES[name]
  with precision("float64"):
    params = make_params(jnp.float64)
    ours = trajectory(make(gtx), params)
    init, rule = _numpy_madgrad(**kwargs)
    assert_trajectories_close(ours, reference_trajectory(rule, init, params), jnp.float64)


@pytest.mark.parametrize("name", CASES)
def test_float64_matches_optax_within_its_float32_weight(name):
  make, _ = CASES[name]
  with precision("float64"):
    params = make_params(jnp.float64)
    ours_tx, theirs_tx = make(gtx), make(optax)
    assert_states_close(ours_tx.init(params), theirs_tx.init(params), jnp.float64, "init")
    ours, ours_state = trajectory(ours_tx, params, return_state=True)
    theirs, theirs_state = trajectory(theirs_tx, params, return_state=True)
    assert_trajectories_close(ours, theirs, tol=dict(rtol=1e-5, atol=1e-7))
    assert layout(ours_state) == layout(theirs_state)


def test_optax_rounds_the_weight_to_float32_with_float64_params():
  """Two steps of unit gradients on a float64 param: ``G = lambda_0 + lambda_1`` with
  ``lambda_k = (lr + eps) sqrt(k + 1)``. gradtx's is that sum in float64; Optax's is off
  by float32's rounding (lr + eps = 0.100001 is not a float32 number)."""
  lr, eps = 0.1, 1e-6
  exact = (lr + eps) * (1 + np.sqrt(2.0))
  with precision("float64"):
    x = jnp.zeros(1, jnp.float64)
    g = jnp.ones(1, jnp.float64)
    sums = {}
    for m in (gtx, optax):
      tx = m.contrib.scale_by_madgrad(lr, eps=eps)
      state = tx.init(x)
      for _ in range(2):
        _, state = tx.update(g, state, x)
      sums[m.__name__] = float(state.grad_sum_sq[0])
  assert abs(sums["gradtx"] - exact) <= 1e-15 * exact
  assert abs(sums["optax"] - exact) > 1e-9 * exact
  f32 = lambda v: float(np.float32(v))  # noqa: E731
  np.testing.assert_allclose(sums["optax"], f32(lr + eps) + f32(f32(lr + eps)
                                                                * f32(np.sqrt(2.0))),
                             rtol=1e-15)


def test_state_fields_are_optax():
  assert gtx.contrib.MadgradState._fields == optax.contrib.MadgradState._fields


def test_update_needs_the_params():
  tx = gtx.contrib.scale_by_madgrad(0.1)
  params = {"w": jnp.ones(2)}
  with pytest.raises(ValueError, match="scale_by_madgrad"):
    tx.update(params, tx.init(params))


def test_momentum_one_is_rejected():
  with pytest.raises(ValueError, match=r"^madgrad: momentum must be in \[0, 1\), got 1.0"):
    gtx.contrib.madgrad(0.1, momentum=1.0)


def test_zero_gradients_keep_the_params():
  x = {"w": jnp.asarray([1.0, -2.0])}
  tx = gtx.contrib.madgrad(0.1)
  updates, _ = tx.update({"w": jnp.zeros(2)}, tx.init(x), x)
  np.testing.assert_array_equal(updates["w"], jnp.zeros(2))
  assert jax.tree.leaves(updates)[0].dtype == jnp.float32
