"""Running a transform on packed params: ``pack`` inside the step, ``unpack`` after it.

``flatten(inner)`` packs the updates (and the params, when given) into one contiguous
buffer per dtype (:func:`gradtx.pack`) and runs ``inner`` on the :class:`~gradtx.Packed`:
``inner`` keeps its state on those buffers, and its output is unpacked into the
updates' tree. It is the packed path with the packing done inside the step, for params
kept as a plain tree; packing them once, outside the step, spares the concatenation and
the cutting at every step (see :mod:`gradtx._src.packing`).

An elementwise rule computes the same formula either way, but XLA vectorises a long
buffer differently from a short leaf (and whether a multiply-add becomes one fused
instruction follows that), and a whole-tree reduction (a global norm) sums in another
order: results agree to the last bit or two, not always bit for bit. Rules that need
each leaf's shape and masks or labels given for the params' tree work as on packed
params: per leaf, or per buffer. Concatenating leaves that are sharded over a device
mesh gathers them; keep ``flatten`` to unsharded (or replicated) params. Measurements
and advice: ``benchmarks/README.md``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, packing, unpack_views, validation


class FlattenState(NamedTuple):
  """State of :func:`flatten`: the inner state, built on the packed params."""
  inner_state: base.OptState


def _packed(tree: base.PyTree) -> packing.Packed:
  """``tree`` packed by dtype; None entries stay part of its structure."""
  return packing.repack(tree, packing.layout_of(tree, none_leaves=True), "flatten")


def _packed_extra_args(extra_args: dict[str, Any], updates: base.Updates,
                       layout: packing.Layout) -> dict[str, Any]:
  """Extra arguments for ``inner``: trees of the updates' structure packed, and a
  ``value_fn`` of the params made a function of the packed params."""
  structure = jax.tree.structure(updates)
  out = {}
  for key, value in extra_args.items():
    if key == "value_fn" and callable(value):
      value = (lambda fn: lambda q, *a, **k: fn(packing.unpack(q), *a, **k))(value)
    elif jax.tree.structure(value) == structure:
      value = packing.repack(value, layout, "flatten")
    out[key] = value
  return out


def flatten(inner: base.GradientTransformation) -> base.GradientTransformation:
  """Runs ``inner`` on one contiguous buffer per dtype.

  ``updates, state = flatten(tx).update(grads, state, params)`` gives the updates
  ``tx`` would give leaf by leaf (up to the last bit; see the module docstring), with
  ``tx``'s state kept packed: for Adam, ``mu`` and ``nu`` are one buffer per dtype each
  instead of one array per leaf. Extra arguments (``value=``, ...) reach ``inner``,
  packed when they are trees of the updates' structure. Params and updates that are a
  :class:`~gradtx.Packed` already reach ``inner`` as they are.

  Args:
    inner: the transform to run on the packed params.
  """
  validation.transform("flatten", "inner", inner)

  def init(params):
    if isinstance(params, packing.Packed):
      return FlattenState(inner.init(params))
    return FlattenState(inner.init(_packed(params)))

  def update(updates, state, params=None, **extra_args):
    if isinstance(updates, packing.Packed):  # packed already: inner runs on it as it is
      new_updates, inner_state = base.call_update(inner, updates, state.inner_state, params,
                                                  extra_args)
      return new_updates, FlattenState(inner_state)
    packed_updates = _packed(updates)
    packed_params = None
    if params is not None:
      base.check_same_structure("flatten", updates, params)
      for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
        if jnp.asarray(u).dtype != jnp.asarray(p).dtype:
          raise ValueError(
              f"flatten: an update of dtype {jnp.asarray(u).dtype} belongs to a param of "
              f"dtype {jnp.asarray(p).dtype}; flatten groups leaves by dtype, so the "
              "updates must have their params' dtypes (cast the gradients first)")
      packed_params = _packed(params)
    extra_args = _packed_extra_args(extra_args, updates, packed_updates.layout)
    new_updates, inner_state = base.call_update(
        inner, packed_updates, state.inner_state, packed_params, extra_args)
    return unpack_views.split_unpack(new_updates), FlattenState(inner_state)

  return base.GradientTransformation(init, update)
