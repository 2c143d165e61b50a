"""Clipping and centralisation: transforms that bound or re-centre the updates."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise, map_leaves
from gradtx._src.tree.math import global_norm


@hyperparameters(max_delta="[0, inf]")
def clip(max_delta: float) -> base.GradientTransformation:
  """Clips every coordinate of the updates to ``[-max_delta, max_delta]``."""
  return leafwise("clip", lambda u, *, d: jnp.clip(u, -d, d), hyperparams=dict(d=max_delta))


@hyperparameters(max_norm="(0, inf]")
def clip_by_global_norm(max_norm: float) -> base.GradientTransformation:
  """Rescales the updates so that their global 2-norm is at most ``max_norm``.

  ``u * max_norm / ||u||`` when ``||u|| >= max_norm``, else ``u`` (Pascanu et al. 2013).
  """

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    norm = global_norm(updates)
    keep = norm < max_norm
    updates = map_leaves(
        "clip_by_global_norm",
        lambda u, norm, max_norm: jax.lax.select(keep, u, (u / norm) * max_norm),
        updates, norm=norm, max_norm=max_norm)
    return updates, state

  return base.GradientTransformation(base.init_empty_state, update)


def _subtract_mean(u: jax.Array) -> jax.Array:
  if u.ndim <= 1:
    return u
  return u - u.mean(axis=tuple(range(u.ndim - 1)), keepdims=True)


def centralize() -> base.GradientTransformation:
  """Gradient centralisation (Yong et al. 2020), in JAX's kernel layout.

  For leaves with ``ndim > 1`` subtracts the mean over all axes but the last (the output
  features of a Flax ``Dense`` ``(in, out)`` or ``Conv`` ``(h, w, in, out)`` kernel), so
  each output unit's incoming weights move with zero mean; scalars and vectors pass
  unchanged. Optax averages over all axes but the first, PyTorch's ``(out, in)`` layout.
  """

  return leafwise("centralize", _subtract_mean, shape_aware=True)
