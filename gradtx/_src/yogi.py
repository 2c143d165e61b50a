"""Yogi (Zaheer et al. 2018, "Adaptive Methods for Nonconvex Optimization", Algorithm
2): Adam whose second moment moves towards ``g**2`` by an additive step
``(1-b2)*g**2`` instead of multiplicatively, so the effective learning rate cannot grow
quickly.

Signatures, defaults (``eps=1e-3`` and accumulators started at ``1e-6``, the paper's
recommendations), state (Optax's ``ScaleByAdamState``) and numerics are Optax 0.2.8's
``scale_by_yogi`` and ``yogi``, bias corrections included (the paper's Algorithm 2 has
none).
"""

from __future__ import annotations

import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.adam import ScaleByAdamState, bias_corrections
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import scale_by_learning_rate
from gradtx._src.tree.casting import tree_full_like
from gradtx._src.tree.math import abs_sq, ema

YOGI_SPECS = dict(b1="[0, 1)", b2="[0, 1)", eps="[0, inf)")


@hyperparameters(**YOGI_SPECS, eps_root="[0, inf)", initial_accumulator_value="[0, inf)")
def scale_by_yogi(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3,
                  eps_root: float = 0.0,
                  initial_accumulator_value: float = 1e-6) -> base.GradientTransformation:
  """Yogi's normaliser (Zaheer et al. 2018, Algorithm 2).

  ``mu = b1*mu + (1-b1)*u``; ``nu = nu - (1-b2)*sign(nu - u**2)*u**2``; emits
  ``mu_hat / (sqrt(nu_hat + eps_root) + eps)`` with ``mu_hat = mu/(1-b1**t)``,
  ``nu_hat = nu/(1-b2**t)``. Both moments start at ``initial_accumulator_value``.

  Args:
    b1, b2: decay rates of the first and second moments.
    eps: added to the denominator outside the square root.
    eps_root: added inside the square root (keeps gradients through the step finite).
    initial_accumulator_value: the moments' starting value.
  """

  def rule(u, mu, nu, *, b1, b2, eps, eps_root, c1, c2):
    mu = ema(b1, mu, u)
    squared = abs_sq(u)
    nu = nu - (1 - b2) * jnp.sign(nu - squared) * squared
    return (mu / c1) / (jnp.sqrt(nu / c2 + eps_root) + eps), mu, nu

  return leafwise("scale_by_yogi", rule, state=ScaleByAdamState,
                  init=lambda p: (tree_full_like(p, initial_accumulator_value),
                                  tree_full_like(p, initial_accumulator_value)),
                  hyperparams=dict(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
                  scalars=lambda count: bias_corrections(count, c1=b1, c2=b2))


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", **YOGI_SPECS)
def yogi(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-3) -> base.GradientTransformation:
  """Yogi (Zaheer et al. 2018): ``p -= lr * mu_hat / (sqrt(nu_hat) + eps)`` with Yogi's
  additive second moment (see :func:`gradtx.scale_by_yogi`)."""
  return chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate))
