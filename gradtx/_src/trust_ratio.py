"""Layer-wise scalings by norms: trust ratios (LARS, LAMB, Fromage), per-block scalings by
the parameters' norm or RMS, and normalisation by the update's norm.

A *block* is one array of the params (a layer's kernel, its bias). The trust ratio of
a block is ``||p|| / ||u||``, so that every layer moves by the same fraction of its
weights whatever its gradients' scale (You et al. 2017). Numerics follow Optax 0.2.8
(norms clipped from below by :func:`gradtx.safe_norm`, a ratio of 1 where a norm is 0).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.adam import ADAM_SPECS, scale_by_adam
from gradtx._src.combine import chain, masked
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise, map_leaves
from gradtx._src.numerics import safe_norm, safe_root_mean_squares
from gradtx._src.scaling import add_decayed_weights, scale_by_learning_rate
from gradtx._src.traces import trace
from gradtx._src.tree.math import tree_norm

# Optax's name for the state of scale_by_trust_ratio, which keeps nothing.
ScaleByTrustRatioState = base.EmptyState

LR = dict(native=("learning_rate",), learning_rate="[0, inf)")


@hyperparameters(min_norm="[0, inf)", trust_coefficient="[0, inf)", eps="[0, inf)")
def scale_by_trust_ratio(min_norm: float = 0.0, trust_coefficient: float = 1.0,
                         eps: float = 0.0) -> base.GradientTransformation:
  """Scales each block's update by its trust ratio (You et al. 2017, 2020).

  ``u * c * ||p|| / (||u|| + eps)``, both norms first raised to at least ``min_norm``;
  ``u`` unchanged where either norm is 0 (a block that would otherwise never move).
  The defaults (no clipping, ``c = 1``) are Optax's, as used by LAMB.

  Args:
    min_norm: lower bound of both norms.
    trust_coefficient: ``c``, multiplies the ratio (LARS's ``eta``).
    eps: added to the update's norm.
  """

  def rule(u, p, *, min_norm, trust_coefficient, eps):
    param_norm = safe_norm(p, min_norm)
    update_norm = safe_norm(u, min_norm)
    ratio = trust_coefficient * param_norm / (update_norm + eps)
    zero_norm = jnp.logical_or(param_norm == 0.0, update_norm == 0.0)
    return u * jnp.where(zero_norm, jnp.ones([], u.dtype), ratio)

  return leafwise("scale_by_trust_ratio", rule, uses_params=True,
                  hyperparams=dict(min_norm=min_norm, trust_coefficient=trust_coefficient,
                                   eps=eps), shape_aware=True)


@hyperparameters(min_scale="[0, inf)")
def scale_by_param_block_norm(min_scale: float = 1e-3) -> base.GradientTransformation:
  """``u * max(||p||, min_scale)``, ``||p||`` the 2-norm of the update's block of params."""
  return leafwise("scale_by_param_block_norm",
                  lambda u, p, *, min_scale: u * safe_norm(p, min_scale), uses_params=True,
                  hyperparams=dict(min_scale=min_scale), shape_aware=True)


@hyperparameters(min_scale="[0, inf)")
def scale_by_param_block_rms(min_scale: float = 1e-3) -> base.GradientTransformation:
  """``u * max(rms(p), min_scale)``, ``rms(p)`` the root mean square of the update's block
  of params (Adafactor's relative step size, Shazeer & Stern 2018, §8)."""
  return leafwise("scale_by_param_block_rms",
                  lambda u, p, *, min_scale: u * safe_root_mean_squares(p, min_scale),
                  uses_params=True, hyperparams=dict(min_scale=min_scale), shape_aware=True)


@hyperparameters(scale_factor="(-inf, inf)", eps="[0, inf)")
def normalize_by_update_norm(scale_factor: float = 1.0,
                             eps: float = 1e-6) -> base.GradientTransformation:
  """``scale_factor * u / (||u|| + eps)``, ``||u||`` the 2-norm of the whole update tree
  (divided as Optax does: ``u / ((||u|| + eps) / scale_factor)``)."""

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    g_norm = (tree_norm(updates) + eps) / scale_factor
    return map_leaves("normalize_by_update_norm", lambda u, *, g_norm: u / g_norm,
                      updates, g_norm=g_norm), state

  return base.GradientTransformation(base.init_empty_state, update)


@hyperparameters(native=("learning_rate", "weight_decay"), learning_rate="[0, inf)",
                 **{k: v for k, v in ADAM_SPECS.items() if k != "mu_dtype"},
                 weight_decay="[0, inf)")
def lamb(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-6, eps_root: float = 0.0,
         weight_decay: base.ScalarOrSchedule = 0.0,
         mask: Any = None) -> base.GradientTransformation:
  """LAMB (You et al. 2020, Algorithm 2): Adam's direction with decoupled weight decay,
  scaled per block by its trust ratio.

  ``d = adam_direction + weight_decay * p`` (the decay only where ``mask`` is True);
  ``p -= lr * ||p|| / ||d|| * d`` per block. Defaults as Optax (``eps=1e-6`` as the
  paper's experiments).
  """
  return chain(scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
               add_decayed_weights(weight_decay, mask),
               scale_by_trust_ratio(),
               scale_by_learning_rate(learning_rate))


@hyperparameters(native=("learning_rate", "weight_decay"), learning_rate="[0, inf)",
                 weight_decay="[0, inf)", trust_coefficient="[0, inf)", eps="[0, inf)",
                 momentum="[0, 1]", nesterov="bool")
def lars(learning_rate: base.ScalarOrSchedule, weight_decay: base.ScalarOrSchedule = 0.0,
         weight_decay_mask: Any = True, trust_coefficient: float = 0.001, eps: float = 0.0,
         trust_ratio_mask: Any = True, momentum: float = 0.9,
         nesterov: bool = False) -> base.GradientTransformation:
  """LARS (You et al. 2017, Algorithm 1): SGD with momentum on layer-wise scaled steps.

  ``d = g + weight_decay * p`` (where ``weight_decay_mask``); ``d *= c * ||p|| / (||d|| +
  eps)`` per block (where ``trust_ratio_mask``; ``c`` = ``trust_coefficient``, the
  paper's ``eta = 0.001``); ``m = momentum * m + lr * d``; ``p -= m`` (Nesterov:
  ``p -= lr * d + momentum * m``). The masks are trees of booleans (or functions of the
  params returning one); ``True`` applies to every param.
  """
  return chain(
      add_decayed_weights(weight_decay, mask=weight_decay_mask),
      masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps),
             trust_ratio_mask),
      scale_by_learning_rate(learning_rate),
      trace(decay=momentum, nesterov=nesterov))


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", min_norm="[0, inf)")
def fromage(learning_rate: base.ScalarOrSchedule,
            min_norm: float = 1e-6) -> base.GradientTransformation:
  """Fromage (Bernstein et al. 2020, Algorithm 1): a trust-ratio step, then a shrink of
  the weights that keeps their norm from growing.

  ``p = (p - lr * ||p|| / ||g|| * g) / sqrt(1 + lr**2)`` per block, the norms at least
  ``min_norm``. As a chain: the trust ratio, ``-lr/sqrt(1 + lr**2)`` times the update,
  plus ``(1/sqrt(1 + lr**2) - 1) * p`` (Optax's order of operations).
  """
  if callable(learning_rate):
    mult = lambda count: 1 / (1 + learning_rate(count)**2)**0.5  # noqa: E731
    step = lambda count: mult(count) * learning_rate(count)  # noqa: E731
    shrink = lambda count: mult(count) - 1  # noqa: E731
    return chain(scale_by_trust_ratio(min_norm), scale_by_learning_rate(step),
                 add_decayed_weights(shrink))
  mult = 1 / (1 + learning_rate**2)**0.5
  # The shrink is a negative weight decay, which add_decayed_weights would refuse.
  shrink = leafwise("fromage", lambda u, p, *, rate: u + rate * p, uses_params=True,
                    hyperparams=dict(rate=mult - 1))
  return chain(scale_by_trust_ratio(min_norm), scale_by_learning_rate(learning_rate * mult),
               shrink)
