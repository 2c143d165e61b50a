"""Packed params: pack/unpack, their gradient, and packed training equal to plain training.

Oracles: the plain tree itself (``unpack(pack(p)) == p`` bit for bit); ``jax.grad`` of
the same loss on the plain tree; and, for every entry of the transform registry of
``test_properties``, the same jitted steps on the plain tree. Elementwise rules and
global reductions run on the buffers, where XLA vectorises and sums differently, so the
trajectories agree to float32 rounding (float64: to 1e-10), not bit for bit.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
import test_properties
from conftest import loss
from test_properties import TRANSFORMS
from gradtx._src.packing import zero_padding

STEPS = 3
F32 = dict(rtol=1e-4, atol=1e-5)
F64 = dict(rtol=1e-10, atol=1e-12)


def mixed_tree(dtype=jnp.float32, seed=0):
  """A scalar, a vector, a matrix and a 3-D leaf, with a bfloat16 vector among them."""
  rng = np.random.default_rng(seed)
  shapes = {"scalar": (), "vector": (5,), "nested": {"matrix": (4, 3), "cube": (2, 3, 4)}}
  tree = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), dtype), shapes,
                      is_leaf=lambda x: isinstance(x, tuple))
  tree["half"] = jnp.asarray(rng.normal(size=3), jnp.bfloat16)
  return tree


def packed_loss(q):
  return loss(gtx.unpack(q) if isinstance(q, gtx.Packed) else q)


def assert_trees_close(actual, expected, tol, what=""):
  assert jax.tree.structure(actual) == jax.tree.structure(expected), what
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(actual),
                          jax.tree.leaves(expected), strict=True):
    where = f"{what} {jax.tree_util.keystr(path)}"
    assert x.dtype == y.dtype and x.shape == y.shape, where
    np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                               err_msg=where, **tol)


# --- pack and unpack ---------------------------------------------------------------------


def test_round_trip_is_exact_and_buffers_follow_dtypes():
  tree = mixed_tree()
  packed = gtx.pack(tree)
  assert list(packed) == ["bfloat16", "float32"]  # in the order of the leaves
  assert packed["float32"].shape == (1 + 5 + 12 + 24,)
  assert packed["bfloat16"].shape == (3,)
  assert jax.tree.leaves(packed) == list(packed.buffers)
  unpacked = gtx.unpack(packed)
  assert jax.tree.structure(unpacked) == jax.tree.structure(tree)
  for x, y in zip(jax.tree.leaves(unpacked), jax.tree.leaves(tree)):
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))
  # The layout is static: jit retraces only for another layout.
  assert jax.jit(lambda q: q)(packed).layout == packed.layout


def test_labels_split_the_buffers_by_label_and_dtype():
  tree = mixed_tree()
  by_rank = lambda t: jax.tree.map(  # noqa: E731
      lambda x: "matrices" if x.ndim > 1 else "rest", t)
  packed = gtx.pack(tree, labels=by_rank)
  assert list(packed) == ["bfloat16/rest", "float32/matrices", "float32/rest"]
  assert packed["float32/matrices"].shape == (24 + 12,)
  # A labels tree, here a prefix of the params' tree.
  prefix = {"half": "a", "nested": "b", "scalar": "a", "vector": "a"}
  assert list(gtx.pack(tree, labels=prefix)) == ["bfloat16/a", "float32/b", "float32/a"]
  for labels in (by_rank, prefix):
    unpacked = gtx.unpack(gtx.pack(tree, labels))
    assert all(jnp.array_equal(x, y) for x, y in zip(jax.tree.leaves(unpacked),
                                                     jax.tree.leaves(tree)))


def test_grad_through_unpack_is_the_packed_plain_gradient():
  tree = jax.tree.map(lambda x: x.astype(jnp.float32), mixed_tree())
  packed = gtx.pack(tree, labels=lambda t: jax.tree.map(lambda x: x.ndim > 1, t))
  grad = jax.jit(jax.grad(packed_loss))(packed)
  assert isinstance(grad, gtx.Packed) and grad.layout == packed.layout
  expected = gtx.pack(jax.grad(loss)(tree), labels=lambda t: jax.tree.map(
      lambda x: x.ndim > 1, t))
  assert_trees_close(grad, expected, dict(rtol=1e-6, atol=1e-7))
  # Forward mode too (line searches linearize the loss; Newton takes its Hessian).
  _, tangent = jax.jvp(packed_loss, (packed,), (grad,))
  np.testing.assert_allclose(tangent, sum(jnp.vdot(g, g) for g in grad.buffers), rtol=1e-5)


# --- padding (multiple_of) ---------------------------------------------------------------


def test_multiple_of_pads_each_buffer_with_zeros_that_unpack_leaves_out():
  tree = mixed_tree()
  packed = gtx.pack(tree, multiple_of=8)
  assert packed["float32"].shape == (48,) and packed["bfloat16"].shape == (8,)  # 42, 3
  assert [packed.layout.padding(g) for g in range(2)] == [5, 6]
  np.testing.assert_array_equal(packed["float32"][42:], np.zeros(6, np.float32))
  np.testing.assert_array_equal(np.asarray(packed["bfloat16"][3:], np.float32), np.zeros(5))
  assert "float32[42 + 6 zeros]" in repr(packed.layout)
  # Junk in the padding changes nothing unpack gives.
  junk = gtx.Packed(tuple(np.asarray(b).copy() for b in packed.buffers), packed.layout)
  for buffer in junk.buffers:
    buffer[-1] = 7.0
  for unpacked in map(jax.jit(gtx.unpack), (packed, junk)):  # one compiled unpack
    for x, y in zip(jax.tree.leaves(unpacked), jax.tree.leaves(tree), strict=True):
      assert x.dtype == y.dtype and x.shape == y.shape
      np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))
  # With labels, each (dtype, label) buffer is padded on its own; 1 pads nothing.
  labelled = gtx.pack(tree, lambda t: jax.tree.map(lambda x: x.ndim > 1, t), multiple_of=5)
  assert [b.shape[0] for b in labelled.buffers] == [5, 40, 10]  # 3, 36, 6
  assert gtx.pack(tree, multiple_of=1).layout == gtx.pack(tree).layout
  assert gtx.pack(tree, multiple_of=8).layout != gtx.pack(tree).layout


def test_gradient_in_the_padding_is_zero_and_global_reductions_ignore_it():
  tree = jax.tree.map(lambda x: x.astype(jnp.float32), mixed_tree())
  packed = gtx.pack(tree, multiple_of=32)  # 45 floats and 19 zeros
  tx = gtx.clip_by_global_norm(0.1)

  @jax.jit
  def grads_norms_and_clipped(packed, tree):
    out = []
    for params, fn in ((packed, packed_loss), (tree, loss)):
      grad = jax.grad(fn)(params)
      out.append((grad, gtx.global_norm(grad), tx.update(grad, tx.init(params))[0]))
    return out

  (grad, norm, clipped), (plain_grad, plain_norm, plain_clipped) = grads_norms_and_clipped(
      packed, tree)
  assert grad.layout == packed.layout and grad["float32"].shape == (64,)
  np.testing.assert_array_equal(grad["float32"][45:], np.zeros(19, np.float32))
  assert_trees_close(gtx.unpack(grad), plain_grad, dict(rtol=1e-6, atol=1e-7))
  # The norm and the clipping on the padded buffer equal the plain tree's.
  np.testing.assert_allclose(norm, plain_norm, rtol=1e-6)
  assert_trees_close(gtx.unpack(clipped), plain_clipped, dict(rtol=1e-6, atol=1e-8))


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-8, ValueError),
                                        (2.0, TypeError), (True, TypeError),
                                        ("8", TypeError)])
def test_multiple_of_must_be_an_integer_of_at_least_one(bad, error):
  with pytest.raises(error, match=r"^pack: multiple_of must be an integer >= 1 or None"):
    gtx.pack({"a": jnp.ones(3)}, multiple_of=bad)
  with pytest.raises(TypeError, match="positional"):
    gtx.pack({"a": jnp.ones(3)}, None, 8)  # keyword-only


# --- max_buffer_size: a group laid out as several buffers ------------------------------


def test_max_buffer_size_splits_a_group_into_runs_of_consecutive_leaves():
  tree = mixed_tree()  # float32 leaves in tree order: cube 24, matrix 12, scalar 1, vector 5
  packed = gtx.pack(tree, max_buffer_size=16)
  # The cube alone (it holds more than 16); matrix + scalar = 13; the vector would make 18.
  assert list(packed) == ["bfloat16", "float32#0", "float32#1", "float32#2"]
  assert [b.shape[0] for b in packed.buffers] == [3, 24, 13, 5]
  assert [s.group for s in packed.layout.slots] == [0, 1, 2, 2, 3]
  unpacked = gtx.unpack(packed)
  for x, y in zip(jax.tree.leaves(unpacked), jax.tree.leaves(tree), strict=True):
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))
  # Large enough for each group, it is one buffer per group; labels split first.
  assert gtx.pack(tree, max_buffer_size=42).layout == gtx.pack(tree).layout
  labelled = gtx.pack(tree, lambda t: jax.tree.map(lambda x: x.ndim > 1, t),
                      max_buffer_size=24, multiple_of=8)
  assert list(labelled) == ["bfloat16/False", "float32/True#0", "float32/True#1",
                            "float32/False"]
  assert [b.shape[0] for b in labelled.buffers] == [8, 24, 16, 8]  # 3, 24, 12, 6
  # Names stay unique: a label that reads like a part number is refused.
  with pytest.raises(ValueError, match="two buffers would both be named 'float32/a#0'"):
    gtx.pack({"x": jnp.ones(3), "y": jnp.ones(3), "z": jnp.ones(1)},
             labels={"x": "a", "y": "a", "z": "a#0"}, max_buffer_size=3)


def test_max_buffer_leaves_splits_a_group_into_runs_of_that_many_leaves():
  tree = mixed_tree()  # float32 leaves in tree order: cube 24, matrix 12, scalar 1, vector 5
  packed = gtx.pack(tree, max_buffer_leaves=3)
  assert list(packed) == ["bfloat16", "float32#0", "float32#1"]
  assert [b.shape[0] for b in packed.buffers] == [3, 37, 5]
  assert [s.group for s in packed.layout.slots] == [0, 1, 1, 1, 2]
  for x, y in zip(jax.tree.leaves(gtx.unpack(packed)), jax.tree.leaves(tree), strict=True):
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))
  assert gtx.pack(tree, max_buffer_leaves=4).layout == gtx.pack(tree).layout
  # One leaf per buffer is a buffer per leaf, as max_buffer_size=1 gives.
  assert gtx.pack(tree, max_buffer_leaves=1).layout == gtx.pack(
      tree, max_buffer_size=1).layout
  # With both limits a buffer ends at whichever comes first: the cube (cube + matrix
  # would hold 36 > 30), matrix + scalar (two leaves; the vector would fit in 30), vector.
  both = gtx.pack(tree, max_buffer_size=30, max_buffer_leaves=2)
  assert [b.shape[0] for b in both.buffers] == [3, 24, 13, 5]
  labelled = gtx.pack(tree, lambda t: jax.tree.map(lambda x: x.ndim > 1, t),
                      max_buffer_leaves=1, multiple_of=8)
  assert list(labelled) == ["bfloat16/False", "float32/True#0", "float32/True#1",
                            "float32/False#0", "float32/False#1"]
  assert [b.shape[0] for b in labelled.buffers] == [8, 24, 16, 8, 8]  # 3, 24, 12, 1, 5


@pytest.mark.parametrize("option", ["max_buffer_size", "max_buffer_leaves"])
@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError),
                                        (1e6, TypeError), (False, TypeError)])
def test_buffer_limits_must_be_integers_of_at_least_one(option, bad, error):
  with pytest.raises(error, match=rf"^pack: {option} must be an integer >= 1 or None"):
    gtx.pack({"a": jnp.ones(3)}, **{option: bad})


SPLIT = ["adam", "chain", "lamb/mask", "partition", "adafactor/momentum_decay", "lbfgs"]


@pytest.mark.parametrize("name", SPLIT)
def test_training_on_split_buffers_equals_plain_training_in_float64(name, loss_on_packed):
  """Every leaf in a buffer of its own (``max_buffer_size=1``): per-buffer rules, global
  norms and per-leaf views must still combine the buffers as one tree."""
  with jax.enable_x64(True):
    params = test_properties.make_params(jnp.float64)
    plain, packed, _ = train_both(TRANSFORMS[name], params, 10, max_buffer_size=1)
    assert_trees_close(packed, plain, F64, name)


def test_training_on_buffers_of_two_leaves_equals_plain_training_in_float64():
  """``max_buffer_leaves=2`` on a four-leaf tree: two buffers, each of two leaves of
  different shapes, under a chain with a global norm and per-leaf views (LAMB's trust
  ratios)."""
  with jax.enable_x64(True):
    params = {"a": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.asarray(0.5),
              "c": jnp.arange(4.0) / 4 - 0.3, "d": jnp.ones((2, 2)) * 0.7}
    tx = gtx.chain(gtx.clip_by_global_norm(0.5), gtx.lamb(0.1))
    plain = jax.jit(lambda p: _scan(tx, p, 10, False, None)[0])(params)
    packed = jax.jit(lambda p: _scan(tx, p, 10, True, None, max_buffer_leaves=2)[0])(params)
    assert len(gtx.pack(params, max_buffer_leaves=2).buffers) == 2
    assert_trees_close(packed, plain, F64, "max_buffer_leaves=2")


def test_zero_padding_puts_back_the_zeros_a_rule_wrote():
  """Yogi's rule moves coordinates whose gradient is zero (its first moment starts at
  1e-6); ``zero_padding`` after adding its updates keeps the padded params' padding at
  zero without changing the trajectory (``apply_updates`` does this itself)."""
  params = test_properties.make_params()
  tx = gtx.scale_by_yogi()

  def run(p, fix):
    state = tx.init(p)
    for _ in range(3):
      updates, state = tx.update(jax.grad(packed_loss)(p), state, p)
      p = jax.tree.map(jnp.add, p, updates)
      p = zero_padding(p) if fix else p
    return p

  padded = gtx.pack(params, multiple_of=16)
  left, fixed = jax.jit(lambda p: (run(p, False), run(p, True)))(padded)
  assert largest_in_padding(left) > 0 and largest_in_padding(fixed) == 0
  np.testing.assert_array_equal(fixed["float32"][:7], left["float32"][:7])
  assert_trees_close(gtx.unpack(fixed), train(lambda: tx, params, 3, packed=False), F32)
  # Nothing to do without padding: the same tree comes back, no operation added.
  unpadded = gtx.pack(params)
  assert zero_padding(unpadded).buffers[0] is unpadded.buffers[0]
  assert zero_padding({"a": 1.0}) == {"a": 1.0}


# --- packed training equals plain training, for every registered transform ---------------


def train(factory, params, steps, packed, labels=None):
  """Params after ``steps`` steps of a ``lax.scan`` in one jitted function (one step
  compiled): on the plain tree, or packed (``pack`` once, the loss written on
  ``unpack``), then unpacked."""
  return jax.jit(lambda params: _scan(factory(), params, steps, packed, labels)[0])(params)


def train_both(factory, params, steps, labels=None, multiple_of=None, max_buffer_size=None):
  """``(plain, packed, padding)``: both trainings of :func:`train` in one compiled
  function, the packed one with ``pack(..., multiple_of=, max_buffer_size=)``;
  ``padding`` is the largest magnitude in the padding of the packed params after the
  steps (the sum of the updates written there: zero when every step's updates are zero
  there)."""
  tx = factory()
  return jax.jit(lambda params: (
      _scan(tx, params, steps, False, labels)[0],
      *_scan(tx, params, steps, True, labels, multiple_of, max_buffer_size)))(params)


def largest_in_padding(packed):
  """The largest magnitude among the padding zeros of a ``Packed`` (0 without padding)."""
  pads = [jnp.max(jnp.abs(b[-packed.layout.padding(g):].astype(jnp.float32)))
          for g, b in enumerate(packed.buffers) if packed.layout.padding(g)]
  return jnp.max(jnp.stack(pads)) if pads else jnp.zeros(())


def _scan(tx, params, steps, packed, labels, multiple_of=None, max_buffer_size=None,
          max_buffer_leaves=None):

  def step(carry, _):
    p, state = carry
    updates, state = tx.update(jax.grad(packed_loss)(p), state, p)
    p = gtx.apply_updates(p, updates)
    assert isinstance(p, gtx.Packed) == packed
    return (p, state), None

  p = gtx.pack(params, labels, multiple_of=multiple_of, max_buffer_size=max_buffer_size,
               max_buffer_leaves=max_buffer_leaves) if packed else params
  (p, _), _ = jax.lax.scan(step, (p, tx.init(p)), length=steps)
  return (gtx.unpack(p), largest_in_padding(p)) if packed else (p, None)


@pytest.fixture
def loss_on_packed(monkeypatch):
  """The registry's loss-fed entries evaluate ``test_properties.loss`` on the params
  they are given: packed params are unpacked first."""
  monkeypatch.setattr(test_properties, "loss", packed_loss)


# Some rules move a coordinate whose gradient is zero, so they write into the padding:
# a step size emitted in place of the update (1/eps at a zero second moment), Yogi's first
# moment (Optax's initial value 1e-6), the LSTM optimizer's network output. apply_updates
# (and every chain member's output) puts the zeros back, so the params' padding stays 0.
# (The alias yogi is a chain: its own output is already zeroed.)
WRITE_INTO_PADDING = {"adaptive_step_size", "adabound_step_size/amsbound", "scale_by_yogi",
                      "learned.lstm_optimizer"}
# make_params has 7 floats: the buffer is padded with 9 zeros, more than the leaves hold,
# so that a rule reducing over the buffer by its length would be caught.
MULTIPLE_OF = 16


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_packed_training_equals_plain_training(name, loss_on_packed):
  """A transform that fails here reads leaf shapes or reduces over leaves: it must see
  per-leaf views (``leafwise(..., shape_aware=True)``, or ``packing.per_leaf_views``).
  The packed params are padded (``multiple_of``): the trajectory must not change, and
  the params' padding must stay exactly zero."""
  params = test_properties.make_params()
  plain, packed, padding = train_both(TRANSFORMS[name], params, STEPS,
                                      multiple_of=MULTIPLE_OF)
  assert_trees_close(packed, plain, F32, name)
  assert padding == 0.0, name


@pytest.mark.parametrize("name", sorted(WRITE_INTO_PADDING))
def test_updates_written_into_the_padding_are_zeroed_between_chain_members(name):
  """A global norm after such a rule (in one chain) equals the unpadded tree's: each
  member's output has its padding zeroed, though the bare rule writes there."""
  params = test_properties.make_params()
  packed = gtx.pack(params, multiple_of=MULTIPLE_OF)
  grads = jax.tree.map(lambda x: 0.5 * x + 0.25, packed)
  bare = TRANSFORMS[name]()
  raw, _ = bare.update(grads, bare.init(packed), packed)
  assert sum(float(jnp.abs(b[..., 7:]).sum()) for b in raw.buffers) > 0, (
      "no longer writes into the padding: drop it from WRITE_INTO_PADDING")
  tx = gtx.chain(TRANSFORMS[name](), gtx.clip_by_global_norm(1e-3))
  ours, _ = tx.update(grads, tx.init(packed), packed)
  plain_tx = gtx.chain(TRANSFORMS[name](), gtx.clip_by_global_norm(1e-3))
  theirs, _ = plain_tx.update(gtx.unpack(grads), plain_tx.init(params), params)
  assert_trees_close(gtx.unpack(ours), theirs, F32, name)


# Masks and labels for the original tree: per buffer when they follow the packing labels.
MASKED = {
    "masked": lambda: gtx.masked(gtx.adam(0.1), test_properties.not_scalar),
    "partition": TRANSFORMS["partition"],
    "adamw/mask": TRANSFORMS["adamw/mask"],
    "lamb/mask": TRANSFORMS["lamb/mask"],
}


@pytest.mark.parametrize("name", list(MASKED))
def test_masks_that_follow_the_labels_act_per_buffer(name):
  params = test_properties.make_params()
  plain, packed, padding = train_both(MASKED[name], params, STEPS,
                                      labels=test_properties.group, multiple_of=4)
  assert_trees_close(packed, plain, F32, name)
  assert padding == 0.0, name


def test_state_of_a_masked_packed_adam_is_buffers():
  params = test_properties.make_params()
  packed = gtx.pack(params, labels=test_properties.group)
  state = gtx.masked(gtx.adam(0.1), test_properties.not_scalar).init(packed)
  mu = state.inner_state[0].mu
  # Only the matrix's buffer, as a Packed of the selected group.
  assert isinstance(mu, gtx.Packed) and list(mu) == ["float32/sgd"]
  assert mu["float32/sgd"].shape == (6,)
  # A mask that cuts through a buffer keeps the masked state on the plain leaves.
  one_buffer = gtx.pack(params)
  state = gtx.masked(gtx.adam(0.1), test_properties.not_scalar).init(one_buffer)
  assert not isinstance(state.inner_state[0].mu, gtx.Packed)


def test_elementwise_state_is_packed_and_apply_updates_gives_packed():
  packed = gtx.pack(mixed_tree())
  tx = gtx.chain(gtx.clip_by_global_norm(1.0), gtx.adamw(0.1, weight_decay=0.1))
  state = tx.init(packed)
  adam_state = state[1][0]
  assert isinstance(adam_state.mu, gtx.Packed) and adam_state.mu.layout == packed.layout
  updates, state = tx.update(jax.grad(packed_loss)(packed), state, packed)
  new = gtx.apply_updates(packed, updates)
  assert isinstance(new, gtx.Packed) and new.layout == packed.layout
  assert [b.dtype for b in new.buffers] == [b.dtype for b in packed.buffers]
  # What crosses a step: 2 params buffers, 2 + 2 moments and a count.
  assert len(jax.tree.leaves((new, state))) == 7


# --- float64 over more steps ------------------------------------------------------------

LONGER = ["adam", "chain", "lamb/mask", "adafactor/momentum_decay", "partition",
          "scale_by_sm3", "lbfgs", "flatten"]


@pytest.mark.parametrize("name", LONGER)
def test_packed_training_equals_plain_training_in_float64(name, loss_on_packed):
  with jax.enable_x64(True):
    params = test_properties.make_params(jnp.float64)
    plain, packed, _ = train_both(TRANSFORMS[name], params, 10)
    assert_trees_close(packed, plain, F64, name)


# --- vmap, grad and scan on packed params ------------------------------------------------

REPRESENTATIVE = ["adam", "lamb/mask", "scale_by_factored_rms/factored", "partition"]


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_vmap_over_packed_params(name):
  tx = TRANSFORMS[name]()
  members = [test_properties.make_params(seed=s) for s in range(2)]
  batch = jax.tree.map(lambda *xs: jnp.stack(xs), *map(gtx.pack, members))

  @jax.jit
  @jax.vmap
  def two_steps(p):
    state = tx.init(p)
    for _ in range(2):
      updates, state = tx.update(jax.grad(packed_loss)(p), state, p)
      p = gtx.apply_updates(p, updates)
    return p

  batched = two_steps(batch)
  for i, member in enumerate(members):
    alone = train(TRANSFORMS[name], member, 2, packed=False)
    assert_trees_close(gtx.unpack(jax.tree.map(lambda x: x[i], batched)), alone, F32,
                       f"member {i}")


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_grad_through_packed_steps_equals_grad_through_plain_steps(name):
  with jax.enable_x64(True):
    params = test_properties.make_params(jnp.float64)

    def final_loss(packed):
      def fn(params):
        tx = TRANSFORMS[name]()
        p = gtx.pack(params) if packed else params
        state = tx.init(p)
        for _ in range(3):
          updates, state = tx.update(jax.grad(packed_loss)(p), state, p)
          p = gtx.apply_updates(p, updates)
        return packed_loss(p)
      return jax.jit(jax.grad(fn))(params)

    assert_trees_close(final_loss(True), final_loss(False), F64, name)


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_scan_over_packed_steps(name):
  params = test_properties.make_params()
  tx = TRANSFORMS[name]()
  packed = gtx.pack(params)

  def step(carry, _):
    p, state = carry
    updates, state = tx.update(jax.grad(packed_loss)(p), state, p)
    return (gtx.apply_updates(p, updates), state), None

  (scanned, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, length=STEPS))(
      (packed, tx.init(packed)))
  assert_trees_close(gtx.unpack(scanned),
                     train(TRANSFORMS[name], params, STEPS, packed=False), F32, name)


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("leaf, words", [
    (None, ["['b']", "is None"]),
    ("text", ["['b']", "str", "not an array"]),
    (jnp.arange(3), ["['b']", "int32", "floating-point"]),
    (jnp.ones(2, bool), ["['b']", "bool", "floating-point"]),
])
def test_pack_names_the_bad_leaf(leaf, words):
  with pytest.raises(TypeError) as info:
    gtx.pack({"a": jnp.ones(2), "b": leaf})
  for word in words:
    assert word in str(info.value), str(info.value)


def test_unpack_refuses_what_is_not_packed():
  with pytest.raises(TypeError, match="unpack: expected a gtx.Packed.*got dict"):
    gtx.unpack({"a": jnp.ones(2)})


def test_labels_of_another_structure_are_refused():
  with pytest.raises(ValueError, match="labels' tree structure differs"):
    gtx.pack({"a": jnp.ones(2), "b": jnp.ones(3)}, labels={"a": "x"})


@pytest.mark.parametrize("name", ["adam", "lamb/mask", "sgd/nesterov_schedule"])
def test_grads_of_another_layout_are_refused_with_both_layouts(name):
  params = test_properties.make_params()
  other = {**params, "extra": jnp.ones(2)}
  tx = TRANSFORMS[name]()
  packed = gtx.pack(params)
  with pytest.raises(ValueError) as info:
    tx.update(gtx.pack(other), tx.init(packed), packed)
  message = str(info.value)
  assert str(packed.layout) in message and str(gtx.pack(other).layout) in message, message
  assert "['extra'] (2,)" in message


def test_apply_updates_refuses_another_layout():
  params = test_properties.make_params()
  with pytest.raises(ValueError) as info:
    gtx.apply_updates(gtx.pack(params), gtx.pack(params, test_properties.group))
  assert "float32/sgd[6]" in str(info.value) and "float32[7]" in str(info.value)


def test_a_mask_for_other_params_is_refused():
  packed = gtx.pack(test_properties.make_params())
  tx = gtx.masked(gtx.adam(0.1), {"scalar": True})
  with pytest.raises(ValueError, match="masked: the tree structure of the packed params"):
    tx.init(packed)
