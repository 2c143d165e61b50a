"""Flax and Orbax with packed params (``gtx.pack``; helpers in ``gtx.flax``).

Oracles:
* linen: ``TrainState`` on the plain params tree, the same model, data and AdamW, 20
  steps: the packed run's params (unpacked) must match it to float32 rounding (and to
  float64 rounding in one float64 run);
* nnx: ``nnx.Optimizer`` on the plain module (a BatchNorm's running statistics included)
  against the functional packed recipe (``split_packed`` / ``merge_packed``);
* Orbax and ``flax.serialization``: the saved state itself, bit for bit, and the
  uninterrupted run for training resumed after a restore.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn
from flax import nnx, serialization
from flax.training import train_state

import gradtx as gtx

ocp = pytest.importorskip("orbax.checkpoint")

STEPS = 20
F32 = dict(rtol=2e-5, atol=2e-6)  # the same float32 arithmetic, summed in another order
F64 = dict(rtol=1e-12, atol=1e-14)

X = jax.random.normal(jax.random.key(1), (32, 5))
Y = jnp.stack([jnp.sin(X.sum(axis=1)), jnp.cos(X[:, 0])], axis=1)


class LinenMLP(nn.Module):
  """Four Dense layers and a LayerNorm: 10 parameter arrays."""

  @nn.compact
  def __call__(self, x):
    x = nn.LayerNorm()(nn.tanh(nn.Dense(16)(x)))
    for width in (16, 8):
      x = nn.tanh(nn.Dense(width)(x))
    return nn.Dense(2)(x)


def mse(prediction, target):
  return jnp.mean((prediction - target) ** 2)


def make_tx():
  return gtx.chain(gtx.clip_by_global_norm(1.0), gtx.adamw(1e-2, weight_decay=1e-2))


@jax.jit
def linen_step(state, x, y):
  """One step for either params form: ``state.apply_fn`` takes what ``state.params`` is."""
  loss, grads = jax.value_and_grad(
      lambda p: mse(state.apply_fn({"params": p}, x), y))(state.params)
  return state.apply_gradients(grads=grads), loss


@functools.cache
def linen_states(dtype=jnp.float32):
  """The same initial TrainState twice: on the plain params tree, and packed (with
  ``apply_fn`` taking the packed params). Built under jit: op-by-op it is slower."""
  model = LinenMLP()

  @jax.jit
  def create(key):
    params = jax.tree.map(lambda p: p.astype(dtype), model.init(key, X)["params"])
    plain = train_state.TrainState.create(apply_fn=model.apply, params=params,
                                          tx=make_tx())
    packed = train_state.TrainState.create(apply_fn=gtx.flax.unpack_args(model.apply),
                                           params=gtx.pack(params), tx=make_tx())
    return plain, packed

  return create(jax.random.key(0))


def assert_trees_close(actual, expected, tol):
  actual = jax.tree_util.tree_leaves_with_path(actual)
  for (path, a), b in zip(actual, jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol,
                               err_msg=jax.tree_util.keystr(path))


def assert_identical(actual, expected):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


# ------------------------------------------------------------------- linen TrainState


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_linen_train_state_packed_matches_the_plain_tree(dtype):
  with jax.enable_x64(dtype == jnp.float64):
    plain, packed = linen_states(dtype)
    assert isinstance(packed.params, gtx.Packed) and len(packed.params.buffers) == 1
    x, y = X.astype(dtype), Y.astype(dtype)
    initial_loss = mse(plain.apply_fn({"params": plain.params}, x), y)
    for _ in range(STEPS):
      plain, plain_loss = linen_step(plain, x, y)
      packed, packed_loss = linen_step(packed, x, y)
    assert isinstance(packed.params, gtx.Packed)
    assert int(packed.step) == STEPS
    assert packed.params.buffers[0].dtype == dtype
    tol = F64 if dtype == jnp.float64 else F32
    assert_trees_close(gtx.unpack(packed.params), plain.params, tol)
    np.testing.assert_allclose(packed_loss, plain_loss, **tol)
    # The optimizer state is on the buffers: Adam's moments are Packed too.
    assert any(isinstance(x, gtx.Packed) for x in jax.tree.leaves(
        packed.opt_state, is_leaf=lambda x: isinstance(x, gtx.Packed)))
    assert plain_loss < 0.5 * initial_loss  # it trains


def test_linen_recipe_with_unpack_in_the_loss():
  """The recipe without the helper: ``apply_fn=model.apply`` and ``gtx.unpack(p)``."""
  plain, packed = linen_states()
  state = packed.replace(apply_fn=plain.apply_fn)  # model.apply

  @jax.jit
  def step(state):
    grads = jax.grad(lambda p: mse(state.apply_fn({"params": gtx.unpack(p)}, X), Y))(
        state.params)
    assert isinstance(grads, gtx.Packed)
    return state.apply_gradients(grads=grads)

  for _ in range(3):
    state = step(state)
    plain, _ = linen_step(plain, X, Y)
  assert_trees_close(gtx.unpack(state.params), plain.params, F32)


def test_unpack_args_unpacks_only_packed_arguments_and_compares_equal():
  packed = gtx.pack({"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)})
  seen = {}

  def fn(variables, x, *, scale):
    seen.update(variables=variables, x=x, scale=scale)
    return x

  wrapped = gtx.flax.unpack_args(fn)
  wrapped({"params": packed, "stats": jnp.zeros(2)}, 1.0, scale=packed)
  assert set(seen["variables"]["params"]) == {"w", "b"}
  np.testing.assert_array_equal(seen["variables"]["params"]["w"],
                                jnp.arange(6.0).reshape(2, 3))
  assert seen["x"] == 1.0 and set(seen["scale"]) == {"w", "b"}
  # Equal wrappers of one function: a TrainState rebuilt with a new one hits jit's cache.
  assert wrapped == gtx.flax.unpack_args(fn)
  assert hash(wrapped) == hash(gtx.flax.unpack_args(fn))


# -------------------------------------------------------------------------------- nnx


class NnxMLP(nnx.Module):
  """Three Linear layers and a BatchNorm, whose running statistics change in training.
  The first layer has no bias: the BatchNorm would cancel it, leaving it a gradient of
  rounding noise that Adam scales up to full steps of random sign."""

  def __init__(self, rngs):
    self.first = nnx.Linear(5, 16, use_bias=False, rngs=rngs)
    self.norm = nnx.BatchNorm(16, rngs=rngs)
    self.hidden = nnx.Linear(16, 8, rngs=rngs)
    self.head = nnx.Linear(8, 2, rngs=rngs)

  def __call__(self, x):
    x = jnp.tanh(self.norm(self.first(x)))
    return self.head(jnp.tanh(self.hidden(x)))


def test_nnx_packed_functional_recipe_matches_nnx_optimizer_on_the_plain_module():
  tx = make_tx()
  model = NnxMLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def plain_step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: mse(m(X), Y))(model)
    optimizer.update(model, grads)
    return loss

  graphdef, packed, rest = gtx.flax.split_packed(NnxMLP(nnx.Rngs(0)))
  assert isinstance(packed, gtx.Packed) and len(packed.buffers) == 1
  opt_state = tx.init(packed)

  @jax.jit
  def packed_step(packed, opt_state, rest):
    def loss_fn(packed):
      model = gtx.flax.merge_packed(graphdef, packed, rest)
      return mse(model(X), Y), nnx.state(model, nnx.Not(nnx.Param))
    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(packed)
    assert isinstance(grads, gtx.Packed)
    updates, opt_state = tx.update(grads, opt_state, packed)
    return gtx.apply_updates(packed, updates), opt_state, rest, loss

  for _ in range(STEPS):
    plain_loss = plain_step(model, optimizer)
    packed, opt_state, rest, packed_loss = packed_step(packed, opt_state, rest)
  np.testing.assert_allclose(packed_loss, plain_loss, **F32)
  trained = gtx.flax.merge_packed(graphdef, packed, rest)
  assert_trees_close(nnx.state(trained, nnx.Param), nnx.state(model, nnx.Param), F32)
  # The BatchNorm's running statistics were carried through the packed steps.
  assert_trees_close(nnx.state(trained, nnx.BatchStat), nnx.state(model, nnx.BatchStat),
                     F32)
  assert not np.allclose(trained.norm.mean[...], 0.0)
  assert packed_step._cache_size() == 1  # the new rest has the structure of the old


def test_split_packed_filters_and_labels():
  model = NnxMLP(nnx.Rngs(0))
  graphdef, packed, stats, others = gtx.flax.split_packed(model, nnx.Param, nnx.BatchStat,
                                                          ...)
  assert len(jax.tree.leaves(gtx.unpack(packed))) == 7
  assert len(jax.tree.leaves(stats)) == 2
  again = gtx.flax.merge_packed(graphdef, packed, stats, others)
  assert_identical(nnx.state(again), nnx.state(model))

  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "head" if "head" in jax.tree_util.keystr(path) else "body", params)

  _, labelled, _ = gtx.flax.split_packed(model, labels=labels)
  assert labelled.keys() == ["float32/body", "float32/head"]
  # Buffers of at most 1 element: a buffer per leaf, the module the same when merged.
  _, split, _ = gtx.flax.split_packed(model, max_buffer_size=1)
  assert len(split.buffers) == len(jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert_identical(nnx.state(gtx.flax.merge_packed(graphdef, split, stats, others)),
                   nnx.state(model))
  _, pairs, _ = gtx.flax.split_packed(model, max_buffer_leaves=2)
  groups = [slot.group for slot in pairs.layout.slots]
  assert groups == [i // 2 for i in range(len(groups))], groups
  assert_identical(nnx.state(gtx.flax.merge_packed(graphdef, pairs, stats, others)),
                   nnx.state(model))
  # The packed arrays are a copy: the module keeps its own.
  packed_again = gtx.flax.split_packed(model)[1]
  assert packed_again.buffers[0] is not packed.buffers[0]
  with pytest.raises(TypeError, match="gtx.Packed"):
    gtx.flax.merge_packed(graphdef, nnx.state(model, nnx.Param), stats, others)


def test_nnx_optimizer_cannot_hold_a_packed_state():
  """What gtx.flax documents: Optimizer.update writes its new state back through
  nnx.state, which turns each Packed moment into an nnx.State; the next update then
  meets a Packed gradient against a State moment. Should Flax change this, the
  functional-only advice in gtx.flax's docstring is out of date."""

  class Holder(nnx.Module):
    def __init__(self, packed):
      self.params = nnx.Param(packed)

  graphdef, packed, rest = gtx.flax.split_packed(NnxMLP(nnx.Rngs(0)))
  holder = Holder(packed)
  optimizer = nnx.Optimizer(holder, gtx.adam(1e-2), wrt=nnx.Param)

  def loss(holder):
    return mse(gtx.flax.merge_packed(graphdef, holder.params.get_value(), rest)(X), Y)

  optimizer.update(holder, nnx.grad(loss)(holder))
  assert isinstance(optimizer.opt_state[0].mu["params"].get_value(), nnx.State)
  with pytest.raises(ValueError, match="tree structure"):
    optimizer.update(holder, nnx.grad(loss)(holder))


# ------------------------------------------------------- Orbax and flax.serialization


def packed_run(steps):
  _, state = linen_states()
  for _ in range(steps):
    state, _ = linen_step(state, X, Y)
  return state


def test_orbax_restores_packed_params_and_optimizer_state_exactly_and_training_resumes(
    tmp_path):
  state = packed_run(5)
  checkpoint = {"params": state.params, "opt_state": state.opt_state, "step": state.step}
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(tmp_path / "packed", checkpoint)
    checkpointer.wait_until_finished()

  _, fresh = linen_states()  # built as a new process would: pack, then tx.init
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                          {"params": fresh.params, "opt_state": fresh.opt_state,
                           "step": jnp.asarray(fresh.step)})
  with ocp.StandardCheckpointer() as checkpointer:
    restored = checkpointer.restore(tmp_path / "packed", abstract)
  assert isinstance(restored["params"], gtx.Packed)
  assert restored["params"].layout is state.params.layout
  assert_identical(restored, checkpoint)

  resumed = fresh.replace(params=restored["params"], opt_state=restored["opt_state"],
                          step=restored["step"])
  uninterrupted = state
  for _ in range(5):
    resumed, _ = linen_step(resumed, X, Y)
    uninterrupted, _ = linen_step(uninterrupted, X, Y)
  assert_identical((resumed.params, resumed.opt_state, resumed.step),
                   (uninterrupted.params, uninterrupted.opt_state, uninterrupted.step))

  # PyTreeCheckpointer, restoring into the state itself as the target, works the same.
  ocp.PyTreeCheckpointer().save(tmp_path / "pytree", checkpoint)
  restored = ocp.PyTreeCheckpointer().restore(tmp_path / "pytree", item=checkpoint)
  assert_identical(restored, checkpoint)


def test_export_to_the_plain_params_tree(tmp_path):
  state = packed_run(3)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(tmp_path / "export", gtx.unpack(state.params))
    checkpointer.wait_until_finished()

  # Code that never heard of packing: the model's own params tree as the target.
  model = LinenMLP()
  params = model.init(jax.random.key(7), X)["params"]
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, params)
  with ocp.StandardCheckpointer() as checkpointer:
    exported = checkpointer.restore(tmp_path / "export", abstract)
    untyped = checkpointer.restore(tmp_path / "export")
  assert_identical(exported, gtx.unpack(state.params))
  assert jax.tree.structure(untyped) == jax.tree.structure(params)
  np.testing.assert_array_equal(model.apply({"params": exported}, X),
                                state.apply_fn({"params": state.params}, X))
  # And into packed training again: pack gives the same layout and buffers.
  assert_identical(gtx.pack(exported), state.params)


def test_flax_serialization_round_trips_a_packed_train_state():
  state = packed_run(3)
  state_dict = serialization.to_state_dict(state)
  assert set(state_dict["params"]) == {"float32"}  # {group name: buffer}
  assert isinstance(state_dict["params"]["float32"], jax.Array)
  _, fresh = linen_states()
  restored = serialization.from_state_dict(fresh, state_dict)
  assert isinstance(restored.params, gtx.Packed)
  assert_identical((restored.params, restored.opt_state, restored.step),
                   (state.params, state.opt_state, state.step))
  from_bytes = serialization.from_bytes(fresh, serialization.to_bytes(state))
  assert_identical((from_bytes.params, from_bytes.opt_state),
                   (state.params, state.opt_state))
