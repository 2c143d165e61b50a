"""apply_if_finite and accumulate_gradients against Optax's apply_if_finite and MultiSteps.

Oracle: Optax, wrapping the same Optax inner transform (a gradtx wrapper must accept a
plain Optax inner). Trajectories are compared step by step, params and state counters.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import loss, make_params
from oracles import assert_trajectories_close, tolerance, trajectory

STEPS = 56
LAST_RUN = 50  # start of the final run of non-finite steps, longer than the limit


def poison_schedule(max_errors):
  """What to add to one gradient leaf at each step: 0, or a NaN/Inf.

  Isolated non-finite steps and runs of exactly ``max_errors`` (all skipped), then from
  step ``LAST_RUN`` a run of ``max_errors + 3``: the wrapper skips ``max_errors`` of them,
  gives up, and the non-finite update reaches the params.
  """
  single = min(1, max_errors)
  runs = [(4, single), (10, max_errors), (20, max_errors), (30, single), (40, single),
          (LAST_RUN, max_errors + 3)]
  poison = np.zeros(STEPS)
  values = [np.nan, np.inf, -np.inf]
  for start, length in runs:
    for i in range(length):
      poison[start + i] = values[(start + i) % 3]
  return poison


def inner():
  return optax.sgd(0.1, momentum=0.9)


@functools.partial(jax.jit, static_argnums=0)
def poisoned_step(tx, params, state, bad):
  """One step on ``conftest.loss`` with ``bad`` (0, NaN or Inf) added to one leaf."""
  grads = jax.grad(loss)(params)
  grads = {**grads, "vector": grads["vector"] + bad.astype(grads["vector"].dtype)}
  updates, state = tx.update(grads, state, params)
  return gtx.apply_updates(params, updates), state


def poisoned_run(tx, params, poison):
  """Params and state after each step; ``poison[t]`` is added to one gradient leaf."""
  state = tx.init(params)
  path, states = [], []
  for bad in poison:
    params, state = poisoned_step(tx, params, state, jnp.asarray(bad))
    path.append(params)
    states.append(state)
  return path, states


def assert_states_close(ours, theirs, dtype):
  """Same field names and, step by step, equal counters and close float leaves (Optax's
  MultiStepsState has one more field, an empty ``skip_state``)."""
  for t, (a, b) in enumerate(zip(ours, theirs)):
    assert set(type(a)._fields) <= set(type(b)._fields)
    for field in type(a)._fields:
      for x, y in zip(jax.tree.leaves(getattr(a, field)),
                      jax.tree.leaves(getattr(b, field)), strict=True):
        assert x.dtype == y.dtype, f"step {t + 1}, {field}: {x.dtype} != {y.dtype}"
        np.testing.assert_allclose(x, y, **tolerance(dtype), err_msg=f"step {t + 1}, {field}")


@pytest.mark.parametrize("max_errors, dtype", [(0, jnp.float32), (1, jnp.float32),
                                               (3, jnp.float64)])
def test_apply_if_finite_matches_optax(max_errors, dtype):
  poison = poison_schedule(max_errors)
  with jax.enable_x64(dtype == jnp.float64):
    params = make_params(dtype)
    ours, our_states = poisoned_run(gtx.apply_if_finite(inner(), max_errors), params,
                                    poison)
    theirs, their_states = poisoned_run(optax.apply_if_finite(inner(), max_errors),
                                        params, poison)
  assert_trajectories_close(ours, theirs, dtype)
  assert_states_close(our_states, their_states, dtype)
  # The rule itself, independently of Optax: skipped steps move nothing, and the final
  # run is accepted at its (max_errors + 1)-th step.
  vector = [np.asarray(p["vector"]) for p in ours]
  first_nan = next(t for t, v in enumerate(vector) if not np.isfinite(v).all())
  assert first_nan == LAST_RUN + max_errors
  for t in np.flatnonzero(~np.isfinite(poison[:LAST_RUN])):
    np.testing.assert_array_equal(vector[t], vector[t - 1])
  # After that the params are NaN, so every later gradient is non-finite too.
  totals = [int(s.total_notfinite) for s in our_states]
  assert totals[:first_nan + 1] == list(np.cumsum(~np.isfinite(poison[:first_nan + 1])))


@pytest.mark.parametrize("every_k, dtype", [
    (1, jnp.float32), (3, jnp.float32), (lambda step: jnp.where(step < 4, 2, 5), jnp.float32),
    (3, jnp.float64)], ids=["k1", "k3", "schedule", "k3-float64"])
def test_accumulate_gradients_matches_optax_multisteps(every_k, dtype):
  with jax.enable_x64(dtype == jnp.float64):
    params = make_params(dtype)
    poison = np.zeros(60)
    ours, our_states = poisoned_run(gtx.accumulate_gradients(inner(), every_k), params,
                                    poison)
    oracle = optax.MultiSteps(inner(), every_k, accumulator_dtype=dtype)
    theirs, their_states = poisoned_run(oracle.gradient_transformation(), params, poison)
  assert_trajectories_close(ours, theirs, dtype)
  assert_states_close(our_states, their_states, dtype)


def test_accumulate_gradients_emits_zeros_between_inner_steps(params):
  path = trajectory(gtx.accumulate_gradients(inner(), 4), params, steps=8)
  for t in (0, 1, 2, 4, 5, 6):
    assert_trajectories_close([path[t]], [params] if t < 3 else [path[3]])
  assert not np.allclose(path[3]["vector"], params["vector"])


def test_accumulate_gradients_keeps_float32_accumulator_for_bfloat16(params):
  params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
  tx = gtx.accumulate_gradients(inner(), 2)
  state = tx.init(params)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(state.acc_grads))
  grads = jax.tree.map(jnp.ones_like, params)
  update = jax.jit(tx.update)
  for _ in range(2):
    updates, state = update(grads, state, params)
  assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
  for u in jax.tree.leaves(updates):
    np.testing.assert_allclose(np.asarray(u, np.float32), -0.1, rtol=1e-2)


@pytest.mark.parametrize("wrap", [lambda tx: gtx.apply_if_finite(tx, 1),
                                  lambda tx: gtx.accumulate_gradients(tx, 2)],
                         ids=["apply_if_finite", "accumulate_gradients"])
def test_skipped_step_zeros_take_the_inner_output_dtype(wrap, params):
  cast = gtx.stateless(lambda u, p: jax.tree.map(lambda x: x.astype(jnp.bfloat16), u))
  tx = wrap(cast)
  grads = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), params)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("wrap", [lambda tx: gtx.apply_if_finite(tx, 1),
                                  lambda tx: gtx.accumulate_gradients(tx, 3)],
                         ids=["apply_if_finite", "accumulate_gradients"])
def test_scan_matches_python_loop(wrap, params):
  tx = wrap(inner())
  poison = poison_schedule(1)[:12]

  def step(carry, bad):
    return poisoned_step(tx, *carry, bad), None

  (scanned, _), _ = jax.lax.scan(step, (params, tx.init(params)),
                                  jnp.asarray(poison))
  looped, _ = poisoned_run(tx, params, poison)
  assert_trajectories_close([scanned], [looped[-1]])


@pytest.mark.parametrize("wrap", [lambda tx: gtx.apply_if_finite(tx, 1),
                                  lambda tx: gtx.accumulate_gradients(tx, 2)],
                         ids=["apply_if_finite", "accumulate_gradients"])
def test_vmap_over_a_batch_of_params(wrap):
  tx = wrap(inner())
  members = [make_params(seed=s) for s in range(3)]
  batch = jax.tree.map(lambda *xs: jnp.stack(xs), *members)
  # Member 1 sees a NaN at step 1: it must not leak into the other members, and
  # apply_if_finite must skip that step for member 1 alone.
  poison = np.zeros((4, 3))
  poison[1, 1] = np.nan

  vstep = jax.jit(jax.vmap(functools.partial(poisoned_step, tx)))
  state = jax.vmap(tx.init)(batch)
  for bad in poison:
    batch, state = vstep(batch, state, jnp.asarray(bad))
  for i, member in enumerate(members):
    alone, _ = poisoned_run(tx, member, poison[:, i])
    assert_trajectories_close([jax.tree.map(lambda x: x[i], batch)], [alone[-1]])
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(alone[-1])) or i == 1


@pytest.mark.parametrize("wrap", [lambda tx: gtx.apply_if_finite(tx, 0),
                                  lambda tx: gtx.accumulate_gradients(tx, 1)],
                         ids=["apply_if_finite", "accumulate_gradients"])
def test_extra_args_reach_the_inner_transform(wrap, params):
  def update(updates, state, params=None, *, value):
    return jax.tree.map(lambda u: value * u, updates), state

  tx = wrap(gtx.GradientTransformation(lambda p: gtx.EmptyState(), update))
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params, value=3.0, grad=grads)
  assert_trajectories_close([updates], [jax.tree.map(lambda g: 3.0 * g, grads)])


@pytest.mark.parametrize("call, message", [
    (lambda: gtx.apply_if_finite(inner(), -1), "apply_if_finite: max_consecutive_errors"),
    (lambda: gtx.accumulate_gradients(inner(), 0), "accumulate_gradients: every_k"),
    (lambda: gtx.accumulate_gradients(inner(), 2.5), "accumulate_gradients: every_k"),
])
def test_invalid_hyperparameters_raise(call, message):
  with pytest.raises(ValueError, match=message):
    call()


@pytest.mark.parametrize("every_k", [np.int64(2), lambda step: jnp.where(step < 1, 2, 3)],
                         ids=["numpy-int64", "schedule"])
def test_accumulate_gradients_counters_keep_their_dtype_under_x64(every_k):
  with jax.enable_x64(True):
    params = make_params(jnp.float64)
    tx = gtx.accumulate_gradients(inner(), every_k)
    state = tx.init(params)
    _, new_state = jax.jit(tx.update)(params, state, params)
    assert jax.tree.map(lambda x: x.dtype, new_state) == jax.tree.map(lambda x: x.dtype, state)


def test_accumulate_gradients_reports_a_tree_mismatch(params):
  tx = gtx.accumulate_gradients(inner(), 2)
  state = tx.init(params)
  with pytest.raises(ValueError, match="tree structure"):
    tx.update({"other": jnp.zeros(3)}, state)


@pytest.mark.parametrize("wrap, oracle, poisoned", [
    (lambda tx: gtx.apply_if_finite(tx, 2), lambda tx: optax.apply_if_finite(tx, 2), True),
    (lambda tx: gtx.accumulate_gradients(tx, 3),
     lambda tx: optax.MultiSteps(tx, 3).gradient_transformation(), False),
], ids=["apply_if_finite", "accumulate_gradients"])
def test_wrapping_gradtx_adam_matches_optax_adam(wrap, oracle, poisoned, params):
  """Oracle: the Optax wrapper around optax.adam; ours wraps gtx.adam. (Accumulation
  runs on finite gradients: Optax's reset keeps a NaN, ours clears it.)"""
  poison = poison_schedule(2)[:LAST_RUN] if poisoned else np.zeros(LAST_RUN)
  ours, _ = poisoned_run(wrap(gtx.adam(0.02)), params, poison)
  theirs, _ = poisoned_run(oracle(optax.adam(0.02)), params, poison)
  assert_trajectories_close(ours, theirs)


def test_apply_if_finite_skips_steps_that_the_inner_transform_makes_non_finite():
  """A schedule that returns NaN at step 1 (from 0): the incoming gradients are finite,
  the inner update is not. That step is skipped like a non-finite gradient (zeros, the
  inner state untouched, so the schedule sees count 1 again), and after
  max_consecutive_errors=2 skips the third is given up on and passes through."""
  learning_rate = lambda count: jnp.where(count == 1, jnp.nan, 0.5)  # noqa: E731
  tx = gtx.apply_if_finite(gtx.sgd(learning_rate), max_consecutive_errors=2)
  params = {"w": jnp.ones(2), "b": jnp.ones(())}
  grads = jax.tree.map(jnp.ones_like, params)
  state = tx.init(params)
  step = jax.jit(tx.update)
  expected = [(-0.5, 0, True), (0.0, 1, False), (0.0, 2, False), (math.nan, 3, False)]
  for t, (update, notfinite, finite) in enumerate(expected):
    inner_count = state.inner_state[1].count
    updates, state = step(grads, state)
    np.testing.assert_array_equal(updates["w"], np.full(2, update), err_msg=f"step {t}")
    assert int(state.notfinite_count) == notfinite and bool(state.last_finite) == finite
    assert int(state.total_notfinite) == notfinite
    if t in (1, 2):  # skipped: the inner state did not move
      assert int(state.inner_state[1].count) == int(inner_count)
