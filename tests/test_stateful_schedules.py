"""Stateful schedules and inject_stateful_hyperparams against Optax 0.2.8.

Oracle: ``optax.inject_stateful_hyperparams`` (in Optax 0.2.8 an alias of its
``inject_hyperparams``) wrapping the same Optax optimizer, given the same schedules:
trajectories step by step over 60 jitted steps on a tree of mixed shapes, the states'
fields, their hyperparameters and the schedules' states.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params
from oracles import assert_trajectories_close, trajectory

LR = 0.05


def optax_inject(*args, **kwargs):
  with warnings.catch_warnings():  # Optax deprecates this name in favour of another
    warnings.simplefilter("ignore", DeprecationWarning)
    return optax.inject_stateful_hyperparams(*args, **kwargs)


class ScaledByLoss:
  """A stateful schedule of the loss: ``LR / (1 + loss / 100)`` with the loss of the
  previous step (``LR`` at the first)."""

  def init(self):
    return {"value": jnp.asarray(LR, jnp.result_type(float))}

  def update(self, state, value=None, **extra_args):
    del extra_args
    return {"value": (LR / (1 + value / 100)).astype(state["value"].dtype)}

  def __call__(self, state, **extra_args):
    del extra_args
    return state["value"]


def decaying(count):
  return LR * 0.97**count


def rising_b1(count):
  return 0.9 - 0.4 * 0.8**count


# name -> (build(module, inject), extra_args): the same call with gtx or optax, the
# injector of each.
CASES = {
    # the defaults: a plain schedule for the learning rate, numbers for the others
    "adam": (lambda m, inject: inject(m.adam)(learning_rate=decaying), False),
    # a stateful schedule fed the loss, a plain one for a hyperparameter adam has no
    # native schedules for, a static mask, and a fixed dtype for the hyperparameters
    "adamw_options": (lambda m, inject: inject(
        m.adamw, static_args="mask", hyperparam_dtype=jnp.float32)(
            learning_rate=ScaledByLoss(), b1=rising_b1, weight_decay=0.1,
            mask=lambda params: jax.tree.map(lambda p: p.ndim > 1, params)), True),
    "sgd_wrapped": (lambda m, inject: inject(m.sgd)(
        learning_rate=m.WrappedSchedule(decaying), momentum=0.9), False),
}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", CASES)
def test_matches_optax(case, dtype):
  build, extra_args = CASES[case]
  with jax.enable_x64(dtype == jnp.float64):
    params = make_params(dtype)
    ours, ours_state = trajectory(build(gtx, gtx.inject_stateful_hyperparams), params,
                                  extra_args=extra_args, return_state=True)
    theirs, their_state = trajectory(build(optax, optax_inject), params,
                                     extra_args=extra_args, return_state=True)
    assert_trajectories_close(ours, theirs, dtype)
  assert type(ours_state)._fields == type(their_state)._fields
  assert isinstance(ours_state, gtx.InjectStatefulHyperparamsState)
  assert ours_state.count == their_state.count == 60
  assert set(ours_state.hyperparams) == set(their_state.hyperparams)
  for name, value in their_state.hyperparams.items():
    assert ours_state.hyperparams[name].dtype == value.dtype, name
    np.testing.assert_allclose(ours_state.hyperparams[name], value, rtol=1e-6, err_msg=name)
  # The same structure, with classes of the same names (gtx's and Optax's).
  assert (str(jax.tree.structure(ours_state.hyperparams_states))
          == str(jax.tree.structure(their_state.hyperparams_states)))
  for ours_leaf, their_leaf in zip(jax.tree.leaves(ours_state.hyperparams_states),
                                   jax.tree.leaves(their_state.hyperparams_states)):
    np.testing.assert_allclose(ours_leaf, their_leaf, rtol=1e-6)


def test_the_stateful_schedule_did_act():
  """The adamw case's learning rate follows the loss."""
  _, state = trajectory(CASES["adamw_options"][0](gtx, gtx.inject_stateful_hyperparams),
                        make_params(), extra_args=True, return_state=True)
  assert state.hyperparams["learning_rate"] < LR
  assert state.hyperparams["learning_rate"].dtype == jnp.float32


def test_overwritten_hyperparameters_take_effect_as_in_optax():
  params = make_params()
  grads = jax.tree.map(jnp.ones_like, params)
  results = []
  for module, inject in [(gtx, gtx.inject_stateful_hyperparams), (optax, optax_inject)]:
    tx = inject(module.adam)(learning_rate=decaying, b2=0.99)
    state = tx.init(params)
    _, state = tx.update(grads, state, params)
    state.hyperparams["b2"] = jnp.float32(0.5)
    state.hyperparams["learning_rate"] = jnp.float32(100.0)  # scheduled: no effect
    updates, state = tx.update(grads, state, params)
    results.append((updates, state.hyperparams))
  (ours, ours_hp), (theirs, their_hp) = results
  assert_trajectories_close([ours], [theirs])
  np.testing.assert_allclose(ours_hp["b2"], 0.5)
  np.testing.assert_allclose(ours_hp["learning_rate"], decaying(1), rtol=1e-6)
  np.testing.assert_allclose(their_hp["learning_rate"], decaying(1), rtol=1e-6)


def test_hyperparameters_are_not_rounded_to_bfloat16():
  """Departure from Optax, which holds the hyperparameters in the params' dtype: for
  bfloat16 params it rounds b2=0.999 to 1.0, and Adam's nu then never forgets."""
  params = {"w": jnp.ones(3, jnp.bfloat16)}
  theirs = optax_inject(optax.adam)(learning_rate=0.1, b2=0.999).init(params)
  assert theirs.hyperparams["b2"].dtype == jnp.bfloat16 and theirs.hyperparams["b2"] == 1.0
  ours = gtx.inject_stateful_hyperparams(gtx.adam)(learning_rate=0.1, b2=0.999).init(params)
  assert ours.hyperparams["b2"].dtype == jnp.float32
  np.testing.assert_allclose(ours.hyperparams["b2"], 0.999, rtol=1e-7)


def test_wrapped_schedule():
  schedule = gtx.WrappedSchedule(decaying)
  assert isinstance(schedule, gtx.StatefulSchedule)
  assert not isinstance(decaying, gtx.StatefulSchedule)
  state = schedule.init()
  assert type(state).__name__ == "WrappedScheduleState" and state._fields == ("count",)
  assert state.count.dtype == jnp.int32 and state.count == 0
  for _ in range(3):
    state = schedule.update(state, value=1.0)
  assert state.count == 3
  np.testing.assert_allclose(schedule(state), decaying(3), rtol=1e-6)
  # The count saturates at the int32 maximum instead of wrapping around.
  top = jnp.iinfo(jnp.int32).max
  assert schedule.update(state._replace(count=jnp.int32(top))).count == top


def test_static_args_must_be_parameters():
  with pytest.raises(ValueError, match="^inject_stateful_hyperparams: static_args "
                                       r"\['masks'\] are not all parameters of adamw"):
    gtx.inject_stateful_hyperparams(gtx.adamw, static_args="masks")


def test_factory_checks_its_hyperparameters():
  with pytest.raises(ValueError, match=r"^adam: b1 must be in \[0, 1\), got 1.5"):
    gtx.inject_stateful_hyperparams(gtx.adam)(learning_rate=0.1, b1=1.5)


def test_exported_like_optax():
  for name in [n for n in dir(optax.schedules) if not n.startswith("_")]:
    assert hasattr(gtx.schedules, name), name
    assert getattr(gtx, name) is getattr(gtx.schedules, name), name
