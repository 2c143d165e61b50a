"""Mechanic (Cutkosky, Defazio & Mehta 2023, "Mechanic: A Learning Rate Tuner",
Algorithm 1): learns a scale ``s`` for the steps of any base optimizer by running a
parameter-free online learner (a coin-betting one per decay rate ``beta``) on the 1-D
problem of how far to move along the base optimizer's accumulated steps.

With ``Delta`` the sum of the base optimizer's updates, ``x_0`` the params before the
first step, ``g`` the gradient with Mechanic's own weight decay added
(``g + wd sum(s) ||g|| / (||x|| + eps) x``) and ``betas = 1 - 0.1**k``, ``k = 1..n``::

  h = <g, Delta_prev>                          (Delta_prev = (x_0 - x) / (sum(s) + eps))
  m = max(betas m, |h| + eps);   v = betas**2 v + h**2
  r = betas r + clip(h, -m_prev, m_prev) s
  s = ((s_init / n) m + max(r, 0)) / (sqrt(v) + eps)
  x = x_0 - sum(s) (Delta_prev - base update)

Numerics, defaults and state follow Optax 0.2.8's ``optax.contrib.mechanize`` (the
memory-saving form that recomputes ``Delta`` from ``x_0``; the clipping of ``h`` is the
authors' later addition), the learner's state in at least float32 (see
:mod:`gradtx._src.tree_scalars`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import map_leaves
from gradtx._src.tree.math import safe_increment, tree_norm, tree_vdot, zero_count
from gradtx._src.tree_scalars import safe_sqrt, scalar_dtype, wide


class MechanicState(NamedTuple):
  """State of :func:`mechanize` (Optax's fields, in Optax's order).

  Attributes:
    base_optimizer_state: the base optimizer's state.
    count: the number of updates so far.
    r, m, v, s: the learner's rewards, gradient bounds, second moments and scales, one
      per decay rate (shape ``(num_betas,)``).
    x0: the params before the first update (taken at the first ``update``).
  """

  base_optimizer_state: base.OptState
  count: jax.Array
  r: jax.Array
  m: jax.Array
  v: jax.Array
  s: jax.Array
  x0: base.Updates


def _decayed(g, p, *, coefficient):
  return g + coefficient * p


def _deltas(p, x0, u, *, s_sum, eps):
  delta_prev = (x0 - p) / (s_sum + eps)
  return delta_prev, delta_prev - u


def _new_params(x0, delta, p, *, scale):
  return (x0 - scale * delta) - p


@hyperparameters(base_optimizer="transform", weight_decay="[0, inf)", eps="(0, inf)",
                 s_init="(0, inf)", num_betas="int >= 1")
def mechanize(base_optimizer: base.GradientTransformation, weight_decay: float = 1e-2,
              eps: float = 1e-8, s_init: float = 1e-6, num_betas: int = 6
              ) -> base.GradientTransformation:
  """Mechanic around ``base_optimizer`` (Cutkosky et al. 2023), as Optax's
  ``optax.contrib.mechanize``.

  Keep the base optimizer's learning rate (or schedule) at a base value such as 1:
  Mechanic learns the scale. See the module docstring for the update.

  Args:
    base_optimizer: the optimizer whose updates are scaled; it gets the extra keyword
      arguments of ``update`` that it accepts.
    weight_decay: Mechanic's own weight decay on the gradient it learns from (not the
      base optimizer's).
    eps: keeps the learner's divisions finite.
    s_init: the initial scale (and the learner's initial wealth), shared by the betas.
    num_betas: ``n``, the number of decay rates ``1 - 0.1**k`` (6: 0.9 .. 0.999999).
  """
  def init(params):
    dtype = scalar_dtype(params)
    zeros = jnp.zeros([num_betas], dtype)
    return MechanicState(base_optimizer_state=base_optimizer.init(params), count=zero_count(),
                         r=zeros, m=zeros, v=zeros,
                         s=jnp.ones([num_betas], dtype) * s_init,
                         x0=jax.tree.map(jnp.array, params))

  def update(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format("mechanize"))
    base.check_same_structure("mechanize", updates, params)
    base_updates, base_state = base.call_update(base_optimizer, updates,
                                                state.base_optimizer_state, params, extra_args)
    x0 = jax.lax.cond(state.count == 0, lambda: params, lambda: state.x0)
    s_sum = jnp.sum(state.s)
    grad_norm = jnp.sqrt(tree_norm(wide(updates), squared=True))
    param_norm = safe_sqrt(tree_norm(wide(params), squared=True))
    coefficient = weight_decay * s_sum * grad_norm / (param_norm + eps)
    decayed = map_leaves("mechanize", _decayed, updates, params, coefficient=coefficient)
    delta_prev, delta = map_leaves("mechanize", _deltas, params, x0, base_updates,
                                   s_sum=s_sum, eps=eps)
    h = tree_vdot(wide(decayed), wide(delta_prev)).astype(state.s.dtype)
    clipped_h = jax.lax.clamp(-state.m, jnp.ones_like(state.m) * h, state.m)
    betas = jnp.array([1.0 - 0.1**k for k in range(1, num_betas + 1)], state.s.dtype)
    m = jnp.maximum(betas * state.m, jnp.abs(h) + eps)
    v = betas**2 * state.v + h**2
    r = betas * state.r + clipped_h * state.s
    wealth = (s_init / jnp.size(betas)) * m + jnp.maximum(0.0, r)
    s = wealth / (safe_sqrt(v) + eps)
    new_updates = map_leaves("mechanize", _new_params, x0, delta, params, scale=jnp.sum(s))
    return new_updates, MechanicState(base_optimizer_state=base_state,
                                      count=safe_increment(state.count), r=r, m=m, v=v,
                                      s=s, x0=x0)

  return base.GradientTransformation(init, update)
