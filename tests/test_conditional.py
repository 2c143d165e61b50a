"""``conditionally_transform``, ``conditionally_mask``, ``freeze`` and
``selective_transform`` against Optax 0.2.8.

Oracle: Optax's wrappers of the same names around Optax's inner transforms, step by step
over 60 jitted steps on the mixed-shape tree, float32 and float64: a condition of the
step count (default), and one of the loss given as an extra argument
(``forward_extra_args=True``); a mask tree and a prefix of it; the states' layout and
values.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params
from transform_pairs import DTYPES, compare

LR = 0.02
some_steps = lambda step: step % 3 != 1  # noqa: E731
# A condition of the loss, which changes from step to step.
by_loss = lambda step, value, **_: jnp.sin(40.0 * value) > 0  # noqa: E731
MASK = {"scalar": True, "vector": False, "nested": {"matrix": False, "cube": True}}
PREFIX = {"scalar": False, "vector": True, "nested": True}

CASES = {
    "conditionally_transform": lambda m: m.conditionally_transform(
        m.sgd(LR, momentum=0.9), some_steps),
    "conditionally_mask": lambda m: m.conditionally_mask(m.sgd(LR, momentum=0.9),
                                                         some_steps),
    "freeze": lambda m: m.chain(m.freeze(MASK), m.sgd(LR)),
    "freeze/prefix": lambda m: m.chain(m.freeze(PREFIX), m.sgd(LR, momentum=0.9)),
    "selective_transform": lambda m: m.selective_transform(m.adam(LR), freeze_mask=MASK),
    "selective_transform/prefix": lambda m: m.selective_transform(
        m.sgd(LR, momentum=0.9), freeze_mask=PREFIX),
}
EXTRA_ARGS_CASES = {
    "conditionally_transform/by_loss": lambda m: m.conditionally_transform(
        m.adam(LR), by_loss, forward_extra_args=True),
    "conditionally_mask/by_loss": lambda m: m.conditionally_mask(
        m.adam(LR), by_loss, forward_extra_args=True),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  compare(CASES[name], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", EXTRA_ARGS_CASES)
def test_condition_of_the_extra_arguments_matches_optax(name, dtype):
  state = compare(EXTRA_ARGS_CASES[name], dtype, extra_args=True).state
  # Both branches were taken: the inner Adam counted some steps but not all 60.
  assert 0 < int(state.inner_state[0].count) < 60


def test_state_classes_are_optaxs():
  assert (gtx.ConditionallyTransformState._fields
          == optax.ConditionallyTransformState._fields)
  assert gtx.ConditionallyMaskState._fields == optax.ConditionallyMaskState._fields


def test_skipped_steps_pass_or_zero_the_updates_and_keep_the_inner_state():
  params = {"w": jnp.asarray([1.0, -2.0])}
  grads = {"w": jnp.asarray([0.5, 0.25])}
  never = lambda step: step < 0  # noqa: E731
  for wrapper, expected in [(gtx.conditionally_transform, grads["w"]),
                            (gtx.conditionally_mask, jnp.zeros(2))]:
    tx = wrapper(gtx.adam(LR), never)
    state = tx.init(params)
    for _ in range(3):
      updates, state = tx.update(grads, state, params)
    np.testing.assert_array_equal(updates["w"], expected)
    assert int(state.step) == 3 and int(state.inner_state[0].count) == 0


def test_freeze_everything_or_nothing():
  params = make_params()
  grads = jax.tree.map(jnp.ones_like, params)
  for mask, scale in [(True, 0.0), (False, 1.0)]:
    for tx in (gtx.freeze(mask), gtx.selective_transform(gtx.identity(), freeze_mask=mask)):
      updates, _ = tx.update(grads, tx.init(params), params)
      for u in jax.tree.leaves(updates):
        np.testing.assert_array_equal(u, scale * jnp.ones_like(u))


def test_selective_transform_keeps_state_for_the_trained_params_only():
  state = gtx.selective_transform(gtx.adam(LR), freeze_mask=MASK).init(make_params())
  mu = state.inner_states["train"].inner_state[0].mu
  assert jax.tree.leaves(mu, is_leaf=lambda x: isinstance(x, gtx.MaskedNode)).count(
      gtx.MaskedNode()) == 2


def test_a_factory_passed_uncalled_is_caught():
  with pytest.raises(TypeError, match=r"^conditionally_mask: inner must be a gradient"):
    gtx.conditionally_mask(gtx.adam, some_steps)
  with pytest.raises(TypeError, match=r"^selective_transform: optimizer must be a grad"):
    gtx.selective_transform(gtx.adam, freeze_mask=MASK)
