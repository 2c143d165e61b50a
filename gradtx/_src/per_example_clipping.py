"""Clipping of per-example gradients before they are summed (DP-SGD, Abadi et al. 2016;
per-layer clipping, McMahan et al. 2018).

Functions, not transforms: they take a batch of per-example gradients (every leaf with
the batch on axis 0, e.g. from ``jax.vmap(jax.grad(loss))``) and return the sum of the
clipped gradients and how many were clipped. Numerics follow Optax 0.2.8.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx._src import validation
from gradtx._src.tree.math import tree_norm

PyTree = Any


def _check_batch_axis(owner: str, grads: PyTree) -> None:
  leaves = jax.tree.leaves(grads)
  shapes = [jnp.shape(g) for g in leaves]
  if not shapes or not all(shapes[0] and s and s[0] == shapes[0][0] for s in shapes):
    raise ValueError(f"{owner}: expects every leaf of grads to have the batch of examples "
                     f"on axis 0 (one size for all leaves), got shapes "
                     f"{jax.tree.map(jnp.shape, grads)}")


def per_example_global_norm_clip(grads: PyTree,
                                 l2_norm_clip: Any) -> tuple[PyTree, jax.Array]:
  """Clips each example's gradient to global norm ``l2_norm_clip``, then sums them.

  Example ``i`` is scaled by ``min(1, l2_norm_clip / ||g_i||)`` (1 where that is NaN,
  ``0/0``), ``||g_i||`` its 2-norm over all leaves (Abadi et al. 2016, Algorithm 1).

  Returns:
    The sum over the batch of the clipped gradients (a tree like one example's), and
    the number of examples that were clipped (int32).

  Raises:
    ValueError: a leaf has no batch axis, or the leaves' batch sizes differ.
  """
  owner = "per_example_global_norm_clip"
  validation.real(owner, "l2_norm_clip", l2_norm_clip, "[0, inf]")
  _check_batch_axis(owner, grads)
  norms = jax.vmap(tree_norm)(grads)
  multipliers = jnp.nan_to_num(jnp.minimum(l2_norm_clip / norms, 1.0), nan=1.0)
  clipped_sum = jax.tree.map(lambda g: jnp.tensordot(multipliers, g, axes=1), grads)
  return clipped_sum, jnp.sum(multipliers < 1.0)


def per_example_layer_norm_clip(grads: PyTree, global_l2_norm_clip: Any,
                                uniform: bool = True) -> tuple[PyTree, PyTree]:
  """Clips each example's gradient layer by layer, then sums them (McMahan et al. 2018).

  Each leaf (layer) ``k`` of ``K`` is clipped as :func:`per_example_global_norm_clip`,
  to ``C / sqrt(K)`` with ``uniform``, else to ``C * sqrt(D_k / D)`` (``D_k`` the
  layer's number of params, ``D`` the model's), ``C = global_l2_norm_clip``; either
  way the clipped example's global norm is at most ``C``.

  Returns:
    A tree of the clipped sums and a tree of the per-layer counts of clipped examples,
    each with the structure of ``grads``.

  Raises:
    ValueError: a leaf has no batch axis, or the leaves' batch sizes differ.
  """
  owner = "per_example_layer_norm_clip"
  validation.real(owner, "global_l2_norm_clip", global_l2_norm_clip, "[0, inf]")
  _check_batch_axis(owner, grads)
  if uniform:
    n_layers = len(jax.tree.leaves(grads))
    clips = jax.tree.map(lambda _: global_l2_norm_clip * (1.0 / n_layers)**0.5, grads)
  else:
    total = sum(g[0].size for g in jax.tree.leaves(grads))
    clips = jax.tree.map(lambda g: global_l2_norm_clip * (g[0].size / total)**0.5, grads)
  per_layer = jax.tree.map(per_example_global_norm_clip, grads, clips)
  return jax.tree.transpose(jax.tree.structure(grads), jax.tree.structure((0, 0)),
                            per_layer)
