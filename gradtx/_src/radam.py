"""RAdam's variance rectification (Liu et al. 2019, "On the Variance of the Adaptive
Learning Rate and Beyond", Algorithm 2).

Early in training Adam's second moment rests on few samples and its adaptive step size
has high variance. RAdam multiplies the step size by

  r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)),
  rho_inf = 2/(1 - b2) - 1,  rho_t = rho_inf - 2 t b2**t / (1 - b2**t),

and, on the first steps where ``rho_t < threshold``, does not adapt at all: the update is
the bias-corrected momentum.

Composable form: a normaliser that emits the per-coordinate step size
(:func:`gradtx.adaptive_step_size`), rectified by :func:`rectify`, multiplied with the
bias-corrected momentum by :func:`gradtx.multiply`::

  multiply(chain(add_momentum(b1, ema=True), bias_correction(b1)),
           chain(adaptive_step_size(b2, eps), rectify(b2, threshold)))

:func:`scale_by_radam` computes the same in one pass over each leaf (Optax's numerics).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.adam import ADAM_SPECS, ScaleByAdamState, adam_moments, bias_corrections
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import bias_correction_factor, safe_increment


def _rho(b2: Any, count: jax.Array) -> tuple[Any, jax.Array]:
  """``(rho_inf, rho_t)`` at step ``count`` (from 1)."""
  rho_inf = 2.0 / (1.0 - b2) - 1.0
  b2t = b2**count
  return rho_inf, rho_inf - 2 * count * b2t / (1 - b2t)


def _rectification(b2: Any, count: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(rho_t, r_t)``; ``r_t`` is 0 where undefined, with finite gradients everywhere."""
  rho_inf, rho = _rho(b2, count)
  ratio = (rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)
  defined = ratio > 0
  return rho, jnp.where(defined, jnp.sqrt(jnp.where(defined, ratio, 1.0)), 0.0)


class RectifyState(NamedTuple):
  count: jax.Array


def _rectification_scalars(b2: Any, threshold: Any, count: jax.Array) -> dict[str, Any]:
  rho, r = _rectification(b2, safe_increment(count))
  return dict(r=r, adapt=rho >= threshold)


@hyperparameters(b2="[0, 1)", threshold="[0, inf)")
def rectify(b2: float = 0.999, threshold: float = 5.0) -> base.GradientTransformation:
  """RAdam's rectification of an adaptive step size ``s`` (see the module docstring).

  Emits ``r_t * s`` on steps where ``rho_t >= threshold`` and ``1`` (no adaptation: the
  momentum it is multiplied with passes unchanged, as in Optax) on the earlier steps.
  """
  return leafwise("rectify", lambda s, *, r, adapt: jnp.where(adapt, r * s, 1.0),
                  state=RectifyState,
                  scalars=lambda count: _rectification_scalars(b2, threshold, count))


@hyperparameters(**{k: v for k, v in ADAM_SPECS.items() if k != "mu_dtype"},
                 threshold="[0, inf)", nesterov="bool")
def scale_by_radam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   eps_root: float = 0.0, threshold: float = 5.0, *,
                   nesterov: bool = False) -> base.GradientTransformation:
  """RAdam's normaliser (Liu et al. 2019), fused: one pass over each leaf.

  Emits ``r_t * mu_hat / (sqrt(nu_hat + eps_root) + eps)`` where ``rho_t >= threshold``,
  else ``mu_hat``; ``mu_hat``, ``nu_hat`` as in :func:`gradtx.scale_by_adam` (Nadam's
  ``mu_hat`` with ``nesterov=True``). State: ``ScaleByAdamState(count, mu, nu)``.
  """

  def rule(u, mu, nu, *, b1, b2, eps, eps_root, c1, c1_next, c2, r, adapt):
    mu, nu, mu_hat = adam_moments(u, mu, nu, b1, b2, c1, c1_next, nesterov)
    rectified = r * mu_hat / (jnp.sqrt(nu / c2 + eps_root) + eps)
    return jnp.where(adapt, rectified, mu_hat), mu, nu

  def scalars(count):
    return dict(**bias_corrections(count, c1=b1, c2=b2),
                c1_next=bias_correction_factor(b1, safe_increment(safe_increment(count))),
                **_rectification_scalars(b2, threshold, count))

  return leafwise("scale_by_radam", rule, state=ScaleByAdamState,
                  init=lambda p: (tree_zeros_like(p), tree_zeros_like(p)),
                  hyperparams=dict(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
                  scalars=scalars)
