"""Optimistic gradient methods (Daskalakis et al. 2018, "Training GANs with Optimism";
Mokhtari, Ozdaglar & Pattathil 2020 for the generalised form): each step extrapolates
with the change of the gradient, ``(alpha + beta)*g_t - beta*g_{t-1}``, which converges
in the last iterate on min-max games where gradient descent cycles.

Signatures, defaults, state and numerics are Optax 0.2.8's
``scale_by_optimistic_gradient``, ``optimistic_gradient_descent``, ``optimistic_adam``
(deprecated in Optax in favour of ``optimistic_adam_v2``; the same warning here) and
``optimistic_adam_v2``. Where Optax rejects a learning-rate schedule in
``optimistic_adam``, gradtx accepts one, as for every hyperparameter.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.adam import ADAM_SPECS, scale_by_adam
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import scale_by_learning_rate
from gradtx._src.traces import with_state_class
from gradtx._src.tree.casting import tree_zeros_like

OPTIMISM = dict(alpha="[0, inf)", beta="[0, inf)")


class ScaleByOptimisticGradientState(NamedTuple):
  """State of :func:`scale_by_optimistic_gradient` (Optax's fields).

  Attributes:
    is_initial_step: True until the first update (which uses ``g_0`` for ``g_{-1}``).
    previous_gradient: the last update received, ``g_{t-1}``.
  """

  is_initial_step: jax.Array
  previous_gradient: base.PyTree


class _Counted(NamedTuple):
  count: jax.Array
  previous_gradient: base.PyTree


def _to_counted(state: ScaleByOptimisticGradientState) -> _Counted:
  count = jnp.where(state.is_initial_step, 0, 1).astype(jnp.int32)
  return _Counted(count, state.previous_gradient)


def _to_flagged(state: _Counted) -> ScaleByOptimisticGradientState:
  return ScaleByOptimisticGradientState(state.count == 0, state.previous_gradient)


@hyperparameters(**OPTIMISM)
def scale_by_optimistic_gradient(alpha: float = 1.0,
                                 beta: float = 1.0) -> base.GradientTransformation:
  """The generalised optimistic gradient: ``(alpha + beta)*u_t - beta*u_{t-1}``.

  On the first update ``u_{t-1}`` is ``u_t`` itself (the update is ``alpha*u``), as in
  Optax (optax issue #1082). ``alpha = beta = 1`` is Daskalakis et al.'s
  ``2*g_t - g_{t-1}``.

  Args:
    alpha: weight of the current update.
    beta: weight of the change since the last update (the "optimism").
  """

  def rule(u, previous, *, alpha, beta, first):
    previous = jnp.where(first, u, previous)
    return (alpha + beta) * u - beta * previous, u

  tx = leafwise("scale_by_optimistic_gradient", rule, state=_Counted,
                init=tree_zeros_like, hyperparams=dict(alpha=alpha, beta=beta),
                scalars=lambda count: dict(first=count == 0))
  return with_state_class(tx, outer=_to_flagged, inner=_to_counted)


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", **OPTIMISM)
def optimistic_gradient_descent(learning_rate: base.ScalarOrSchedule,
                                alpha: base.ScalarOrSchedule = 1.0,
                                beta: base.ScalarOrSchedule = 1.0
                                ) -> base.GradientTransformation:
  """Optimistic gradient descent (Mokhtari et al. 2020):
  ``p -= lr * ((alpha + beta)*g_t - beta*g_{t-1})``."""
  return chain(scale_by_optimistic_gradient(alpha, beta),
               scale_by_learning_rate(learning_rate))


ADAM_DIRECTION = dict(ADAM_SPECS, nesterov="bool")


@hyperparameters(learning_rate="[0, inf)", optimism="[0, inf) | None", **ADAM_DIRECTION)
def optimistic_adam(learning_rate: float, optimism: float | None = None, b1: float = 0.9,
                    b2: float = 0.999, eps: float = 1e-08, eps_root: float = 0.0,
                    mu_dtype: Any = None, *,
                    nesterov: bool = True) -> base.GradientTransformation:
  """Optimistic Adam (Daskalakis et al. 2018, Algorithm 1), Optax's first interface.

  With ``r_t`` Adam's direction (Nadam's with ``nesterov=True``),
  ``p -= learning_rate*r_t + optimism*(r_t - r_{t-1})``; ``optimism`` defaults to
  ``learning_rate``, as in the paper. Deprecated (as in Optax): use
  :func:`gradtx.optimistic_adam_v2`.
  """
  warnings.warn("optimistic_adam is deprecated, use optimistic_adam_v2 instead",
                DeprecationWarning, stacklevel=3)
  if optimism is None:
    optimism = learning_rate
  return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
               scale_by_optimistic_gradient(alpha=learning_rate, beta=optimism),
               scale_by_learning_rate(1.0))


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", **OPTIMISM,
                 **ADAM_DIRECTION)
def optimistic_adam_v2(learning_rate: base.ScalarOrSchedule, *, alpha: float = 1.0,
                       beta: float = 1.0, b1: float = 0.9, b2: float = 0.999,
                       eps: float = 1e-08, eps_root: float = 0.0, mu_dtype: Any = None,
                       nesterov: bool = True) -> base.GradientTransformation:
  """Optimistic Adam (Daskalakis et al. 2018, Algorithm 1).

  With ``r_t`` Adam's direction (Nadam's with ``nesterov=True``, the default),
  ``p -= learning_rate * ((alpha + beta)*r_t - beta*r_{t-1})``.
  """
  return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
               scale_by_optimistic_gradient(alpha, beta),
               scale_by_learning_rate(learning_rate))
