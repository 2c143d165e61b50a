"""Shardings of an optimizer state, from the shardings of the params it was built for.

Data-parallel and model-parallel training with ``jax.jit`` needs the sharding of every
array it carries between steps: the params', the batch's, and the optimizer state's.
Most state leaves are per-param (Adam's ``mu`` and ``nu``, Lookahead's slow weights, a
momentum trace) and belong where their param lives; the rest are small (step counts,
injected hyperparameters, flags) and are replicated. :func:`state_shardings` works this
out from ``jax.eval_shape(tx.init, params)`` alone, without running ``init``::

  mesh = jax.make_mesh((2, 4), ("data", "model"))
  params_sharding = {"w": NamedSharding(mesh, P(None, "model")), "b": NamedSharding(mesh, P())}
  opt_sharding = gtx.state_shardings(tx, params, params_sharding)
  opt_state = jax.jit(tx.init, out_shardings=opt_sharding)(params)

With ``shard_over="data"`` each per-param leaf is, in addition, split over the data axis
(ZeRO stage 1: Rajbhandari, Rasley, Ruwase & He 2020, "ZeRO: Memory Optimizations Toward
Training Trillion Parameter Models"): every device keeps a slice of the optimizer state
instead of a copy, and XLA gathers the updated params where they are replicated.

A state subtree is matched to the params when it has the params' tree structure (parts
masked out by :func:`gradtx.masked` or :func:`gradtx.partition` may be missing) and the
params' leaf shapes; every other leaf is replicated over the mesh.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec, Sharding

from gradtx._src import base
from gradtx._src.combine import MaskedNode


def _is_masked(x: Any) -> bool:
  return isinstance(x, MaskedNode)


def _is_array_like(x: Any) -> bool:
  return hasattr(x, "shape") and hasattr(x, "dtype")


def _match_params(state: base.PyTree, params: base.PyTree,
                  param_shardings: base.PyTree) -> base.PyTree | None:
  """``state``'s shardings if it is a (possibly masked) copy of the params, else None.

  A leaf shaped like its param takes the param's sharding. A leaf that stacks per-param
  arrays along extra leading axes (L-BFGS's memory, ``(m, *shape)``) or extends the
  param by trailing axes (the LSTM optimizer's state, ``(*shape, layers, hidden)``), of
  a param with a ``NamedSharding``, is split like the param on the param's axes and not
  along the others: what a bare ``jax.jit(tx.init)`` gives it too.
  """

  def leaf(s, p, sharding):
    if _is_masked(s):
      return s
    if not (_is_array_like(s) and _is_array_like(p)):
      raise ValueError("not a per-param leaf")
    shape, param_shape = tuple(s.shape), tuple(p.shape)
    if shape == param_shape:
      return sharding
    extra = len(shape) - len(param_shape)
    if extra > 0 and param_shape and isinstance(sharding, NamedSharding):
      spec = tuple(sharding.spec) + (None,) * (len(param_shape) - len(sharding.spec))
      if shape[extra:] == param_shape:
        return NamedSharding(sharding.mesh, PartitionSpec(*((None,) * extra + spec)))
      if shape[:len(param_shape)] == param_shape:
        return NamedSharding(sharding.mesh, PartitionSpec(*(spec + (None,) * extra)))
    raise ValueError("not a per-param leaf")

  try:
    return jax.tree.map(leaf, state, params, param_shardings, is_leaf=_is_masked)
  except (ValueError, TypeError):
    return None


def _replicated(param_shardings: base.PyTree) -> Sharding:
  leaves = jax.tree.leaves(param_shardings, is_leaf=lambda x: isinstance(x, Sharding))
  for sharding in leaves:
    if isinstance(sharding, NamedSharding):
      return NamedSharding(sharding.mesh, PartitionSpec())
  if leaves and all(s == leaves[0] and s.is_fully_replicated for s in leaves):
    return leaves[0]
  raise ValueError("state_shardings: give the params' shardings as "
                   "jax.sharding.NamedSharding (one mesh for all params) so that the "
                   f"state's scalars can be replicated over that mesh; got {leaves[:3]}")


def _split_over(sharding: Sharding, shape: tuple[int, ...], axis: str) -> Sharding:
  """``sharding`` additionally split over mesh ``axis`` along the first free dimension.

  The first dimension that no mesh axis splits yet and whose size the axis size divides;
  a leaf without such a dimension (a scalar, say) keeps its sharding.
  """
  if not isinstance(sharding, NamedSharding):
    raise ValueError(f"state_shardings: shard_over={axis!r} needs NamedSharding params "
                     f"shardings, got {sharding}")
  mesh, spec = sharding.mesh, tuple(sharding.spec)
  if axis not in mesh.shape:
    raise ValueError(f"state_shardings: shard_over={axis!r} is not an axis of the mesh "
                     f"{dict(mesh.shape)}")
  used = {name for entry in spec if entry is not None
          for name in (entry if isinstance(entry, tuple) else (entry,))}
  if axis in used:
    return sharding
  spec = spec + (None,) * (len(shape) - len(spec))
  for dim, (entry, size) in enumerate(zip(spec, shape)):
    if entry is None and size % mesh.shape[axis] == 0:
      new_spec = spec[:dim] + (axis,) + spec[dim + 1:]
      return NamedSharding(mesh, PartitionSpec(*new_spec))
  return sharding


def state_shardings(tx: base.GradientTransformation, params: base.Params,
                    param_shardings: base.PyTree | None = None, *,
                    shard_over: str | None = None) -> base.PyTree:
  """The shardings of ``tx.init(params)``: per-param leaves like their param, the rest replicated.

  Args:
    tx: any transform (gradtx or Optax); only ``tx.init`` is traced, with
      ``jax.eval_shape``, so nothing is computed or allocated.
    params: the params, as arrays or ``jax.ShapeDtypeStruct``s.
    param_shardings: a tree of ``jax.sharding.Sharding`` with the structure of
      ``params``; by default each param's own ``.sharding``.
    shard_over: a mesh axis name (e.g. ``"data"``) to split each per-param state leaf
      over as well, ZeRO-1 style, along its first dimension that no mesh axis splits yet
      and that the axis size divides (leaves without one keep the param's sharding).

  Returns:
    A tree of shardings with the structure of the state, for ``jax.jit``'s
    ``in_shardings``/``out_shardings`` or ``jax.device_put``.

  Raises:
    ValueError: ``param_shardings`` does not match ``params``, a param has no sharding,
      or the shardings are not ``NamedSharding`` where a mesh is needed.
  """
  if param_shardings is None:
    try:
      param_shardings = jax.tree.map(lambda p: p.sharding, params)
    except AttributeError as error:
      raise ValueError("state_shardings: the params carry no .sharding (give "
                       "param_shardings, or params placed on devices)") from error
  try:
    jax.tree.map(lambda p, s: None, params, param_shardings)
  except (ValueError, TypeError) as error:
    raise ValueError("state_shardings: param_shardings must have the structure of the "
                     f"params:\n  params:    {jax.tree.structure(params)}\n"
                     f"  shardings: {jax.tree.structure(param_shardings)}") from error
  if shard_over is not None:
    param_shardings = jax.tree.map(lambda p, s: _split_over(s, tuple(p.shape), shard_over),
                                   params, param_shardings)
  replicated = _replicated(param_shardings)
  abstract_params = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
  abstract_state = jax.eval_shape(tx.init, abstract_params)

  def assign(state):
    matched = _match_params(state, abstract_params, param_shardings)
    if matched is not None:
      return matched
    if _is_masked(state):
      return state
    if _is_array_like(state):
      return replicated
    children, rebuild = _children(state)
    return rebuild([assign(child) for child in children])

  return assign(abstract_state)


def _children(node: Any) -> tuple[list[Any], Any]:
  """The immediate children of a pytree node, and a function that rebuilds it."""
  leaves, treedef = jax.tree_util.tree_flatten(node, is_leaf=lambda x: x is not node)
  return leaves, lambda children: jax.tree_util.tree_unflatten(treedef, children)
