"""Hyperparameters are traced, not baked in: the protocol promises that, through
``inject_hyperparams``, they can change between steps without recompiling.

Changing a learning rate, a momentum or an Adam ``b1``/``b2`` between steps, or letting a
schedule change it every step, must not compile a jitted step again. Compilations are
counted three ways: Python traces of the step function, ``jax.jit``'s cache size, and
XLA backend compilations reported through ``jax.monitoring`` while the step runs.

Oracles: ``optax.inject_hyperparams`` given the same overwrites (trajectories, step by
step), and, for bfloat16 params, a NumPy transcription of Adam with float32
hyperparameters and bfloat16 state (``reference_adam_bf16``), against which Adam with
``b2`` rounded to bfloat16 (1.0) fails.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import loss, make_params
from oracles import assert_trajectories_close, jitted_step, reference_trajectory

STEPS = 10
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def counting_compilations():
  """Counts XLA backend compilations inside the ``with`` block."""
  events = []

  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event == BACKEND_COMPILE:
      events.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield events
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def clipped_adamw(module):
  """A factory of a chain, the same in gradtx and Optax."""

  def factory(learning_rate, b1=0.9, weight_decay=1e-2, max_norm=1.0):
    return module.chain(module.clip_by_global_norm(max_norm),
                        module.scale_by_adam(b1=b1),
                        module.add_decayed_weights(weight_decay),
                        module.scale_by_learning_rate(learning_rate))

  return factory


def in_a_chain(module, factory):
  """An injected optimizer as the second member of a chain."""

  def build(**hyperparams):
    return module.chain(module.clip_by_global_norm(2.0),
                        module.inject_hyperparams(factory(module))(**hyperparams))

  return build


# name -> (build(module) -> transform, overwrites {step: {name: value}}, path to the
# injected state: None at the top, or the index of the chain member)
CASES = {
    "adam": (lambda m: m.inject_hyperparams(m.adam)(learning_rate=0.02),
             {2: {"learning_rate": 0.05}, 4: {"b1": 0.5}, 6: {"b2": 0.9},
              8: {"learning_rate": 0.01, "b1": 0.8}}, None),
    "sgd_momentum": (lambda m: m.inject_hyperparams(m.sgd)(learning_rate=0.02, momentum=0.9),
                     {3: {"learning_rate": 0.05}, 6: {"momentum": 0.5}}, None),
    "rmsprop": (lambda m: m.inject_hyperparams(m.rmsprop)(learning_rate=0.01, decay=0.9,
                                                          momentum=0.5),
                {2: {"decay": 0.99}, 5: {"learning_rate": 0.03}, 7: {"momentum": 0.8}},
                None),
    "chain_factory": (lambda m: m.inject_hyperparams(clipped_adamw(m))(learning_rate=0.02),
                      {3: {"learning_rate": 0.05, "b1": 0.5}, 6: {"weight_decay": 0.1,
                                                                  "max_norm": 0.5}}, None),
    "chain_member": (lambda m: in_a_chain(m, lambda m: m.adam)(learning_rate=0.02, b1=0.9),
                     {3: {"learning_rate": 0.05}, 6: {"b1": 0.5}}, 1),
}

# Ways to write a new value that keep the stored dtype (float32), so that no overwrite
# compiles the step again; "python_float" (a weakly typed value) is tested on its own.
SPELLINGS = {
    "with_hyperparams": None,
    "float32_array": lambda v: jnp.asarray(v, jnp.float32),
    "jnp_float32": jnp.float32,
    "numpy_float32": np.float32,
}
CASTS = {**SPELLINGS, "python_float": lambda v: v}


def overwrite(state, path, values, spelling):
  """``state`` with ``values`` written into the injected state's hyperparams."""
  injected = state if path is None else state[path]
  if spelling == "with_hyperparams":
    injected = injected.with_hyperparams(**values)
    return injected if path is None else (*state[:path], injected, *state[path + 1:])
  for name, value in values.items():
    injected.hyperparams[name] = CASTS[spelling](value)
  return state


def run(tx, params, overwrites, path, spelling, steps=STEPS):
  """Jitted steps with the overwrites: params after each, Python traces, the jit cache
  size and the backend compilations of the step."""
  step, traces = jitted_step(tx)
  state = tx.init(params)
  path_, compiles = [], 0
  for t in range(steps):
    if t in overwrites:
      state = overwrite(state, path, overwrites[t], spelling)
    with counting_compilations() as events:
      params, state = step(params, state)
    compiles += len(events)
    path_.append(params)
  return path_, state, len(traces), step._cache_size(), compiles


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("case", CASES)
def test_overwrites_between_steps_do_not_recompile(case, spelling):
  build, overwrites, path = CASES[case]
  params = make_params()
  ours, state, traces, cache_size, compiles = run(build(gtx), params, overwrites, path,
                                                  spelling)
  assert (traces, compiles) == (1, 1)
  # jit's dispatch cache also keys on the Python type of an input (a NumPy scalar is not
  # a jax.Array): a NumPy value adds an entry there, but no trace and no compilation.
  assert cache_size == 1 or spelling == "numpy_float32"
  # The new values reached the compiled step: Optax, given the same overwrites.
  theirs, *_ = run(build(optax), params, overwrites, path, "float32_array")
  assert_trajectories_close(ours, theirs)
  injected = state if path is None else state[path]
  for values in overwrites.values():
    for name in values:
      assert injected.hyperparams[name].dtype == jnp.float32


def test_a_python_float_compiles_once_more_and_no_more():
  """Assigned directly into the dict, a Python float is weakly typed: the first one
  compiles a second variant of the step; every update stores the values back as strong
  float32, so a learning-rate loop assigning Python floats never compiles a third."""
  tx = gtx.inject_hyperparams(gtx.adam)(learning_rate=0.02)
  params = make_params()
  overwrites = {t: {"learning_rate": 0.02 * 0.8**t} for t in range(1, STEPS)}
  ours, state, traces, cache_size, compiles = run(tx, params, overwrites, None,
                                                  "python_float")
  assert (traces, cache_size, compiles) == (2, 2, 2)
  init = tx.init(params)
  assert jax.tree.map(jax.typeof, state) == jax.tree.map(jax.typeof, init)
  theirs, *_ = run(tx, params, overwrites, None, "with_hyperparams")
  assert_trajectories_close(ours, theirs)


def test_with_hyperparams_keeps_dtype_and_shape_and_does_not_mutate():
  tx = gtx.inject_hyperparams(gtx.adam)(learning_rate=0.02)
  state = tx.init(make_params())
  new = state.with_hyperparams(learning_rate=0.5, b2=np.float64(0.95))
  assert state.hyperparams["learning_rate"] == np.float32(0.02)
  assert new.hyperparams["learning_rate"] == np.float32(0.5)
  assert new.hyperparams["b2"] == np.float32(0.95)
  assert jax.tree.map(jax.typeof, new) == jax.tree.map(jax.typeof, state)
  batched = jax.vmap(tx.init)(jax.tree.map(lambda x: jnp.stack([x, x]), make_params()))
  assert batched.with_hyperparams(b1=0.5).hyperparams["b1"].shape == (2,)
  with pytest.raises(ValueError, match=r"with_hyperparams: \['lr'\] are not among"):
    state.with_hyperparams(lr=0.1)
  with jax.enable_x64(True):
    tx = gtx.inject_hyperparams(gtx.adam)(learning_rate=0.02)
    state = tx.init(make_params(jnp.float64))
    new = state.with_hyperparams(b2=0.999)
    assert new.hyperparams["b2"].dtype == jnp.float64 and new.hyperparams["b2"] == 0.999


def test_schedules_change_every_step_without_recompiling():
  lr = lambda count: 0.05 * 0.9**count  # noqa: E731
  b1 = lambda count: 0.5 + 0.4 * (1 - 0.7**count)  # noqa: E731
  ours, state, traces, cache_size, compiles = run(
      gtx.inject_hyperparams(gtx.adam)(learning_rate=lr, b1=b1), make_params(), {}, None,
      "with_hyperparams")
  assert (traces, cache_size, compiles) == (1, 1, 1)
  # The value used by the last step (count STEPS - 1 before it), as Optax stores it.
  np.testing.assert_allclose(state.hyperparams["learning_rate"], lr(STEPS - 1), rtol=1e-6)
  np.testing.assert_allclose(state.hyperparams["b1"], b1(STEPS - 1), rtol=1e-6)
  theirs, *_ = run(optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=b1),
                   make_params(), {}, None, "with_hyperparams")
  assert_trajectories_close(ours, theirs)


# --- bfloat16 params ----------------------------------------------------------------------

BF16 = jnp.bfloat16


@pytest.mark.parametrize("build, names", [
    (lambda: gtx.inject_hyperparams(gtx.adam)(learning_rate=0.01, b2=0.999),
     {"learning_rate", "b1", "b2", "eps", "eps_root"}),
    (lambda: gtx.inject_hyperparams(gtx.sgd)(learning_rate=0.01, momentum=0.999),
     {"learning_rate", "momentum"}),
    (lambda: gtx.inject_hyperparams(gtx.rmsprop)(learning_rate=0.01, decay=0.999),
     {"learning_rate", "decay", "eps", "initial_scale"}),
], ids=["adam", "sgd", "rmsprop"])
def test_bfloat16_params_keep_float32_hyperparams(build, names):
  tx = build()
  params = make_params(BF16)
  state = tx.init(params)
  step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
  for _ in range(2):
    updates, state = step(params, state)
    params = gtx.apply_updates(params, updates)
    assert set(state.hyperparams) == names
    for name, value in state.hyperparams.items():
      assert value.dtype == jnp.float32, name
    assert {u.dtype for u in jax.tree.leaves(updates)} == {jnp.dtype(BF16)}
  name = next(n for n in ("b2", "momentum", "decay") if n in names)
  assert state.hyperparams[name] == np.float32(0.999) != 1.0


def reference_adam_bf16(learning_rate, b1, b2, eps):
  """Adam (Kingma & Ba 2015, Algorithm 1) for one bfloat16 array: hyperparameters and
  arithmetic in float32; ``mu``, ``nu``, the direction and the step rounded to bfloat16
  where gradtx stores or emits them."""
  f32 = np.float32
  learning_rate, b1, b2, eps = f32(learning_rate), f32(b1), f32(b2), f32(eps)

  def init(p):
    return np.zeros_like(p), np.zeros_like(p)

  def rule(t, g, p, mu, nu):
    del p
    g = g.astype(f32)
    mu = (1 - b1) * g + b1 * mu.astype(f32)
    nu = (1 - b2) * g * g + b2 * nu.astype(f32)
    direction = (mu / (1 - b1**t)) / (np.sqrt(nu / (1 - b2**t)) + eps)
    step = -learning_rate * direction.astype(BF16).astype(f32)
    return step.astype(BF16), mu.astype(BF16), nu.astype(BF16)

  return rule, init


def test_bfloat16_adam_trajectory_matches_a_float32_hyperparameter_reference():
  tx = gtx.inject_hyperparams(gtx.adam)(learning_rate=0.01, b1=0.9, b2=0.999)
  params = make_params(BF16)
  state = tx.init(params)
  assert state.hyperparams["b2"].dtype == jnp.float32
  assert state.hyperparams["b2"] == np.float32(0.999)
  step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
  ours = []
  for _ in range(60):
    updates, state = step(params, state)
    params = gtx.apply_updates(params, updates)
    ours.append(params)
  bf16_tol = dict(rtol=2**-6, atol=2**-8)  # two bfloat16 ulps (ulp/|x| <= 2**-7)
  assert_trajectories_close(ours, reference_trajectory(
      *reference_adam_bf16(0.01, 0.9, 0.999, 1e-8), make_params(BF16), 60), tol=bf16_tol)
  # The test has teeth: with b2 rounded to bfloat16 (1.0) nu stays 0 and Adam takes
  # steps of lr * mu_hat / eps.
  rounded_b2 = float(jnp.asarray(0.999, BF16).astype(jnp.float32))
  assert rounded_b2 == 1.0
  with pytest.raises(AssertionError), np.errstate(divide="ignore", invalid="ignore"):
    assert_trajectories_close(ours, reference_trajectory(
        *reference_adam_bf16(0.01, 0.9, rounded_b2, 1e-8), make_params(BF16), 60),
        tol=bf16_tol)
