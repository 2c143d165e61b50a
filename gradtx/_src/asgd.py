"""Averaged SGD (Polyak & Juditsky 1992, "Acceleration of Stochastic Approximation by
Averaging"), as ``torch.optim.ASGD`` (torch 2.13, its single-tensor path) computes it.

SGD with a slowly decaying step size ``eta_t`` and an L2 pull ``lambd``, keeping the
average ``ax`` of the iterates from step ``t0`` on. With ``t`` the step from 1::

  g'      = g + weight_decay * p                      (torch's weight_decay, L2)
  p_t     = p * (1 - lambd * eta_t) - eta_t * g'
  ax      = p_t if mu_t == 1 else ax + mu_t * (p_t - ax)
  eta_t   = lr / (1 + lambd * lr * (t - 1))**alpha    (eta_1 = lr)
  mu_t    = 1 / max(1, t - 1 - t0)                    (mu_1 = 1)

The params being trained are the SGD iterates ``p``; the average, what Polyak and
Juditsky evaluate, is the state's ``ax`` (read it with :func:`gradtx.averaged_params`).
``asgd = chain(add_decayed_weights(weight_decay), scale_by_asgd(...))``. Defaults are
torch's.

Example::

  tx = gtx.asgd(1e-2, t0=1000)
  state = tx.init(params)
  for batch in batches:
    updates, state = tx.update(jax.grad(loss)(params, batch), state, params)
    params = gtx.apply_updates(params, updates)
  evaluate(gtx.averaged_params(state))     # the averaged iterate ax
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.averaging import AVERAGE_FIELDS, mix_in
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import add_decayed_weights
from gradtx._src.tree.casting import tree_zeros_like


class ASGDState(NamedTuple):
  """State of :func:`scale_by_asgd`, torch's per-param ``step`` and ``ax``.

  Attributes:
    count: steps taken (torch's ``step``). torch's ``eta`` and ``mu`` are functions of it
      (see :func:`asgd_step_size` and :func:`asgd_averaging_weight`).
    ax: the averaged iterate, like the params; zeros until the first step.
  """

  count: jax.Array
  ax: base.Params


AVERAGE_FIELDS[ASGDState] = "ax"

ASGD_SPECS = dict(learning_rate="[0, inf)", lambd="(-inf, inf)", alpha="(-inf, inf)",
                  t0="(-inf, inf]")


def _as_real(count: jax.Array) -> jax.Array:
  return jnp.asarray(count).astype(jnp.result_type(float))


def asgd_step_size(learning_rate, lambd, alpha, count: jax.Array) -> jax.Array:
  """torch's ``eta`` for the update after ``count`` earlier ones:
  ``lr / (1 + lambd*lr*count)**alpha`` (``lr`` at ``count = 0``)."""
  return learning_rate / (1 + lambd * learning_rate * _as_real(count))**alpha


def asgd_averaging_weight(t0, count: jax.Array) -> jax.Array:
  """torch's ``mu`` for the update after ``count`` earlier ones: ``1 / max(1, count - t0)``,
  and ``1`` for the first update (torch's initial ``mu``, whatever ``t0``)."""
  later = 1 / jnp.maximum(1, _as_real(count) - t0)
  return jnp.where(count == 0, jnp.ones_like(later), later)


@hyperparameters(**ASGD_SPECS)
def scale_by_asgd(learning_rate: base.ScalarOrSchedule = 1e-2, lambd: float = 1e-4,
                  alpha: float = 0.75, t0: float = 1e6) -> base.GradientTransformation:
  """ASGD's step and average (torch.optim.ASGD after its weight decay).

  Emits ``-eta_t * (u + lambd * p)``, so the params move to
  ``p_t = p*(1 - lambd*eta_t) - eta_t*u``, and averages those iterates into ``ax``:
  ``ax <- p_t`` while ``mu_t == 1``, then ``ax <- ax + mu_t*(p_t - ax)``, with
  ``eta_t = lr/(1 + lambd*lr*(t-1))**alpha`` and ``mu_t = 1/max(1, t-1-t0)`` (``t`` from
  1; ``mu_1 = 1``). For an integer ``t0 >= 0`` the average is the equal-weight mean of
  the iterates from step ``t0 + 2`` on (before that ``ax`` is the latest iterate).

  Args:
    learning_rate: ``lr``, the first step size (a schedule: ``eta_t`` from its value at
      the step).
    lambd: the decay term: both the L2 pull and how fast ``eta_t`` decays.
    alpha: the power of the step size's decay.
    t0: the step from which the iterates are averaged (``inf``: never; ``ax`` is then
      the latest iterate).
  """

  def rule(u, ax, p, *, lambd, eta, mu):
    update = -eta * (u + lambd * p)
    new_p = p + update
    return update, mix_in(ax, new_p, mu == 1, ax + (new_p - ax) * mu)

  def scalars(count):
    return dict(eta=asgd_step_size(learning_rate, lambd, alpha, count),
                mu=asgd_averaging_weight(t0, count))

  return leafwise("scale_by_asgd", rule, state=ASGDState, init=tree_zeros_like,
                  hyperparams=dict(lambd=lambd), scalars=scalars, uses_params=True)


@hyperparameters(**ASGD_SPECS, weight_decay="[0, inf)")
def asgd(learning_rate: base.ScalarOrSchedule = 1e-2, lambd: float = 1e-4,
         alpha: float = 0.75, t0: float = 1e6,
         weight_decay: float = 0.0) -> base.GradientTransformation:
  """Averaged SGD (Polyak & Juditsky 1992) with torch.optim.ASGD's numerics and defaults.

  ``g' = g + weight_decay*p``; ``p <- p*(1 - lambd*eta_t) - eta_t*g'``; the iterates are
  averaged into the state's ``ax`` from step ``t0`` on (see :func:`scale_by_asgd` for
  ``eta_t`` and the averaging weights). Read the average with
  :func:`gradtx.averaged_params`; the params themselves are the SGD iterates, as in torch.
  """
  return chain(add_decayed_weights(weight_decay),
               scale_by_asgd(learning_rate, lambd, alpha, t0))
