"""Composition: chains of transforms, and transforms applied to parts of a tree.

``chain`` and ``named_chain`` run transforms one after another; ``masked`` applies a
transform only where a boolean mask is True; ``partition`` gives each labelled group of
params its own transform (Optax's ``partition``/``multi_transform``, torch's param groups).
Members may be plain Optax transforms: extra arguments reach each member only if its
``update`` accepts them.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Mapping, NamedTuple, Union

import jax

from gradtx._src import base, packing, unpack_views, validation
from gradtx._src.leafwise import map_leaves
from gradtx._src.tree.state import _ParamsPlaceholder

MaskOrFn = Union[base.PyTree, Callable[[base.Params], base.PyTree]]


def chain(*args: base.GradientTransformation) -> base.GradientTransformationExtraArgs:
  """Applies the transforms ``args`` in sequence; the state is the tuple of their states."""
  transforms = args
  for i, tx in enumerate(transforms):
    validation.transform("chain", f"argument {i + 1}", tx)

  def init(params):
    return tuple(tx.init(params) for tx in transforms)

  def update(updates, state, params=None, **extra_args):
    if len(state) != len(transforms):
      raise ValueError(f"chain: the state holds {len(state)} members but the chain has "
                       f"{len(transforms)} transforms; was it made by another chain?")
    new_state = []
    for tx, s in zip(transforms, state):
      updates, s = base.call_update(tx, updates, s, params, extra_args)
      new_state.append(s)
    return updates, tuple(new_state)

  return base.GradientTransformationExtraArgs(init, update)


def named_chain(*args: tuple[str, base.GradientTransformation]
                ) -> base.GradientTransformationExtraArgs:
  """Like :func:`chain`, with each member of ``args`` a ``(name, transform)`` pair; the
  state is a dict by name."""
  transforms = args
  for i, member in enumerate(transforms):
    if not (isinstance(member, tuple) and len(member) == 2 and isinstance(member[0], str)):
      raise TypeError(f"named_chain: argument {i + 1} must be a (name, transform) pair, "
                      f"got {member!r}")
    validation.transform("named_chain", f"the transform named {member[0]!r}", member[1])
  names = [name for name, _ in transforms]
  if len(set(names)) != len(names):
    raise ValueError(f"named_chain: names must be unique, got {names}")

  def init(params):
    return {name: tx.init(params) for name, tx in transforms}

  def update(updates, state, params=None, **extra_args):
    new_state = {}
    for name, tx in transforms:
      updates, new_state[name] = base.call_update(tx, updates, state[name], params,
                                                  extra_args)
    return updates, new_state

  return base.GradientTransformation(init, update)


class MaskedNode(NamedTuple):
  """Stands in for a masked-out part of a tree: a node without leaves."""


class MaskedState(NamedTuple):
  inner_state: Any


def _mask_tree(pytree: base.PyTree, mask: base.PyTree) -> base.PyTree:
  """Replaces the parts of ``pytree`` where ``mask`` (a prefix tree) is False."""
  return jax.tree.map(lambda m, p: p if m else MaskedNode(), mask, pytree)


def _mask_extra_args(extra_args: dict[str, Any], updates: base.Updates,
                     mask_tree: base.PyTree) -> dict[str, Any]:
  """Masks the extra arguments that are trees of the updates' structure."""
  structure = jax.tree.structure(updates)
  return {k: _mask_tree(v, mask_tree) if jax.tree.structure(v) == structure else v
          for k, v in extra_args.items()}


def masked(inner: base.GradientTransformation, mask: MaskOrFn, *,
           mask_compatible_extra_args: bool = False
           ) -> base.GradientTransformationExtraArgs:
  """Applies ``inner`` only where ``mask`` is True; elsewhere updates pass through.

  On :class:`~gradtx.Packed` params the mask is still given for (or computed from) the
  original tree. When it is the same for all the leaves of each packed buffer (the
  params were packed with labels that follow it), ``inner`` runs on the selected
  buffers; otherwise it runs on the unpacked leaves (``packing.per_leaf_views``).

  Args:
    inner: the transform to apply to the selected leaves; it keeps state only for them.
    mask: a tree of booleans with the structure of the params (or a prefix of it), or a
      function of the params (of the updates, in ``update``) that returns one. The mask
      must be static for the step to be jit-compilable.
    mask_compatible_extra_args: also mask the extra arguments given to ``update`` that
      are trees of the updates' structure (per-param tags, say), so that ``inner`` sees
      them for its leaves only. Others reach ``inner`` unchanged.
  """
  validation.transform("masked", "inner", inner)

  def resolve_mask(tree):
    if isinstance(tree, packing.Packed):
      tree = unpack_views.split_unpack(tree)
    return mask(tree) if callable(mask) else mask

  def init(params):
    if isinstance(params, _ParamsPlaceholder):  # tree_map_params probing the state
      return MaskedState(inner.init(params))
    return MaskedState(inner.init(_mask_tree(params, resolve_mask(params))))

  def update(updates, state, params=None, **extra_args):
    mask_tree = resolve_mask(updates)
    if params is not None:
      base.check_same_structure("masked", updates, params)
    try:
      masked_updates = _mask_tree(updates, mask_tree)
    except ValueError as error:
      raise ValueError(
          "masked: the tree structure of the updates differs from the tree structure of "
          f"the mask (or partition labels); are they for other params?\n"
          f"  updates: {jax.tree.structure(updates)}\n"
          f"  mask:    {jax.tree.structure(mask_tree)}") from error
    if mask_compatible_extra_args:
      extra_args = _mask_extra_args(extra_args, updates, mask_tree)
    inner_updates, inner_state = base.call_update(
        inner, masked_updates, state.inner_state,
        None if params is None else _mask_tree(params, mask_tree), extra_args)
    new_updates = jax.tree.map(lambda m, new, old: new if m else old,
                               mask_tree, inner_updates, updates)
    return new_updates, MaskedState(inner_state)

  on_leaves = packing.per_leaf_views(base.GradientTransformation(init, update))

  def kept_leaves(packed):
    """The mask as one bool per packed leaf."""
    layout = packed.layout
    skeleton = layout.treedef.unflatten(list(range(len(layout.slots))))
    mask_tree = resolve_mask(packed)
    try:
      kept = set(jax.tree.leaves(_mask_tree(skeleton, mask_tree)))
    except ValueError as error:
      raise ValueError(
          "masked: the tree structure of the packed params differs from the tree "
          "structure of the mask (or partition labels); are they for other params?\n"
          f"  packed: {layout}\n  mask:   {jax.tree.structure(mask_tree)}") from error
    return [i in kept for i in range(len(layout.slots))]

  def packed_init(params):
    if not isinstance(params, packing.Packed):
      return init(params)
    keep = kept_leaves(params)
    if not packing.follows_groups(params.layout, keep):
      return on_leaves.init(params)
    return MaskedState(inner.init(packing.restrict(params, keep, MaskedNode)))

  def packed_update(updates, state, params=None, **extra_args):
    if not isinstance(updates, packing.Packed):
      return update(updates, state, params, **extra_args)
    keep = kept_leaves(updates)
    if not packing.follows_groups(updates.layout, keep):
      return on_leaves.update(updates, state, params, **extra_args)
    select = lambda tree: packing.restrict(tree, keep, MaskedNode)  # noqa: E731
    if params is not None:
      packing.check_layouts("masked", updates, params)
      params = select(params)
    if mask_compatible_extra_args:
      extra_args = {k: select(v) if isinstance(v, packing.Packed)
                    and v.layout == updates.layout else v for k, v in extra_args.items()}
    inner_updates, inner_state = base.call_update(inner, select(updates), state.inner_state,
                                                  params, extra_args)
    return packing.merge(updates, inner_updates, keep), MaskedState(inner_state)

  return base.GradientTransformationExtraArgs(packed_init, packed_update)


class PartitionState(NamedTuple):
  inner_states: dict[Hashable, MaskedState]


def partition(transforms: Mapping[Hashable, base.GradientTransformation],
              param_labels: MaskOrFn, *, mask_compatible_extra_args: bool = False
              ) -> base.GradientTransformationExtraArgs:
  """A different transform for each labelled group of params.

  Args:
    transforms: label -> transform applied to the params with that label.
    param_labels: a tree of labels with the structure of the params (or a prefix of it),
      or a function of the params that returns one.
    mask_compatible_extra_args: as in :func:`masked`: each group's transform sees the
      extra arguments that are trees of the updates' structure restricted to its group.
  """
  if not isinstance(transforms, Mapping):
    raise TypeError("partition: transforms must be a dict from label to transform, got "
                    f"{type(transforms).__name__}")
  for label, tx in transforms.items():
    validation.transform("partition", f"transforms[{label!r}]", tx)

  def labels_of(tree):
    if isinstance(tree, packing.Packed):
      tree = unpack_views.split_unpack(tree)
    return param_labels(tree) if callable(param_labels) else param_labels

  def group_tx(labels, group):
    return masked(transforms[group], jax.tree.map(lambda label: label == group, labels),
                  mask_compatible_extra_args=mask_compatible_extra_args)

  def init(params):
    labels = labels_of(params)
    unknown = set(jax.tree.leaves(labels)) - set(transforms)
    if unknown:
      raise ValueError(f"partition: params are labelled {sorted(map(str, unknown))}, which "
                       f"have no transform; the transforms are for {sorted(map(str, transforms))}")
    return PartitionState({g: group_tx(labels, g).init(params) for g in transforms})

  def update(updates, state, params=None, **extra_args):
    labels = labels_of(updates)
    new_states = {}
    for group in transforms:
      updates, new_states[group] = group_tx(labels, group).update(
          updates, state.inner_states[group], params, **extra_args)
    return updates, PartitionState(new_states)

  return base.GradientTransformationExtraArgs(init, update)


class MultiplyState(NamedTuple):
  first: Any
  second: Any


def multiply(first: base.GradientTransformation,
             second: base.GradientTransformation) -> base.GradientTransformation:
  """Runs both transforms on the same updates and emits the product of their outputs.

  The shape of adaptive methods that scale a momentum by a per-coordinate step size:
  ``multiply(chain(add_momentum(b1, ema=True), bias_correction(b1)),
  adaptive_step_size(b2, eps))`` is Adam's direction, and bounding or rectifying the step
  size before the product gives AdaBound or RAdam.
  """
  validation.transform("multiply", "first", first)
  validation.transform("multiply", "second", second)

  def init(params):
    return MultiplyState(first.init(params), second.init(params))

  def update(updates, state, params=None, **extra_args):
    a, first_state = base.call_update(first, updates, state.first, params, extra_args)
    b, second_state = base.call_update(second, updates, state.second, params, extra_args)
    return map_leaves("multiply", lambda x, y: x * y, a, b), MultiplyState(
        first_state, second_state)

  return base.GradientTransformation(init, update)
