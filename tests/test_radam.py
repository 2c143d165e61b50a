"""RAdam's rectification: composable form, fused form, and Liu et al. 2019, Algorithm 2.

Oracles:
  * a NumPy transcription of Algorithm 2 with Optax's eps placement
    (``r_t * m_hat / (sqrt(v_hat) + eps)``; ``m_hat`` alone while ``rho_t < threshold``),
    whose scalars ``rho_t``, ``r_t`` and the bias corrections are computed in Python
    doubles, as the paper's formulas, trajectories over 60 steps;
  * ``gtx.scale_by_radam`` for the composable ``multiply(...)`` form (same numerics,
    different order of operations);
  * hand-derived values of ``rho_t`` and ``r_t`` for ``rectify``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
from conftest import make_params
from oracles import assert_trajectories_close, reference_trajectory, tolerance, trajectory

LR = 0.02

# (b1, b2, eps, threshold): the first rectified step is t=6 for the first two and t=13 for
# the third. float32 underestimates rho_t by up to 0.05 (below); no rho_t of these runs
# lies in [threshold, threshold + 0.05), so that never changes which steps are rectified.
CONFIGS = [(0.9, 0.999, 1e-8, 5.0), (0.8, 0.99, 1e-6, 5.0), (0.9, 0.999, 1e-8, 12.5)]
CONFIG_IDS = ["defaults", "b2=0.99", "threshold=12.5"]

# float32: gradtx (like Optax) computes rho_t = rho_inf - 2t*b2**t/(1 - b2**t) in float32
# from b2 rounded to float32, two cancellations that leave r_t 1.2% low at t=6 for
# b2=0.999 (0.04% at t=60); the oracle computes it in doubles.
RECTIFIED_F32 = dict(rtol=1e-3, atol=3e-4)


def rho(b2, t):
  rho_inf = 2 / (1 - b2) - 1
  return rho_inf, rho_inf - 2 * t * b2**t / (1 - b2**t)


def r_t(b2, t):
  rho_inf, rho_t = rho(b2, t)
  return math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                   / ((rho_inf - 4) * (rho_inf - 2) * rho_t))


def radam_rule(b1, b2, eps, threshold):
  """Liu et al. 2019, Algorithm 2, for one array, with Optax's eps placement."""

  def rule(t, g, p, m, v):
    del p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1**t)
    if rho(b2, t)[1] >= threshold:
      v_hat = v / (1 - b2**t)
      step = r_t(b2, t) * m_hat / (np.sqrt(v_hat) + eps)
    else:
      step = m_hat
    return -LR * step, m, v

  return rule


def composed_radam(b1, b2, eps, threshold):
  return gtx.multiply(gtx.chain(gtx.add_momentum(b1, ema=True), gtx.bias_correction(b1)),
                      gtx.chain(gtx.adaptive_step_size(b2, eps), gtx.rectify(b2, threshold)))


FORMS = {"fused": lambda *c: gtx.scale_by_radam(*c[:3], threshold=c[3]),
         "composed": composed_radam}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("form", FORMS)
def test_radam_matches_algorithm_2(form, config, dtype):
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    ours = trajectory(gtx.chain(FORMS[form](*config), gtx.scale(-LR)), params)
    theirs = reference_trajectory(radam_rule(*config),
                                  lambda p: (np.zeros_like(p), np.zeros_like(p)), params)
    tol = tolerance(dtype) if dtype == "float64" else RECTIFIED_F32
    assert_trajectories_close(ours, theirs, dtype, tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_composed_radam_equals_scale_by_radam(config, dtype):
  """Same numbers in a different order (``m_hat * (r * 1/(...))`` against
  ``r * m_hat / (...)``): last-bit differences, amplified by the loss over 60 steps."""
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == "float32" else tolerance(dtype)
    assert_trajectories_close(trajectory(composed_radam(*config), params),
                              trajectory(FORMS["fused"](*config), params), dtype, tol)


@pytest.mark.parametrize("b2, threshold", [(0.999, 5.0), (0.99, 5.0), (0.9, 5.0),
                                           (0.999, 12.5), (0.99, 30.5)])
def test_rectify_emits_one_before_rho_reaches_threshold(b2, threshold):
  """``1`` while ``rho_t < threshold``, then ``r_t * s`` (hand-derived ``r_t``)."""
  with jax.enable_x64(True):
    s = {"a": jnp.array([0.5, 2.0, -3.0], jnp.float64), "b": jnp.array(7.0, jnp.float64)}
    tx = gtx.rectify(b2, threshold)
    state = tx.init(s)
    first_rectified = next(t for t in range(1, 100) if rho(b2, t)[1] >= threshold)
    assert first_rectified > 3
    for t in range(1, first_rectified + 10):
      out, state = tx.update(s, state)
      for o, x in zip(jax.tree.leaves(out), jax.tree.leaves(s)):
        if t < first_rectified:
          np.testing.assert_array_equal(o, np.ones_like(x))
        else:
          np.testing.assert_allclose(o, r_t(b2, t) * np.asarray(x), rtol=1e-10)


def test_rho_starts_at_one():
  """Hand-derived: ``rho_1 = rho_inf - 2 b2/(1-b2) = 1`` for every ``b2``, so with
  ``threshold=0`` the first step is rectified with
  ``r_1 = sqrt(3 rho_inf / ((rho_inf-4)(rho_inf-2)))``."""
  with jax.enable_x64(True):
    s = jnp.array([2.0, -1.0], jnp.float64)
    for b2 in (0.9, 0.99, 0.999):
      rho_inf = 2 / (1 - b2) - 1
      tx = gtx.rectify(b2, threshold=0.0)
      out, _ = tx.update(s, tx.init(s))
      expected = math.sqrt(3 * rho_inf / ((rho_inf - 4) * (rho_inf - 2)))
      np.testing.assert_allclose(out, expected * np.asarray(s), rtol=1e-8)


def test_rectification_is_zero_not_nan_where_undefined():
  """Where ``2 < rho_t < 4`` the ratio under the square root is negative; gradtx clamps
  ``r_t`` to 0 (its docstring) rather than emitting NaN. With ``b2=0.999``,
  ``rho_3`` is about 3."""
  s = jnp.array([2.0, -1.0])
  tx = gtx.rectify(0.999, threshold=0.0)
  state = tx.init(s)
  for _ in range(3):
    out, state = tx.update(s, state)
  assert 2 < rho(0.999, 3)[1] < 4
  np.testing.assert_array_equal(out, [0.0, 0.0])


def test_adaptive_step_size_is_adams_denominator():
  """``adaptive_step_size`` emits ``1/(sqrt(nu_hat) + eps)``: times the bias-corrected
  momentum, exactly Adam's direction (hand-derived at step 1: ``g/(|g| + eps)``)."""
  with jax.enable_x64(True):
    g = jnp.array([3.0, -0.5, 0.0], jnp.float64)
    tx = gtx.adaptive_step_size(0.999, eps=1e-3)
    out, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(out, 1 / (np.abs(g) + 1e-3), rtol=1e-12)
    assert int(state.count) == 1
