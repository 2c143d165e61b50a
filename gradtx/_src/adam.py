"""Adam's family of normalisers (Kingma & Ba 2015): per-coordinate steps from running
moments of the gradient.

``scale_by_adam`` (Nadam's look-ahead with ``nesterov=True``, Dozat 2016),
``scale_by_amsgrad`` (Reddi, Kale & Kumar 2018), ``scale_by_adamax`` (Kingma & Ba 2015,
§7.1) and ``adaptive_step_size``, Adam's step size alone, which RAdam and AdaBound
rectify or bound before it meets the momentum. Numerics follow Optax (same epsilon
placement, same bias correction, same step counting).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import abs_sq, bias_correction_factor, ema, safe_increment

ADAM_SPECS = dict(b1="[0, 1)", b2="[0, 1)", eps="[0, inf)", eps_root="[0, inf)",
                  mu_dtype="dtype | None")


def canonical_dtype(dtype: Any) -> Any:
  return None if dtype is None else jnp.dtype(dtype)


def bias_corrections(count: jax.Array, **decays: Any) -> dict[str, Any]:
  """``{name: 1 - decay**t}`` for this step, ``t = count + 1``."""
  t = safe_increment(count)
  return {name: bias_correction_factor(decay, t) for name, decay in decays.items()}


def adam_moments(u, mu, nu, b1, b2, c1, c1_next, nesterov):
  """Adam's moment updates and bias-corrected first moment (Nadam's if ``nesterov``)."""
  mu = ema(b1, mu, u)
  nu = ema(b2, nu, abs_sq(u))
  mu_hat = b1 * (mu / c1_next) + (1 - b1) * (u / c1) if nesterov else mu / c1
  return mu, nu, mu_hat


class ScaleByAdamState(NamedTuple):
  count: jax.Array
  mu: base.PyTree
  nu: base.PyTree


@hyperparameters(**ADAM_SPECS, nesterov="bool")
def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                  eps_root: float = 0.0, mu_dtype: Any = None, *,
                  nesterov: bool = False) -> base.GradientTransformation:
  """Adam's normaliser (Kingma & Ba 2015, Algorithm 1).

  ``mu = b1*mu + (1-b1)*u``, ``nu = b2*nu + (1-b2)*u**2``,
  ``mu_hat = mu/(1-b1**t)``, ``nu_hat = nu/(1-b2**t)``; emits
  ``mu_hat / (sqrt(nu_hat + eps_root) + eps)``. With ``nesterov=True`` (Nadam, Dozat 2016)
  ``mu_hat = b1*mu/(1-b1**(t+1)) + (1-b1)*u/(1-b1**t)``.

  Args:
    b1, b2: decay rates of the first and second moments, in [0, 1).
    eps: added to the denominator outside the square root.
    eps_root: added inside the square root (keeps gradients through the step finite).
    mu_dtype: dtype to store ``mu`` in, e.g. ``jnp.bfloat16`` to halve its memory.
    nesterov: Nadam's look-ahead first moment.
  """
  mu_dtype = canonical_dtype(mu_dtype)

  def rule(u, mu, nu, *, b1, b2, eps, eps_root, c1, c1_next, c2):
    mu, nu, mu_hat = adam_moments(u, mu, nu, b1, b2, c1, c1_next, nesterov)
    return mu_hat / (jnp.sqrt(nu / c2 + eps_root) + eps), mu, nu

  def scalars(count):
    return dict(**bias_corrections(count, c1=b1, c2=b2),
                c1_next=bias_correction_factor(b1, safe_increment(safe_increment(count))))

  return leafwise("scale_by_adam", rule, state=ScaleByAdamState,
                  init=lambda p: (tree_zeros_like(p, mu_dtype), tree_zeros_like(p)),
                  hyperparams=dict(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
                  scalars=scalars)


class ScaleByAmsgradState(NamedTuple):
  count: jax.Array
  mu: base.PyTree
  nu: base.PyTree
  nu_max: base.PyTree


@hyperparameters(**ADAM_SPECS, bias_correction_mu="bool", bias_correction_nu="bool")
def scale_by_amsgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                     eps_root: float = 0.0, mu_dtype: Any = None,
                     bias_correction_mu: bool = True,
                     bias_correction_nu: bool = True) -> base.GradientTransformation:
  """AMSGrad's normaliser (Reddi et al. 2018): Adam with a non-decreasing second moment.

  As :func:`scale_by_adam`, but divides by ``sqrt(nu_max + eps_root) + eps`` with
  ``nu_max = max(nu_max, nu_hat)``.
  """
  mu_dtype = canonical_dtype(mu_dtype)

  def rule(u, mu, nu, nu_max, *, b1, b2, eps, eps_root, c1, c2):
    mu = ema(b1, mu, u)
    nu = ema(b2, nu, abs_sq(u))
    mu_hat = mu / c1 if bias_correction_mu else mu
    nu_hat = nu / c2 if bias_correction_nu else nu
    # `where`, not `maximum`: the gradient of `maximum` tests `x == max(x, y)`, which XLA
    # can break by computing `nu / c2` twice in different ways (jit and eager disagreed).
    nu_max = jnp.where(nu_hat > nu_max, nu_hat, nu_max)
    return mu_hat / (jnp.sqrt(nu_max + eps_root) + eps), mu, nu, nu_max

  return leafwise(
      "scale_by_amsgrad", rule, state=ScaleByAmsgradState,
      init=lambda p: (tree_zeros_like(p, mu_dtype), tree_zeros_like(p), tree_zeros_like(p)),
      hyperparams=dict(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
      scalars=lambda count: bias_corrections(count, c1=b1, c2=b2))


@hyperparameters(b1="[0, 1)", b2="[0, 1)", eps="[0, inf)")
def scale_by_adamax(b1: float = 0.9, b2: float = 0.999,
                    eps: float = 1e-8) -> base.GradientTransformation:
  """Adamax's normaliser (Kingma & Ba 2015, §7.1): Adam with the infinity norm.

  ``mu = b1*mu + (1-b1)*u``, ``nu = max(|u| + eps, b2*nu)``; emits
  ``mu/(1-b1**t) / nu``.
  """

  def rule(u, mu, nu, *, b1, b2, eps, c1):
    mu = ema(b1, mu, u)
    nu = jnp.maximum(jnp.abs(u) + eps, b2 * nu)
    return (mu / c1) / nu, mu, nu

  return leafwise("scale_by_adamax", rule, state=ScaleByAdamState,
                  init=lambda p: (tree_zeros_like(p), tree_zeros_like(p)),
                  hyperparams=dict(b1=b1, b2=b2, eps=eps),
                  scalars=lambda count: bias_corrections(count, c1=b1))


class AdaptiveStepSizeState(NamedTuple):
  count: jax.Array
  nu: base.PyTree


@hyperparameters(b2="[0, 1)", eps="[0, inf)", eps_root="[0, inf)")
def adaptive_step_size(b2: float = 0.999, eps: float = 1e-8,
                       eps_root: float = 0.0) -> base.GradientTransformation:
  """Adam's per-coordinate step size, emitted in place of the update.

  ``nu = b2*nu + (1-b2)*u**2``; emits ``1 / (sqrt(nu/(1-b2**t) + eps_root) + eps)``.
  Multiply it with a momentum through :func:`gradtx.multiply`; bound it with
  ``clip_bounds`` or rectify it with :func:`gradtx.rectify` first.
  """

  def rule(u, nu, *, b2, eps, eps_root, c2):
    nu = ema(b2, nu, abs_sq(u))
    return 1 / (jnp.sqrt(nu / c2 + eps_root) + eps), nu

  return leafwise("adaptive_step_size", rule, state=AdaptiveStepSizeState,
                  init=tree_zeros_like, hyperparams=dict(b2=b2, eps=eps, eps_root=eps_root),
                  scalars=lambda count: bias_corrections(count, c2=b2))
