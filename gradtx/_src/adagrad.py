"""Adagrad's and Adadelta's normalisers: per-coordinate steps from the accumulated
squares of the gradient (Duchi, Hazan & Singer 2011) and of the steps themselves
(Zeiler 2012). Numerics follow Optax."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.tree.casting import tree_full_like, tree_zeros_like
from gradtx._src.tree.math import abs_sq, ema


class ScaleByRssState(NamedTuple):
  sum_of_squares: base.PyTree


@hyperparameters(initial_accumulator_value="[0, inf)", eps="[0, inf)")
def scale_by_rss(initial_accumulator_value: float = 0.1,
                 eps: float = 1e-7) -> base.GradientTransformation:
  """Adagrad's normaliser (Duchi et al. 2011): ``s += u**2; u / sqrt(s + eps)``.

  Coordinates whose sum of squares is still zero emit zero.
  """

  def rule(u, s, *, eps):
    s = abs_sq(u) + s
    return jnp.where(s > 0, jax.lax.rsqrt(s + eps), 0.0) * u, s

  return leafwise("scale_by_rss", rule, state=ScaleByRssState,
                  init=lambda p: tree_full_like(p, initial_accumulator_value),
                  hyperparams=dict(eps=eps))


class ScaleByAdaDeltaState(NamedTuple):
  e_g: base.PyTree
  e_x: base.PyTree


@hyperparameters(rho="[0, 1]", eps="[0, inf)")
def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> base.GradientTransformation:
  """Adadelta's normaliser (Zeiler 2012, Algorithm 1).

  ``E[g²] = rho*E[g²] + (1-rho)*u**2``; ``u' = sqrt(E[x²] + eps) / sqrt(E[g²] + eps) * u``;
  ``E[x²] = rho*E[x²] + (1-rho)*u'**2``.
  """

  def rule(u, e_g, e_x, *, rho, eps):
    e_g = ema(rho, e_g, u**2)
    u = (jnp.sqrt(e_x + eps) / jnp.sqrt(e_g + eps)) * u
    return u, e_g, ema(rho, e_x, u**2)

  return leafwise("scale_by_adadelta", rule, state=ScaleByAdaDeltaState,
                  init=lambda p: (tree_zeros_like(p), tree_zeros_like(p)),
                  hyperparams=dict(rho=rho, eps=eps))
