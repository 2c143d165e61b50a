"""AdaBelief (Zhuang et al. 2020, "AdaBelief Optimizer: Adapting Stepsizes by the Belief
in Observed Gradients", Algorithm 2): Adam whose second moment tracks the squared
deviation of the gradient from its EMA (the "belief") instead of the squared gradient.

Signatures, defaults (``eps=eps_root=1e-16``; the paper uses ``eps=1e-8``, ``eps_root=0``
in the denominator's place of Algorithm 2), state and numerics are Optax 0.2.8's
``scale_by_belief`` and ``adabelief``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.adam import bias_corrections
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import scale_by_learning_rate
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import abs_sq, bias_correction_factor, ema, safe_increment

BELIEF_SPECS = dict(b1="[0, 1)", b2="[0, 1)", eps="[0, inf)", eps_root="[0, inf)",
                    nesterov="bool")


class ScaleByBeliefState(NamedTuple):
  """State of :func:`scale_by_belief`: the step count, the gradient's EMA ``mu`` and the
  EMA ``nu`` of its squared deviation from ``mu``."""

  count: jax.Array
  mu: base.PyTree
  nu: base.PyTree


@hyperparameters(**BELIEF_SPECS)
def scale_by_belief(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16,
                    eps_root: float = 1e-16, *,
                    nesterov: bool = False) -> base.GradientTransformation:
  """AdaBelief's normaliser (Zhuang et al. 2020, Algorithm 2).

  ``mu = b1*mu + (1-b1)*u``; ``nu = b2*nu + (1-b2)*(u - mu)**2 + eps_root``;
  emits ``mu_hat / (sqrt(nu / (1-b2**t)) + eps)`` with ``mu_hat = mu / (1-b1**t)``
  (``nesterov=True``: ``mu_hat = b1*mu/(1-b1**(t+1)) + (1-b1)*u/(1-b1**t)``, as Nadam).
  ``eps_root`` accumulates in ``nu``, as in the paper's ``s_t``.

  Args:
    b1, b2: decay rates of the two moments.
    eps: added to the denominator outside the square root.
    eps_root: added to ``nu`` at every step (keeps gradients through the step finite).
    nesterov: Nadam's look-ahead first moment.
  """

  def rule(u, mu, nu, *, b1, b2, eps, eps_root, c1, c1_next, c2):
    mu = ema(b1, mu, u)
    nu = ema(b2, nu, abs_sq(u - mu)) + eps_root
    mu_hat = b1 * (mu / c1_next) + (1 - b1) * (u / c1) if nesterov else mu / c1
    return mu_hat / (jnp.sqrt(nu / c2) + eps), mu, nu

  def scalars(count):
    return dict(**bias_corrections(count, c1=b1, c2=b2),
                c1_next=bias_correction_factor(b1, safe_increment(safe_increment(count))))

  return leafwise("scale_by_belief", rule, state=ScaleByBeliefState,
                  init=lambda p: (tree_zeros_like(p), tree_zeros_like(p)),
                  hyperparams=dict(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
                  scalars=scalars)


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", **BELIEF_SPECS)
def adabelief(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
              eps: float = 1e-16, eps_root: float = 1e-16, *,
              nesterov: bool = False) -> base.GradientTransformation:
  """AdaBelief (Zhuang et al. 2020): ``p -= lr * mu_hat / (sqrt(nu_hat) + eps)``, with
  ``nu`` the EMA of ``(g - mu)**2`` (see :func:`gradtx.scale_by_belief`)."""
  return chain(scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov),
               scale_by_learning_rate(learning_rate))
