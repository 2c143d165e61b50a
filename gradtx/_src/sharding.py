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

Packed params (:func:`gradtx.pack`) are a tree of 1-D buffers, so the same rules apply to
them: Adam's ``mu``/``nu`` are ``Packed`` of the params' layout and take each buffer's
sharding, split over ``shard_over`` where its size divides the buffer's length (which
``gtx.pack(params, multiple_of=<axis size>)`` ensures, padding with zeros). Packing
concatenates leaves, so only replicated params can be packed without gathering them:
:func:`check_packable` says which leaves are sharded and what to do.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec, Sharding

from gradtx._src import base
from gradtx._src.combine import MaskedNode
from gradtx._src.packing import Packed, unpack


def _is_masked(x: Any) -> bool:
  return isinstance(x, MaskedNode)


def _is_array_like(x: Any) -> bool:
  return hasattr(x, "shape") and hasattr(x, "dtype")


def _is_packed(x: Any) -> bool:
  return isinstance(x, Packed)


def _how_split(sharding: Any) -> str | None:
  """How an array of this sharding is split (the mesh axes of size > 1 it names, or the
  sharding itself when it names none), or None when it is not split."""
  if isinstance(sharding, NamedSharding):
    axes = tuple(sorted(name for name in _axis_names(sharding)
                        if sharding.mesh.shape[name] > 1))
    return f"over mesh axes {axes}" if axes else None
  if isinstance(sharding, Sharding) and not sharding.is_fully_replicated:
    return f"as {sharding}"
  return None


def _sharding_of(leaf: Any) -> Any:
  """A leaf's sharding: a placed array's or a ``ShapeDtypeStruct``'s, or under ``jit`` the
  one its abstract value carries (which names mesh axes only when they are explicit)."""
  if isinstance(leaf, jax.core.Tracer):
    return getattr(jax.typeof(leaf), "sharding", None)
  return getattr(leaf, "sharding", None)


def check_packable(params: base.Params, owner: str = "pack") -> None:
  """Raises unless every leaf of ``params`` is replicated (or its sharding is unknown).

  :func:`gradtx.pack` concatenates the raveled leaves of a group into one buffer, so a
  leaf split over mesh axes (a model-parallel weight) would be gathered onto every device
  of those axes. Leaves are checked by their sharding: a placed array's, a
  ``jax.ShapeDtypeStruct``'s when it has one, and under ``jax.jit`` the sharding of the
  abstract value (which names a mesh axis only when the axis is explicit,
  ``jax.sharding.AxisType.Explicit``). Leaves with no sharding pass.

  Raises:
    ValueError: naming the mesh axes and the paths of the sharded leaves, and what to do.
  """
  sharded: dict[str, list[str]] = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    how = _how_split(_sharding_of(leaf))
    if how is not None:
      sharded.setdefault(how, []).append(jax.tree_util.keystr(path) or "(the root)")
  if sharded:
    where = "; ".join(f"{how} at {', '.join(paths)}" for how, paths in sharded.items())
    raise ValueError(
        f"{owner}(...) got params sharded {where}; packing concatenates leaves, which "
        "would gather them onto every device: pack only replicated params (and split "
        "the optimizer state with gtx.state_shardings(tx, packed, shard_over=...)), or "
        "train on the plain tree, whose state gtx.state_shardings shards like the params")


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


def _axis_names(sharding: NamedSharding) -> set[str]:
  return {name for entry in sharding.spec if entry is not None
          for name in (entry if isinstance(entry, tuple) else (entry,))}


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
  if axis in _axis_names(sharding):
    return sharding
  spec = spec + (None,) * (len(shape) - len(spec))
  for dim, (entry, size) in enumerate(zip(spec, shape)):
    if entry is None and size % mesh.shape[axis] == 0:
      new_spec = spec[:dim] + (axis,) + spec[dim + 1:]
      return NamedSharding(mesh, PartitionSpec(*new_spec))
  return sharding


def _split_packed(packed: Packed, shardings: Packed, axis: str,
                  unsplit: list[tuple[str, int]]) -> Packed:
  """Each buffer's sharding split over ``axis``; the buffers it cannot split (their
  state would be a full copy on every device of ``axis``) are described in ``unsplit``,
  with the axis size."""
  split = []
  for name, buffer, sharding in zip(packed.keys(), packed.buffers, shardings.buffers):
    new = _split_over(sharding, tuple(buffer.shape), axis)
    if new is sharding and axis not in _axis_names(sharding) and buffer.shape[-1]:
      size = sharding.mesh.shape[axis]
      unsplit.append((f"{name!r} ({buffer.shape[-1]} elements, "
                      f"{-buffer.shape[-1] % size} short of a multiple of {size})", size))
    split.append(new)
  return Packed(tuple(split), shardings.layout)


def _split_params(params: base.Params, shardings: base.PyTree, axis: str) -> base.PyTree:
  """The params' shardings, each split over ``axis`` as well (:func:`_split_over`); warns
  naming the packed buffers whose length the axis size does not divide."""
  unsplit: list[tuple[str, int]] = []

  def split(p, sharding):
    if _is_packed(p):
      return _split_packed(p, sharding, axis, unsplit)
    return _split_over(sharding, tuple(p.shape), axis)

  split_shardings = jax.tree.map(split, params, shardings, is_leaf=_is_packed)
  if unsplit:
    warnings.warn(
        f"state_shardings: the size of mesh axis {axis!r} does not divide the packed "
        f"buffers {', '.join(what for what, _ in unsplit)}, so their optimizer state is "
        f"not split over {axis!r} but kept whole on every device. Pack with "
        f"multiple_of=<axis size> (here gtx.pack(params, multiple_of={unsplit[0][1]})): "
        "each buffer is then padded with zeros to a multiple of it", stacklevel=3)
  return split_shardings


def _packed_views(params: base.Params, shardings: base.PyTree
                  ) -> tuple[base.Params, base.PyTree] | None:
  """The params with each ``Packed`` replaced by the (abstract) tree it unpacks to, and
  their shardings: each view replicated over its buffers' mesh. Per-leaf transforms
  (:func:`gradtx._src.packing.per_leaf_views`) keep their state on these views. None
  when ``params`` holds no ``Packed``."""
  if not any(map(_is_packed, jax.tree.leaves(params, is_leaf=_is_packed))):
    return None

  def view(p):
    return jax.eval_shape(unpack, p) if _is_packed(p) else p

  def view_shardings(p, sharding):
    if not _is_packed(p):
      return sharding
    return jax.tree.map(lambda _: _replicated(sharding), view(p))

  return (jax.tree.map(view, params, is_leaf=_is_packed),
          jax.tree.map(view_shardings, params, shardings, is_leaf=_is_packed))


def _match_packed(state: Packed, params: base.Params,
                  param_shardings: base.PyTree) -> Packed | None:
  """A ``Packed`` state whose buffers are some of a packed param's (its groups, by name,
  with their shapes: the inner state of :func:`gradtx.masked` or
  :func:`gradtx.partition` following the packing labels) takes those buffers'
  shardings."""
  pairs = zip(jax.tree.leaves(params, is_leaf=_is_packed),
              jax.tree.leaves(param_shardings, is_leaf=_is_packed))
  for p, sharding in pairs:
    if not _is_packed(p):
      continue
    found = {name: (buffer, s) for name, buffer, s in
             zip(p.keys(), p.buffers, sharding.buffers)}
    if all(name in found and found[name][0].shape == buffer.shape
           for name, buffer in zip(state.keys(), state.buffers)):
      return Packed(tuple(found[name][1] for name in state.keys()), state.layout)
  return None


def state_shardings(tx: base.GradientTransformation, params: base.Params,
                    param_shardings: base.PyTree | None = None, *,
                    shard_over: str | None = None) -> base.PyTree:
  """The shardings of ``tx.init(params)``: per-param leaves like their param, the rest replicated.

  Packed params (:func:`gradtx.pack`, or a tree holding ``Packed`` nodes) are trees of
  1-D buffers, and their shardings a ``Packed`` of one sharding per buffer (for example
  ``jax.tree.map(lambda _: NamedSharding(mesh, P()), packed)``). Per-param state of the
  packed layout (Adam's ``mu`` and ``nu``) takes its buffer's sharding, and with
  ``shard_over`` is split over that axis where the axis size divides the buffer's length
  (ZeRO-1: params replicated, optimizer state split); a buffer it does not divide keeps
  its sharding, with a warning naming it (pack with ``multiple_of=<axis size>`` to pad
  every buffer to a multiple of it). Transforms that see per-leaf views (factored
  or matrix rules) keep their state on the unpacked tree; its per-param leaves are
  replicated over the buffers' mesh, and split over ``shard_over`` as plain leaves are.

  Args:
    tx: any transform (gradtx or Optax); only ``tx.init`` is traced, with
      ``jax.eval_shape``, so nothing is computed or allocated.
    params: the params, as arrays or ``jax.ShapeDtypeStruct``s, a plain tree or packed.
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
    hint = ("\n  (for packed params, one sharding per buffer: "
            "jax.tree.map(lambda _: sharding, packed))"
            if any(map(_is_packed, jax.tree.leaves(params, is_leaf=_is_packed))) else "")
    raise ValueError("state_shardings: param_shardings must have the structure of the "
                     f"params:\n  params:    {jax.tree.structure(params)}\n"
                     f"  shardings: {jax.tree.structure(param_shardings)}{hint}"
                     ) from error
  abstract_params = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
  views = _packed_views(abstract_params, param_shardings)
  if shard_over is not None:
    param_shardings = _split_params(abstract_params, param_shardings, shard_over)
    if views is not None:
      views = views[0], _split_params(*views, shard_over)
  replicated = _replicated(param_shardings)
  abstract_state = jax.eval_shape(tx.init, abstract_params)

  def assign(state):
    matched = _match_params(state, abstract_params, param_shardings)
    if matched is None and views is not None:
      matched = _match_params(state, *views)
    if matched is None and _is_packed(state):
      matched = _match_packed(state, abstract_params, param_shardings)
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
