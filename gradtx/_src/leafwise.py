"""One way to write a per-array transform: the rule for one array, lifted to pytrees.

In the spirit of ``jax.example_libraries.optimizers``: a transform states what it keeps
for each array and how one array's update is computed, and :func:`leafwise` writes
``init`` and ``update`` once for all of them. Adam, for instance, is::

  class ScaleByAdamState(NamedTuple):
    count: jax.Array      # managed by leafwise: the number of earlier updates
    mu: PyTree            # per-leaf fields, one entry per array of the params
    nu: PyTree

  def rule(u, mu, nu, *, b1, b2, eps, c1, c2):
    mu = ema(b1, mu, u)
    nu = ema(b2, nu, abs_sq(u))
    return (mu / c1) / (jnp.sqrt(nu / c2) + eps), mu, nu

  leafwise("scale_by_adam", rule, state=ScaleByAdamState,
           init=lambda p: (zeros_like(p), zeros_like(p)),
           hyperparams=dict(b1=b1, b2=b2, eps=eps),
           scalars=lambda count: dict(c1=1 - b1**(count + 1), c2=1 - b2**(count + 1)))

The contract the builder keeps for every transform written with it:

* **Structure.** Each per-leaf field of the state is a tree with the params' structure
  whose entry for one array may be any pytree (an array like the param; a row and a
  column factor; a pair of Kronecker factors). An update whose tree does not match
  raises an error showing both structures.
* **Shapes.** An update leaf whose shape does not fit the state built for it raises an
  error naming the leaf's path and both shapes (nothing is broadcast silently).
* **Dtypes.** Integer and boolean params or updates raise a ``TypeError`` naming the
  leaf: an update rule needs floating-point numbers, and an integer update would be
  silently truncated. Each leaf is computed in at least float32 (hyperparameters are
  never rounded to bfloat16), scalar array arguments are cast to that dtype, and every
  result is cast back to the dtype of the array it replaces.
* **Counting.** A state field named ``count`` (first) is the number of earlier updates,
  int32, saturating instead of wrapping. ``scalars(count)`` computes the per-step
  scalars from it (schedules read it as it is; a bias correction uses ``count + 1``).
* **Opting out.** With ``applies_to``, leaves for which it is False (by shape or dtype,
  e.g. scalars and vectors in a matrix method) pass through unchanged and keep zero-size
  placeholders in each per-leaf field.
* **Packed params.** A rule is applied to each buffer of a :class:`~gradtx.Packed` as to
  one array, which is right for an elementwise rule. A rule that reduces over a leaf or
  reads its shape says ``shape_aware=True`` (implied by ``applies_to``): given a
  ``Packed``, it then runs on the unpacked leaves (``packing.per_leaf_views``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from gradtx._src import base, packing
from gradtx._src.tree import casting, math as tree_math

PyTree = Any
LeafRule = Callable[..., Any]


def leaf_paths(tree: PyTree) -> list[str]:
  """The path of each leaf of ``tree``, as ``jax.tree_util.keystr`` writes it."""
  return [jax.tree_util.keystr(path)
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def check_float_leaves(owner: str, tree: PyTree, what: str) -> None:
  """Raises ``TypeError`` naming the first leaf of ``tree`` that is not floating-point."""
  for i, leaf in enumerate(jax.tree.leaves(tree)):
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
      dtype = jnp.asarray(leaf).dtype
    if not jnp.issubdtype(dtype, jnp.inexact):
      path = leaf_paths(tree)[i] or "(the root)"
      raise TypeError(
          f"{owner}: the {what} at {path} has dtype {jnp.dtype(dtype).name}; gradient "
          "transformations need floating-point params and updates (an integer update "
          "would be truncated). Keep integer or boolean arrays out of the optimized "
          "params (e.g. with gtx.masked(tx, mask) and gtx.set_to_zero(), or by "
          "splitting them off before jax.grad).")


def _columns(owner: str, treedef: Any, trees: list[PyTree]) -> list[list[Any]]:
  """Each tree's entries at the positions of ``treedef``'s leaves (an entry may be a
  subtree), or the structure error."""
  columns = []
  for tree in trees:
    try:
      columns.append(treedef.flatten_up_to(tree))
    except (ValueError, TypeError):
      raise base.structure_error(owner, treedef, jax.tree.structure(tree)) from None
  return columns


def map_leaves(owner: str, rule: LeafRule, updates: base.Updates, *trees: PyTree,
               **scalars: Any) -> Any:
  """Lifts a per-array update rule to pytrees.

  ``rule(u, *xs, **scalars)`` sees one leaf of ``updates`` and the matching entry of each
  of ``trees`` (an array, or a subtree for per-leaf state of another shape) and returns
  either the new update, or ``(new_update, *new_states)`` where the k new states replace
  the first k of ``trees`` (read-only trees such as the params come after the states).
  Every leaf is computed in at least float32; scalar array arguments are cast to that
  compute dtype; results are cast back to the dtype of what they replace. Returns a
  tree, or a tuple of trees when ``rule`` returns a tuple.

  Raises:
    ValueError: the trees' structures differ from that of ``updates``.
  """
  update_leaves, treedef = jax.tree.flatten(updates)
  columns = _columns(owner, treedef, list(trees))
  outputs = []
  for i, u in enumerate(update_leaves):
    u = jnp.asarray(u)
    xs = [jax.tree.map(jnp.asarray, column[i]) for column in columns]
    compute = casting.compute_dtype(u.dtype, *(x.dtype for x in jax.tree.leaves(xs)))
    cast_scalars = {k: (v.astype(compute) if casting.is_float_array(v) else v)
                    for k, v in scalars.items()}
    result = rule(u.astype(compute), *jax.tree.map(lambda x: x.astype(compute), xs),
                  **cast_scalars)
    if isinstance(result, tuple):
      like = [u, *xs[:len(result) - 1]]
      result = tuple(casting.tree_cast_like(r, ref) for r, ref in zip(result, like))
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


def _count_outputs(rule: LeafRule, n_trees: int, scalars: dict[str, Any]) -> int | None:
  """For an empty tree: how many trees the rule would return (None for one)."""
  probe = jnp.zeros([], jnp.float32)
  out = jax.eval_shape(lambda: rule(probe, *([probe] * n_trees), **scalars))
  return len(out) if isinstance(out, tuple) else None


def _placeholder(p: jax.Array) -> jax.Array:
  """What an opted-out leaf keeps in each per-leaf field: nothing, as a zero-size array."""
  p = jnp.asarray(p)
  return jnp.zeros((0,), p.dtype)


def _shapes(tree: PyTree) -> list[tuple[int, ...]]:
  return [tuple(jnp.shape(x)) for x in jax.tree.leaves(tree)]


def leafwise(owner: str, rule: LeafRule, *, state: type | None = None,
             init: Callable[[jax.Array], Any] | None = None,
             hyperparams: Mapping[str, Any] | None = None,
             scalars: Callable[[jax.Array], Mapping[str, Any]] | None = None,
             uses_params: bool = False,
             applies_to: Callable[[jax.Array], bool] | None = None,
             shape_aware: bool = False) -> base.GradientTransformation:
  """A transform from the update rule for one array (see the module docstring).

  Args:
    owner: the public name, used in every error message.
    rule: ``rule(u, *state_entries, [p,] **hyperparams, **scalars)`` for one array:
      returns the new update, or ``(new_update, *new_state_entries)`` when the state
      has per-leaf fields.
    state: the state's NamedTuple class. A first field named ``count`` is the step
      counter; every other field is per-leaf. ``None``: no state (``EmptyState``).
    init: ``init(p)`` for one param: its entries of the per-leaf fields, a tuple in
      field order (a single entry when there is one field).
    hyperparams: values passed to ``rule`` by keyword (float arrays are cast to the
      leaf's compute dtype, so traced hyperparameters follow the params' precision).
    scalars: ``scalars(count)``: per-step values passed to ``rule`` by keyword, from
      the number of earlier updates (needs a ``count`` field).
    uses_params: ``rule`` takes the param after the state entries; ``update`` then
      needs ``params``.
    applies_to: ``applies_to(p)`` on a param (or update) leaf, static: False leaves
      pass through and keep zero-size placeholders.
    shape_aware: ``rule``'s result for a leaf depends on its shape or on reductions
      over it, so on packed params it must see the leaves, not the buffers.
  """
  fields = tuple(getattr(state, "_fields", ()))
  counted = bool(fields) and fields[0] == "count"
  leaf_fields = fields[1:] if counted else fields
  if leaf_fields and init is None:
    raise TypeError(f"leafwise({owner!r}): the state has per-leaf fields {leaf_fields}; "
                    "give init(p) for them")
  if scalars is not None and not counted:
    raise TypeError(f"leafwise({owner!r}): scalars(count) needs a state with a first "
                    "field named count")
  hyperparams = dict(hyperparams or {})
  selected = applies_to or (lambda leaf: True)

  def init_fn(params):
    check_float_leaves(owner, params, "param")
    values = {}
    if counted:
      values["count"] = tree_math.zero_count()
    if leaf_fields:
      leaves, treedef = jax.tree.flatten(params)
      per_leaf = [_as_entries(init, p, selected, len(leaf_fields)) for p in leaves]
      for k, name in enumerate(leaf_fields):
        values[name] = treedef.unflatten([entries[k] for entries in per_leaf])
    return state(**values) if state is not None else base.EmptyState()

  def update_fn(updates, opt_state, params=None, **extra_args):
    del extra_args
    if uses_params and params is None:
      raise ValueError(base.NO_PARAMS_MSG.format(owner))
    check_float_leaves(owner, updates, "update")
    update_leaves, treedef = jax.tree.flatten(updates)
    trees = [getattr(opt_state, name) for name in leaf_fields]
    if uses_params:
      trees.append(params)
    columns = _columns(owner, treedef, trees)
    _check_shapes(owner, updates, update_leaves, columns, leaf_fields, uses_params, init,
                  selected)
    step_values = dict(hyperparams)
    if counted:
      step_values.update(scalars(opt_state.count) if scalars is not None else {})

    outputs = []
    for i, u in enumerate(update_leaves):
      if not selected(u):
        outputs.append((u, *(column[i] for column in columns[:len(leaf_fields)])))
        continue
      result = map_leaves(owner, rule, u, *(column[i] for column in columns),
                          **step_values)
      outputs.append(result if isinstance(result, tuple) else (result,))
    new_updates = treedef.unflatten([out[0] for out in outputs])
    values = {}
    if counted:
      values["count"] = tree_math.safe_increment(opt_state.count)
    for k, name in enumerate(leaf_fields):
      values[name] = treedef.unflatten([out[k + 1] for out in outputs])
    new_state = state(**values) if state is not None else opt_state
    return new_updates, new_state

  tx = base.GradientTransformation(init_fn, update_fn)
  return packing.per_leaf_views(tx) if shape_aware or applies_to else tx


def _as_entries(init: Callable[[jax.Array], Any] | None, p: Any,
                selected: Callable[[Any], bool], n_fields: int) -> tuple[Any, ...]:
  """One param's entries of the per-leaf fields, as a tuple of ``n_fields``."""
  if not selected(p):
    return tuple(_placeholder(p) for _ in range(n_fields))
  entries = init(p)
  if n_fields == 1 and not (isinstance(entries, tuple) and len(entries) == 1):
    return (entries,)
  if not isinstance(entries, tuple) or len(entries) != n_fields:
    raise TypeError(f"init(p) must return {n_fields} per-leaf entries, got {entries!r}")
  return entries


def _check_shapes(owner: str, updates: PyTree, update_leaves: list[Any],
                  columns: list[list[Any]], leaf_fields: tuple[str, ...],
                  uses_params: bool, init: Any, selected: Callable[[Any], bool]) -> None:
  """Raises an error naming the leaf when an update does not fit its state or param."""
  names = list(leaf_fields) + (["param"] if uses_params else [])
  for i, u in enumerate(update_leaves):
    shape = tuple(jnp.shape(u))
    if uses_params and tuple(jnp.shape(columns[-1][i])) != shape:
      path = leaf_paths(updates)[i] or "(the root)"
      raise ValueError(f"{owner}: the update at {path} has shape {shape} but its param "
                       f"has shape {tuple(jnp.shape(columns[-1][i]))}")
    entries = [column[i] for column in columns[:len(leaf_fields)]]
    if not entries or not selected(u):
      continue
    actual = [_shapes(entry) for entry in entries]
    if all(s == shape for entry_shapes in actual for s in entry_shapes):
      continue
    expected_entries = jax.eval_shape(
        lambda p: _as_entries(init, p, selected, len(leaf_fields)),
        jax.ShapeDtypeStruct(shape, jnp.result_type(u)))
    for name, got, expected in zip(names, actual, map(_shapes, expected_entries)):
      if got != expected:
        path = leaf_paths(updates)[i] or "(the root)"
        raise ValueError(
            f"{owner}: the update at {path} has shape {shape}, but the state's {name} "
            f"there has shapes {got}, built for another param (expected {expected}); "
            "was the state initialised with other params?")
