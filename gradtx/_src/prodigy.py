"""Prodigy (Mishchenko & Defazio 2023, "Prodigy: An Expeditiously Adaptive Parameter-Free
Learner", the Adam form): AdamW whose step size ``d`` is estimated on the fly
from a lower bound on the distance to the solution, weighting recent gradients more than
D-Adaptation does.

With ``lr`` the schedule (1 by default), ``t`` the step from 1,
``dlr = d lr sqrt(1 - b2**t) / (1 - b1**t)``, gradient ``g`` and initial point ``x_0``::

  m = b1 m + (1 - b1) d g;     v = b2 v + (1 - b2) (d g)**2
  s = b3 s + (d / d_0) dlr g                       (d g instead of dlr g: safeguard_warmup)
  r = b3 r + (d / d_0) dlr <g, x_0 - x>
  d = max(d, coef * r / ||s||_1)
  x <- x - wd dlr x - dlr m / (sqrt(v) + d eps)      (with the new d in the denominator)

Numerics, defaults and state follow Optax 0.2.8's ``optax.contrib.prodigy`` (the
scalars in at least float32, see :mod:`gradtx._src.tree_scalars`), except after steps
with all-zero gradients only: there ``||s||_1 = 0``, and Optax's ``d`` becomes NaN
(0 / 0) for good; here ``d`` is kept, as in the authors' PyTorch code, which skips such
a step (``tests/test_d_adaptation.py`` shows both).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import map_leaves
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.dadapt import adapted_step_size, raised_estimate
from gradtx._src.tree.math import tree_vdot, zero_count
from gradtx._src.tree_scalars import check_betas, scalar_dtype, wide


class ProdigyState(NamedTuple):
  """State of :func:`prodigy` (Optax's fields, in Optax's order: ``count`` last).

  Attributes:
    exp_avg: ``m``, per param.
    exp_avg_sq: ``v``, per param.
    grad_sum: ``s``, the weighted sum of gradients, per param.
    params0: the initial params ``x_0``.
    estim_lr: ``d``, the step size estimate (from ``estim_lr0``).
    numerator_weighted: ``r``.
    count: the number of updates so far.
  """

  exp_avg: base.Updates
  exp_avg_sq: base.Updates
  grad_sum: base.Updates
  params0: base.Updates
  estim_lr: jax.Array
  numerator_weighted: jax.Array
  count: jax.Array


def _moments(u, m, v, s, x0, p, *, d, dlr, b1, b2, b3, d0, safeguard):
  dg = d * u
  m = b1 * m + (1 - b1) * dg
  v = b2 * v + (1 - b2) * dg * dg
  s = b3 * s + (d if safeguard else dlr) * dg / d0
  return x0 - p, m, v, s


def _step(m, v, p, *, dlr, d, eps, weight_decay):
  return -weight_decay * dlr * p - dlr * m / (jnp.sqrt(v) + d * eps)


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", beta3="[0, 1) | None",
                 eps="[0, inf)", estim_lr0="(0, inf)", estim_lr_coef="[0, inf)",
                 weight_decay="[0, inf)", safeguard_warmup="bool")
def prodigy(learning_rate: base.ScalarOrSchedule = 1.0,
            betas: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] = (0.9, 0.999),
            beta3: Optional[float] = None, eps: float = 1e-8, estim_lr0: float = 1e-6,
            estim_lr_coef: float = 1.0, weight_decay: float = 0.0,
            safeguard_warmup: bool = False) -> base.GradientTransformation:
  """Prodigy (Mishchenko & Defazio 2023), as Optax's ``optax.contrib.prodigy``.

  See the module docstring for the update. Defaults are the paper's and Optax's.

  Args:
    learning_rate: a multiplier of the estimated step size, best a schedule from 1
      (e.g. a cosine or linear decay, with warmup).
    betas: Adam's ``(b1, b2)``.
    beta3: the decay of the distance estimate's sums; ``sqrt(b2)`` if None.
    eps: Adam's epsilon, multiplied by ``d``.
    estim_lr0: ``d_0``, the first (under-)estimate of the step size.
    estim_lr_coef: multiplies each new estimate.
    weight_decay: decoupled weight decay, multiplied by ``dlr``.
    safeguard_warmup: leave ``lr`` out of ``s`` (for warmup schedules).
  """
  check_betas("prodigy", betas)
  b1, b2 = betas
  b3 = b2**0.5 if beta3 is None else beta3

  def init(params):
    dtype = scalar_dtype(params)
    return ProdigyState(exp_avg=tree_zeros_like(params), exp_avg_sq=tree_zeros_like(params),
                        grad_sum=tree_zeros_like(params),
                        params0=jax.tree.map(jnp.array, params),
                        estim_lr=jnp.asarray(estim_lr0, dtype),
                        numerator_weighted=jnp.zeros([], dtype), count=zero_count())

  def update(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format("prodigy"))
    d = state.estim_lr
    count_inc, dlr = adapted_step_size(d, learning_rate, state.count, b1, b2)
    difference, m, v, s = map_leaves(
        "prodigy", _moments, updates, state.exp_avg, state.exp_avg_sq, state.grad_sum,
        state.params0, params, d=d, dlr=dlr, b1=b1, b2=b2, b3=b3, d0=estim_lr0,
        safeguard=safeguard_warmup)
    numerator = b3 * state.numerator_weighted
    numerator = (numerator + (d / estim_lr0) * dlr * tree_vdot(wide(updates),
                                                               wide(difference))
                 ).astype(d.dtype)
    new_d = raised_estimate(d, estim_lr_coef * numerator, s)
    new_updates = map_leaves("prodigy", _step, m, v, params, dlr=dlr, d=new_d, eps=eps,
                             weight_decay=weight_decay)
    return new_updates, ProdigyState(m, v, s, state.params0, new_d, numerator, count_inc)

  return base.GradientTransformation(init, update)
