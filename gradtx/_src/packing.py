"""Packed parameters: a params tree laid out as a few contiguous 1-D buffers.

``pack(params)`` concatenates the raveled leaves of each group (their dtype, and their
label when ``labels`` is given) into one buffer (or, with ``max_buffer_size`` or
``max_buffer_leaves``, into buffers of at most that many elements or leaves) and
returns a :class:`Packed`: a pytree whose only array leaves are those buffers, with the
layout (tree structure, each leaf's group, offset and shape, the groups' keys) as static
metadata. ``unpack(packed)`` gives the original tree back, each leaf a reshaped piece
of its buffer.

A model written on ``unpack(packed)`` is differentiated with respect to the ``Packed``:
the pieces are cut with one ``lax.split`` per buffer, whose transpose is one
concatenation, so the gradient is a ``Packed`` assembled in one pass per buffer (and
forward-mode derivatives, vmap and scan work as for any JAX function).

Every transform accepts a ``Packed`` as params, updates and grads. An elementwise rule
(Adam, momentum, weight decay) and a whole-tree reduction (a global norm) run on the
buffers. A rule that needs each leaf's shape (``centralize``, trust ratios, factored or
matrix preconditioners) is wrapped, where it is built, in :func:`per_leaf_views`: it sees
the unpacked views, keeps its state on the plain tree, and its updates are packed again.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import weakref
from typing import Any, Callable, Hashable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._src import base
from gradtx._src import unpack_views

PyTree = Any


class Slot(NamedTuple):
  """Where one leaf lives: its path, group (buffer index), offset and shape."""
  path: str
  group: int
  offset: int
  shape: tuple[int, ...]

  @property
  def size(self) -> int:
    return int(np.prod(self.shape, dtype=np.int64))


@dataclasses.dataclass(frozen=True, eq=False)
class Layout:
  """The static part of a :class:`Packed`: hashable, compared by value.

  Attributes:
    treedef: the structure of the original params tree.
    groups: one ``(dtype name, label)`` per buffer, in buffer order (label ``None``
      when ``pack`` was given no labels); a group split by ``pack(...,
      max_buffer_size=)`` or ``max_buffer_leaves=`` appears once per buffer.
    slots: one :class:`Slot` per leaf, in the tree's leaf order.
    multiple_of: each buffer's length is its leaves' total size rounded up to a
      multiple of this, the rest zeros (1: no padding).
  """
  treedef: Any
  groups: tuple[tuple[str, Hashable], ...]
  slots: tuple[Slot, ...]
  multiple_of: int = 1

  def __post_init__(self):
    # jit compares the layouts of its arguments at every call: hash once.
    object.__setattr__(self, "_hash", hash(self._key()))
    # Buffers of a split group are told apart by their part number: "float32#0", ...
    counts: dict[tuple[str, Hashable], int] = {}
    for group in self.groups:
      counts[group] = counts.get(group, 0) + 1
    names, seen = [], {}
    for dtype, label in self.groups:
      name = dtype if label is None else f"{dtype}/{label}"
      if counts[dtype, label] > 1:
        part = seen[dtype, label] = seen.get((dtype, label), -1) + 1
        name = f"{name}#{part}"
      names.append(name)
    if len(set(names)) < len(names):
      raise ValueError(f"pack: two buffers would both be named {_repeated(names)!r} (a "
                       "label ending in '#<number>' reads like a part of a split group); "
                       "rename that label")
    object.__setattr__(self, "_names", tuple(names))

  def _key(self) -> tuple[Any, ...]:
    return self.treedef, self.groups, self.slots, self.multiple_of

  def __hash__(self) -> int:
    return self._hash

  def __eq__(self, other: Any) -> bool:
    return self is other or (isinstance(other, Layout) and self._hash == other._hash
                             and self._key() == other._key())

  def group_size(self, group: int) -> int:
    """The total size of the group's leaves (the buffer without its padding)."""
    return sum(slot.size for slot in self.slots if slot.group == group)

  def padding(self, group: int) -> int:
    """The number of zeros after the group's leaves in its buffer."""
    return -self.group_size(group) % self.multiple_of

  def buffer_length(self, group: int) -> int:
    return self.group_size(group) + self.padding(group)

  def group_name(self, group: int) -> str:
    """The dtype, ``dtype/label`` with labels, and ``#part`` for a split group's buffers."""
    return self._names[group]

  def __repr__(self) -> str:
    parts = []
    for g in range(len(self.groups)):
      leaves = ", ".join(f"{s.path or '(the root)'} {s.shape}" for s in self.slots
                         if s.group == g)
      pad = f" + {self.padding(g)} zeros" if self.padding(g) else ""
      parts.append(f"{self.group_name(g)}[{self.group_size(g)}{pad}] <- {leaves}")
    multiple = f", lengths multiples of {self.multiple_of}" if self.multiple_of > 1 else ""
    return (f"Layout({len(self.slots)} leaves of {self.treedef} in {len(self.groups)} "
            f"buffers{multiple}: " + "; ".join(parts) + ")")


def _repeated(names: list[str]) -> str:
  return next(name for i, name in enumerate(names) if name in names[:i])


# Equal layouts are one object, so that the comparison jit makes at every call is an
# identity check.
_LAYOUTS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _interned(layout: Layout) -> Layout:
  return _LAYOUTS.setdefault(layout, layout)


@jax.tree_util.register_pytree_with_keys_class
class Packed:
  """Params (or updates, grads, moments) as one 1-D buffer per group.

  A pytree whose children are the buffers, in the order of ``layout.groups``; the
  :class:`Layout` is static. Made by :func:`pack`; :func:`unpack` gives the tree back.
  """
  __slots__ = ("buffers", "layout")

  def __init__(self, buffers: tuple[Any, ...], layout: Layout):
    self.buffers = tuple(buffers)
    self.layout = layout
    # Flax may be imported after the first pack (a restored state is built later):
    # looked up, never imported, so Flax is not a dependency.
    if "flax.serialization" in sys.modules:
      _register_with_flax(sys.modules["flax.serialization"])

  def tree_flatten_with_keys(self):
    keys = [jax.tree_util.DictKey(self.layout.group_name(g))
            for g in range(len(self.layout.groups))]
    return list(zip(keys, self.buffers)), self.layout

  def tree_flatten(self):
    return self.buffers, self.layout

  @classmethod
  def tree_unflatten(cls, layout, buffers):
    return cls(tuple(buffers), layout)

  def __eq__(self, other: Any) -> bool:  # as a NamedTuple of the buffers compares
    return (isinstance(other, Packed) and self.layout == other.layout
            and self.buffers == other.buffers)

  def __hash__(self) -> int:
    return hash((self.layout, self.buffers))

  def keys(self) -> list[str]:
    """The buffers' names: the dtype, ``dtype/label`` when packed with labels, and
    ``#0``, ``#1``, ... after it for the buffers of a group split by
    ``max_buffer_size`` or ``max_buffer_leaves``."""
    return [self.layout.group_name(g) for g in range(len(self.layout.groups))]

  def __getitem__(self, name: str) -> Any:
    """The buffer of the group named ``name`` (see :meth:`keys`)."""
    return self.buffers[self.keys().index(name)]

  def __iter__(self):
    return iter(self.keys())

  def __len__(self) -> int:
    return len(self.buffers)

  def __repr__(self) -> str:
    buffers = ", ".join(f"{self.layout.group_name(g)}: {getattr(b, 'shape', b)}"
                        for g, b in enumerate(self.buffers))
    return f"Packed({buffers}; {len(self.layout.slots)} leaves)"


@functools.cache
def _register_with_flax(serialization: Any) -> None:
  """Lets ``flax.serialization`` save a ``Packed`` as ``{group name: buffer}``."""
  serialization.register_serialization_state(
      Packed,
      lambda p: {k: serialization.to_state_dict(b) for k, b in zip(p.keys(), p.buffers)},
      lambda target, state: Packed(
          tuple(serialization.from_state_dict(b, state[k])
                for k, b in zip(target.keys(), target.buffers)), target.layout))


def _check_leaf(path: str, leaf: Any) -> str:
  """The dtype name of a leaf ``pack`` accepts, or the error naming it."""
  where = path or "(the root)"
  if leaf is None:
    raise TypeError(f"pack: the leaf at {where} is None; pack needs an array at every "
                    "leaf (drop the None entries from the params first)")
  dtype = getattr(leaf, "dtype", None)
  if dtype is None:
    if not isinstance(leaf, float):
      raise TypeError(f"pack: the leaf at {where} is a {type(leaf).__name__}, not an "
                      "array; pack needs floating-point arrays at every leaf")
    dtype = jnp.asarray(leaf).dtype
  if not jnp.issubdtype(dtype, jnp.inexact):
    raise TypeError(f"pack: the leaf at {where} has dtype {jnp.dtype(dtype).name}; only "
                    "floating-point params can be packed (keep integer or boolean arrays "
                    "out of the packed params)")
  return jnp.dtype(dtype).name


def _leaf_labels(labels: Any, params: PyTree, treedef: Any) -> list[Hashable]:
  """One label per leaf from a labels tree (or prefix of the params' tree) or function."""
  tree = labels(params) if callable(labels) else labels
  try:
    per_leaf = treedef.flatten_up_to(jax.tree.map(
        lambda label, sub: jax.tree.map(lambda _: label, sub), tree, params))
  except (ValueError, TypeError) as error:
    raise ValueError(
        "pack: the labels' tree structure differs from the params'; give one label per "
        f"leaf (or per subtree)\n  params: {treedef}\n  labels: {jax.tree.structure(tree)}"
    ) from error
  for label in per_leaf:
    try:
      hash(label)
    except TypeError:
      raise TypeError(f"pack: labels must be hashable (strings, say), got {label!r}"
                      ) from None
  return per_leaf


def layout_of(params: PyTree, labels: Any = None, none_leaves: bool = False,
              multiple_of: int = 1, max_buffer_size: int | None = None,
              max_buffer_leaves: int | None = None) -> Layout:
  """The :class:`Layout` that :func:`pack` gives ``params`` (no arrays are touched).
  With ``none_leaves``, None entries are empty subtrees (as in ``jax.tree``), not errors;
  ``multiple_of`` (1: no padding), ``max_buffer_size`` and ``max_buffer_leaves`` (None:
  no limit) are :func:`pack`'s."""
  with_path, treedef = jax.tree_util.tree_flatten_with_path(
      params, is_leaf=None if none_leaves else (lambda x: x is None))
  paths = [jax.tree_util.keystr(path) for path, _ in with_path]
  dtypes = [_check_leaf(path, leaf) for path, (_, leaf) in zip(paths, with_path)]
  leaf_labels = (_leaf_labels(labels, params, treedef) if labels is not None
                 else [None] * len(paths))
  open_buffer: dict[tuple[str, Hashable], int] = {}  # each group's buffer being filled
  keys: list[tuple[str, Hashable]] = []
  sizes: list[int] = []
  counts: list[int] = []  # leaves per buffer
  slots = []
  for path, (_, leaf), dtype, label in zip(paths, with_path, dtypes, leaf_labels):
    shape = tuple(int(d) for d in np.shape(leaf))
    size = int(np.prod(shape, dtype=np.int64))
    group = open_buffer.get((dtype, label))
    if group is None or (max_buffer_size is not None and sizes[group] > 0
                         and sizes[group] + size > max_buffer_size) or (
                             max_buffer_leaves is not None
                             and counts[group] >= max_buffer_leaves):
      group = open_buffer[dtype, label] = len(keys)
      keys.append((dtype, label))
      sizes.append(0)
      counts.append(0)
    slots.append(Slot(path, group, sizes[group], shape))
    sizes[group] += size
    counts[group] += 1
  return _interned(Layout(treedef, tuple(keys), tuple(slots), multiple_of))


def repack(tree: PyTree, layout: Layout, owner: str = "pack") -> Packed:
  """``tree`` (of ``layout``'s structure and shapes) as a :class:`Packed` of ``layout``:
  each group's leaves raveled, cast to the group's dtype and concatenated, followed by
  the layout's padding zeros."""
  try:
    leaves = layout.treedef.flatten_up_to(tree)
  except (ValueError, TypeError) as error:
    raise ValueError(
        f"{owner}: the tree structure differs from the packed layout's\n"
        f"  tree:   {jax.tree.structure(tree)}\n  layout: {layout}") from error
  parts: list[list[jax.Array]] = [[] for _ in layout.groups]
  for slot, leaf in zip(layout.slots, leaves):
    leaf = jnp.asarray(leaf)
    if leaf.shape != slot.shape:
      raise ValueError(f"{owner}: the leaf at {slot.path or '(the root)'} has shape "
                       f"{leaf.shape}, but the layout has {slot.shape} there")
    parts[slot.group].append(jnp.ravel(leaf).astype(layout.groups[slot.group][0]))
  for g, (dtype, _) in enumerate(layout.groups):
    if layout.padding(g):
      parts[g].append(jnp.zeros((layout.padding(g),), dtype))
  buffers = []
  for (dtype, _), group in zip(layout.groups, parts):
    buffers.append(group[0] if len(group) == 1 else
                   jnp.concatenate(group) if group else jnp.zeros((0,), dtype))
  return Packed(tuple(buffers), layout)


def pack(params: PyTree, labels: Any = None, *, multiple_of: int | None = None,
         max_buffer_size: int | None = None,
         max_buffer_leaves: int | None = None) -> Packed:
  """Lays ``params`` out as one contiguous 1-D buffer per group.

  A group is the leaves of one dtype, and of one label when ``labels`` is given; buffers
  follow the order in which their groups first appear among the leaves, and each
  buffer holds its leaves raveled, in tree order.

  With ``max_buffer_size=n`` a group whose leaves hold more than ``n`` elements is laid
  out as several buffers instead, each a run of consecutive leaves holding at most
  ``n`` elements (a larger leaf gets a buffer of its own); the buffers of a split group
  are named ``float32#0``, ``float32#1``, ... With ``max_buffer_leaves=k`` each buffer
  is a run of at most ``k`` consecutive leaves; with both, a buffer ends at whichever
  limit comes first. The numbers are the same either way. On CPU this can make a train
  step faster: XLA:CPU fuses the gradient's concatenation into the kernels that compute
  its pieces only when a buffer has few leaves (at most 8 in the versions measured),
  otherwise the concatenation is a pass of its own over the buffer.
  ``max_buffer_leaves=8`` gives the fewest buffers whose concatenations XLA:CPU fused on
  the synthetic trees measured (not on every model); ``benchmarks/train_step.py`` times
  it and ``max_buffer_size=16384`` against one buffer, and its README has the figures.

  With ``multiple_of=n`` each buffer ends in zeros up to the next multiple of ``n``, so
  that its optimizer state can be split evenly over a mesh axis of size ``n`` (ZeRO-1
  with ``gtx.state_shardings(tx, packed, shard_over=...)``). The padding is no
  parameter: :func:`unpack` leaves it out, so a loss on ``unpack(packed)`` has zero
  gradient there. A rule that leaves a coordinate with zero gradient where it is keeps
  the padding at zero, and then norms, sums and dot products over the buffers equal the
  unpadded tree's. A few rules move coordinates whose gradient is zero (Yogi's first
  moment starts at 1e-6; ``adaptive_step_size`` and ``adabound_step_size`` emit step
  sizes; learned optimizers): their output's padding is set back to zero between the
  members of a chain and by :func:`gradtx.apply_updates`, so params' padding stays zero
  and a global norm later in the chain sees none of it.

  Args:
    params: a pytree of floating-point arrays.
    labels: optional, as in :func:`gradtx.partition`: a tree of hashable labels with the
      params' structure (or a prefix of it), or a function of the params returning one.
      ``partition``/``masked`` whose labels or mask follow these groups act per buffer.
    multiple_of: None (no padding) or an integer >= 1: every buffer's length is made a
      multiple of it (the data axis's size, for ZeRO-1).
    max_buffer_size: None (no limit) or an integer >= 1: the most elements a buffer
      holds, unless one leaf alone holds more.
    max_buffer_leaves: None (no limit) or an integer >= 1: the most leaves a buffer
      holds.

  Returns:
    A :class:`Packed`; :func:`unpack` gives ``params`` back.

  Raises:
    TypeError: a leaf is None, not an array, or not floating-point (its path is named);
      ``multiple_of``, ``max_buffer_size`` or ``max_buffer_leaves`` is not an integer.
    ValueError: a leaf is split over mesh axes (packing would gather it; the message
      says what to do instead), or ``multiple_of``, ``max_buffer_size`` or
      ``max_buffer_leaves`` is below 1.
  """
  from gradtx._src import sharding  # pylint: disable=g-import-not-at-top  (a cycle)
  for name, value in (("multiple_of", multiple_of), ("max_buffer_size", max_buffer_size),
                      ("max_buffer_leaves", max_buffer_leaves)):
    if value is None:
      continue
    allowed = f"pack: {name} must be an integer >= 1 or None"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
      raise TypeError(f"{allowed} (it sets the buffers' lengths, so it cannot be traced), "
                      f"got {value!r} ({type(value).__name__})")
    if value < 1:
      raise ValueError(f"{allowed}, got {value!r}")
  sharding.check_packable(params)
  return repack(params, layout_of(
      params, labels, multiple_of=int(multiple_of or 1),
      max_buffer_size=None if max_buffer_size is None else int(max_buffer_size),
      max_buffer_leaves=None if max_buffer_leaves is None else int(max_buffer_leaves)))


def unpack(packed: Packed) -> PyTree:
  """The tree that was packed, each leaf a reshaped piece of its buffer.

  Traceable and differentiable: the gradient of a function of ``unpack(packed)`` with
  respect to ``packed`` is a :class:`Packed` of the same layout. Buffers with leading
  axes (a stack of packed trees) give leaves with the same leading axes.

  On CPU the pieces are cut at offsets XLA cannot fold into the kernels that read them,
  so the kernels of same-shape leaves are identical and compiled once (a model with
  thousands of arrays compiles as fast as on the plain tree; see
  :mod:`gradtx._src.unpack_views`); their tangents are one ``lax.split`` per buffer, whose
  transpose is one concatenation.

  Raises:
    TypeError: ``packed`` is not a :class:`Packed`.
  """
  if not isinstance(packed, Packed):
    raise TypeError(f"unpack: expected a gtx.Packed (made by gtx.pack), got "
                    f"{type(packed).__name__}")
  return packed.layout.treedef.unflatten(unpack_views.leaf_views(packed))


def zero_padding(tree: PyTree) -> PyTree:
  """``tree`` with the padding of each :class:`Packed` in it (``pack(...,
  multiple_of=n)``) set to zero; other leaves, and packed trees without padding, are
  returned as they are (no operation is added for them).

  A loss on ``unpack(packed)`` never sees the padding and its gradient there is zero;
  most transforms then emit zero there too, but not every one: a rule that moves a
  coordinate whose gradient is zero (Yogi's first moment starts at 1e-6, a step size
  emitted in place of the update, a learned optimizer's output) writes into the
  padding. This puts the zeros back."""

  def zero(node):
    if not isinstance(node, Packed) or node.layout.multiple_of == 1:
      return node
    buffers = []
    for g, buffer in enumerate(node.buffers):
      pad = node.layout.padding(g)
      if pad and jnp.shape(buffer)[-1:] == (node.layout.buffer_length(g),):
        keep = jnp.arange(node.layout.buffer_length(g)) < node.layout.group_size(g)
        buffer = jnp.where(keep, buffer, jnp.zeros((), jnp.result_type(buffer)))
      buffers.append(buffer)
    return Packed(tuple(buffers), node.layout)

  return jax.tree.map(zero, tree, is_leaf=lambda x: isinstance(x, Packed))


def check_layouts(owner: str, packed: Packed, *others: Any) -> None:
  """Raises an error stating both layouts if any of ``others`` is not a ``Packed`` of
  ``packed``'s layout."""
  for other in others:
    if isinstance(other, Packed) and other.layout == packed.layout:
      continue
    got = other.layout if isinstance(other, Packed) else jax.tree.structure(other)
    raise ValueError(f"{owner}: the packed trees differ in layout (were they packed from "
                     f"other params, or with other labels?)\n  one:   {packed.layout}\n"
                     f"  other: {got}")


def _views_of_extra_args(extra_args: dict[str, Any], layout: Layout) -> dict[str, Any]:
  """Extra arguments as a per-leaf rule expects them: packed trees unpacked, and a
  ``value_fn`` of packed params called on the plain tree."""
  out = {}
  for key, value in extra_args.items():
    if isinstance(value, Packed) and value.layout == layout:
      value = unpack_views.split_unpack(value)
    elif key == "value_fn" and callable(value):
      value = (lambda fn: lambda tree, *a, **k: fn(repack(tree, layout), *a, **k))(value)
    out[key] = value
  return out


def per_leaf_views(tx: base.GradientTransformation) -> base.GradientTransformation:
  """``tx``, which needs each leaf's shape, made to accept :class:`Packed` input.

  On plain trees it is ``tx``. Given a ``Packed``, ``tx`` runs on the unpacked views of
  the updates, params and packed extra arguments (its state is built on the plain tree),
  and its updates are packed again in the updates' layout. The views are cut at constant
  offsets (``unpack_views.split_unpack``): XLA carries the buffers' shardings through
  those into the per-leaf state, which it does not through ``unpack``'s run-time offsets,
  and an optimizer's few per-leaf kernels gain nothing from shared kernels.
  """

  def init(params):
    return tx.init(unpack_views.split_unpack(params) if isinstance(params, Packed)
                   else params)

  def update(updates, state, params=None, **extra_args):
    if not isinstance(updates, Packed):
      return base.call_update(tx, updates, state, params, extra_args)
    layout = updates.layout
    if params is not None:
      check_layouts("per-leaf transform", updates, params)
      params = unpack_views.split_unpack(params)
    new_updates, state = base.call_update(tx, unpack_views.split_unpack(updates), state,
                                          params, _views_of_extra_args(extra_args, layout))
    return repack(new_updates, layout), state

  return base.GradientTransformationExtraArgs(init, update)


def restrict(packed: Packed, keep: list[bool], skip: Callable[[], Any]) -> Packed:
  """The groups of ``packed`` whose leaves are all kept (``keep``: one bool per leaf,
  the same for every leaf of a group), as a ``Packed`` whose tree has ``skip()`` in
  place of each dropped leaf."""
  layout = packed.layout
  kept_groups = [g for g in range(len(layout.groups))
                 if any(k for k, s in zip(keep, layout.slots) if s.group == g)]
  renumber = {g: i for i, g in enumerate(kept_groups)}
  slots = tuple(s._replace(group=renumber[s.group])
                for k, s in zip(keep, layout.slots) if k)
  skeleton = layout.treedef.unflatten([0 if k else skip() for k in keep])
  sub = _interned(Layout(jax.tree.structure(skeleton),
                         tuple(layout.groups[g] for g in kept_groups), slots,
                         layout.multiple_of))
  return Packed(tuple(packed.buffers[g] for g in kept_groups), sub)


def follows_groups(layout: Layout, keep: list[bool]) -> bool:
  """Whether every group's leaves are all kept or all dropped."""
  by_group: dict[int, set[bool]] = {}
  for k, slot in zip(keep, layout.slots):
    by_group.setdefault(slot.group, set()).add(bool(k))
  return all(len(values) == 1 for values in by_group.values())


def merge(packed: Packed, part: Packed, keep: list[bool]) -> Packed:
  """``packed`` with the buffers of the kept groups replaced by ``part``'s."""
  layout = packed.layout
  kept_groups = [g for g in range(len(layout.groups))
                 if any(k for k, s in zip(keep, layout.slots) if s.group == g)]
  buffers = list(packed.buffers)
  for g, buffer in zip(kept_groups, part.buffers):
    buffers[g] = buffer
  return Packed(tuple(buffers), layout)
