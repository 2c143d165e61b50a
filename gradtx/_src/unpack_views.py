"""The leaves of a packed tree as views that XLA compiles once per leaf shape.

``gtx.unpack`` cuts each buffer with one ``lax.split`` and reshapes the pieces. Every
piece is then a ``slice`` whose offset is a constant, and XLA fuses that slice into the
kernels that read the leaf: two leaves of one shape get kernels that differ in that
constant, so XLA:CPU, which compiles identical kernels once, compiles one kernel per
leaf (a 250-leaf loss: 253 distinct kernels where the plain tree has 4). That is why a
packed train step compiled slower than the same step on the plain tree.

:func:`leaf_views` cuts the same pieces with ``lax.dynamic_slice`` at offsets that reach
the kernels as operands: the offsets are the outputs of one ``lax.cond`` per buffer whose
two branches are the same constants, on a predicate read from the buffer at run time, so
XLA can neither fold them into the kernels nor fuse across the conditional. Kernels of
same-shape leaves are then identical and compiled once. The values are the same bits
(a slice at the same offset); the conditional costs one branch per step. This is done on
CPU only, where it was measured (``benchmarks/pack_compile.py``); elsewhere the views are
``lax.split``'s, as before.

Derivatives keep ``unpack``'s form: :func:`leaf_views` is a ``custom_jvp`` whose tangent
is :func:`sliced_views` of the tangent buffers, a linear map whose transpose is one
concatenation per buffer, so gradients are assembled exactly as before (the same bits)
and forward mode (``jax.jvp``, ``jax.linearize``, Hessians) works. Under ``vmap`` the
offsets stay unbatched (a ``custom_vmap`` rule reads the predicate from the whole
batch), so stacked buffers are cut by slices, never gathers.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_INT32_MAX = np.iinfo(np.int32).max


def _members(layout: Any, group: int) -> list[int]:
  return [i for i, slot in enumerate(layout.slots) if slot.group == group]


def sliced_views(packed: Any) -> list[Any]:
  """The leaves of ``packed`` in tree order, cut with one ``lax.split`` per buffer (any
  zeros after a buffer's last leaf are dropped) and reshaped; buffers with leading axes
  give leaves with the same leading axes."""
  layout = packed.layout
  leaves: list[Any] = [None] * len(layout.slots)
  for group, buffer in enumerate(packed.buffers):
    members = _members(layout, group)
    sizes = [layout.slots[i].size for i in members]
    lead, length = jnp.shape(buffer)[:-1], jnp.shape(buffer)[-1]
    if length > sum(sizes):
      sizes.append(length - sum(sizes))
    pieces = [buffer] if len(sizes) == 1 else jax.lax.split(buffer, sizes, axis=-1)
    for i, piece in zip(members, pieces):
      leaves[i] = piece.reshape(lead + layout.slots[i].shape)
  return leaves


@functools.lru_cache(maxsize=None)
def _runtime_offsets(offsets: tuple[int, ...]) -> Any:
  """A function of a scalar ``probe`` that returns ``offsets`` as int32 scalars that XLA
  cannot see as constants; unbatched under ``vmap``."""

  def constants():
    return tuple(jnp.int32(offset) for offset in offsets)

  @jax.custom_batching.custom_vmap
  def produce(probe):
    return jax.lax.cond(probe == probe, constants, constants)

  @produce.def_vmap
  def _(axis_size, in_batched, probe):
    del axis_size, in_batched
    return produce(jnp.sum(probe)), (False,) * len(offsets)

  return produce


def _opaque_views(packed: Any) -> list[Any]:
  """:func:`sliced_views`' values, cut at run-time offsets (see the module docstring)."""
  layout = packed.layout
  leaves = sliced_views(packed)
  for group, buffer in enumerate(packed.buffers):
    members = _members(layout, group)
    lead, length = jnp.shape(buffer)[:-1], jnp.shape(buffer)[-1]
    if len(members) < 2 or length == 0 or length > _INT32_MAX:
      continue
    probe = jax.lax.stop_gradient(jnp.sum(buffer[..., :1]))
    offsets = _runtime_offsets(tuple(layout.slots[i].offset for i in members))(probe)
    for i, offset in zip(members, offsets):
      slot = layout.slots[i]
      piece = jax.lax.dynamic_slice_in_dim(buffer, offset, slot.size, axis=-1)
      leaves[i] = piece.reshape(lead + slot.shape)
  return leaves


@jax.custom_jvp
def leaf_views(packed: Any) -> list[Any]:
  """The leaves of ``packed`` (a ``gtx.Packed``) in tree order, each a reshaped piece of
  its buffer: :func:`sliced_views`' values, compiled once per leaf shape.

  Differentiable in both modes: the tangent is :func:`sliced_views` of the tangent
  buffers, so the gradient is one concatenation per buffer, as for ``lax.split``.
  The run-time offsets are used where they were measured to help, on CPU; other
  platforms get :func:`sliced_views` (a conditional there may wait for the host).
  """
  return jax.lax.platform_dependent(packed, cpu=_opaque_views, default=sliced_views)


@leaf_views.defjvp
def _leaf_views_jvp(primals, tangents):
  (packed,), (tangent,) = primals, tangents
  return leaf_views(packed), sliced_views(tangent)


def split_unpack(packed: Any) -> Any:
  """The tree of ``packed`` cut with constant offsets (:func:`sliced_views`): what
  ``gtx.unpack`` did before run-time offsets, the reference of its tests and of
  ``benchmarks/pack_compile.py``."""
  return packed.layout.treedef.unflatten(sliced_views(packed))
