"""DP-SGD (``contrib.dpsgd``, ``differentially_private_aggregate``) against Optax 0.2.8,
and the checks of its hyperparameters that tests/test_validation.py cannot run.

Oracle: Optax, step by step over 60 jitted steps from per-example gradients (a batch of
4 examples of the mixed-shape tree, some clipped and some not at every step), float32
and float64, defaults and configurations covering every argument: the params after
every step (the same key gives the same noise) and the final state, leaf by leaf. Optax
keeps a typed key in ``rng_key``, gradtx its raw data (so that the state checkpoints):
Optax's is compared through ``jax.random.key_data``.

tests/test_validation.py's shared checks run each constructor on gradients without a
batch axis, which these transforms refuse; so ``dpsgd`` and
``differentially_private_aggregate`` are listed there with the constructors its SPECS
leave out, and their ranges, types, traced and scheduled hyperparameters are checked
here, on per-example gradients.
"""

import math
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import loss, make_params
from contrib_pairs import DTYPES, assert_states_close, precision
from oracles import assert_trajectories_close, lockstep

STEPS = 60
BATCH = 4
# Optax's dpsgd passes its seed on to differentially_private_aggregate's deprecated seed=.
pytestmark = pytest.mark.filterwarnings('ignore:"seed" is deprecated:DeprecationWarning')


def _examples(dtype):
  """``BATCH`` shifts of the params, one per example (a batch axis on every leaf)."""
  rng = np.random.default_rng(5)
  return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=(BATCH, *p.shape)), dtype),
                      make_params(dtype))


def example_loss(params, example):
  """The shared loss at the params moved by the example, scaled by its first entry so
  that the examples' gradient norms differ (some are clipped, some are not)."""
  weight = 0.2 + jnp.abs(example["scalar"])
  return weight * loss(jax.tree.map(lambda p, x: p + 0.3 * x, params, example))


def per_example_grads(params, examples):
  return jax.vmap(jax.grad(example_loss), (None, 0))(params, examples)


def dp_trajectories(txs, params, examples, steps=STEPS):
  """``[(path, state), ...]`` of each of ``txs``, compiled together (``oracles.lockstep``)."""

  def one_step(tx, params, state):
    updates, state = tx.update(per_example_grads(params, examples), state, params)
    return gtx.apply_updates(params, updates), state

  return lockstep(one_step, txs, params, steps)


def _raw_keys(state):
  return gtx.tree_utils.tree_unwrap_random_key_data(state)


# The clipping norms lie among the examples' gradient norms at the start (about 7.5, 44,
# 58 and 65), so that some examples are clipped and some are not.
CLIPS = {"dpsgd": 20.0, "dpsgd/momentum": 50.0, "differentially_private_aggregate": 30.0}
CASES = {
    "dpsgd": lambda m: m.contrib.dpsgd(0.02, l2_norm_clip=20.0, noise_multiplier=0.1,
                                       seed=3),
    "dpsgd/momentum": lambda m: m.contrib.dpsgd(
        lambda count: 0.02 / (1 + 0.05 * count), l2_norm_clip=50.0, noise_multiplier=0.05,
        seed=11, momentum=0.8, nesterov=True),
    "differentially_private_aggregate": lambda m: m.chain(
        m.contrib.differentially_private_aggregate(30.0, 0.2, key=jax.random.key(7)),
        m.scale(-0.02)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  with precision(dtype):
    params, examples = make_params(jnp.dtype(dtype)), _examples(jnp.dtype(dtype))
    ours, theirs = CASES[name](gtx), CASES[name](optax)
    assert_states_close(ours.init(params), _raw_keys(theirs.init(params)), dtype, "init")
    (path, state), (oracle, oracle_state) = dp_trajectories((ours, theirs), params, examples)
    assert_trajectories_close(path, oracle, dtype)
    assert_states_close(state, _raw_keys(oracle_state), dtype)
    # Not vacuous: the params moved, and clipping was active for some examples only.
    moved = max(float(jnp.max(jnp.abs(a - b)))
                for a, b in zip(jax.tree.leaves(path[-1]), jax.tree.leaves(params)))
    assert moved > 1e-2
    norms = jax.vmap(gtx.tree_utils.tree_norm)(per_example_grads(params, examples))
    assert (norms > CLIPS[name]).any() and (norms < CLIPS[name]).any(), norms


def test_state_fields_are_optax():
  assert (gtx.contrib.DifferentiallyPrivateAggregateState._fields
          == optax.contrib.DifferentiallyPrivateAggregateState._fields)


def test_no_noise_and_no_clipping_is_the_mean_gradient():
  params, examples = make_params(), _examples(jnp.float32)
  grads = per_example_grads(params, examples)
  tx = gtx.contrib.differentially_private_aggregate(float(np.finfo(np.float32).max), 0.0,
                                                  key=0)
  updates, _ = tx.update(grads, tx.init(params))
  for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
    np.testing.assert_allclose(u, g.mean(0), rtol=1e-6)


def test_noise_has_the_stated_standard_deviation():
  tx = gtx.contrib.differentially_private_aggregate(2.0, 3.0, key=1337)
  grads = [jnp.ones((1, 200, 200))]
  updates, _ = jax.jit(tx.update)(grads, tx.init(None))
  np.testing.assert_allclose(jnp.std(updates[0]), 6.0, rtol=0.02)


def test_state_checkpoints():
  import flax.serialization
  tx = gtx.contrib.dpsgd(0.1, 1.0, 1.0, seed=0)
  params = make_params()
  _, state = tx.update(per_example_grads(params, _examples(jnp.float32)), tx.init(params))
  restored = flax.serialization.from_bytes(tx.init(params),
                                           flax.serialization.to_bytes(state))
  assert (restored[0].rng_key == state[0].rng_key).all()


def test_gradients_without_a_batch_axis_are_refused():
  tx = gtx.contrib.dpsgd(0.1, 1.0, 1.0, seed=0)
  params = make_params()
  with pytest.raises(ValueError, match="^differentially_private_aggregate: expects "
                     "per-example gradients"):
    tx.update(jax.grad(loss)(params), tx.init(params), params)


def test_seed_is_deprecated_and_no_key_warns_as_in_optax():
  with pytest.warns(DeprecationWarning):
    gtx.contrib.differentially_private_aggregate(1.0, 1.0, seed=3)
  with pytest.warns(UserWarning):
    gtx.contrib.differentially_private_aggregate(1.0, 1.0)
  with pytest.raises(ValueError, match="one of seed and key"):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      gtx.contrib.differentially_private_aggregate(1.0, 1.0, key=1, seed=3)


# --- hyperparameters (tests/test_validation.py's checks, on per-example gradients) -------

NONNEG = "[0, inf)"
SPECS = {
    "dpsgd": ({"seed": 0}, dict(learning_rate=(0.25, NONNEG), l2_norm_clip=(1.5, NONNEG),
                                noise_multiplier=(0.5, NONNEG), momentum=(0.75, "[0, 1]"))),
    "differentially_private_aggregate": ({"key": 0}, dict(l2_norm_clip=(1.5, NONNEG),
                                                          noise_multiplier=(0.5, NONNEG))),
}
CASE_NAMES = [(name, param) for name, (_, spec) in SPECS.items() for param in spec]


def _build(name, **kwargs):
  fixed, spec = SPECS[name]
  return getattr(gtx.contrib, name)(**{**fixed, **{k: v for k, (v, _) in spec.items()},
                                       **kwargs})


def _two_steps(tx):
  params, examples = make_params(), _examples(jnp.float32)
  state, emitted = tx.init(params), []
  for _ in range(2):
    updates, state = tx.update(per_example_grads(params, examples), state, params)
    emitted.append(updates)
  return emitted


def _assert_close(actual, expected):
  for x, y in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name,param", CASE_NAMES)
def test_out_of_range_and_wrong_types_raise(name, param):
  interval = SPECS[name][1][param][1]
  low, high = (float(x) for x in interval[1:-1].split(","))
  bad = [math.nan, low - 0.5] + ([high + 0.5] if math.isfinite(high) else
                                 [math.inf] if interval.endswith(")") else [])
  for value in bad:
    with pytest.raises(ValueError, match="^" + re.escape(
        f"{name}: {param} must be in {interval}, got {value!r}")):
      _build(name, **{param: value})
  for value in ["0.5", [0.5], np.full(2, 0.5)]:
    with pytest.raises(TypeError, match=f"^{name}: {param} must be a real number"):
      _build(name, **{param: value})
  for end in [low] + ([high] if interval.endswith("]") else []):
    assert isinstance(_build(name, **{param: end}), gtx.GradientTransformation)


def test_seed_must_be_a_non_negative_integer():
  with pytest.raises(ValueError, match="^dpsgd: seed must be an integer >= 0"):
    gtx.contrib.dpsgd(0.1, 1.0, 1.0, seed=-1)
  with pytest.raises(TypeError, match="^dpsgd: nesterov must be True or False"):
    gtx.contrib.dpsgd(0.1, 1.0, 1.0, seed=0, nesterov="yes")


@pytest.mark.parametrize("name,param", CASE_NAMES)
def test_schedules_are_accepted_and_take_effect(name, param):
  value = SPECS[name][1][param][0]
  scheduled = _build(name, **{param: lambda count: jnp.full([], value)})
  _assert_close(_two_steps(scheduled), _two_steps(_build(name)))


@pytest.mark.parametrize("name", SPECS)
def test_constructor_inside_jit_with_traced_hyperparameters(name):
  fixed, spec = SPECS[name]
  numbers = {k: v for k, (v, _) in spec.items()}
  build = getattr(gtx.contrib, name)
  traced = jax.jit(lambda numbers: _two_steps(build(**fixed, **numbers)))(numbers)
  _assert_close(traced, _two_steps(build(**fixed, **numbers)))
