"""AdEMAMix (Pagliardini, Ablin & Grangier 2024, "The AdEMAMix Optimizer: Better, Faster,
Older", Algorithm 1) and Simplified AdEMAMix (Morwani et al. 2025, "Connections between
Schedule-Free Optimizers, AdEMAMix, and Accelerated SGD Variants").

AdEMAMix is Adam whose numerator mixes a fast EMA of the gradients with a slow one, so
that gradients thousands of steps old still count. Per coordinate, at step ``t``::

  m1 = b1*m1 + (1-b1)*g        fast EMA, bias-corrected: m1_hat = m1 / (1-b1**t)
  m2 = b3*m2 + (1-b3)*g        slow EMA, not bias-corrected (it fills up slowly)
  nu = b2*nu + (1-b2)*g**2     nu_hat = nu / (1-b2**t)
  u  = (m1_hat + alpha*m2) / (sqrt(nu_hat + eps_root) + eps)

``b3`` and ``alpha`` may be schedules, evaluated at ``count_m2`` (the paper warms them
up over its Eq. (4)'s horizon: ``alpha`` linearly, ``b3`` by its half-life).

Simplified AdEMAMix keeps one momentum, a sum rather than an average, and adds the
current gradient with weight ``alpha``::

  m = b1*m + g,   n = b2*n + (1-b2)*g**2 (as g**2 + b2*(n - g**2)),   n_hat = n/(1-b2**t)
  u = (m + alpha*g) / (sqrt(n_hat + eps_root) + eps)

``alpha`` may be a schedule of the step count. Signatures, defaults (the paper's but for
``ademamix``'s ``alpha=5.0``, ``scale_by_ademamix``'s ``alpha=6.0``, Optax's), state
classes and numerics are Optax 0.2.8's ``optax.contrib``. One departure, shown by a test:
with ``mu_dtype`` the moments stay in ``mu_dtype`` (Optax's update returns them in the
gradients' dtype, so its state changes dtype after the first step).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.adam import bias_corrections, canonical_dtype
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import add_decayed_weights, scale_by_learning_rate
from gradtx._src.traces import with_state_class
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import abs_sq, ema, safe_increment, zero_count

ADEMAMIX_SPECS = dict(b1="[0, 1)", b2="[0, 1)", b3="[0, 1]", alpha="[0, inf)",
                      eps="[0, inf)", eps_root="[0, inf)", mu_dtype="dtype | None")
SIMPLIFIED_SPECS = dict(b1="[0, 1)", b2="[0, 1)", alpha="[0, inf)", eps="[0, inf)",
                        eps_root="[0, inf)")
DECAY_SPECS = dict(weight_decay="[0, inf)")


class ScaleByAdemamixState(NamedTuple):
  """State of :func:`scale_by_ademamix` (Optax's fields).

  Attributes:
    count: the number of earlier updates (for the bias corrections of ``m1`` and ``nu``).
    count_m2: the step count at which ``b3`` and ``alpha`` are evaluated.
    m1: the fast EMA of the gradients, per param.
    m2: the slow EMA of the gradients, per param.
    nu: the EMA of the squared gradients, per param.
  """

  count: jax.Array
  count_m2: jax.Array
  m1: base.Updates
  m2: base.Updates
  nu: base.Updates


class _Moments(NamedTuple):
  count: jax.Array
  m1: base.Updates
  m2: base.Updates
  nu: base.Updates


def _ademamix_rule(u, m1, m2, nu, *, b1, b2, b3, alpha, eps, eps_root, c1, c2):
  m1 = ema(b1, m1, u)
  m2 = ema(b3, m2, u)
  nu = ema(b2, nu, abs_sq(u))
  return (m1 / c1 + alpha * m2) / (jnp.sqrt(nu / c2 + eps_root) + eps), m1, m2, nu


@hyperparameters(native=("b3", "alpha"), **ADEMAMIX_SPECS)
def scale_by_ademamix(b1: float = 0.9, b2: float = 0.999,
                      b3: base.ScalarOrSchedule = 0.9999,
                      alpha: base.ScalarOrSchedule = 6.0, eps: float = 1e-8,
                      eps_root: float = 0.0,
                      mu_dtype: Any = None) -> base.GradientTransformation:
  """AdEMAMix's direction (Pagliardini et al. 2024; the rule in the module docstring).

  Args:
    b1: decay rate of the fast EMA, in [0, 1).
    b2: decay rate of the second moment, in [0, 1).
    b3: decay rate of the slow EMA, in [0, 1], or a schedule of ``count_m2``.
    alpha: weight of the slow EMA, or a schedule of ``count_m2``.
    eps: added to the denominator outside the square root.
    eps_root: added inside the square root (keeps gradients through the step finite).
    mu_dtype: dtype to store ``m1``, ``m2`` and ``nu`` in (default: the params').
  """
  mu_dtype = canonical_dtype(mu_dtype)

  def moments(b3_now, alpha_now):
    return leafwise(
        "scale_by_ademamix", _ademamix_rule, state=_Moments,
        init=lambda p: tuple(tree_zeros_like(p, mu_dtype) for _ in range(3)),
        hyperparams=dict(b1=b1, b2=b2, b3=b3_now, alpha=alpha_now, eps=eps,
                         eps_root=eps_root),
        scalars=lambda count: bias_corrections(count, c1=b1, c2=b2))

  def init(params):
    s = moments(0.0, 0.0).init(params)
    return ScaleByAdemamixState(s.count, zero_count(), s.m1, s.m2, s.nu)

  def update(updates, state, params=None, **extra_args):
    at = lambda h: h(state.count_m2) if callable(h) else h  # noqa: E731
    updates, s = moments(at(b3), at(alpha)).update(
        updates, _Moments(state.count, state.m1, state.m2, state.nu), params, **extra_args)
    return updates, ScaleByAdemamixState(s.count, safe_increment(state.count_m2),
                                         s.m1, s.m2, s.nu)

  return base.GradientTransformation(init, update)


@hyperparameters(native=("learning_rate", "b3", "alpha", "weight_decay"),
                 learning_rate="[0, inf)", **ADEMAMIX_SPECS, **DECAY_SPECS)
def ademamix(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
             b3: base.ScalarOrSchedule = 0.9999, alpha: base.ScalarOrSchedule = 5.0,
             eps: float = 1e-8, eps_root: float = 0.0, mu_dtype: Any = None,
             weight_decay: base.ScalarOrSchedule = 0.0,
             mask: Any = None) -> base.GradientTransformation:
  """AdEMAMix (Pagliardini et al. 2024): ``p -= lr * (ademamix_direction +
  weight_decay * p)``, the decay only where ``mask`` is True (AdamW's decoupled decay;
  see :func:`scale_by_ademamix`)."""
  return chain(scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype),
               add_decayed_weights(weight_decay, mask),
               scale_by_learning_rate(learning_rate))


class ScaleBySimplifiedAdEMAMixState(NamedTuple):
  """State of :func:`scale_by_simplified_ademamix` (Optax's fields).

  Attributes:
    t: the number of earlier updates.
    m: the momentum (a discounted sum of the gradients), per param.
    n: the EMA of the squared gradients, per param.
  """

  t: jax.Array
  m: base.Updates
  n: base.Updates


class _CountFirst(NamedTuple):
  count: jax.Array
  m: base.Updates
  n: base.Updates


def _simplified_rule(u, m, n, *, b1, b2, eps, eps_root, alpha_t, c2):
  m = u + b1 * m
  g2 = u * u
  n = g2 + b2 * (n - g2)
  return (m + alpha_t * u) / (jnp.sqrt(n / c2 + eps_root) + eps), m, n


@hyperparameters(native=("alpha",), **SIMPLIFIED_SPECS)
def scale_by_simplified_ademamix(b1: float = 0.99, b2: float = 0.95,
                                 alpha: base.ScalarOrSchedule = 0.0, eps: float = 1e-8,
                                 eps_root: float = 0.0) -> base.GradientTransformation:
  """Simplified AdEMAMix's direction (Morwani et al. 2025; the rule in the module
  docstring). ``alpha = 0`` is Adam with ``lr/(1-b1)`` and no bias correction of ``m``.

  Args:
    b1: decay rate of the momentum sum, in [0, 1).
    b2: decay rate of the second moment, in [0, 1).
    alpha: weight of the current gradient, or a schedule of the step count ``t``.
    eps: added to the denominator outside the square root.
    eps_root: added inside the square root (keeps gradients through the step finite).
  """

  def scalars(count):
    return dict(**bias_corrections(count, c2=b2),
                alpha_t=alpha(count) if callable(alpha) else alpha)

  tx = leafwise("scale_by_simplified_ademamix", _simplified_rule, state=_CountFirst,
                init=lambda p: (tree_zeros_like(p), tree_zeros_like(p)),
                hyperparams=dict(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
                scalars=scalars)
  return with_state_class(tx, outer=lambda s: ScaleBySimplifiedAdEMAMixState(*s),
                          inner=lambda s: _CountFirst(*s))


@hyperparameters(native=("learning_rate", "alpha", "weight_decay"),
                 learning_rate="[0, inf)", **SIMPLIFIED_SPECS, **DECAY_SPECS)
def simplified_ademamix(learning_rate: base.ScalarOrSchedule, b1: float = 0.99,
                        b2: float = 0.95, alpha: base.ScalarOrSchedule = 0.0,
                        eps: float = 1e-8, eps_root: float = 0.0,
                        weight_decay: base.ScalarOrSchedule = 0.0,
                        mask: Any = None) -> base.GradientTransformation:
  """Simplified AdEMAMix (Morwani et al. 2025): ``p -= lr * (direction +
  weight_decay * p)``, the decay only where ``mask`` is True (see
  :func:`scale_by_simplified_ademamix`)."""
  return chain(scale_by_simplified_ademamix(b1, b2, alpha, eps, eps_root),
               add_decayed_weights(weight_decay, mask),
               scale_by_learning_rate(learning_rate))
