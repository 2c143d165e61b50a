"""Adan (Xie et al. 2022, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
Optimizing Deep Models", Algorithm 1): Nesterov momentum estimated from gradient
differences, without evaluating the gradient at an extrapolated point.

Signatures, defaults (``b1=0.98, b2=0.92, b3=0.99``: the paper's ``1 - beta`` for its
``beta1=0.02, beta2=0.08, beta3=0.01``), state (``ScaleByAdanState(m, v, n, g, t)``, the
count last) and numerics are Optax 0.2.8's ``scale_by_adan`` and ``adan``: bias-corrected
moments, and the weight decay added to the update (``add_decayed_weights``) rather than
the paper's proximal division by ``1 + lambda*eta``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.adam import bias_corrections
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import add_decayed_weights, scale_by_learning_rate
from gradtx._src.traces import with_state_class
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import abs_sq, ema

ADAN_SPECS = dict(b1="[0, 1)", b2="[0, 1)", b3="[0, 1)", eps="[0, inf)",
                  eps_root="[0, inf)")


class ScaleByAdanState(NamedTuple):
  """State of :func:`scale_by_adan` (Optax's layout: the step count ``t`` last).

  Attributes:
    m: EMA of the gradients.
    v: EMA of the gradient differences ``g_t - g_{t-1}``.
    n: EMA of ``(g_t + b2' * (g_t - g_{t-1}))**2``, ``b2' = 1 - b2``.
    g: the last gradient.
    t: the number of updates so far.
  """

  m: base.PyTree
  v: base.PyTree
  n: base.PyTree
  g: base.PyTree
  t: jax.Array


class _CountFirst(NamedTuple):
  count: jax.Array
  m: base.PyTree
  v: base.PyTree
  n: base.PyTree
  g: base.PyTree


@hyperparameters(**ADAN_SPECS)
def scale_by_adan(b1: float = 0.98, b2: float = 0.92, b3: float = 0.99, eps: float = 1e-8,
                  eps_root: float = 0.0) -> base.GradientTransformation:
  """Adan's direction (Xie et al. 2022, Algorithm 1, with bias corrections).

  ``d = u - g_prev`` (0 on the first step); ``m = b1*m + (1-b1)*u``;
  ``v = b2*v + (1-b2)*d``; ``n = b3*n + (1-b3)*(u + (1-b2)*d)**2``; emits
  ``(m_hat + (1-b2)*v_hat) / (sqrt(n_hat + eps_root) + eps)``, each ``x_hat`` its
  moment divided by ``1 - b**t``.

  Args:
    b1: decay rate of the gradients' EMA.
    b2: decay rate of the gradient differences' EMA.
    b3: decay rate of the squared term's EMA.
    eps: added to the denominator outside the square root.
    eps_root: added inside the square root (keeps gradients through the step finite).
  """

  def rule(u, m, v, n, g_prev, *, b1, b2, b3, eps, eps_root, first, c1, c2, c3):
    diff = jnp.where(first, jnp.zeros_like(u), u - g_prev)
    m = ema(b1, m, u)
    v = ema(b2, v, diff)
    n = ema(b3, n, abs_sq(u + (1 - b2) * diff))
    direction = (m / c1 + (1 - b2) * (v / c2)) / (jnp.sqrt(n / c3 + eps_root) + eps)
    return direction, m, v, n, u

  def scalars(count):
    return dict(first=count == 0, **bias_corrections(count, c1=b1, c2=b2, c3=b3))

  tx = leafwise("scale_by_adan", rule, state=_CountFirst,
                init=lambda p: tuple(tree_zeros_like(p) for _ in range(4)),
                hyperparams=dict(b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root),
                scalars=scalars)
  return with_state_class(
      tx, outer=lambda s: ScaleByAdanState(s.m, s.v, s.n, s.g, s.count),
      inner=lambda s: _CountFirst(s.t, s.m, s.v, s.n, s.g))


@hyperparameters(native=("learning_rate", "weight_decay"), learning_rate="[0, inf)",
                 **ADAN_SPECS, weight_decay="[0, inf)")
def adan(learning_rate: base.ScalarOrSchedule, b1: float = 0.98, b2: float = 0.92,
         b3: float = 0.99, eps: float = 1e-8, eps_root: float = 1e-8,
         weight_decay: base.ScalarOrSchedule = 0.0,
         mask: Any = None) -> base.GradientTransformation:
  """Adan (Xie et al. 2022): ``p -= lr * (adan_direction + weight_decay * p)``, the
  decay applied only where ``mask`` is True (see :func:`gradtx.scale_by_adan`)."""
  return chain(scale_by_adan(b1, b2, b3, eps, eps_root),
               add_decayed_weights(weight_decay, mask),
               scale_by_learning_rate(learning_rate))
