"""D-Adaptation for AdamW (Defazio & Mishchenko 2023, "Learning-Rate-Free Learning by
D-Adaptation", the Adam form): the step size ``d`` is a running lower bound on
the distance to the solution (in the norm Adam's preconditioner defines), so no learning
rate needs tuning.

With ``lr`` the schedule (1 by default), ``t`` the step from 1, ``b = sqrt(b2)``,
``dlr = d lr sqrt(1 - b2**t) / (1 - b1**t)`` and gradient ``g``::

  r = b r + (1 - b) dlr <g, s / (sqrt(v) + eps)>     (with the previous s and v)
  m = b1 m + (1 - b1) dlr g;     v = b2 v + (1 - b2) g**2
  s = b s + (1 - b) dlr g
  d = max(d, r / ((1 - b) ||s||_1))
  x <- x - wd dlr x - m / (sqrt(v) + eps)

Numerics, defaults and state follow Optax 0.2.8's ``optax.contrib.dadapt_adamw`` (the
scalars in at least float32, see :mod:`gradtx._src.tree_scalars`), except after steps
with all-zero gradients only: there ``||s||_1 = 0``, and Optax's ``d`` becomes NaN
(0 / 0) for good; here ``d`` is kept, as in the authors' PyTorch code, which skips such
a step (``tests/test_d_adaptation.py`` shows both).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import map_leaves
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import safe_increment, tree_sum, tree_vdot, zero_count
from gradtx._src.tree_scalars import check_betas, safe_ratio, safe_sqrt, scalar_dtype, wide


class DAdaptAdamWState(NamedTuple):
  """State of :func:`dadapt_adamw` (Optax's fields, in Optax's order: ``count`` last).

  Attributes:
    exp_avg: ``m``, per param.
    exp_avg_sq: ``v``, per param.
    grad_sum: ``s``, per param.
    estim_lr: ``d``, the step size estimate (from ``estim_lr0``).
    numerator_weighted: ``r``.
    count: the number of updates so far.
  """

  exp_avg: base.Updates
  exp_avg_sq: base.Updates
  grad_sum: base.Updates
  estim_lr: jax.Array
  numerator_weighted: jax.Array
  count: jax.Array


def adapted_step_size(d, learning_rate, count, b1, b2):
  """``(t, dlr)``: the step number ``t = count + 1`` and ``dlr = d lr sqrt(1 - b2**t) /
  (1 - b1**t)``, in ``d``'s dtype (D-Adaptation's and Prodigy's scaled step size)."""
  t = safe_increment(count)
  bias = ((1 - b2**t) ** 0.5) / (1 - b1**t)
  return t, jnp.asarray(d * base.resolve(learning_rate, count) * bias, d.dtype)


def raised_estimate(d, numerator, s, scale=1.0):
  """``max(d, numerator / (scale ||s||_1))``, keeping ``d`` where ``||s||_1 = 0`` (the
  authors' code skips such a step; Optax's ``d`` becomes NaN there)."""
  denominator = scale * tree_sum(jax.tree.map(jnp.abs, wide(s)))
  return jnp.maximum(d, safe_ratio(numerator, denominator, d)).astype(d.dtype)


def _moments(u, m, v, s, *, dlr, b1, b2, sb2, eps):
  weighted = s / (safe_sqrt(v) + eps)  # v is 0 at first: sqrt's derivative is not
  m = b1 * m + (1 - b1) * dlr * u
  v = b2 * v + (1 - b2) * u * u
  s = sb2 * s + (1 - sb2) * dlr * u
  return weighted, m, v, s


def _step(m, v, p, *, dlr, eps, weight_decay):
  return -weight_decay * dlr * p - m / (jnp.sqrt(v) + eps)


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", eps="[0, inf)",
                 estim_lr0="(0, inf)", weight_decay="[0, inf)")
def dadapt_adamw(learning_rate: base.ScalarOrSchedule = 1.0,
                 betas: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] = (0.9, 0.999),
                 eps: float = 1e-8, estim_lr0: float = 1e-6,
                 weight_decay: float = 0.0) -> base.GradientTransformation:
  """D-Adaptation AdamW (Defazio & Mishchenko 2023), as Optax's
  ``optax.contrib.dadapt_adamw``.

  See the module docstring for the update. Defaults are the paper's and Optax's.

  Args:
    learning_rate: a multiplier of the estimated step size, best a schedule from 1.
    betas: Adam's ``(b1, b2)``.
    eps: Adam's epsilon.
    estim_lr0: ``d_0``, the first (under-)estimate of the step size.
    weight_decay: decoupled weight decay, multiplied by ``dlr``.
  """
  check_betas("dadapt_adamw", betas)
  b1, b2 = betas

  def init(params):
    dtype = scalar_dtype(params)
    return DAdaptAdamWState(exp_avg=tree_zeros_like(params),
                            exp_avg_sq=tree_zeros_like(params),
                            grad_sum=tree_zeros_like(params),
                            estim_lr=jnp.asarray(estim_lr0, dtype),
                            numerator_weighted=jnp.zeros([], dtype), count=zero_count())

  def update(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format("dadapt_adamw"))
    sb2 = b2 ** 0.5
    d = state.estim_lr
    count_inc, dlr = adapted_step_size(d, learning_rate, state.count, b1, b2)
    weighted, m, v, s = map_leaves("dadapt_adamw", _moments, updates, state.exp_avg,
                                   state.exp_avg_sq, state.grad_sum, dlr=dlr, b1=b1, b2=b2,
                                   sb2=sb2, eps=eps)
    numerator = (sb2 * state.numerator_weighted
                 + (1 - sb2) * dlr * tree_vdot(wide(updates), wide(weighted))
                 ).astype(d.dtype)
    new_d = raised_estimate(d, numerator, s, scale=1 - sb2)
    new_updates = map_leaves("dadapt_adamw", _step, m, v, params, dlr=dlr, eps=eps,
                             weight_decay=weight_decay)
    return new_updates, DAdaptAdamWState(m, v, s, new_d, numerator, count_inc)

  return base.GradientTransformation(init, update)
