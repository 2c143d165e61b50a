"""chain, named_chain, masked, partition and multiply.

Oracles: Optax 0.2.8's ``masked`` and ``partition`` (trajectories over 60 steps on the
mixed-shape pytree, the same inner transforms from each library, ``oracles.tolerance``;
their masking of tree-shaped extra arguments; ``tree_map_params`` through them);
``gtx.scale_by_adam`` for the product that ``multiply``'s docstring says is Adam's
direction; hand-derived values and state layouts for the rest.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params
from oracles import assert_trajectories_close, tolerance, trajectory

LR = 0.02


def _empty_init(params):
  del params
  return gtx.EmptyState()


def scale_by_value():
  """A gradtx-style member: accepts every extra, uses ``value``."""

  def update(updates, state, params=None, **extra_args):
    return jax.tree.map(lambda u: u * extra_args["value"], updates), state

  return gtx.GradientTransformation(_empty_init, update)


def add_grad():
  """A member that names the one extra it uses, ``grad``, and takes no others."""

  def update(updates, state, params=None, grad=None):
    return jax.tree.map(lambda u, g: u + g, updates, grad), state

  return gtx.GradientTransformation(_empty_init, update)


def with_extras():
  """Plain Optax ``scale`` (its update takes no extras), then the two members above:
  ``(2u) * value + grad``."""
  return gtx.chain(optax.scale(2.0), scale_by_value(), add_grad())


# Each combinator wraps the chain above so that it applies to every leaf.
COMBINATORS = {
    "chain": lambda tx: gtx.chain(gtx.identity(), tx),
    "named_chain": lambda tx: gtx.named_chain(("first", gtx.identity()), ("inner", tx)),
    "masked": lambda tx: gtx.masked(tx, lambda p: jax.tree.map(lambda _: True, p)),
    "partition": lambda tx: gtx.partition({"all": tx, "none": gtx.set_to_zero()},
                                          lambda p: jax.tree.map(lambda _: "all", p)),
    "multiply": lambda tx: gtx.multiply(tx, gtx.stateless(
        lambda u, p: jax.tree.map(jnp.ones_like, u))),
}


def test_plain_optax_member_rejects_extras():
  """Makes the next test meaningful: called directly, Optax's ``scale`` fails on extras."""
  with pytest.raises(TypeError):
    optax.scale(2.0).update(jnp.ones(2), optax.EmptyState(), None, value=1.0)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("combinator", COMBINATORS)
def test_extras_reach_only_members_that_accept_them(combinator, jit):
  """The protocol promises that extra keyword arguments reach only the members whose
  ``update`` accepts them; hand-derived result ``2u * value + grad``."""
  tx = COMBINATORS[combinator](with_extras())
  params = make_params()
  updates = jax.tree.map(lambda p: p + 1.0, params)
  grad = jax.tree.map(lambda p: 0.5 * p, params)

  def step(updates, state, params, value, grad):
    return tx.update(updates, state, params, value=value, grad=grad,
                     value_fn=lambda p: 0.0)[0]

  step = jax.jit(step) if jit else step
  out = step(updates, tx.init(params), params, jnp.float32(3.0), grad)
  for o, u, g in zip(jax.tree.leaves(out), jax.tree.leaves(updates), jax.tree.leaves(grad)):
    np.testing.assert_allclose(o, 6.0 * u + g, rtol=1e-6)


def test_chain_state_is_the_tuple_of_member_states():
  params = make_params()
  tx = gtx.chain(gtx.add_momentum(0.9), gtx.scale_by_adam(), optax.scale(-1.0))
  state = tx.init(params)
  assert isinstance(state, tuple) and len(state) == 3
  assert isinstance(state[0], gtx.AddMomentumState)
  assert isinstance(state[1], gtx.ScaleByAdamState)
  assert state[1].count.shape == () and state[1].count.dtype == jnp.int32
  for field in (state[0].trace, state[1].mu, state[1].nu):
    assert jax.tree.map(jnp.shape, field) == jax.tree.map(jnp.shape, params)
  _, new_state = tx.update(params, state, params)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_named_chain_state_is_a_dict_and_numerics_are_chains():
  params = make_params()
  members = [("momentum", gtx.add_momentum(0.9)), ("adam", gtx.scale_by_adam()),
             ("lr", gtx.scale(-LR))]
  named, plain = gtx.named_chain(*members), gtx.chain(*(tx for _, tx in members))
  state = named.init(params)
  assert list(state) == ["momentum", "adam", "lr"]
  assert isinstance(state["adam"], gtx.ScaleByAdamState)
  assert_trajectories_close(trajectory(named, params), trajectory(plain, params))


def test_named_chain_rejects_duplicate_names():
  with pytest.raises(ValueError, match="unique"):
    gtx.named_chain(("a", gtx.identity()), ("a", gtx.scale(2.0)))


def test_chain_rejects_a_state_of_another_length():
  params = make_params()
  state = gtx.chain(gtx.identity(), gtx.identity()).init(params)
  with pytest.raises(ValueError, match="2 members"):
    gtx.chain(gtx.identity()).update(params, state, params)


def test_empty_chain_is_identity():
  params = make_params()
  out, state = gtx.chain().update(params, gtx.chain().init(params))
  assert state == ()
  for o, p in zip(jax.tree.leaves(out), jax.tree.leaves(params)):
    np.testing.assert_array_equal(o, p)


# Masks over conftest.make_params: {"scalar", "vector", "nested": {"matrix", "cube"}}.
MASKS = {
    "full_tree": {"scalar": False, "vector": True, "nested": {"matrix": True, "cube": False}},
    "prefix": {"scalar": True, "vector": False, "nested": True},
    "callable": lambda p: jax.tree.map(lambda x: x.ndim > 1, p),
}
SELECTED = {"full_tree": ["vector", "matrix"], "prefix": ["scalar", "matrix", "cube"],
            "callable": ["matrix", "cube"]}


def _leaf_names(params):
  return [path[-1].key for path, _ in jax.tree_util.tree_leaves_with_path(params)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mask", MASKS)
def test_masked_matches_optax(mask, dtype):
  """Adam's direction on the selected leaves, the raw gradient elsewhere, then ``-lr``."""
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    ours = gtx.chain(gtx.masked(gtx.scale_by_adam(), MASKS[mask]), gtx.scale(-LR))
    theirs = optax.chain(optax.masked(optax.scale_by_adam(), MASKS[mask]), optax.scale(-LR))
    assert_trajectories_close(trajectory(ours, params), trajectory(theirs, params), dtype)


@pytest.mark.parametrize("mask", MASKS)
def test_masked_passes_unselected_updates_through(mask):
  params = make_params()
  tx = gtx.masked(gtx.scale(3.0), MASKS[mask])
  out, _ = tx.update(params, tx.init(params), params)
  for name, o, p in zip(_leaf_names(params), jax.tree.leaves(out), jax.tree.leaves(params)):
    np.testing.assert_array_equal(o, 3.0 * p if name in SELECTED[mask] else p)


@pytest.mark.parametrize("mask", MASKS)
def test_masked_keeps_state_only_for_selected_leaves(mask):
  params = make_params()
  tx = gtx.masked(gtx.scale_by_adam(), MASKS[mask])
  state = tx.init(params)
  selected = [p for name, p in zip(_leaf_names(params), jax.tree.leaves(params))
              if name in SELECTED[mask]]
  for moment in (state.inner_state.mu, state.inner_state.nu):
    assert [m.shape for m in jax.tree.leaves(moment)] == [p.shape for p in selected]
  _, state = jax.jit(tx.update)(params, state, params)
  assert [m.shape for m in jax.tree.leaves(state.inner_state.mu)] == [
      p.shape for p in selected]


def _labels_by_ndim(params):
  return jax.tree.map(lambda x: {0: "frozen", 1: "fast"}.get(x.ndim, "decay"), params)


LABELS = {
    "full_tree": {"scalar": "frozen", "vector": "fast",
                  "nested": {"matrix": "decay", "cube": "decay"}},
    "prefix": {"scalar": "frozen", "vector": "fast", "nested": "decay"},
    "callable": _labels_by_ndim,
}


def groups(m):
  return {"decay": m.adamw(LR, weight_decay=0.1), "frozen": m.set_to_zero(),
          "fast": m.sgd(0.05, momentum=0.9)}


@pytest.mark.parametrize("labels, dtype", [("full_tree", "float32"), ("full_tree", "float64"),
                                           ("prefix", "float32"), ("callable", "float32")])
def test_partition_matches_optax(labels, dtype):
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    ours = trajectory(gtx.partition(groups(gtx), LABELS[labels]), params)
    theirs = trajectory(optax.partition(groups(optax), LABELS[labels]), params)
    assert_trajectories_close(ours, theirs, dtype)
    for step in ours:
      np.testing.assert_array_equal(step["scalar"], params["scalar"])


def test_partition_state_has_one_entry_per_label():
  params = make_params()
  state = gtx.partition(groups(gtx), LABELS["full_tree"]).init(params)
  assert set(state.inner_states) == {"decay", "frozen", "fast"}
  adam_state = state.inner_states["decay"].inner_state[0]
  assert [m.shape for m in jax.tree.leaves(adam_state.mu)] == [(2, 3, 4), (4, 3)]


def test_partition_rejects_unknown_labels():
  params = make_params()
  with pytest.raises(ValueError, match="slow"):
    gtx.partition(groups(gtx), {**LABELS["prefix"], "vector": "slow"}).init(params)


def scale_by_tags(m):
  """A member that multiplies each update by its param's tag, a tree extra argument
  shaped like the params (and by ``value``, a scalar extra)."""

  def update(updates, state, params=None, *, tags, value, **extra_args):
    del params, extra_args
    return jax.tree.map(lambda u, t: u * t * value, updates, tags), state

  return m.GradientTransformationExtraArgs(_empty_init, update)


@pytest.mark.parametrize("combinator", ["masked", "partition"])
def test_mask_compatible_extra_args_match_optax(combinator):
  """With ``mask_compatible_extra_args=True`` a tree extra argument shaped like the
  updates is masked as they are (non-tree extras pass unchanged); without it, the inner
  transform sees the whole tree, which does not fit its masked updates."""
  params = make_params()
  tags = jax.tree.map(lambda x: jnp.full_like(x, 1.0 + x.ndim), params)

  def make(m, flag):
    if combinator == "masked":
      return m.masked(scale_by_tags(m), MASKS["full_tree"], mask_compatible_extra_args=flag)
    return m.partition({"decay": scale_by_tags(m), "fast": m.scale(-1.0),
                        "frozen": m.set_to_zero()}, LABELS["full_tree"],
                       mask_compatible_extra_args=flag)

  ours, theirs = make(gtx, True), make(optax, True)
  a, _ = ours.update(params, ours.init(params), params, tags=tags, value=0.5)
  b, _ = theirs.update(params, theirs.init(params), params, tags=tags, value=0.5)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  for m in (gtx, optax):
    tx = make(m, False)
    with pytest.raises(ValueError):
      tx.update(params, tx.init(params), params, tags=tags, value=0.5)


@pytest.mark.parametrize("combinator", ["masked", "partition"])
def test_tree_map_params_sees_through_masked_and_partition(combinator):
  """As in Optax, ``tree_map_params`` maps over the masked inner states' params copies."""
  params = make_params()

  def make(m):
    if combinator == "masked":
      return m.masked(m.adam(LR), MASKS["full_tree"])
    return m.partition(groups(m), LABELS["full_tree"])

  ours, theirs = make(gtx), make(optax)
  mapped = [tree_map_params(tx, lambda x: x + 7.0, tx.init(params),
                            transform_non_params=lambda x: x)
            for tx, tree_map_params in ((ours, gtx.tree_utils.tree_map_params),
                                        (theirs, optax.tree_utils.tree_map_params))]
  for a, b in zip(jax.tree.leaves(mapped[0]), jax.tree.leaves(mapped[1]), strict=True):
    np.testing.assert_array_equal(a, b)


def test_multiply_by_hand():
  """Both members see the same incoming ``u``; their outputs are multiplied:
  ``(2u) * (3u) = 6u**2``."""
  u = {"a": jnp.array([1.0, -2.0]), "b": jnp.array(3.0)}
  tx = gtx.multiply(gtx.scale(2.0), gtx.scale(3.0))
  out, state = tx.update(u, tx.init(u))
  assert isinstance(state, gtx.MultiplyState)
  np.testing.assert_array_equal(out["a"], [6.0, 24.0])
  np.testing.assert_array_equal(out["b"], 54.0)


def test_multiply_keeps_bfloat16():
  u = jnp.array([1.0, -2.0], jnp.bfloat16)
  tx = gtx.multiply(gtx.scale(0.5), gtx.identity())
  out, _ = tx.update(u, tx.init(u))
  assert out.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(out, np.float32), [0.5, 2.0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_multiply_of_momentum_and_step_size_is_adam(dtype):
  """``multiply``'s docstring: bias-corrected EMA times ``adaptive_step_size`` is Adam's
  direction. Oracle ``gtx.scale_by_adam`` (itself checked against Optax); product
  against quotient differs in the last bit, so float32 is compared at rtol 1e-6."""
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    momentum = gtx.chain(gtx.add_momentum(0.8, ema=True), gtx.bias_correction(0.8))
    composed = gtx.multiply(momentum, gtx.adaptive_step_size(0.99, 1e-6))
    ours = trajectory(gtx.chain(composed, gtx.scale(-LR)), params)
    theirs = trajectory(gtx.chain(gtx.scale_by_adam(0.8, 0.99, 1e-6), gtx.scale(-LR)), params)
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == "float32" else tolerance(dtype)
    assert_trajectories_close(ours, theirs, dtype, tol)
