"""Running a transform on one contiguous buffer per dtype instead of leaf by leaf.

``flatten(inner)`` ravels the leaves of the updates (and of the params, when given) and
concatenates those of each dtype into one 1-D buffer; ``inner`` sees the dict
``{dtype name: buffer}``, keeps its state on those buffers, and its output is cut back
into the shapes of the updates. An elementwise rule computes the same formula either way,
but XLA vectorises a long buffer differently from a short leaf (and whether a multiply-add
becomes one fused instruction follows that), and a whole-tree reduction (a global norm)
sums in another order: results agree to the last bit or two, not always bit for bit.
The state then holds a handful of arrays however many leaves the model has, which cuts
the per-array costs of a step where they, and not memory bandwidth, dominate: thousands
of small leaves. The concatenation and the cutting are extra passes over memory, so for a
hundred larger leaves it is slower. Measurements and advice: ``benchmarks/README.md``.

What ``inner`` must not rely on: the shapes of the leaves (``centralize`` and any other
rule that reduces over a leaf's axes see 1-D buffers) and the tree structure (masks and
``partition`` labels name leaves: put ``masked`` and ``partition`` outside, as in
``masked(flatten(tx), mask)``). Concatenating leaves that are sharded over a device mesh
gathers them; keep ``flatten`` to unsharded (or replicated) params.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, validation


class FlattenState(NamedTuple):
  """State of :func:`flatten`: the inner state, built on ``{dtype name: buffer}``."""
  inner_state: base.OptState


def _flat(leaves: list[jax.Array]) -> dict[str, jax.Array]:
  """One 1-D buffer per dtype, leaves concatenated in tree order."""
  groups: dict[str, list[jax.Array]] = {}
  for leaf in leaves:
    leaf = jnp.asarray(leaf)
    groups.setdefault(leaf.dtype.name, []).append(jnp.ravel(leaf))
  return {name: parts[0] if len(parts) == 1 else jnp.concatenate(parts)
          for name, parts in groups.items()}


def _unflat(flat: dict[str, jax.Array], like: list[jax.Array]) -> list[jax.Array]:
  """Cuts the buffers back into arrays shaped like ``like`` (the inverse of ``_flat``)."""
  offsets = dict.fromkeys(flat, 0)
  leaves = []
  for leaf in like:
    name = jnp.asarray(leaf).dtype.name
    start, size = offsets[name], leaf.size
    buffer = flat[name]
    part = buffer if size == buffer.size else buffer[start:start + size]
    leaves.append(part.reshape(jnp.shape(leaf)))
    offsets[name] = start + size
  return leaves


def flatten(inner: base.GradientTransformation) -> base.GradientTransformation:
  """Runs ``inner`` on one contiguous buffer per dtype.

  ``updates, state = flatten(tx).update(grads, state, params)`` gives the updates
  ``tx`` would give leaf by leaf (up to the last bit; see the module docstring), with
  ``tx``'s state kept flat: for Adam, ``mu`` and ``nu`` are one buffer per dtype each
  instead of one array per leaf. Extra arguments (``value=``, ...) reach ``inner`` unchanged.

  Use it for trees of many small leaves where per-array costs dominate (see the module
  docstring for what ``inner`` must not rely on: leaf shapes, tree structure, sharding).

  Args:
    inner: the transform to run on the flat buffers.
  """
  validation.transform("flatten", "inner", inner)

  def init(params):
    return FlattenState(inner.init(_flat(jax.tree.leaves(params))))

  def update(updates, state, params=None, **extra_args):
    update_leaves, treedef = jax.tree.flatten(updates)
    flat_params = None
    if params is not None:
      base.check_same_structure("flatten", updates, params)
      param_leaves = jax.tree.leaves(params)
      for u, p in zip(update_leaves, param_leaves):
        if jnp.asarray(u).dtype != jnp.asarray(p).dtype:
          raise ValueError(
              f"flatten: an update of dtype {jnp.asarray(u).dtype} belongs to a param of "
              f"dtype {jnp.asarray(p).dtype}; flatten groups leaves by dtype, so the "
              "updates must have their params' dtypes (cast the gradients first)")
      flat_params = _flat(param_leaves)
    flat_updates, inner_state = base.call_update(
        inner, _flat(update_leaves), state.inner_state, flat_params, extra_args)
    return treedef.unflatten(_unflat(flat_updates, update_leaves)), FlattenState(inner_state)

  return base.GradientTransformation(init, update)
