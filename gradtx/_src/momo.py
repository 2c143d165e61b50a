"""MoMo (Schaipp, Ohana, Eickenberg, Defazio & Gower 2023, "MoMo: Momentum Models for
Adaptive Learning Rates"): SGD with momentum, or Adam, whose step is a Polyak step on a
model of the loss built from the same moving averages as the momentum, capped at the
learning rate. The update needs the (batch) loss: ``update(g, state, params, value=f)``.

With ``rho`` the averaging rate, ``x`` the params, ``g`` the gradient, ``f`` the loss, ``D``
a diagonal preconditioner (the identity for MoMo, Adam's ``sqrt(v / c2) + eps`` for
MoMo-Adam), ``c1`` Adam's first bias correction (1 for MoMo), ``alpha`` the learning
rate, ``lambda`` the weight decay and ``f_*`` the lower bound ``lb``::

  f_bar = rho f_bar + (1 - rho) f          d = rho d + (1 - rho) g
  gamma = rho gamma + (1 - rho) <g, x>     h = f_bar + <d, x> - gamma   (the model at x)
  tau = min(alpha / c1, max((1 + alpha lambda)(f_bar - c1 f_* - gamma) + <d, x>, 0)
                        / <d, D^-1 d>)                   (0 where <d, D^-1 d> <= 2.2e-16)
  x <- x - alpha lambda / (1 + alpha lambda) x - tau D^-1 d

MoMo averages with ``rho = beta`` (``0`` at the first step, which starts the averages at
the first values); MoMo-Adam with ``rho = b1`` from zero, bias-corrected by ``c1``. With
``adapt_lower_bound`` the bound ``f_*`` is estimated on the fly (the paper's
MoMo*, §5): reset to ``max(cap / (2 c1 (1 + alpha lambda)), lower_bound)`` when the
model's ``cap = (1 + alpha lambda)(f_bar - gamma) + <d, x>`` falls below
``(1 + alpha lambda) c1 f_*``, and after the step set to
``max((h - tau <d, D^-1 d> / 2) / c1, lower_bound)``.

Numerics, defaults and states follow Optax 0.2.8's ``optax.contrib.momo`` and
``momo_adam`` (the tree-wide scalars in at least float32, see
:mod:`gradtx._src.tree_scalars`). Weight decay is Optax's: the authors' PyTorch code
(github.com/fabian-sp/MoMo) takes the proximal step ``x <- (x - tau D^-1 d) / (1 + alpha
lambda)``, which also divides the gradient step by ``1 + alpha lambda``; Optax does not,
and neither does this module (``tests/test_momo.py`` shows the difference).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import check_float_leaves, map_leaves
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import safe_increment, tree_norm, tree_vdot, zero_count
from gradtx._src.tree_scalars import scalar_dtype, wide

# Optax's threshold below which <d, D^-1 d> counts as zero (no step): float64's epsilon.
_TINY = float(np.finfo(np.float64).eps)


class MomoState(NamedTuple):
  """State of :func:`momo` (Optax's fields, in Optax's order: ``count`` last).

  Attributes:
    exp_avg: ``d``, the average of the gradients, per param.
    barf: ``f_bar``, the average of the losses.
    gamma: the average of ``<g, x>``.
    lb: the lower bound ``f_*`` of the loss (from ``lower_bound``).
    count: the number of updates so far.
  """

  exp_avg: base.Updates
  barf: jax.Array
  gamma: jax.Array
  lb: jax.Array
  count: jax.Array


class MomoAdamState(NamedTuple):
  """State of :func:`momo_adam` (Optax's fields, in Optax's order: ``count`` last).

  Attributes:
    exp_avg: ``d``, the average of the gradients, per param.
    exp_avg_sq: Adam's ``v``, the average of the squared gradients, per param.
    barf: ``f_bar``, the average of the losses.
    gamma: the average of ``<g, x>``.
    lb: the lower bound ``f_*`` of the loss (from ``lower_bound``).
    count: the number of updates so far.
  """

  exp_avg: base.Updates
  exp_avg_sq: base.Updates
  barf: jax.Array
  gamma: jax.Array
  lb: jax.Array
  count: jax.Array


def _the_loss(owner: str, value, params) -> None:
  if params is None:
    raise ValueError(base.NO_PARAMS_MSG.format(owner))
  if value is None:
    raise ValueError(f"{owner}: needs the latest (batch) loss: call update(updates, "
                     "state, params, value=loss), e.g. with jax.value_and_grad")


def _scalar_state(params, lower_bound):
  """``barf``, ``gamma`` and ``lb`` at init, in :func:`scalar_dtype`."""
  dtype = scalar_dtype(params)
  return (jnp.zeros([], dtype), jnp.zeros([], dtype), jnp.asarray(lower_bound, dtype))


def _polyak_step(*, barf, gamma, iprod, sq_norm, lb, alpha, weight_decay, lower_bound,
                 adapt_lower_bound, c1):
  """MoMo's step size ``tau`` and the next lower bound (see the module docstring)."""
  shrink = 1 + alpha * weight_decay
  if adapt_lower_bound:
    cap = shrink * (barf - gamma) + iprod
    reset = jnp.maximum(cap / (2 * c1 * shrink), lower_bound)
    lb = jnp.where(cap < shrink * c1 * lb, reset, lb)
  numerator = jnp.maximum(shrink * (barf - c1 * lb - gamma) + iprod, 0.0)
  no_step = sq_norm <= _TINY
  ratio = jnp.where(no_step, 0.0, numerator / jnp.where(no_step, 1.0, sq_norm))
  tau = jnp.minimum(alpha / c1, ratio)
  if adapt_lower_bound:
    lb = jnp.maximum(((barf + iprod - gamma) - (1 / 2) * tau * sq_norm) / c1, lower_bound)
  return tau, lb


def _decayed_step(u, direction, p, *, tau, decay):
  """``-decay x - tau direction``: the update of one param."""
  return -decay * p - tau * direction


def _weight_decay_factor(alpha, weight_decay):
  return alpha * weight_decay / (1 + alpha * weight_decay)


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", beta="[0, 1]",
                 lower_bound="(-inf, inf)", weight_decay="[0, inf)",
                 adapt_lower_bound="bool")
def momo(learning_rate: base.ScalarOrSchedule = 1.0, beta: float = 0.9,
         lower_bound: float = 0.0, weight_decay: float = 0.0,
         adapt_lower_bound: bool = False) -> base.GradientTransformationExtraArgs:
  """MoMo: SGD with momentum and an adaptive (Polyak-type) step size (Schaipp et al.
  2023, Algorithm 1), as Optax's ``optax.contrib.momo``.

  The step is ``min(learning_rate, <adaptive term>)`` (see the module docstring); give
  the loss to each update: ``update(grads, state, params, value=loss)``. The update
  includes the sign: add it to the params. Defaults are the paper's and Optax's.

  Args:
    learning_rate: the cap of the step size, a number or a schedule; best large (1).
    beta: the momentum, the averaging rate of the gradients, losses and ``<g, x>``.
    lower_bound: a lower bound of the loss (0 for most losses).
    weight_decay: the weight decay ``lambda``.
    adapt_lower_bound: estimate the lower bound on the fly, from ``lower_bound`` up.

  Raises (in ``update``):
    ValueError: ``params`` or ``value=`` was not given.
  """

  def init(params):
    check_float_leaves("momo", params, "param")
    return MomoState(tree_zeros_like(params), *_scalar_state(params, lower_bound),
                     zero_count())

  def update(updates, state, params=None, *, value=None, **extra_args):
    del extra_args
    _the_loss("momo", value, params)
    dtype = state.barf.dtype
    rate = jnp.where(state.count == 0, 0.0, beta)
    barf = rate * state.barf + (1 - rate) * jnp.asarray(value, dtype)
    exp_avg = map_leaves("momo", lambda u, d, *, rate: (u, rate * d + (1 - rate) * u),
                         updates, state.exp_avg, rate=rate)[1]
    gamma = rate * state.gamma + (1 - rate) * tree_vdot(wide(updates), wide(params))
    alpha = base.resolve(learning_rate, state.count)
    tau, lb = _polyak_step(barf=barf, gamma=gamma,
                           iprod=tree_vdot(wide(exp_avg), wide(params)),
                           sq_norm=tree_norm(wide(exp_avg), squared=True), lb=state.lb,
                           alpha=alpha, weight_decay=weight_decay, lower_bound=lower_bound,
                           adapt_lower_bound=adapt_lower_bound, c1=1)
    new_updates = map_leaves("momo", _decayed_step, updates, exp_avg, params, tau=tau,
                             decay=_weight_decay_factor(alpha, weight_decay))
    return new_updates, MomoState(exp_avg, barf.astype(dtype), gamma.astype(dtype),
                                  lb.astype(dtype), safe_increment(state.count))

  return base.GradientTransformationExtraArgs(init, update)


def _adam_moments(u, d, v, *, b1, b2, c2, eps):
  """Adam's averages of one param and ``D^-1 d`` (``D = eps + sqrt(v / c2)``)."""
  d = b1 * d + (1 - b1) * u
  v = b2 * v + (1 - b2) * u * u
  return d / (eps + jnp.sqrt(v / c2)), d, v


def _adam_step(u, d, v, p, *, tau, decay, c2, eps):
  """``-decay x - tau D^-1 d``: the update of one param."""
  return -decay * p - tau * d / (eps + jnp.sqrt(v / c2))


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", b1="[0, 1)",
                 b2="[0, 1)", eps="[0, inf)", lower_bound="(-inf, inf)",
                 weight_decay="[0, inf)", adapt_lower_bound="bool")
def momo_adam(learning_rate: base.ScalarOrSchedule = 1e-2, b1: float = 0.9,
              b2: float = 0.999, eps: float = 1e-8, lower_bound: float = 0.0,
              weight_decay: float = 0.0,
              adapt_lower_bound: bool = False) -> base.GradientTransformationExtraArgs:
  """MoMo-Adam: Adam(W) with an adaptive (Polyak-type) step size (Schaipp et al. 2023,
  Algorithm 3), as Optax's ``optax.contrib.momo_adam``.

  The step is ``min(learning_rate / c1, <adaptive term>)`` along Adam's direction (see
  the module docstring); give the loss to each update:
  ``update(grads, state, params, value=loss)``. The update includes the sign. Defaults
  are the paper's and Optax's.

  Args:
    learning_rate: the cap of the step size, a number or a schedule (1e-2 or a little
      smaller, the authors recommend).
    b1: the decay of the averages of the gradients, losses and ``<g, x>``.
    b2: the decay of the average of the squared gradients.
    eps: added to Adam's ``sqrt(v / c2)``.
    lower_bound: a lower bound of the loss (0 for most losses).
    weight_decay: the weight decay ``lambda``.
    adapt_lower_bound: estimate the lower bound on the fly, from ``lower_bound`` up.

  Raises (in ``update``):
    ValueError: ``params`` or ``value=`` was not given.
  """

  def init(params):
    check_float_leaves("momo_adam", params, "param")
    return MomoAdamState(tree_zeros_like(params), tree_zeros_like(params),
                         *_scalar_state(params, lower_bound), zero_count())

  def update(updates, state, params=None, *, value=None, **extra_args):
    del extra_args
    _the_loss("momo_adam", value, params)
    dtype = state.barf.dtype
    count_inc = safe_increment(state.count)
    barf = b1 * state.barf + (1 - b1) * jnp.asarray(value, dtype)
    c1 = jnp.asarray(1 - b1**count_inc, dtype)
    c2 = jnp.asarray(1 - b2**count_inc, dtype)
    weighted, exp_avg, exp_avg_sq = map_leaves(
        "momo_adam", _adam_moments, updates, state.exp_avg, state.exp_avg_sq, b1=b1, b2=b2,
        c2=c2, eps=eps)
    gamma = b1 * state.gamma + (1 - b1) * tree_vdot(wide(updates), wide(params))
    alpha = base.resolve(learning_rate, state.count)
    tau, lb = _polyak_step(barf=barf, gamma=gamma,
                           iprod=tree_vdot(wide(exp_avg), wide(params)),
                           sq_norm=tree_vdot(wide(exp_avg), wide(weighted)), lb=state.lb,
                           alpha=alpha, weight_decay=weight_decay, lower_bound=lower_bound,
                           adapt_lower_bound=adapt_lower_bound, c1=c1)
    new_updates = map_leaves("momo_adam", _adam_step, updates, exp_avg, exp_avg_sq, params,
                             tau=tau, decay=_weight_decay_factor(alpha, weight_decay),
                             c2=c2, eps=eps)
    return new_updates, MomoAdamState(exp_avg, exp_avg_sq, barf.astype(dtype),
                                      gamma.astype(dtype), lb.astype(dtype), count_inc)

  return base.GradientTransformationExtraArgs(init, update)
