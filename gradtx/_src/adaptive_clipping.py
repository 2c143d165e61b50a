"""Clipping relative to a scale: per-block RMS clipping (Adafactor's update clipping) and
adaptive gradient clipping (AGC, Brock et al. 2021), with the unit-wise norms it uses.

Numerics follow Optax 0.2.8 (``optax.transforms``); elementwise clipping and clipping
by the global norm are in :mod:`gradtx._src.clipping`.
"""

from __future__ import annotations

from typing import Union

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.tree.math import abs_sq

# Optax's names for the states of clip, clip_by_global_norm and adaptive_grad_clip,
# which keep nothing.
ClipState = base.EmptyState
ClipByGlobalNormState = base.EmptyState
AdaptiveGradClipState = base.EmptyState

# Axes of a reduction: one, several, or None for the layout's default.
Axes = Union[int, tuple, None]


@hyperparameters(threshold="(0, inf]")
def clip_by_block_rms(threshold: float) -> base.GradientTransformation:
  """Clips each block's RMS to ``threshold``: ``u / max(1, rms(u) / threshold)``, ``rms``
  over all of the update's array (Shazeer & Stern 2018, §6, update clipping)."""

  def rule(u, *, threshold):
    return u / jnp.maximum(1.0, jnp.sqrt(jnp.mean(abs_sq(u))) / threshold)

  return leafwise("clip_by_block_rms", rule, hyperparams=dict(threshold=threshold),
                  shape_aware=True)


def unitwise_norm(x: jax.Array, axis: Axes = None) -> jax.Array:
  """The 2-norm of each unit of ``x``, broadcast back to ``x``'s shape.

  A unit is a slice of ``x`` over ``axis``; by default, by rank (JAX's kernel layouts):
  a scalar or vector (after squeezing unit dimensions) is one unit; a ``(in, out)`` or
  ``(in, heads, out)`` kernel sums over axis 0; a ``HWIO`` convolution over ``(0, 1, 2)``;
  a ``DHWIO`` one over ``(0, 1, 2, 3)``.

  Raises:
    ValueError: ``x`` has more than 5 dimensions and no ``axis`` is given.
  """
  x = jnp.asarray(x)
  if axis is not None:
    squared = jnp.sum(abs_sq(x), axis=axis, keepdims=True)
  elif jnp.squeeze(x).ndim <= 1:
    squared = jnp.sum(abs_sq(x), keepdims=True)
  elif x.ndim in (2, 3):
    squared = jnp.sum(abs_sq(x), axis=0, keepdims=True)
  elif x.ndim == 4:
    squared = jnp.sum(abs_sq(x), axis=(0, 1, 2), keepdims=True)
  elif x.ndim == 5:
    squared = jnp.sum(abs_sq(x), axis=(0, 1, 2, 3), keepdims=True)
  else:
    raise ValueError(f"unitwise_norm: expected an array of 1 to 5 dimensions, got shape "
                     f"{x.shape}; give axis= for other layouts")
  return jnp.broadcast_to(jnp.sqrt(squared), x.shape)


def unitwise_clip(g_norm: jax.Array, max_norm: jax.Array, grad: jax.Array,
                  div_eps: float = 1e-6) -> jax.Array:
  """``grad`` where ``g_norm < max_norm``, else ``grad * max_norm / max(g_norm,
  div_eps)`` (the three arrays of one shape)."""
  shapes = {jnp.shape(g_norm), jnp.shape(max_norm), jnp.shape(grad)}
  if len(shapes) != 1:
    raise ValueError(f"unitwise_clip: g_norm, max_norm and grad must have one shape, got "
                     f"{jnp.shape(g_norm)}, {jnp.shape(max_norm)} and {jnp.shape(grad)}")
  clipped = grad * (max_norm / jnp.maximum(g_norm, div_eps))
  return jnp.where(g_norm < max_norm, grad, clipped)


@hyperparameters(clipping="[0, inf]", eps="[0, inf)")
def adaptive_grad_clip(clipping: float, eps: float = 1e-3,
                       axis: Axes = None) -> base.GradientTransformation:
  """Adaptive gradient clipping (Brock et al. 2021, §4.1), unit-wise.

  Each unit's gradient norm is clipped to ``clipping * max(||p_unit||, eps)``:
  ``g * clipping * max(||p||, eps) / ||g||`` where it is larger, ``g`` elsewhere. Units
  as :func:`unitwise_norm` (over ``axis`` if given). ``eps=1e-3`` as the paper, so that
  zero-initialised params can move.
  """

  def rule(u, p, *, clipping, eps):
    g_norm = unitwise_norm(u, axis=axis)
    max_norm = clipping * jnp.maximum(unitwise_norm(p, axis=axis), eps)
    return unitwise_clip(g_norm, max_norm, u)

  return leafwise("adaptive_grad_clip", rule, uses_params=True,
                  hyperparams=dict(clipping=clipping, eps=eps), shape_aware=True)

