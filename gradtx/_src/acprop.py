"""ACProp (Zhuang et al. 2021, "Momentum Centering and Asynchronous Update for Adaptive
Gradient Methods"): AdaBelief's centred second moment, used asynchronously: the step at
``t`` divides by the second moment of the steps before it, so a gradient never
normalises itself.

Per coordinate, at step ``t`` (``count = t - 1`` earlier updates)::

  u  = g / (sqrt(s / (1 - b2**(t-1))) + eps)     with the old s; u = g / (1 + eps) at t = 1
  s  = b2*s + (1-b2)*(g - m)**2 + eps_root       with the old m (the prediction error)
  m  = b1*m + (1-b1)*g

Signatures, defaults (``eps = eps_root = 1e-16``, as AdaBelief), the state
(``ScaleByBeliefState(count, mu, nu)``) and numerics are Optax 0.2.8's
``optax.contrib.scale_by_acprop``/``acprop``: as Optax computes it, the numerator is the
gradient itself (not the momentum), and the prediction error is taken against the
momentum before this step's gradient enters it.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.adabelief import ScaleByBeliefState
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import add_decayed_weights, scale_by_learning_rate
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import abs_sq, bias_correction_factor, ema

ACPROP_SPECS = dict(b1="[0, 1)", b2="[0, 1)", eps="[0, inf)", eps_root="[0, inf)")


def _acprop_rule(u, mu, nu, *, b1, b2, eps, eps_root, first, c2):
  # At the first step there is no earlier second moment: the normaliser is 1.
  nu_hat = jnp.where(first, 1, nu / c2)
  direction = u / (jnp.sqrt(nu_hat) + eps)
  new_nu = ema(b2, nu, abs_sq(u - mu)) + eps_root
  return direction, ema(b1, mu, u), new_nu


@hyperparameters(**ACPROP_SPECS)
def scale_by_acprop(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16,
                    eps_root: float = 1e-16) -> base.GradientTransformation:
  """ACProp's direction (Zhuang et al. 2021; the rule in the module docstring).

  Args:
    b1: decay rate of the gradients' EMA ``mu``, in [0, 1).
    b2: decay rate of the EMA ``nu`` of squared prediction errors, in [0, 1).
    eps: added to the denominator outside the square root.
    eps_root: added to ``nu`` at every step (keeps gradients through the step finite).
  """

  def scalars(count):
    first = count == 0
    return dict(first=first,
                c2=bias_correction_factor(b2, jnp.where(first, count + 1, count)))

  return leafwise("scale_by_acprop", _acprop_rule, state=ScaleByBeliefState,
                  init=lambda p: (tree_zeros_like(p), tree_zeros_like(p)),
                  hyperparams=dict(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
                  scalars=scalars)


@hyperparameters(native=("learning_rate", "weight_decay"), learning_rate="[0, inf)",
                 **ACPROP_SPECS, weight_decay="[0, inf)")
def acprop(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
           eps: float = 1e-16, eps_root: float = 1e-16,
           weight_decay: base.ScalarOrSchedule = 0.0,
           mask: Any = None) -> base.GradientTransformation:
  """ACProp (Zhuang et al. 2021): ``p -= lr * (acprop_direction + weight_decay * p)``,
  the decay only where ``mask`` is True (see :func:`scale_by_acprop`)."""
  return chain(scale_by_acprop(b1, b2, eps, eps_root),
               add_decayed_weights(weight_decay, mask),
               scale_by_learning_rate(learning_rate))
