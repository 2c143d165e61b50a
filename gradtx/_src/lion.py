"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Program 1):
the sign of an interpolation between the momentum and the gradient.

Defaults ``b1=0.9``, ``b2=0.99`` are the paper's. Numerics, state and signatures are
Optax 0.2.8's ``scale_by_lion`` and ``lion``, with Optax's smoothed variants
(``mode="smooth"``: ``tanh``; ``mode="refined"``: linear below 1 in magnitude). With a
low-precision ``mu_dtype`` the interpolation and the new momentum are computed in
float32 and rounded once, as every gradtx rule; Optax's ``b1*mu`` stays in ``mu_dtype``
and may be rounded first (``tests/test_optimizers_a.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.adam import canonical_dtype
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import add_decayed_weights, scale_by_learning_rate
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import ema

LION_SPECS = dict(b1="[0, 1]", b2="[0, 1]", mu_dtype="dtype | None")


class ScaleByLionState(NamedTuple):
  """State of :func:`scale_by_lion`: the step count and the momentum ``mu``."""

  count: jax.Array
  mu: base.PyTree


def _squash(x: jax.Array, mode: str, smooth_beta: Any) -> jax.Array:
  if mode == "smooth":
    return jnp.tanh(smooth_beta * x)
  if mode == "refined":
    return jnp.where(jnp.abs(x) < 1.0, x, jnp.sign(x))
  return jnp.sign(x)


@hyperparameters(**LION_SPECS, mode="{'hard', 'smooth', 'refined'}",
                 smooth_beta="(0, inf)")
def scale_by_lion(b1: float = 0.9, b2: float = 0.99, mu_dtype: Any = None, *,
                  mode: str = "hard",
                  smooth_beta: float = 1.0) -> base.GradientTransformation:
  """Lion's direction (Chen et al. 2023, Program 1).

  ``c = (1-b1)*u + b1*mu``; emits ``sign(c)`` (``tanh(smooth_beta*c)`` with
  ``mode="smooth"``; ``c`` where ``|c| < 1`` and ``sign(c)`` elsewhere with
  ``mode="refined"``); then ``mu = (1-b2)*u + b2*mu``.

  Args:
    b1: weight of the momentum in the interpolation whose sign is taken.
    b2: decay rate of the momentum.
    mu_dtype: dtype to store ``mu`` in (default: the params').
    mode: ``"hard"`` (the paper's sign), ``"smooth"`` or ``"refined"``.
    smooth_beta: the slope of ``tanh`` with ``mode="smooth"``.
  """
  mu_dtype = canonical_dtype(mu_dtype)

  def rule(u, mu, *, b1, b2, smooth_beta):
    direction = _squash(ema(b1, mu, u), mode, smooth_beta)
    return direction, ema(b2, mu, u)

  return leafwise("scale_by_lion", rule, state=ScaleByLionState,
                  init=lambda p: tree_zeros_like(p, mu_dtype),
                  hyperparams=dict(b1=b1, b2=b2, smooth_beta=smooth_beta))


@hyperparameters(native=("learning_rate", "weight_decay"), learning_rate="[0, inf)",
                 **LION_SPECS, weight_decay="[0, inf)")
def lion(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.99,
         mu_dtype: Any = None, weight_decay: base.ScalarOrSchedule = 1e-3,
         mask: Any = None) -> base.GradientTransformation:
  """Lion (Chen et al. 2023): ``p -= lr * (sign((1-b1)*g + b1*mu) + weight_decay*p)``,
  ``mu = (1-b2)*g + b2*mu``.

  The weight decay is decoupled (applied after the sign, where ``mask`` is True) and
  multiplied by the learning rate, as in Optax and the paper's Program 1. Lion's steps
  are as large in every coordinate, so its learning rate is typically 3-10x smaller
  than AdamW's and its weight decay 3-10x larger (the paper, section 5).
  """
  return chain(scale_by_lion(b1, b2, mu_dtype),
               add_decayed_weights(weight_decay, mask),
               scale_by_learning_rate(learning_rate))
