"""SWATS against a NumPy transcription of Keskar & Socher 2017, Algorithm 1.

Oracle: ``swats_oracle`` below, Algorithm 1 line by line on the list of leaves of the
mixed-shape pytree, with the two conventions gtx.swats documents: Adam's step is Optax's,
``-lr * m_hat / (sqrt(a_hat) + eps)`` (the paper puts ``eps`` next to ``sqrt(a)``), and the
switch tolerance is ``switch_tol`` (the paper reuses ``eps``). Arithmetic in the params'
dtype, with Optax's rounding conventions: the coefficients ``1 - b`` in Python doubles, the
bias corrections ``1 - b**k`` in the params' dtype (in float32 the two differ by 1e-5
relative, which the default float32 tolerance would see). Trajectories over 60 steps, in
float32 and float64, with a configuration that switches to SGD within the run (at the
same step as the oracle, asserted) and one that never does. ``gtx.adam`` is the oracle of
the Adam phase.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
from gradtx._src.swats import swats
from conftest import loss, make_params
from oracles import STEPS, assert_trajectories_close, tolerance, trajectory


def swats_oracle(params, learning_rate, b1, b2, eps, switch_tol, steps=STEPS):
  """Algorithm 1 of Keskar & Socher 2017, with Adam's step in Optax's form.

  Returns the params after each step, the step ``k`` at which the switch criterion held
  (0 if never), ``Lambda``, and for every step ``k > 1`` of the Adam phase the ratio
  ``|lambda_k/(1-b2**k) - gamma_k| / switch_tol`` (to check it is never so close to 1
  that rounding could decide the switch).
  """
  leaves, treedef = jax.tree.flatten(params)
  x = [np.array(leaf) for leaf in leaves]
  dtype = x[0].dtype
  # A schedule sees gradtx's int32 count, so that both sides take the same rate.
  lr_at = ((lambda count: learning_rate(jnp.asarray(count, jnp.int32)))
           if callable(learning_rate) else (lambda count: learning_rate))

  def debias(b, k):
    return 1 - dtype.type(b)**k

  m = [np.zeros_like(w) for w in x]
  a = [np.zeros_like(w) for w in x]
  v = [np.zeros_like(w) for w in x]
  lam, phase, big_lambda, switch_step, ratios = np.zeros([], dtype), "adam", None, 0, []
  grad_fn = jax.jit(jax.grad(loss))
  path = []
  for k in range(1, steps + 1):
    g = [np.array(leaf) for leaf in jax.tree.leaves(grad_fn(treedef.unflatten(x)))]
    if phase == "sgd":
      v = [b1 * vi + gi for vi, gi in zip(v, g)]
      x = [xi - (1 - b1) * big_lambda * vi for xi, vi in zip(x, v)]
    else:
      alpha = dtype.type(lr_at(k - 1))
      m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
      a = [b2 * ai + (1 - b2) * gi**2 for ai, gi in zip(a, g)]
      p = [-alpha * (mi / debias(b1, k)) / (np.sqrt(ai / debias(b2, k)) + eps)
           for mi, ai in zip(m, a)]
      x = [xi + pi for xi, pi in zip(x, p)]
      pg = sum(np.sum(pi * gi) for pi, gi in zip(p, g))
      if pg != 0:
        gamma = sum(np.sum(pi * pi) for pi in p) / -pg
        lam = b2 * lam + (1 - b2) * gamma
        if k > 1:
          ratios.append(abs(lam / debias(b2, k) - gamma) / switch_tol)
        if k > 1 and abs(lam / debias(b2, k) - gamma) < switch_tol:
          phase, switch_step = "sgd", k
          v = [np.zeros_like(w) for w in x]
          big_lambda = lam / debias(b2, k)
    path.append(treedef.unflatten([jnp.asarray(xi) for xi in x]))
  return path, switch_step, big_lambda, ratios


# (learning_rate, b1, b2, eps, switch_tol) -> the step at which the switch happens.
CONFIGS = {
    "switches": ((0.05, 0.9, 0.999, 1e-8, 1e-5), 24),
    "switches_late": ((0.02, 0.8, 0.9, 1e-6, 1e-5), 46),
    "never_switches": ((0.03, 0.9, 0.999, 1e-8, 3e-6), 0),
    "schedule": ((gtx.exponential_decay(0.08, 20, 0.9), 0.9, 0.999, 1e-8, 3e-5), 11),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", CONFIGS)
def test_swats_matches_algorithm_1(config, dtype):
  hyperparams, expected_step = CONFIGS[config]
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    theirs, switch_step, big_lambda, ratios = swats_oracle(params, *hyperparams)
    ours, state = trajectory(swats(*hyperparams), params, STEPS, return_state=True)
    # The switch is decided with a margin rounding cannot close, so both sides agree on it.
    assert all(abs(r - 1) > 0.05 for r in ratios[:switch_step or None]), ratios
    assert switch_step == expected_step
    assert int(state.switch_step) == switch_step
    assert bool(state.switched) == (switch_step > 0)
    if switch_step:
      assert 1 < switch_step < STEPS - 10, "the run must show both phases"
      np.testing.assert_allclose(state.sgd_learning_rate, big_lambda, **tolerance(dtype))
    else:
      assert float(state.sgd_learning_rate) == 0.0
    assert_trajectories_close(ours, theirs, dtype)


def test_adam_phase_is_adam():
  """Until the switch (here never: ``switch_tol=0``), SWATS's steps are ``gtx.adam``'s."""
  params = make_params()
  ours = trajectory(swats(0.03, 0.8, 0.99, 1e-6, switch_tol=0.0), params)
  assert_trajectories_close(ours, trajectory(gtx.adam(0.03, 0.8, 0.99, 1e-6), params),
                            tol=dict(rtol=1e-6, atol=1e-7))


def test_sgd_phase_from_the_state():
  """Hand-derived from the state at the switch: Adam's moments stop, ``v`` starts from 0,
  and each step emits ``-(1-b1)*Lambda*v`` with ``v = b1*v + g``."""
  b1 = 0.9
  tx = swats(0.05, b1=b1)
  params = make_params()
  state = tx.init(params)
  update, grad = jax.jit(tx.update), jax.jit(jax.grad(loss))
  for _ in range(24):  # the Adam phase, up to the switch (CONFIGS["switches"])
    assert not bool(state.switched)
    updates, state = update(grad(params), state, params)
    params = gtx.apply_updates(params, updates)
    assert jax.tree.all(jax.tree.map(lambda v: bool(jnp.all(v == 0)), state.sgd_momentum))
  assert bool(state.switched) and int(state.switch_step) == 24
  frozen_mu, frozen_nu, big_lambda = state.mu, state.nu, state.sgd_learning_rate
  v = jax.tree.map(jnp.zeros_like, params)
  for k in range(3):
    g = jax.tree.map(lambda p: jnp.cos(p + k), params)
    updates, state = update(g, state, params)
    v = jax.tree.map(lambda v, g: b1 * v + g, v, g)
    expected = jax.tree.map(lambda v: -(1 - b1) * big_lambda * v, v)
    for x, y in zip(jax.tree.leaves((updates, state.sgd_momentum)),
                    jax.tree.leaves((expected, v))):
      np.testing.assert_allclose(x, y, rtol=1e-6)
    for x, y in zip(jax.tree.leaves((state.mu, state.nu)),
                    jax.tree.leaves((frozen_mu, frozen_nu))):
      np.testing.assert_array_equal(x, y)
    assert int(state.switch_step) == 24
    assert state.sgd_learning_rate == big_lambda


def test_zero_gradients_leave_lambda_alone():
  """``p.g == 0`` (a zero gradient, so ``p = 0``): no division, ``lambda`` unchanged, no
  switch, even with a tolerance that would switch on any measured step."""
  tx = swats(0.1, switch_tol=float("inf"))
  update = jax.jit(tx.update)
  params = make_params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  state = tx.init(params)
  for _ in range(3):
    updates, state = update(zeros, state, params)
  assert float(state.lambda_avg) == 0.0 and not bool(state.switched)
  for leaf in jax.tree.leaves((updates, state)):
    assert jnp.all(jnp.isfinite(leaf))
  # The first measured step is step 4: ``k > 1``, so it switches at once.
  _, state = update(jax.jit(jax.grad(loss))(params), state, params)
  assert bool(state.switched) and int(state.switch_step) == 4
  assert float(state.sgd_learning_rate) > 0


def test_switch_under_scan_and_vmap():
  """The phase is data: under ``lax.scan`` and ``vmap`` (members switching at different
  steps, or not at all) each member follows its own jitted Python loop."""
  tols = [1e-5, 3e-6]  # the "switches" and "never_switches" settings, at lr 0.05 and 0.03
  rates = [0.05, 0.03]
  params = make_params()

  def scanned(lr, tol):
    tx = swats(lr, switch_tol=tol)

    def step(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      return (gtx.apply_updates(params, updates), state), None

    (final, state), _ = jax.lax.scan(step, (params, tx.init(params)), length=40)
    return final, state

  finals, states = jax.jit(jax.vmap(scanned))(jnp.asarray(rates), jnp.asarray(tols))
  for i, (lr, tol) in enumerate(zip(rates, tols)):
    path, state = trajectory(swats(lr, switch_tol=tol), params, 40, return_state=True)
    assert int(states.switch_step[i]) == int(state.switch_step)
    for x, y in zip(jax.tree.leaves(finals), jax.tree.leaves(path[-1])):
      np.testing.assert_allclose(x[i], y, rtol=1e-5, atol=1e-6)
  assert [int(s) for s in states.switch_step] == [24, 0]


def test_state_dtypes():
  """Tree-wide scalars in the widest params dtype (at least float32); moments per leaf."""
  with jax.enable_x64(True):
    mixed = {"a": jnp.zeros(3, jnp.bfloat16), "b": jnp.zeros(2, jnp.float64)}
    state = swats().init(mixed)
    assert state.lambda_avg.dtype == state.sgd_learning_rate.dtype == jnp.float64
    assert state.mu["a"].dtype == jnp.bfloat16
  state = swats().init({"a": jnp.zeros(3, jnp.bfloat16)})
  assert state.lambda_avg.dtype == jnp.float32
  assert state.switched.dtype == jnp.bool_ and state.switch_step.dtype == jnp.int32


@pytest.mark.parametrize("name, value, interval", [
    ("learning_rate", -0.1, "[0, inf)"), ("b1", 1.0, "[0, 1)"), ("b1", -0.5, "[0, 1)"),
    ("b2", 1.0, "[0, 1)"), ("eps", -1e-8, "[0, inf)"), ("switch_tol", -1e-5, "[0, inf]"),
    ("switch_tol", float("nan"), "[0, inf]")])
def test_invalid_hyperparameters(name, value, interval):
  message = f"swats: {name} must be in {interval}, got {value!r}"
  with pytest.raises(ValueError, match="^" + re.escape(message)):
    swats(**{name: value})
