"""Oracle: Optax 0.2.8, for Lion, the sign methods, AdaBelief, Yogi, NAdamW, AdamaxW,
Adan, NovoGrad, gradient noise and the optimistic methods.

Every name follows Optax's trajectory step by step over 60 jitted steps on the mixed
pytree of ``conftest.make_params`` (scalar, vector, matrix, 3-D), in float32 and float64,
with its defaults and with a non-default configuration, and ends in a state of Optax's
layout (class names and fields, member by member of a chain) holding Optax's values.
Primitives are followed by ``scale(-LR)`` on both sides so that they descend. A
primitive whose alias is ``chain(primitive(), ..., scale_by_learning_rate(lr))`` with the
primitive's own defaults is compared at its defaults through the alias
(``DEFAULTS_THROUGH``), and at a non-default configuration on its own.

Tolerances are ``oracles.tolerance``'s (float64: 1e-12 relative): the transforms compute
what Optax computes, in the same order. One exception, NovoGrad's float32 state (below).

Departures, each shown by a test below: ``add_noise`` keeps its key as raw data (Optax's
typed key cannot be checkpointed with flax) and draws bfloat16 leaves' noise in float32;
a low-precision ``mu_dtype`` momentum is updated in float32 and rounded once (Optax
rounds ``b*mu`` to ``mu_dtype`` first), as every gradtx rule computes in at least
float32.
"""

import warnings

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import loss, make_params
from oracles import assert_trajectories_close, paired_trajectories, tolerance, trajectory

LR = 0.02
sched = lambda count: 0.05 * 0.97**count  # noqa: E731
no_bias = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731


def descending(m, tx):
  return m.chain(tx, m.scale(-LR))


# name -> {configuration: factory of the module (gradtx or optax)}; the part of the name
# before "/" is the public name under test.
CASES = {
    "scale_by_lion": {
        "smooth": lambda m: descending(m, m.scale_by_lion(0.8, 0.95, mode="smooth",
                                                          smooth_beta=2.0)),
        # Scaled down so that the interpolation is below 1 in some steps, above in others.
        "refined": lambda m: descending(m, m.chain(m.scale(0.5),
                                                   m.scale_by_lion(mode="refined")))},
    "lion": {
        "defaults": lambda m: m.lion(LR),
        "schedule_mask": lambda m: m.lion(sched, 0.95, 0.98, None, 0.1, no_bias)},
    "sign_sgd": {"defaults": lambda m: m.sign_sgd(LR),
                 "schedule": lambda m: m.sign_sgd(sched)},
    "signum": {"defaults": lambda m: m.signum(LR),
               "schedule": lambda m: m.signum(sched, 0.5)},
    "scale_by_belief": {
        "nesterov": lambda m: descending(m, m.scale_by_belief(0.8, 0.99, 1e-8, 0.0,
                                                              nesterov=True))},
    "adabelief": {"defaults": lambda m: m.adabelief(LR),
                  "schedule_nesterov": lambda m: m.adabelief(sched, 0.8, nesterov=True)},
    "scale_by_yogi": {
        "custom": lambda m: descending(m, m.scale_by_yogi(0.8, 0.99, 1e-4, 1e-8, 0.1))},
    "yogi": {"defaults": lambda m: m.yogi(LR),
             "schedule": lambda m: m.yogi(sched, b1=0.5, b2=0.99, eps=1e-2)},
    "nadamw": {"defaults": lambda m: m.nadamw(LR),
               "mask": lambda m: m.nadamw(sched, b1=0.8, eps_root=1e-8, weight_decay=0.1,
                                          mask=no_bias)},
    "adamaxw": {"defaults": lambda m: m.adamaxw(LR),
                "mask": lambda m: m.adamaxw(sched, 0.8, 0.99, 1e-6, 0.1, no_bias)},
    "scale_by_adan": {
        "defaults": lambda m: descending(m, m.scale_by_adan()),
        "custom": lambda m: descending(m, m.scale_by_adan(0.9, 0.8, 0.95, 1e-6, 1e-8))},
    "adan": {"defaults": lambda m: m.adan(LR),
             "schedule_mask": lambda m: m.adan(sched, weight_decay=0.1, mask=no_bias)},
    "scale_by_novograd": {
        "defaults": lambda m: descending(m, m.scale_by_novograd()),
        "weight_decay": lambda m: descending(m, m.scale_by_novograd(0.8, 0.5, 1e-6, 1e-8,
                                                                    0.1))},
    "novograd": {"defaults": lambda m: m.novograd(LR),
                 "schedule": lambda m: m.novograd(sched, b2=0.5, weight_decay=0.01)},
    "add_noise": {
        "key": lambda m: descending(m, m.add_noise(0.1, 0.3, jax.random.key(7)))},
    "noisy_sgd": {"defaults": lambda m: m.noisy_sgd(LR, key=0),  # key 0: the default
                  "schedule_key": lambda m: m.noisy_sgd(sched, 0.05, 1.0, jax.random.key(5))},
    "scale_by_optimistic_gradient": {
        "custom": lambda m: descending(m, m.scale_by_optimistic_gradient(0.5, 2.0))},
    "optimistic_gradient_descent": {
        "defaults": lambda m: m.optimistic_gradient_descent(LR),
        "schedule": lambda m: m.optimistic_gradient_descent(sched, 0.7, 0.3)},
    "optimistic_adam": {
        "defaults": lambda m: m.optimistic_adam(LR),
        "custom": lambda m: m.optimistic_adam(LR, 0.01, 0.8, 0.99, 1e-6, 1e-8,
                                              nesterov=False)},
    "optimistic_adam_v2": {
        "defaults": lambda m: m.optimistic_adam_v2(LR),
        "schedule": lambda m: m.optimistic_adam_v2(sched, alpha=0.5, beta=1.5, b1=0.8,
                                                   nesterov=False)},
}
CONFIGS = [(name, config) for name, configs in CASES.items() for config in configs]
# Primitives compared at their defaults inside an alias that builds them with those
# defaults (scale_by_sign has no hyperparameters: sign_sgd is all of it; add_noise has
# no defaults for eta and gamma: noisy_sgd's are the paper's).
DEFAULTS_THROUGH = {"scale_by_lion": "lion", "scale_by_sign": "sign_sgd",
                    "add_noise": "noisy_sgd",
                    "scale_by_belief": "adabelief", "scale_by_yogi": "yogi",
                    "scale_by_optimistic_gradient": "optimistic_gradient_descent"}
# NovoGrad's float32 state after 60 steps: each step agrees with Optax's to an ulp (XLA
# fuses the two programs differently), but NovoGrad normalises each gradient by its
# norm, and near the optimum the gradients are differences of nearly equal numbers, so
# ulp differences of the params grow to ~1e-4 relative in the momentum (the params
# themselves stay within the float32 tolerance; float64 stays within 1e-12).
STATE_F32 = {"scale_by_novograd": dict(rtol=1e-3, atol=1e-5),
             "novograd": dict(rtol=1e-3, atol=1e-5)}


def build(module, name, config):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # optimistic_adam's
    return CASES[name][config](module)


def layout(state):
  """The state's classes, their fields, and containers, with the leaves left out."""
  if isinstance(state, tuple) and hasattr(state, "_fields"):
    return (type(state).__name__, state._fields, tuple(layout(x) for x in state))
  if isinstance(state, (tuple, list)):
    return tuple(layout(x) for x in state)
  if isinstance(state, dict):
    return {k: layout(v) for k, v in state.items()}
  return "leaf"


def assert_states_close(ours, theirs, dtype, tol=None):
  assert layout(ours) == layout(theirs)
  tol = tol or tolerance(dtype)
  # Optax keeps add_noise's key typed; gradtx keeps its raw data (see test_noise below).
  theirs = gtx.tree_utils.tree_unwrap_random_key_data(theirs)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(theirs),
                          strict=True):
    where = jax.tree_util.keystr(path)
    assert x.dtype == y.dtype and x.shape == y.shape, where
    if jnp.issubdtype(x.dtype, jnp.inexact):
      np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                 **tol, err_msg=where)
    else:
      np.testing.assert_array_equal(x, y, err_msg=where)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, config", CONFIGS, ids=[f"{n}-{c}" for n, c in CONFIGS])
def test_matches_optax(name, config, dtype):
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    (ours, theirs), (our_state, their_state) = paired_trajectories(
        build(gtx, name, config), build(optax, name, config), params, return_state=True)
    assert_trajectories_close(ours, theirs, dtype)
    tol = STATE_F32.get(name) if dtype == "float32" else None
    assert_states_close(our_state, their_state, dtype, tol)


def test_every_name_of_the_family_is_compared():
  assert all("defaults" in CASES[alias] for alias in DEFAULTS_THROUGH.values())
  names = {name.split("/")[0] for name in CASES} | set(DEFAULTS_THROUGH)
  assert names == {
      "scale_by_lion", "lion", "scale_by_sign", "sign_sgd", "signum", "scale_by_belief",
      "adabelief", "scale_by_yogi", "yogi", "nadamw", "adamaxw", "scale_by_adan", "adan",
      "scale_by_novograd", "novograd", "add_noise", "noisy_sgd",
      "scale_by_optimistic_gradient", "optimistic_gradient_descent", "optimistic_adam",
      "optimistic_adam_v2"}
  for name, configs in CASES.items():
    if "/" not in name:  # defaults, here or through an alias, and another configuration
      assert len(configs) + (name in DEFAULTS_THROUGH) >= 2, name
  for name in ["ScaleByLionState", "ScaleByBeliefState", "ScaleByAdanState",
               "ScaleByNovogradState", "AddNoiseState"]:
    assert getattr(gtx, name)._fields == getattr(optax, name)._fields, name


# --- low-precision momentum ---------------------------------------------------------------


def _vector_problem(n=4096, seed=0):
  rng = np.random.default_rng(seed)
  return {"w": jnp.asarray(rng.normal(size=n), jnp.float32)}, [
      {"w": jnp.asarray(rng.normal(size=n), jnp.float32)} for _ in range(3)]


def _updates(tx, params, grads):
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update(g, state, params)
  return updates, state


@pytest.mark.parametrize("name", ["lion", "novograd"])
def test_low_precision_momentum_is_updated_in_float32_and_rounded_once(name):
  """With ``mu_dtype=bfloat16`` gradtx computes ``b*mu + ...`` in float32 and rounds the
  new momentum once. Optax writes ``b*mu`` with ``mu`` in bfloat16, which stays bfloat16
  (a Python float times a bfloat16 array): rounded a first time wherever XLA does not
  fuse the product away, as in eager Lion (shown here; in NovoGrad's ``lax.cond`` XLA
  fuses it). The stored momentum is bfloat16 in both."""
  b1, b2 = 0.9, 0.99
  params, grads = _vector_problem()
  if name == "lion":
    make = lambda m: m.scale_by_lion(b1, b2, mu_dtype=jnp.bfloat16)  # noqa: E731
  else:
    make = lambda m: m.scale_by_novograd(b1, mu_dtype=jnp.bfloat16)  # noqa: E731
  _, before = _updates(make(gtx), params, grads[:2])
  # One more step from the same state (Optax's update reads the same fields).
  u_ours, ours = make(gtx).update(grads[2], before, params)
  _, theirs = make(optax).update(grads[2], before, params)
  assert ours.mu["w"].dtype == theirs.mu["w"].dtype == jnp.bfloat16
  g, mu = grads[2]["w"], before.mu["w"]
  if name == "lion":
    np.testing.assert_array_equal(
        u_ours["w"], jnp.sign((1 - b1) * g + b1 * mu.astype(jnp.float32)))
    once = ((1 - b2) * g + b2 * mu.astype(jnp.float32)).astype(jnp.bfloat16)
    twice = ((1 - b2) * g + b2 * mu).astype(jnp.bfloat16)  # b2 * mu is bfloat16
  else:
    step = g / (jnp.sqrt(ours.nu["w"]) + 1e-8)
    once = (b1 * mu.astype(jnp.float32) + step).astype(jnp.bfloat16)
    twice = None
  np.testing.assert_array_equal(np.asarray(ours.mu["w"], np.float32),
                                np.asarray(once, np.float32))
  if twice is not None:
    np.testing.assert_array_equal(np.asarray(theirs.mu["w"], np.float32),
                                  np.asarray(twice, np.float32))
    assert np.any(np.asarray(once != twice))


# --- gradient noise ----------------------------------------------------------------------


def _noise(tx, steps=3):
  """The noise of ``steps`` eager updates of zero gradients."""
  params = make_params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  state = tx.init(params)
  path = []
  for _ in range(steps):
    updates, state = tx.update(zeros, state, params)
    path.append(updates)
  return path


def assert_same_noise(ours, theirs):
  for a, b in zip(_noise(ours), _noise(theirs), strict=True):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
      np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("key", ["seed", "typed", "raw"])
def test_every_key_form_gives_optax_noise(key):
  ours = {"seed": 3, "typed": jax.random.key(3), "raw": jax.random.PRNGKey(3)}[key]
  # Optax takes a seed or a typed key; jax.random.PRNGKey(3) is jax.random.key(3)'s data.
  theirs = 3 if key == "seed" else jax.random.key(3)
  assert_same_noise(gtx.add_noise(0.5, 0.55, ours), optax.add_noise(0.5, 0.55, theirs))


def test_noise_without_a_key_warns_and_uses_key_0():
  with pytest.warns(UserWarning, match="noisy_sgd: no key given, using key 0"):
    tx = gtx.noisy_sgd(LR)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    theirs = optax.noisy_sgd(LR)
  assert_same_noise(tx, theirs)


def test_seed_is_a_deprecated_name_of_the_key():
  with pytest.warns(DeprecationWarning, match="add_noise: seed is deprecated"):
    by_seed = gtx.add_noise(0.5, 0.55, seed=4)
  assert_same_noise(by_seed, gtx.add_noise(0.5, 0.55, key=4))
  with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="not both"):
    gtx.noisy_sgd(LR, key=1, seed=2)


def test_noise_state_checkpoints_where_optax_does_not():
  """The departure in the state: Optax's typed key cannot be serialised by flax, so
  gradtx keeps the key's raw data; the restored state carries on with the same noise."""
  params = make_params()
  grads = jax.grad(loss)(params)
  with pytest.raises(TypeError, match="PRNGKey"):
    flax.serialization.to_bytes(optax.add_noise(0.5, 0.55, 2).init(params))
  tx = gtx.add_noise(0.5, 0.55, 2)
  _, state = tx.update(grads, tx.init(params), params)
  restored = flax.serialization.from_bytes(tx.init(params),
                                           flax.serialization.to_bytes(state))
  assert restored.rng_key.dtype == jnp.uint32
  for x, y in zip(jax.tree.leaves(tx.update(grads, restored, params)),
                  jax.tree.leaves(tx.update(grads, state, params)), strict=True):
    np.testing.assert_array_equal(x, y)


def test_bfloat16_noise_is_the_float32_noise_rounded():
  """The departure for low precision: gradtx draws float32 noise for a bfloat16 leaf (and
  adds in float32), so a bfloat16 run gets the float32 run's noise, rounded once. Optax
  draws bfloat16 noise, another sample."""
  params = make_params()
  grads = jax.tree.map(lambda g: g.astype(jnp.bfloat16), jax.grad(loss)(params))
  low = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
  tx = gtx.add_noise(0.5, 0.55, 6)
  updates, _ = tx.update(grads, tx.init(low), low)
  wide = jax.tree.map(lambda g: g.astype(jnp.float32), grads)
  reference, _ = tx.update(wide, tx.init(params), params)
  for x, y in zip(jax.tree.leaves(updates), jax.tree.leaves(reference), strict=True):
    assert x.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(x, np.float32),
                                  np.asarray(y.astype(jnp.bfloat16), np.float32))


# --- optimistic Adam's interfaces --------------------------------------------------------


def test_optimistic_adam_is_deprecated_as_in_optax():
  with pytest.warns(DeprecationWarning, match="use optimistic_adam_v2"):
    gtx.optimistic_adam(LR)


def test_optimistic_adam_takes_a_learning_rate_schedule():
  """Optax's first interface rejects a schedule; gradtx takes one, as for every
  hyperparameter. A constant schedule gives the constant's trajectory."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    with pytest.raises(ValueError, match="does not support"):
      optax.optimistic_adam(sched)
    scheduled = gtx.optimistic_adam(lambda count: jnp.full([], LR))
    constant = gtx.optimistic_adam(LR)
    params = make_params()
    assert_trajectories_close(trajectory(scheduled, params, steps=10),
                              trajectory(constant, params, steps=10))


@pytest.mark.parametrize("make", [
    lambda m, s: m.optimistic_gradient_descent(LR, alpha=s(0.5), beta=s(1.5)),
    lambda m, s: m.novograd(LR, weight_decay=s(0.1)),
], ids=["optimistic_gradient_descent-alpha_beta", "novograd-weight_decay"])
def test_schedules_optax_annotates_but_cannot_take(make):
  """Optax 0.2.8 types these as ``ScalarOrSchedule`` but does arithmetic on the callable
  (TypeError at the first update); gradtx takes them, and a constant schedule gives the
  constant's steps."""
  schedule = lambda value: (lambda count: jnp.full([], value))  # noqa: E731
  number = lambda value: value  # noqa: E731
  params = make_params()
  grads = jax.grad(loss)(params)
  theirs = make(optax, schedule)
  with pytest.raises(TypeError, match="unsupported operand"):
    theirs.update(grads, theirs.init(params), params)
  steps = []
  for tx in (make(gtx, schedule), make(gtx, number)):
    state = tx.init(params)
    for _ in range(2):
      updates, state = tx.update(grads, state, params)
    steps.append(updates)
  for x, y in zip(jax.tree.leaves(steps[0]), jax.tree.leaves(steps[1]), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-6)
