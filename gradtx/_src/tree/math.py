"""Arithmetic, reductions and moments of trees, and the saturating step counter.

Tree-wide reductions (sums, dot products, norms, all-finite tests) follow one
performance policy, :func:`reduce_leaves`: a tree of at most ``STACK_ABOVE`` leaves is
reduced leaf by leaf in leaf order (as Optax does, so small trees round exactly as
Optax's); a larger one has its same-shape leaves stacked first, one reduction per
group, because XLA:CPU compiles thousands of per-leaf reductions very slowly (see
``benchmarks/README.md``). The two orders agree up to rounding.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable

import jax
import jax.numpy as jnp

PyTree = Any

# Trees with more leaves than this are reduced over stacks of same-shape leaves.
STACK_ABOVE = 64


# --- the step counter --------------------------------------------------------------------


def zero_count() -> jax.Array:
  """A step counter at 0 (int32)."""
  return jnp.zeros([], jnp.int32)


def safe_increment(count: jax.Array, by: Any = 1) -> jax.Array:
  """``count + by`` for ``by >= 0``, saturating at the dtype's maximum instead of
  wrapping around."""
  count = jnp.asarray(count)
  by = jnp.asarray(by, count.dtype)
  top = jnp.array(jnp.iinfo(count.dtype).max, count.dtype)
  return jnp.where(count > top - by, top, count + by)


# --- elementwise arithmetic --------------------------------------------------------------


def tree_add(tree_x: PyTree, tree_y: PyTree, *other_trees: PyTree) -> PyTree:
  """``x + y (+ ...)`` leaf by leaf."""
  return jax.tree.map(lambda *leaves: sum(leaves[1:], leaves[0]), tree_x, tree_y,
                      *other_trees)


def tree_sub(tree_x: PyTree, tree_y: PyTree) -> PyTree:
  """``x - y`` leaf by leaf."""
  return jax.tree.map(operator.sub, tree_x, tree_y)


def tree_mul(tree_x: PyTree, tree_y: PyTree) -> PyTree:
  """``x * y`` leaf by leaf."""
  return jax.tree.map(operator.mul, tree_x, tree_y)


def tree_div(tree_x: PyTree, tree_y: PyTree) -> PyTree:
  """``x / y`` leaf by leaf."""
  return jax.tree.map(operator.truediv, tree_x, tree_y)


def tree_scale(scalar: Any, tree: PyTree) -> PyTree:
  """``scalar * x`` leaf by leaf."""
  return jax.tree.map(lambda x: scalar * x, tree)


def tree_add_scale(tree_x: PyTree, scalar: Any, tree_y: PyTree) -> PyTree:
  """``x + scalar * y`` leaf by leaf (``None`` leaves of ``x`` stay ``None``)."""
  scalar = jnp.asarray(scalar)
  return jax.tree.map(lambda x, y: None if x is None else x + scalar * y, tree_x, tree_y,
                      is_leaf=lambda x: x is None)


def tree_add_scale_like(tree_x: PyTree, scalar: Any, tree_y: PyTree) -> PyTree:
  """``x + scalar * y``, each leaf kept in the dtype of ``x``'s."""
  return jax.tree.map(lambda a, b: (a + scalar * b).astype(jnp.asarray(a).dtype),
                      tree_x, tree_y)


def tree_where(condition: Any, tree_x: PyTree, tree_y: PyTree) -> PyTree:
  """``jnp.where(condition, x, y)`` leaf by leaf over two trees of one structure."""
  return jax.tree.map(lambda x, y: jnp.where(condition, x, y), tree_x, tree_y)


def tree_clip(tree: PyTree, min_value: Any = None, max_value: Any = None) -> PyTree:
  """Every leaf clipped to ``[min_value, max_value]`` (``None``: unbounded)."""
  return jax.tree.map(lambda g: jnp.clip(g, min_value, max_value), tree)


def tree_conj(tree: PyTree) -> PyTree:
  """The complex conjugate of every leaf."""
  return jax.tree.map(jnp.conj, tree)


def tree_real(tree: PyTree) -> PyTree:
  """The real part of every leaf."""
  return jax.tree.map(jnp.real, tree)


def abs_sq(x: jax.Array) -> jax.Array:
  """``|x|**2``, real for complex ``x``."""
  return (x.conj() * x).real if jnp.iscomplexobj(x) else x**2


def ema(decay: Any, moment: Any, value: Any) -> Any:
  """``(1 - decay)*value + decay*moment``, in Optax's order of operations."""
  return (1 - decay) * value + decay * moment


def tree_update_moment(updates: PyTree, moments: PyTree, decay: Any, order: Any) -> PyTree:
  """The EMA of the ``order``-th power: ``(1-decay)*g**order + decay*m``."""
  return jax.tree.map(
      lambda g, t: None if g is None else (1 - decay) * (g**order) + decay * t,
      updates, moments, is_leaf=lambda x: x is None)


def tree_update_infinity_moment(updates: PyTree, moments: PyTree, decay: Any,
                                eps: Any) -> PyTree:
  """The EMA of the infinity norm: ``max(|g| + eps, decay*m)``."""
  return jax.tree.map(
      lambda g, t: g if g is None else jnp.maximum(jnp.abs(g) + eps, decay * t),
      updates, moments, is_leaf=lambda x: x is None)


def tree_update_moment_per_elem_norm(updates: PyTree, moments: PyTree, decay: Any,
                                     order: Any) -> PyTree:
  """The EMA of the ``order``-th power of ``|g|`` (real for complex ``g``)."""

  def orderth_norm(g):
    if jnp.isrealobj(g):
      return g**order
    half_order = order / 2
    if float(half_order).is_integer():
      half_order = int(half_order)
    return abs_sq(g)**half_order

  return jax.tree.map(
      lambda g, t: None if g is None else (1 - decay) * orderth_norm(g) + decay * t,
      updates, moments, is_leaf=lambda x: x is None)


def bias_correction_factor(decay: Any, count: jax.Array) -> Any:
  """``1 - decay**count``."""
  return 1 - decay**count


@functools.partial(jax.jit, inline=True)
def tree_bias_correction(moment: PyTree, decay: Any, count: jax.Array) -> PyTree:
  """``m / (1 - decay**count)`` leaf by leaf (the factor in each leaf's dtype).

  Jitted (and inlined into an enclosing jit) as Optax's is: called eagerly, XLA then
  divides the leaves as it does inside a jit (on CPU: multiplies by the reciprocal),
  which rounds differently from an eager division by up to an ulp.
  """
  correction = jnp.asarray(bias_correction_factor(decay, count))
  return jax.tree.map(lambda t: t / correction.astype(t.dtype), moment)


# --- reductions --------------------------------------------------------------------------


def stacked_leaves(*trees: PyTree) -> list[tuple[jax.Array, ...]]:
  """The leaves of ``trees`` (same structure) grouped by shape and dtype, each group's
  leaves stacked along a new first axis: one tuple of stacks per group, in order of
  first appearance.

  Leaves of one shape usually share a sharding, so stacking them keeps it. With one
  device the stack is built by concatenating the flattened leaves and reshaping (the
  same array element for element): XLA's layout assignment is quadratic in the
  operands of a concatenate of rank >= 2 operands and skips rank-1 ones. With several
  devices it stacks: flattening a sharded leaf would make XLA gather it.
  """
  groups: dict[Any, list[list[jax.Array]]] = {}
  for leaves in zip(*(jax.tree.leaves(tree) for tree in trees), strict=True):
    leaves = [jnp.asarray(leaf) for leaf in leaves]
    key = tuple((leaf.shape, leaf.dtype) for leaf in leaves)
    groups.setdefault(key, []).append(leaves)
  stack = _stack_flat if jax.device_count() == 1 else jnp.stack
  return [tuple(stack(column) if len(column) > 1 else column[0][None]
                for column in zip(*members))
          for members in groups.values()]


def _stack_flat(column: tuple[jax.Array, ...]) -> jax.Array:
  """``jnp.stack(column)`` of same-shape arrays, as a concatenation of rank-1 pieces."""
  return jnp.concatenate([x.reshape(-1) for x in column]).reshape(
      len(column), *column[0].shape)


def reduce_leaves(fn: Callable[..., jax.Array], combine: Callable[[Any, Any], Any],
                  initial: Any, *trees: PyTree) -> Any:
  """``combine``s ``fn(*leaves)`` over the leaves of ``trees``, by the module's policy.

  ``fn`` must reduce its arguments to a scalar and must give the same result on a
  stack of leaves as ``combine`` over them (a sum, a max, an all).
  """
  n = len(jax.tree.leaves(trees[0]))
  if n > STACK_ABOVE:
    columns = stacked_leaves(*trees)
  else:
    columns = [tuple(jnp.asarray(x) for x in leaves)
               for leaves in zip(*(jax.tree.leaves(t) for t in trees), strict=True)]
  return functools.reduce(combine, (fn(*column) for column in columns), initial)


@functools.partial(jax.jit, inline=True)
def _vdot(a: jax.Array, b: jax.Array) -> jax.Array:
  # Jitted (inlined into an enclosing jit), as ``jnp.vdot``, which Optax 0.2.8 calls, is:
  # XLA then fuses the conjugation into the dot, which for complex leaves rounds
  # differently from an eager ``conj`` followed by a dot. Not ``jnp.vdot`` itself: its
  # ravel of a sharded leaf would make XLA gather it.
  if jnp.iscomplexobj(a):
    a = jnp.conj(a)
  return jnp.tensordot(a, b, a.ndim, precision=jax.lax.Precision.HIGHEST)


def tree_vdot(tree_x: PyTree, tree_y: PyTree) -> jax.Array:
  """``<x, y>``, summed over all leaves (leaves of ``x`` conjugated), at the highest
  matmul precision."""
  return reduce_leaves(_vdot, operator.add, 0, tree_x, tree_y)


def tree_real_vdot(tree_x: PyTree, tree_y: PyTree) -> jax.Array:
  """The real part of :func:`tree_vdot`: the inner product of the real vector space."""
  return jnp.real(tree_vdot(tree_x, tree_y))


def tree_sum(tree: PyTree, associative_reduction: bool = False) -> jax.Array:
  """The sum of every element of every leaf.

  ``associative_reduction`` is accepted for Optax's signature; the order of the sum is
  this module's policy either way.
  """
  del associative_reduction
  return reduce_leaves(jnp.sum, operator.add, 0, tree)


def tree_max(tree: PyTree) -> jax.Array:
  """The largest element of the tree (``-inf`` for a tree without elements)."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.size(x)]
  return functools.reduce(jnp.maximum, (jnp.max(x) for x in leaves), -float("inf"))


def tree_min(tree: PyTree) -> jax.Array:
  """The smallest element of the tree (``inf`` for a tree without elements)."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.size(x)]
  return functools.reduce(jnp.minimum, (jnp.min(x) for x in leaves), float("inf"))


def tree_size(tree: PyTree) -> int:
  """The number of elements in the tree."""
  return sum(jnp.size(leaf) for leaf in jax.tree.leaves(tree))


def _sum_squares(x: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(x.real) + jnp.square(x.imag)) if jnp.iscomplexobj(x) else (
      jnp.sum(jnp.square(x)))


def tree_norm(tree: PyTree, ord: int | str | float | None = None,  # noqa: A002
              squared: bool = False) -> jax.Array:
  """The vector norm of the whole tree: ``ord`` None or 2 (Euclidean), 1, or ``inf``."""
  if ord is None or ord == 2:
    sqnorm = jnp.asarray(reduce_leaves(_sum_squares, operator.add, 0, tree))
    return sqnorm if squared else jnp.sqrt(sqnorm)
  if ord == 1:
    result = reduce_leaves(lambda x: jnp.sum(jnp.abs(x)), operator.add, 0, tree)
  elif ord == jnp.inf or ord in ("inf", "infinity"):
    result = tree_max(jax.tree.map(jnp.abs, tree))
  else:
    raise ValueError(f"tree_norm: ord must be None, 1, 2 or inf, got {ord!r}")
  result = jnp.asarray(result)
  return abs_sq(result) if squared else result


def tree_l2_norm(tree: PyTree, squared: bool = False) -> jax.Array:
  """The Euclidean norm of the whole tree (Optax's older name for ``tree_norm``)."""
  return tree_norm(tree, squared=squared)


def global_norm(updates: PyTree) -> jax.Array:
  """The 2-norm of all the leaves together, accumulated in at least float32."""

  def sum_squares(u):
    if not jnp.iscomplexobj(u):
      u = u.astype(jnp.promote_types(u.dtype, jnp.float32))
    return _sum_squares(u)

  return jnp.sqrt(reduce_leaves(sum_squares, operator.add, jnp.zeros([], jnp.float32),
                                updates))


def all_finite(tree: PyTree) -> jax.Array:
  """Whether every element of every leaf is finite."""
  return reduce_leaves(lambda x: jnp.all(jnp.isfinite(x)), jnp.logical_and,
                       jnp.array(True), tree)


def tree_allclose(a: PyTree, b: PyTree, rtol: Any = 1e-05, atol: Any = 1e-08,
                  equal_nan: bool = False) -> Any:
  """Whether the two trees are elementwise close (``jnp.allclose`` leaf by leaf)."""
  leaves = jax.tree.leaves(jax.tree.map(
      lambda x, y: jnp.allclose(x, y, rtol=rtol, atol=atol, equal_nan=equal_nan), a, b))
  return functools.reduce(operator.and_, leaves, True)


def tree_batch_shape(tree: PyTree, shape: tuple[int, ...] = ()) -> PyTree:
  """Every leaf broadcast to ``(*shape, *leaf.shape)``."""
  return jax.tree.map(lambda x: jnp.broadcast_to(x, (*shape, *jnp.shape(x))), tree)
