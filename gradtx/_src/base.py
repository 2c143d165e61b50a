"""The protocol: a gradient transformation is a pair of pure functions.

``init(params) -> state`` builds the state, a pytree of arrays; ``update(updates, state,
params=None, **extra_args) -> (updates, state)`` transforms one step's updates. Extra
keyword arguments (``value=``, ``grad=``, ``value_fn=``, ...) are accepted and ignored by
every transform that does not use them, so a chain can carry them to the members that do.

This module also holds the one helper that lifts per-array update rules to pytrees,
:func:`map_leaves`: it checks that the trees match, computes in at least float32, and
casts each result back to the dtype of the leaf it replaces.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple, Protocol, Union

import jax
import jax.numpy as jnp

PyTree = Any
Params = PyTree
Updates = PyTree
OptState = PyTree
Schedule = Callable[[jax.Array], jax.Array]
ScalarOrSchedule = Union[float, jax.Array, Schedule]

NO_PARAMS_MSG = "{}: this transform needs the params; call update(updates, state, params)."


class TransformInitFn(Protocol):

  def __call__(self, params: Params) -> OptState:
    ...


class TransformUpdateFn(Protocol):

  def __call__(self, updates: Updates, state: OptState, params: Params | None = None,
               **extra_args: Any) -> tuple[Updates, OptState]:
    ...


class GradientTransformation(NamedTuple):
  """A pure ``(init, update)`` pair; see the module docstring for the contract."""

  init: TransformInitFn
  update: TransformUpdateFn


class EmptyState(NamedTuple):
  """The state of a transform that keeps nothing."""


def init_empty_state(params: Params) -> EmptyState:
  del params
  return EmptyState()


def identity() -> GradientTransformation:
  """Passes updates through unchanged: ``u``."""

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    return updates, state

  return GradientTransformation(init_empty_state, update)


def set_to_zero() -> GradientTransformation:
  """Replaces every update by zeros (freezes the params it is applied to)."""

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    return jax.tree.map(jnp.zeros_like, updates), state

  return GradientTransformation(init_empty_state, update)


def stateless(fn: Callable[[Updates, Params | None], Updates]) -> GradientTransformation:
  """A transform from a function ``fn(updates, params) -> updates`` that keeps no state."""

  def update(updates, state, params=None, **extra_args):
    del extra_args
    return fn(updates, params), state

  return GradientTransformation(init_empty_state, update)


def apply_updates(params: Params, updates: Updates) -> Params:
  """``params + updates`` leaf by leaf, each result in its param's own dtype."""
  return jax.tree.map(
      lambda p, u: None if p is None else jnp.asarray(p + u).astype(jnp.asarray(p).dtype),
      params, updates, is_leaf=lambda x: x is None)


def full_like(params: Params, value: Any, dtype: Any = None) -> PyTree:
  """Per-param state: arrays shaped like each param, filled with ``value``, in ``dtype``
  (default: the param's).

  Each array is computed from its param (``min(|p|, 0)``, with NaN mapped to 0, plus
  ``value``) rather than broadcast from a constant: under ``jax.jit`` with automatic
  sharding, XLA gives a constant no sharding (it lands on one device), while a value
  computed from the param takes the param's. That is what lets a bare
  ``jax.jit(tx.init)`` shard the state like the params (API.md §1).
  """

  def fill(p):
    p = jnp.asarray(p)
    magnitude = jnp.abs(p)
    zero = jnp.where(jnp.isnan(magnitude), 0, jnp.minimum(magnitude, 0))
    return (zero.astype(dtype or p.dtype) + jnp.asarray(value, dtype or p.dtype))

  return jax.tree.map(fill, params)


def scalar_dtype(tree: PyTree) -> Any:
  """The dtype of tree-wide scalars and solver arithmetic: the leaves' widest, and at
  least float32."""
  dtypes = [jnp.asarray(x).dtype for x in jax.tree.leaves(tree)]
  return jnp.promote_types(jnp.result_type(*dtypes) if dtypes else jnp.float32,
                           jnp.float32)


def tree_select(pred: Any, on_true: PyTree, on_false: PyTree) -> PyTree:
  """``jnp.where(pred, a, b)`` leaf by leaf over two trees of one structure."""
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def safe_increment(count: jax.Array) -> jax.Array:
  """``count + 1``, saturating at the dtype's maximum instead of wrapping around."""
  count = jnp.asarray(count)
  top = jnp.array(jnp.iinfo(count.dtype).max, count.dtype)
  return jnp.where(count < top, count + jnp.array(1, count.dtype), top)


def zero_count() -> jax.Array:
  return jnp.zeros([], jnp.int32)


def resolve(value: ScalarOrSchedule, count: jax.Array) -> Any:
  """A hyperparameter's value at ``count``: schedules are called, numbers pass through.

  The count reaches a schedule as a JAX array even when the state holds a NumPy one (as
  after restoring a checkpoint), so schedules written with ``jnp`` behave the same.
  """
  return value(jnp.asarray(count)) if callable(value) else value


def bias_correction_factor(decay: Any, count: jax.Array) -> jax.Array:
  """``1 - decay**count``, computed in float32 or wider, never in a low-precision dtype."""
  return 1 - decay**count


def call_update(tx: Any, updates: Updates, state: OptState, params: Params | None,
                extra_args: dict[str, Any]) -> tuple[Updates, OptState]:
  """Calls ``tx.update`` with the extra arguments its signature accepts.

  gradtx transforms take every extra; a foreign transform (a plain Optax one, say) gets
  only the keywords it names, so mixing libraries in one chain just works.
  """
  if extra_args:
    extra_args = accepted_extra_args(tx.update, extra_args)
  return tx.update(updates, state, params, **extra_args)


def accepted_extra_args(fn: Callable[..., Any], extra_args: dict[str, Any]) -> dict[str, Any]:
  try:
    parameters = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return extra_args
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
    return extra_args
  return {k: v for k, v in extra_args.items() if k in parameters}


def _structure_error(owner: str, updates_def: Any, other_def: Any) -> ValueError:
  return ValueError(
      f"{owner}: the tree structure of the updates differs from the tree structure of "
      "the optimizer state (or params) it is combined with; was the state initialised "
      f"with other params?\n  updates: {updates_def}\n  state:   {other_def}")


def check_same_structure(owner: str, updates: Updates, *trees: PyTree) -> None:
  """Raises a readable error if any tree's structure differs from that of ``updates``."""
  updates_def = jax.tree.structure(updates)
  for tree in trees:
    other_def = jax.tree.structure(tree)
    if other_def != updates_def:
      raise _structure_error(owner, updates_def, other_def)


def stacked_leaves(*trees: PyTree) -> list[tuple[jax.Array, ...]]:
  """The leaves of ``trees`` (same structure) grouped by shape and dtype, each group's
  leaves stacked along a new first axis: one tuple of stacks per group.

  A tree-wide reduction (a global norm, a dot product, an all-finite test) then takes
  one reduction per group rather than one per leaf. The sum is the same up to rounding,
  but XLA:CPU compiles thousands of per-leaf reductions very slowly (2000 leaves: minutes
  under load, ~50x slower than over the stacks) and runs them slower too. Leaves of
  one shape usually share a sharding, so stacking them keeps it.

  With one device the stack is built by concatenating the flattened leaves and
  reshaping (the same array, element for element, so the reductions over it round the
  same): XLA's layout assignment propagates a layout from every operand of a
  concatenate of rank >= 2 operands of equal size to every other operand, quadratic in
  the number of leaves (2000 leaves: ~1.4 s of a clipped AdamW step's compile), and
  skips rank-1 operands. With several devices it stacks: flattening a sharded leaf would
  make XLA gather it (and an explicitly sharded one cannot be reshaped at all).
  """
  groups: dict[Any, list[list[jax.Array]]] = {}
  for leaves in zip(*(jax.tree.leaves(tree) for tree in trees)):
    leaves = [jnp.asarray(leaf) for leaf in leaves]
    key = tuple((leaf.shape, leaf.dtype) for leaf in leaves)
    groups.setdefault(key, []).append(leaves)
  stack = _stack_flat if jax.device_count() == 1 else jnp.stack
  return [tuple(stack(column) for column in zip(*members))
          for members in groups.values()]


def _stack_flat(column: tuple[jax.Array, ...]) -> jax.Array:
  """``jnp.stack(column)`` of same-shape arrays, as a concatenation of rank-1 pieces."""
  return jnp.concatenate([x.reshape(-1) for x in column]).reshape(
      len(column), *column[0].shape)


def _is_float_array(x: Any) -> bool:
  return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)


def map_leaves(owner: str, rule: Callable[..., Any], updates: Updates, *trees: PyTree,
               **scalars: Any) -> Any:
  """Lifts a per-array update rule to pytrees.

  ``rule(u, *xs, **scalars)`` sees one leaf of ``updates`` and the matching leaf of each
  of ``trees`` and returns either the new update, or ``(new_update, *new_states)`` where
  the k new states replace the first k of ``trees`` (read-only trees such as the params
  come after the states). Every leaf is computed in at least float32, so hyperparameters
  are never rounded to bfloat16; scalar array arguments are cast to that compute dtype;
  results are cast back to the dtype of the leaf they replace. Returns a tree, or a tuple
  of trees when ``rule`` returns a tuple.

  Raises:
    ValueError: the trees' structures differ from that of ``updates``.
  """
  update_leaves, treedef = jax.tree.flatten(updates)
  columns = []
  for tree in trees:
    leaves, other_def = jax.tree.flatten(tree)
    if other_def != treedef:
      raise _structure_error(owner, treedef, other_def)
    columns.append(leaves)

  outputs = []
  for i, u in enumerate(update_leaves):
    xs = [jnp.asarray(column[i]) for column in columns]
    u = jnp.asarray(u)
    # From dtypes, not arrays: a weakly typed float64 leaf must not lose to float32.
    compute = jnp.promote_types(jnp.result_type(*(x.dtype for x in (u, *xs))), jnp.float32)
    cast_scalars = {k: (v.astype(compute) if _is_float_array(v) else v)
                    for k, v in scalars.items()}
    result = rule(u.astype(compute), *(x.astype(compute) for x in xs), **cast_scalars)
    if isinstance(result, tuple):
      like = [u, *xs[:len(result) - 1]]
      result = tuple(r.astype(ref.dtype) for r, ref in zip(result, like))
    else:
      result = result.astype(u.dtype)
    outputs.append(result)

  if outputs and isinstance(outputs[0], tuple):
    return tuple(treedef.unflatten(list(column)) for column in zip(*outputs))
  if not outputs:
    n_out = _count_outputs(rule, len(trees), scalars)
    return updates if n_out is None else tuple(updates if k == 0 else trees[k - 1]
                                               for k in range(n_out))
  return treedef.unflatten(outputs)


def _count_outputs(rule: Callable[..., Any], n_trees: int,
                   scalars: dict[str, Any]) -> int | None:
  """For an empty tree: how many trees the rule would return (None for one)."""
  probe = jnp.zeros([], jnp.float32)
  out = jax.eval_shape(lambda: rule(probe, *([probe] * n_trees), **scalars))
  return len(out) if isinstance(out, tuple) else None
