"""SM3 (Anil, Gupta, Koren & Singer 2019): Adagrad's per-coordinate step sizes from one
accumulator per row, per column, ... of each array, instead of one per coordinate.

For an array of shape ``(n_1, ..., n_k)`` the cover is its ``k`` families of slices
along each axis; the state keeps one vector of length ``n_i`` per axis (the per-leaf
state is a list of ``k`` vectors, not an array like the param). Numerics follow Optax
0.2.8's ``scale_by_sm3`` (SM3-II with an EMA of the scaled gradient as momentum).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import scale_by_learning_rate
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import ema


class ScaleBySM3State(NamedTuple):
  """State of :func:`scale_by_sm3`.

  Attributes:
    mu: per param, a list of one accumulator vector per axis (``[acc]`` of shape ``()``
      for a scalar param).
    nu: per param, the momentum of the scaled gradient, shaped like the param.
  """

  mu: base.Updates
  nu: base.Updates


def _axis_accumulators(p: jax.Array) -> list[jax.Array]:
  """Zeros of length ``p.shape[i]`` for each axis ``i``, computed from ``p`` (so that each
  follows the sharding of its axis); ``[zeros(())]`` for a scalar."""
  p = jnp.asarray(p)
  if p.ndim == 0:
    return [tree_zeros_like(p)]
  return [tree_zeros_like(jnp.sum(p, axis=tuple(j for j in range(p.ndim) if j != i)))
          for i in range(p.ndim)]


def _accumulator_weight(b2):
  """The weight of the new squared gradient: ``1 - b2``, or 1 for ``b2 = 1`` (a sum, as
  Adagrad; Optax's convention)."""
  if isinstance(b2, (int, float)):
    return 1.0 if b2 == 1.0 else 1.0 - b2
  return jnp.where(b2 == 1.0, 1.0, 1.0 - b2)


@hyperparameters(b1="[0, 1]", b2="[0, 1]", eps="[0, inf)")
def scale_by_sm3(b1: float = 0.9, b2: float = 1.0,
                 eps: float = 1e-8) -> base.GradientTransformation:
  """SM3's normaliser (Anil et al. 2019, SM3-II), with momentum.

  For an array with ``k >= 2`` axes and per-axis accumulators ``mu_i``:
  ``v = w * g**2 + b2 * min_i mu_i`` (``mu_i`` broadcast along its axis; ``w = 1 - b2``,
  or 1 for ``b2 = 1``, the paper's sum); ``mu_i = max of v over all axes but i``;
  ``nu = (1 - b1) * g / sqrt(v + eps) + b1 * nu`` (0 where ``v = 0``), emitted. Scalars
  and vectors keep a single accumulator, ``mu = v`` (Adagrad).

  Optax 0.2.8 keeps no accumulator for a scalar param and fails on its first update
  (``IndexError``); here a scalar is treated as a vector of length 1
  (``tests/test_sm3.py`` shows both).

  Args:
    b1: the momentum's decay rate (Optax's default 0.9; 0 is the paper's SM3).
    b2: decay of the accumulators; 1 (the default) sums, as the paper.
    eps: added to ``v`` under the square root.
  """

  def rule(u, mu, nu, *, b1, b2, eps):
    weight = _accumulator_weight(b2)
    if u.ndim < 2:
      accum = weight * u**2 + b2 * mu[0]
      new_mu = [accum]
    else:
      broadcast = [jnp.reshape(m, [1] * i + [u.shape[i]] + [1] * (u.ndim - i - 1))
                   for i, m in enumerate(mu)]
      accum = weight * u**2 + b2 * functools.reduce(jnp.minimum, broadcast)
      new_mu = [jnp.max(accum, axis=tuple(j for j in range(u.ndim) if j != i))
                for i in range(u.ndim)]
    scaled = u * jnp.where(accum > 0, jax.lax.rsqrt(accum + eps), 0.0)
    nu = ema(b1, nu, scaled)
    return nu, new_mu, nu

  return leafwise("scale_by_sm3", rule, state=ScaleBySM3State,
                  init=lambda p: (_axis_accumulators(p), tree_zeros_like(p)),
                  hyperparams=dict(b1=b1, b2=b2, eps=eps), shape_aware=True)


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", momentum="[0, 1]")
def sm3(learning_rate: base.ScalarOrSchedule,
        momentum: float = 0.9) -> base.GradientTransformation:
  """SM3 (Anil et al. 2019): ``p -= lr * scale_by_sm3(b1=momentum)(g)``.

  ``momentum`` is the decay of the EMA of the scaled gradient (0: the paper's SM3-II).
  """
  return chain(scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))
