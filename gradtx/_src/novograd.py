"""NovoGrad (Ginsburg et al. 2019, "Stochastic Gradient Methods with Layer-wise Adaptive
Moments for Training of Deep Networks", Algorithm 1): a second moment per layer (one
number per array, the EMA of its squared norm) and a momentum of the normalised gradient
plus weight decay.

Signatures, defaults (``b1=0.9``, ``b2=0.25``; the alias's ``eps=1e-6``, the primitive's
``1e-8``), state and numerics are Optax 0.2.8's ``scale_by_novograd`` and ``novograd``.
With a low-precision ``mu_dtype`` the momentum is computed in float32 and rounded once
(Optax's ``b1*mu`` stays in ``mu_dtype``), and emitted, rounded, in the params' dtype
(Optax emits it in ``mu_dtype``).
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
from gradtx._src.scaling import scale_by_learning_rate
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import ema

NOVOGRAD_SPECS = dict(b1="[0, 1]", b2="[0, 1]", eps="[0, inf)", eps_root="[0, inf)",
                      weight_decay="[0, inf)")


class ScaleByNovogradState(NamedTuple):
  """State of :func:`scale_by_novograd`: the step count, the momentum ``mu`` (like the
  params) and the second moment ``nu`` (a scalar per array)."""

  count: jax.Array
  mu: base.PyTree
  nu: base.PyTree


def _layer_nu(p: jax.Array) -> jax.Array:
  """A param's entry of ``nu``: a zero scalar of its dtype (one number per array, so
  replicated, not sharded like the param)."""
  return jnp.zeros([], jnp.asarray(p).dtype)


@hyperparameters(**NOVOGRAD_SPECS, mu_dtype="dtype | None")
def scale_by_novograd(b1: float = 0.9, b2: float = 0.25, eps: float = 1e-8,
                      eps_root: float = 0.0, weight_decay: float = 0.0,
                      mu_dtype: Any = None) -> base.GradientTransformation:
  """NovoGrad's update (Ginsburg et al. 2019, Algorithm 1), per array of the params.

  ``nu = |u|**2`` on the first step, then ``nu = b2*nu + (1-b2)*|u|**2`` (``|u|`` the
  array's Euclidean norm); ``d = u / (sqrt(nu + eps_root) + eps) + weight_decay*p``;
  ``mu = d`` on the first step, then ``mu = b1*mu + d``; emits ``mu``.

  Args:
    b1: decay rate of the momentum (it sums, it does not average).
    b2: decay rate of the per-array second moment.
    eps: added to the denominator outside the square root.
    eps_root: added inside the square root (keeps gradients through the step finite).
    weight_decay: weight of the params added to the normalised gradient.
    mu_dtype: dtype to store ``mu`` in (and of the emitted values; default: the params').
  """
  mu_dtype = canonical_dtype(mu_dtype)

  def rule(u, mu, nu, p, *, b1, b2, eps, eps_root, weight_decay, first):
    squared_norm = jnp.linalg.norm(u) ** 2
    nu = jnp.where(first, squared_norm, ema(b2, nu, squared_norm))
    step = u / (jnp.sqrt(nu + eps_root) + eps) + weight_decay * p
    mu = jnp.where(first, step, b1 * mu + step)
    if mu_dtype is not None:  # stored, and emitted, rounded to mu_dtype
      mu = mu.astype(mu_dtype)
    return mu, mu, nu

  return leafwise("scale_by_novograd", rule, state=ScaleByNovogradState,
                  init=lambda p: (tree_zeros_like(p, mu_dtype), _layer_nu(p)),
                  hyperparams=dict(b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                                   weight_decay=weight_decay),
                  scalars=lambda count: dict(first=count == 0), uses_params=True,
                  shape_aware=True)


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", **NOVOGRAD_SPECS)
def novograd(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.25,
             eps: float = 1e-6, eps_root: float = 0.0,
             weight_decay: float = 0.0) -> base.GradientTransformation:
  """NovoGrad (Ginsburg et al. 2019): ``p -= lr * mu`` with NovoGrad's layer-normalised
  momentum (see :func:`gradtx.scale_by_novograd`)."""
  return chain(scale_by_novograd(b1, b2, eps, eps_root, weight_decay),
               scale_by_learning_rate(learning_rate))
