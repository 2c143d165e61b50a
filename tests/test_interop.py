"""gradtx transforms work wherever Optax transforms do.

Oracle: the same optimizer built from Optax, run through the same Flax or Optax machinery;
the params must agree step by step. Covered: ``flax.training.train_state.TrainState``,
``flax.nnx.Optimizer``, ``optax.chain`` with gradtx members, ``gtx.chain`` with Optax
members, and saving states with ``flax.serialization``.
"""

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

import gradtx as gtx
from conftest import loss, make_params

STEPS = 20
TOL = dict(rtol=1e-6, atol=1e-7)

# (id, gradtx optimizer, the Optax optimizer with the same numerics)
PAIRS = [
    ("adam", lambda: gtx.adam(1e-2), lambda: optax.adam(1e-2)),
    ("sgd_nesterov", lambda: gtx.sgd(1e-2, momentum=0.9, nesterov=True),
     lambda: optax.sgd(1e-2, momentum=0.9, nesterov=True)),
    ("clipped_adamw",
     lambda: gtx.chain(gtx.clip_by_global_norm(1.0), gtx.adamw(1e-2, weight_decay=0.1)),
     lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, weight_decay=0.1))),
]
pair_params = pytest.mark.parametrize(
    "ours,theirs", [pytest.param(a, b, id=name) for name, a, b in PAIRS])


def assert_trees_close(actual, expected, step):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(actual),
                          jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL,
                               err_msg=f"step {step}, leaf {jax.tree_util.keystr(path)}")


def optax_trajectory(tx, params, steps=STEPS, **extra_args):
  """Params after each jitted step of ``tx``, applied with Optax's own ``apply_updates``."""

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params), state, params, **extra_args)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  path = []
  for _ in range(steps):
    params, state = step(params, state)
    path.append(params)
  return path


@pair_params
def test_flax_train_state(ours, theirs):

  @jax.jit
  def step(state):
    return state.apply_gradients(grads=jax.grad(loss)(state.params))

  params = make_params()
  state_ours = train_state.TrainState.create(apply_fn=None, params=params, tx=ours())
  state_theirs = train_state.TrainState.create(apply_fn=None, params=params, tx=theirs())
  for t in range(1, STEPS + 1):
    state_ours, state_theirs = step(state_ours), step(state_theirs)
    assert_trees_close(state_ours.params, state_theirs.params, t)
  assert int(state_ours.step) == STEPS


class MLP(nnx.Module):

  def __init__(self, rngs):
    self.hidden = nnx.Linear(3, 8, rngs=rngs)
    self.out = nnx.Linear(8, 1, rngs=rngs)

  def __call__(self, x):
    return self.out(jnp.tanh(self.hidden(x)))


@pair_params
def test_flax_nnx_optimizer(ours, theirs):
  x = jax.random.normal(jax.random.key(1), (16, 3))
  y = jnp.sin(x.sum(axis=1, keepdims=True))

  def mse(model):
    return jnp.mean((model(x) - y) ** 2)

  @nnx.jit
  def step(model, optimizer):
    value, grads = nnx.value_and_grad(mse)(model)
    optimizer.update(model, grads, value=value)

  models = [MLP(nnx.Rngs(0)), MLP(nnx.Rngs(0))]
  optimizers = [nnx.Optimizer(models[0], ours(), wrt=nnx.Param),
                nnx.Optimizer(models[1], theirs(), wrt=nnx.Param)]
  for t in range(1, STEPS + 1):
    for model, optimizer in zip(models, optimizers):
      step(model, optimizer)
    assert_trees_close(nnx.state(models[0], nnx.Param), nnx.state(models[1], nnx.Param), t)
  assert int(optimizers[0].step[...]) == STEPS


def test_optax_chain_with_gradtx_members():
  mixed = optax.chain(gtx.clip_by_global_norm(1.0), optax.scale_by_adam(),
                      gtx.scale_by_learning_rate(0.1))
  pure = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(),
                     optax.scale_by_learning_rate(0.1))
  params = make_params()
  for t, (a, b) in enumerate(zip(optax_trajectory(mixed, params),
                                 optax_trajectory(pure, params)), start=1):
    assert_trees_close(a, b, t)


def test_gradtx_chain_with_optax_members_passes_extras_only_where_accepted():
  # optax.scale_by_adam's update takes no extras; reduce_on_plateau needs value=.
  mixed = gtx.chain(optax.clip_by_global_norm(1.0), gtx.scale_by_adam(),
                    optax.contrib.reduce_on_plateau(patience=2, factor=0.5),
                    optax.scale_by_learning_rate(0.1))
  pure = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(),
                     optax.contrib.reduce_on_plateau(patience=2, factor=0.5),
                     optax.scale_by_learning_rate(0.1))
  params = make_params()
  for t, (a, b) in enumerate(zip(optax_trajectory(mixed, params, value=jnp.asarray(1.0)),
                                 optax_trajectory(pure, params, value=jnp.asarray(1.0))),
                             start=1):
    assert_trees_close(a, b, t)


SERIALIZED = {
    "adam": lambda: gtx.adam(1e-2),
    "clipped_sgd": lambda: gtx.chain(gtx.clip_by_global_norm(1.0), gtx.sgd(0.1, momentum=0.9)),
    "named_chain": lambda: gtx.named_chain(("clip", gtx.clip_by_global_norm(1.0)),
                                           ("adam", gtx.adam(1e-2))),
    "inject_hyperparams": lambda: gtx.inject_hyperparams(gtx.adam)(learning_rate=1e-2),
}


@pytest.mark.parametrize("make_tx", SERIALIZED.values(), ids=SERIALIZED.keys())
def test_state_round_trips_through_flax_serialization(make_tx):
  tx = make_tx()
  params = make_params()
  state = tx.init(params)
  for _ in range(3):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = gtx.apply_updates(params, updates)

  template = tx.init(make_params(seed=1))
  from_dict = flax.serialization.from_state_dict(
      template, flax.serialization.to_state_dict(state))
  from_bytes = flax.serialization.from_bytes(template, flax.serialization.to_bytes(state))
  for restored in (from_dict, from_bytes):
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for x, y in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
      assert x.dtype == y.dtype
      np.testing.assert_array_equal(x, y)
    # The restored state carries on exactly where the saved one would have.
    grads = jax.grad(loss)(params)
    assert_trees_close(tx.update(grads, restored, params)[0],
                       tx.update(grads, state, params)[0], step=4)
