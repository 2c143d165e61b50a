"""``MultiSteps`` and ``apply_every`` against Optax 0.2.8.

Oracle: Optax's ``MultiSteps`` around Optax's inner optimizer, and Optax's
``apply_every``, step by step over 60 jitted steps on the mixed-shape tree, float32 and
float64: the defaults (mean of 3 micro-steps, float32 accumulator, also for float64
params, as Optax), a sum with a schedule of the micro-step count, micro-steps skipped by
``skip_not_finite`` (Infs every 5th step) and by ``skip_large_updates`` (gradients
inflated every 5th step), a float64 accumulator; ``has_updated`` at every step; the
states' layout (``MultiStepsState``'s five fields, ``ApplyEvery(count, grad_acc)``) and
values.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import loss, make_params
from transform_pairs import DTYPES, compare, precision

LR = 0.05
# Micro-steps per inner step: 1 for the first 4 inner steps, then 3.
growing = lambda gradient_step: jnp.where(gradient_step < 4, 1, 3)  # noqa: E731


def poisoned(m):
  """Every 5th step: the positive gradient entries replaced by Infs."""
  return m.conditionally_transform(
      m.stateless(lambda u, p: jax.tree.map(lambda g: jnp.where(g > 0, jnp.inf, g), u)),
      lambda step: step % 5 == 2)


def inflated(m):
  """Every 5th step: the gradients times 100."""
  return m.conditionally_transform(m.scale(100.0), lambda step: step % 5 == 2)


CASES = {
    "MultiSteps": lambda m: m.MultiSteps(m.adam(LR), 3),
    "MultiSteps/sum_schedule": lambda m: m.MultiSteps(m.sgd(0.01, momentum=0.9), growing,
                                                      use_grad_mean=False),
    "MultiSteps/skip_not_finite": lambda m: m.MultiSteps(
        m.sgd(LR, momentum=0.5), 2, should_skip_update_fn=m.skip_not_finite),
    "MultiSteps/skip_large_updates": lambda m: m.MultiSteps(
        m.sgd(LR), 2, should_skip_update_fn=functools.partial(m.skip_large_updates,
                                                               max_squared_norm=1e5)),
    "apply_every": lambda m: m.chain(m.sgd(LR, momentum=0.5), m.apply_every()),
    "apply_every/3": lambda m: m.chain(m.sgd(LR, momentum=0.5), m.apply_every(3)),
}


# What the skip cases are given: bad micro-steps, every 5th.
BAD_STEPS = {"MultiSteps/skip_not_finite": poisoned,
             "MultiSteps/skip_large_updates": inflated}


def as_transform(make, before=None):
  """A ``MultiSteps`` object as a transform, after ``before(m)`` if given."""

  def build(m):
    tx = make(m)
    tx = tx.gradient_transformation() if isinstance(tx, m.MultiSteps) else tx
    return tx if before is None else m.chain(before(m), tx)

  return build


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  state = compare(as_transform(CASES[name], BAD_STEPS.get(name)), dtype).state
  if name in BAD_STEPS:
    # 12 of the 60 micro-steps were skipped: 24 inner steps of 2.
    assert int(state[-1].gradient_step) == 24, state[-1].gradient_step
    assert int(state[0].step) == 60  # the bad steps' wrapper ran every step


def test_a_float64_accumulator_matches_optax():
  compare(lambda m: m.MultiSteps(m.adam(LR), 3, accumulator_dtype=jnp.float64)
          .gradient_transformation(), jnp.float64)


def _has_updated_sequence(m, dtype, steps=30):
  opt = m.MultiSteps(m.sgd(LR), growing)
  with precision(dtype):
    params = make_params(dtype)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
      updates, state = opt.update(jax.grad(loss)(params), state, params)
      return m.apply_updates(params, updates), state, opt.has_updated(state)

    seen = []
    for _ in range(steps):
      params, state, updated = step(params, state)
      seen.append(bool(updated))
  return seen


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_has_updated_matches_optax(dtype):
  ours = _has_updated_sequence(gtx, dtype)
  assert ours == _has_updated_sequence(optax, dtype)
  # k = 1 for the first 4 inner steps, then 3.
  assert ours[:10] == [True] * 4 + [False, False, True] * 2


def test_the_class_interface_is_optaxs():
  assert gtx.MultiStepsState._fields == optax.MultiStepsState._fields
  assert gtx.ApplyEvery._fields == optax.ApplyEvery._fields
  inner = gtx.adam(LR)
  opt = gtx.MultiSteps(inner, 2)
  assert opt.inner_opt is inner
  tx = opt.gradient_transformation()
  assert isinstance(tx, gtx.GradientTransformation)
  params = make_params()
  state = tx.init(params)
  assert isinstance(state, gtx.MultiStepsState) and state.skip_state == ()
  assert not opt.has_updated(state)


def test_an_optax_inner_optimizer_is_accepted():
  # gradtx's MultiSteps around Optax's Adam, against Optax's MultiSteps around it.
  compare(lambda m: m.MultiSteps(optax.adam(LR), 3).gradient_transformation(),
          jnp.float32, steps=12)


def test_a_skipped_micro_step_changes_only_the_skip_state():
  opt = gtx.MultiSteps(gtx.adam(LR), 2, should_skip_update_fn=gtx.skip_not_finite)
  params = {"w": jnp.asarray([1.0, 2.0])}
  state = opt.init(params)
  _, state = opt.update({"w": jnp.asarray([0.5, 0.5])}, state, params)
  updates, skipped = opt.update({"w": jnp.asarray([jnp.nan, 0.5])}, state, params)
  np.testing.assert_array_equal(updates["w"], [0.0, 0.0])
  for field in ("mini_step", "gradient_step", "inner_opt_state", "acc_grads"):
    for a, b in zip(jax.tree.leaves(getattr(skipped, field)),
                    jax.tree.leaves(getattr(state, field))):
      np.testing.assert_array_equal(a, b)
  assert bool(skipped.skip_state["should_skip"])
  assert int(skipped.skip_state["num_not_finite"]) == 1


def test_should_skip_update_fn_must_return_a_boolean_scalar():
  opt = gtx.MultiSteps(gtx.sgd(LR), 2,
                       should_skip_update_fn=lambda u, step, p: (jnp.zeros(2, bool), ()))
  params = {"w": jnp.ones(2)}
  with pytest.raises(ValueError, match="boolean scalar"):
    opt.update(params, opt.init(params), params)


def test_arguments_are_checked():
  with pytest.raises(TypeError, match=r"^MultiSteps: opt must be a gradient transform"):
    gtx.MultiSteps(gtx.adam, 2)
  with pytest.raises(ValueError, match=r"^MultiSteps: every_k_schedule must be an integer "
                     r">= 1, got 0"):
    gtx.MultiSteps(gtx.adam(LR), 0)
  with pytest.raises(ValueError, match=r"^apply_every: k must be an integer >= 1, got 0"):
    gtx.apply_every(0)
