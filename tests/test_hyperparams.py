"""inject_hyperparams: hyperparameters as state, read and overwritten between steps.

Oracles: ``optax.inject_hyperparams`` (trajectories, stored values, overwrites), a fresh
optimizer built with the overwritten value (an overwrite takes effect at once, bias
corrections included), and the float32 computation of the same step (bfloat16 params).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import loss, make_params
from oracles import assert_trajectories_close, jitted_step

STEPS = 20
sched = lambda count: 0.05 * 0.9**count  # noqa: E731

CASES = {
    "adam": lambda m: m.inject_hyperparams(m.adam)(learning_rate=0.02, b1=0.8),
    "adam/schedule": lambda m: m.inject_hyperparams(m.adam)(learning_rate=sched),
    "sgd": lambda m: m.inject_hyperparams(m.sgd)(learning_rate=0.02, momentum=0.9),
    "rmsprop": lambda m: m.inject_hyperparams(m.rmsprop)(learning_rate=0.01, decay=0.95),
}


def run(tx, params, steps=STEPS, overwrite=None):
  """Jitted steps on ``conftest.loss``: the params and ``state.hyperparams`` after each.
  ``overwrite(t, hyperparams)`` may assign into the dict before step ``t`` (from 0)."""

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return gtx.apply_updates(params, updates), state

  state = tx.init(params)
  path, hyperparams = [], []
  for t in range(steps):
    if overwrite is not None:
      overwrite(t, state.hyperparams)
    params, state = step(params, state)
    path.append(params)
    hyperparams.append(dict(state.hyperparams))
  return path, hyperparams


def assert_hyperparams_equal(ours, theirs):
  for t, (a, b) in enumerate(zip(ours, theirs, strict=True), start=1):
    assert set(a) == set(b), f"step {t}"
    for name in a:
      assert a[name].dtype == b[name].dtype, f"step {t}, {name}"
      np.testing.assert_allclose(a[name], b[name], rtol=1e-6, err_msg=f"step {t}, {name}")


@pytest.mark.parametrize("name", CASES)
def test_matches_optax_inject_hyperparams(name):
  params = make_params()
  ours, ours_h = run(CASES[name](gtx), params)
  theirs, theirs_h = run(CASES[name](optax), params)
  assert_trajectories_close(ours, theirs)
  assert_hyperparams_equal(ours_h, theirs_h)


def test_matches_optax_when_overwritten_between_steps():
  def overwrite(t, hyperparams):
    if t == 5:
      hyperparams["learning_rate"] = jnp.asarray(0.05)
    if t == 10:
      hyperparams["b1"] = jnp.asarray(0.5)
      hyperparams["b2"] = jnp.asarray(0.9)

  params = make_params()
  ours, ours_h = run(CASES["adam"](gtx), params, overwrite=overwrite)
  theirs, theirs_h = run(CASES["adam"](optax), params, overwrite=overwrite)
  assert_trajectories_close(ours, theirs)
  assert_hyperparams_equal(ours_h, theirs_h)


def test_hyperparams_are_readable_float32_arrays():
  tx = gtx.inject_hyperparams(gtx.adam)(learning_rate=0.02, b2=0.99, mu_dtype=jnp.float32,
                                        nesterov=True)
  state = tx.init(make_params())
  assert set(state.hyperparams) == {"learning_rate", "b1", "b2", "eps", "eps_root"}
  for name, value in {"learning_rate": 0.02, "b1": 0.9, "b2": 0.99, "eps": 1e-8,
                      "eps_root": 0.0}.items():
    assert isinstance(state.hyperparams[name], jax.Array)
    assert state.hyperparams[name].dtype == jnp.float32
    assert state.hyperparams[name] == np.float32(value)


def test_hyperparams_are_float64_under_x64():
  with jax.enable_x64(True):
    tx = gtx.inject_hyperparams(gtx.adam)(learning_rate=0.02)
    state = tx.init(make_params(jnp.float64))
    assert {v.dtype for v in state.hyperparams.values()} == {jnp.dtype(jnp.float64)}
    assert state.hyperparams["b2"] == 0.999  # not 0.999 rounded to float32


# --- overwriting between steps ------------------------------------------------------------

OVERWRITES = {"learning_rate": 0.125, "b1": 0.5, "b2": 0.75, "eps": 0.25}


@pytest.mark.parametrize("name", OVERWRITES)
def test_overwrite_takes_effect_at_once_as_a_fresh_optimizer(name):
  """After 3 steps, ``name`` is overwritten; the 4th step is the one an optimizer built
  with the new value would take from the same moments and step count: Adam's bias
  corrections read ``b**t`` with the new ``b``, not a product accumulated over steps."""
  initial = dict(learning_rate=0.25, b1=0.875, b2=0.9375, eps=2.0**-20)
  changed = {**initial, name: OVERWRITES[name]}
  tx = gtx.inject_hyperparams(gtx.adam)(**initial)
  params = make_params()
  state = tx.init(params)
  for _ in range(3):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = gtx.apply_updates(params, updates)
  grads = jax.grad(loss)(params)
  unchanged, _ = tx.update(grads, state, params)

  state.hyperparams[name] = jnp.asarray(OVERWRITES[name], jnp.float32)
  updates, new_state = tx.update(grads, state, params)
  assert new_state.hyperparams[name] == OVERWRITES[name]

  # The same wrapper built with the new value, given the same count and moments.
  fresh = gtx.inject_hyperparams(gtx.adam)(**changed)
  fresh_state = fresh.init(params)._replace(count=state.count, inner_state=state.inner_state)
  expected, expected_state = fresh.update(grads, fresh_state, params)
  for a, b in zip(jax.tree.leaves((updates, new_state)),
                  jax.tree.leaves((expected, expected_state)), strict=True):
    np.testing.assert_array_equal(a, b)
  # And plain Adam with the new value, from the same inner state.
  plain, _ = gtx.adam(**changed).update(grads, state.inner_state, params)
  for a, b, c in zip(jax.tree.leaves(updates), jax.tree.leaves(plain),
                     jax.tree.leaves(unchanged)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    assert not np.allclose(a, c, rtol=1e-3)  # the overwrite did change the step


def test_changing_values_does_not_recompile():
  tx = gtx.inject_hyperparams(gtx.adam)(learning_rate=0.02)
  step, traces = jitted_step(tx)

  params = make_params()
  state = tx.init(params)
  before = params
  params, state = step(params, state)
  for name, value in [("learning_rate", 0.01), ("b1", 0.5), ("b2", 0.9), ("eps", 1e-3),
                      ("learning_rate", 0.0)]:
    state.hyperparams[name] = jnp.asarray(value, jnp.float32)
    before = params
    params, state = step(params, state)
  assert len(traces) == 1
  assert step._cache_size() == 1
  # The values did reach the compiled step: learning_rate 0 stops it.
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(before)):
    np.testing.assert_array_equal(a, b)


def test_schedule_does_not_recompile_and_is_stored():
  tx = gtx.inject_hyperparams(gtx.sgd)(learning_rate=sched, momentum=0.5)
  step, traces = jitted_step(tx)

  params = make_params()
  state = tx.init(params)
  for t in range(4):
    params, state = step(params, state)
    # The value used by step t (count t before it), as Optax stores it.
    np.testing.assert_allclose(state.hyperparams["learning_rate"], sched(t), rtol=1e-6)
  assert len(traces) == 1


# --- low-precision params ---------------------------------------------------------------


def test_bfloat16_params_keep_float32_hyperparams_and_float32_arithmetic():
  tx = gtx.inject_hyperparams(gtx.adam)(learning_rate=0.1, b1=0.9, b2=0.999)
  params = make_params(jnp.bfloat16)
  state = tx.init(params)
  for name, value in state.hyperparams.items():
    assert value.dtype == jnp.float32, name
  assert state.hyperparams["b2"] == np.float32(0.999) != 1.0
  f32 = lambda tree: jax.tree.map(lambda x: x.astype(jnp.float32), tree)  # noqa: E731

  for t in range(1, 4):
    grads = jax.grad(loss)(params)
    updates, new_state = tx.update(grads, state, params)
    assert jax.tree.map(lambda u: u.dtype, updates) == jax.tree.map(lambda p: p.dtype, params)
    for name, value in new_state.hyperparams.items():
      assert value.dtype == jnp.float32, (t, name)
    # Oracle: this step on the same values (bfloat16 state included) in float32, then
    # rounded to bfloat16. Within one rounding more (rtol 2**-7): the chain rounds
    # Adam's direction to the params' dtype before scaling it by the learning rate.
    # With b2 rounded to bfloat16 (1.0) nu would stay 0 and the step explode.
    reference, _ = tx.update(f32(grads), jax.tree.map(
        lambda x: x.astype(jnp.float32) if x.dtype == jnp.bfloat16 else x, state), f32(params))
    for (path, u), r in zip(jax.tree_util.tree_leaves_with_path(updates),
                            jax.tree.leaves(reference)):
      np.testing.assert_allclose(np.asarray(u, np.float32),
                                 np.asarray(r.astype(jnp.bfloat16), np.float32),
                                 rtol=2**-7, atol=1e-6,
                                 err_msg=f"step {t} {jax.tree_util.keystr(path)}")
    params, state = gtx.apply_updates(params, updates), new_state


def test_hyperparam_dtype_is_honoured():
  tx = gtx.inject_hyperparams(gtx.sgd, hyperparam_dtype=jnp.float16)(learning_rate=0.5)
  state = tx.init(make_params())
  assert state.hyperparams["learning_rate"].dtype == jnp.float16


# --- static_args ---------------------------------------------------------------------------


def _steps(tx, params, steps=3):
  state = tx.init(params)
  for _ in range(steps):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = gtx.apply_updates(params, updates)
  return params, state


@pytest.mark.parametrize("static_args", ["b1", ("b1", "weight_decay")])
def test_static_args_are_not_injected(static_args):
  no_bias = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731
  kwargs = dict(learning_rate=0.02, b1=0.8, weight_decay=0.1, mask=no_bias)
  tx = gtx.inject_hyperparams(gtx.adamw, static_args=(*np.atleast_1d(static_args), "mask"))(
      **kwargs)
  params = make_params()
  ours, state = _steps(tx, params)
  assert not set(np.atleast_1d(static_args)) & set(state.hyperparams)
  assert "mask" not in state.hyperparams and "learning_rate" in state.hyperparams
  theirs, _ = _steps(gtx.adamw(**kwargs), params)
  assert_trajectories_close([ours], [theirs])


def test_non_numeric_arguments_are_passed_through():
  tx = gtx.inject_hyperparams(gtx.adam)(learning_rate=0.02, mu_dtype=jnp.bfloat16,
                                        nesterov=True)
  params = make_params()
  ours, state = _steps(tx, params)
  assert set(state.hyperparams) == {"learning_rate", "b1", "b2", "eps", "eps_root"}
  assert {x.dtype for x in jax.tree.leaves(state.inner_state[0].mu)} == {
      jnp.dtype(jnp.bfloat16)}
  theirs, _ = _steps(gtx.adam(0.02, mu_dtype=jnp.bfloat16, nesterov=True), params)
  assert_trajectories_close([ours], [theirs])


@pytest.mark.parametrize("static_args", ["not_a_parameter", ("b1", "lr")])
def test_unknown_static_args_raise(static_args):
  unknown = "not_a_parameter" if isinstance(static_args, str) else "lr"
  with pytest.raises(ValueError, match=f"inject_hyperparams: .*{unknown}.*adam"):
    gtx.inject_hyperparams(gtx.adam, static_args=static_args)
