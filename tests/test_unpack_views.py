"""``gtx.unpack`` (``unpack_views``): the views of packed buffers cut at run-time offsets.

The oracle is ``split_unpack`` (``gtx.unpack`` as it was: one ``lax.split`` per buffer,
kept in ``unpack_views.sliced_views`` as the tangent map) and, for the views, NumPy's own
slicing of the buffer: values, reverse- and forward-mode derivatives, vmap over
stacked buffers, scan and a 20-step Adam run must give the same bits. The compile-time
point of the change is checked as a count (load-independent): the kernels of same-shape
leaves are one distinct kernel, however many leaves.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
from conftest import ROOT, load_script
from gradtx._src import unpack_views

SHAPES = {"a": (3, 4), "b": (5,), "c": {"d": (3, 4), "e": (), "f": (2, 3, 4), "z": (0,)},
          "g": (5,), "h": (3, 4)}
# Two buffers per dtype: "h" alone in its group (no offsets to hide), the rest together.
LABELS = {"a": "x", "b": "x", "c": "x", "g": "x", "h": "y"}


split_unpack = unpack_views.split_unpack


def make_tree(dtype, seed=0):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), dtype), SHAPES,
                      is_leaf=lambda x: isinstance(x, tuple))


def loss(tree):
  leaves = jax.tree.leaves(tree)
  return sum(jnp.sum((i + 1) * jnp.sin(w) * w + 0.5 * w ** 3) for i, w in enumerate(leaves))


def assert_same_bits(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape, jax.tree_util.keystr(path)
    np.testing.assert_array_equal(x.reshape(-1).view(np.uint8), y.reshape(-1).view(np.uint8),
                                  err_msg=jax.tree_util.keystr(path))


def numpy_views(packed):
  """The views by NumPy slicing of each buffer at the layout's offsets."""
  leaves = []
  for slot in packed.layout.slots:
    buffer = np.asarray(packed.buffers[slot.group])
    piece = buffer[..., slot.offset:slot.offset + slot.size]
    leaves.append(piece.reshape(buffer.shape[:-1] + slot.shape))
  return packed.layout.treedef.unflatten(leaves)


def derivatives(unpack, packed, direction):
  """Views, value, gradient, JVP, linearized JVP and VJP of the loss through ``unpack``."""
  f = lambda p: loss(unpack(p))
  value, grad = jax.value_and_grad(f)(packed)
  _, jvp_out = jax.jvp(f, (packed,), (direction,))
  _, linear = jax.linearize(f, packed)
  _, vjp = jax.vjp(unpack, packed)
  return (unpack(packed), value, grad, jvp_out, linear(direction),
          vjp(jax.tree.map(jnp.cos, unpack(packed))))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_views_and_derivatives_are_the_split_views_bits(dtype):
  with jax.enable_x64(dtype == "float64"):
    packed = gtx.pack(make_tree(dtype), labels=LABELS)
    direction = gtx.pack(make_tree(dtype, seed=1), labels=LABELS)
    assert len(packed.buffers) == 2
    both = jax.jit(lambda p, d: (derivatives(gtx.unpack, p, d),
                                 derivatives(split_unpack, p, d)))
    ours, reference = both(packed, direction)
    assert_same_bits(ours, reference)
    assert_same_bits(ours[0], numpy_views(packed))
    assert ours[0]["c"]["z"].shape == (0,) and ours[0]["c"]["e"].shape == ()
    assert isinstance(ours[2], gtx.Packed) and ours[2].layout == packed.layout
    assert isinstance(ours[5][0], gtx.Packed)


def test_vmap_scan_hessian_and_training_agree_with_the_split_views():
  packed = gtx.pack(make_tree(jnp.float32))
  stacked = jax.tree.map(lambda b: jnp.stack([b, -0.5 * b, 2.0 * b]), packed)
  f = lambda unpack: lambda p: loss(unpack(p))

  def train(unpack):
    tx = gtx.adam(1e-2)

    def step(carry, _):
      params, state = carry
      value, grads = jax.value_and_grad(f(unpack))(params)
      updates, state = tx.update(grads, state, params)
      return (gtx.apply_updates(params, updates), state), value

    return jax.lax.scan(step, (packed, tx.init(packed)), length=20)

  cotangents = jax.tree.map(np.cos, numpy_views(stacked))

  def moves(unpack):  # unpack and its derivatives alone: data movement, exact
    views, vjp = jax.vjp(jax.vmap(unpack), stacked)
    return views, vjp(cotangents), jax.jvp(jax.vmap(unpack), (stacked,), (stacked,))

  def arithmetic(unpack):  # the loss compiled around the views
    return (jax.vmap(jax.value_and_grad(f(unpack)))(stacked), jax.hessian(f(unpack))(packed),
            train(unpack))

  ours, reference = jax.jit(lambda: ((moves(gtx.unpack),
                                      arithmetic(gtx.unpack)),
                                     (moves(split_unpack), arithmetic(split_unpack))))()
  assert_same_bits(ours[0], reference[0])
  assert_same_bits(ours[0][0], numpy_views(stacked))
  (batched, hessian, trained), (batched_ref, hessian_ref, trained_ref) = ours[1], reference[1]
  assert_same_bits(trained, trained_ref)
  assert np.all(np.diff(np.asarray(trained[1])) < 0)  # the 20 steps descend
  # Under vmap (jax.hessian is jacfwd of jacrev: a vmap too), XLA vectorises the loss's
  # kernels differently around the two kinds of slice, as it does between a vmapped and a
  # looped loss on either: a few elements differ in the last bits.
  for x, y in zip(jax.tree.leaves((batched, hessian)), jax.tree.leaves((batched_ref,
                                                                       hessian_ref))):
    np.testing.assert_allclose(x, y, rtol=4 * np.finfo(np.float32).eps, atol=1e-6)
  # Under vmap the offsets stay unbatched: stacked buffers are cut by dynamic slices
  # behind one conditional, not by gathers.
  hlo = jax.jit(jax.vmap(gtx.unpack)).lower(stacked).compile().as_text()
  assert "gather(" not in hlo and hlo.count("conditional(") == 1


def test_trailing_zeros_after_the_last_leaf_are_ignored():
  packed = gtx.pack(make_tree(jnp.float32))
  padded = gtx.Packed((jnp.concatenate([packed.buffers[0], jnp.zeros(7)]),), packed.layout)
  grad = lambda unpack: jax.grad(lambda q: loss(unpack(q)))
  ours, reference = jax.jit(lambda p, q: ((gtx.unpack(p), grad(gtx.unpack)(p)),
                                          (split_unpack(q), grad(split_unpack)(q))))(padded, packed)
  assert_same_bits(ours[0], reference[0])
  assert_same_bits(ours[1].buffers[0], jnp.concatenate([reference[1].buffers[0], jnp.zeros(7)]))


def test_same_shape_leaves_share_one_kernel(monkeypatch):
  monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
  kernel_counts = load_script("benchmarks/pack_compile.py").kernel_counts
  x = jnp.linspace(-1.0, 1.0, 50)

  def distinct(unpack, leaves):
    packed = gtx.pack({f"w{i:02d}": jnp.full((50,), 0.1 * i) for i in range(leaves)})
    step = lambda p: jax.value_and_grad(
        lambda q: sum(jnp.mean(jnp.tanh(w - x) ** 2) for w in jax.tree.leaves(unpack(q))))(p)
    return kernel_counts(jax.jit(step).lower(packed).compile().as_text())

  (fused_12, ours_12), (fused_24, ours_24) = (distinct(gtx.unpack, n)
                                              for n in (12, 24))
  assert fused_24 > fused_12 + 12  # more leaves, more (identical) kernels ...
  assert ours_24 == ours_12 < 12   # ... compiled once: the count does not grow
  assert distinct(split_unpack, 24)[1] > 24  # with constant offsets, one kernel per leaf


def test_rejects_what_is_not_packed():
  with pytest.raises(TypeError, match="unpack: expected a gtx.Packed"):
    gtx.unpack({"w": jnp.zeros(3)})
