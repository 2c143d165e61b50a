"""ADOPT (Taniguchi et al. 2024, "ADOPT: Modified Adam Can Converge with Any beta2 with
the Optimal Rate", NeurIPS 2024, Algorithm 1, with the clipping of its later versions):
Adam with the gradient normalised by the *previous* second moment before it enters the
momentum, which removes the correlation between a gradient and its own normaliser.

Per coordinate, at the step with ``count`` earlier updates (``t = count``)::

  t = 0:  nu = g**2, mu = 0, emits 0        (the first gradient only initialises nu)
  t > 0:  x  = clip(g / max(sqrt(nu), eps), -c(t), c(t))     with the old nu
          nu = b2*nu + (1-b2)*g**2
          mu = b1*mu + (1-b1)*x
          emits mu, or b1*mu + (1-b1)*x with ``nesterov``

with ``c(t) = clip_value_fn(t) = t**0.25`` by default (no clipping with
``use_clipping=False``). Optax computes the first step with ``b1 = 1``, ``b2 = 0``
substituted, so that the step is the general rule; this does the same, so the numbers
are Optax 0.2.8's ``optax.contrib.scale_by_adopt``/``adopt`` (defaults too: ``b2=0.9999``
and ``eps=1e-6`` are the paper's). ``sqrt(nu)`` is taken with a derivative of 0 at
``nu = 0`` (always so at the first step; same values): the state's zeros are computed
from the params (so that they follow their sharding), and sqrt's infinite derivative
there would reach the params as NaN under ``jax.grad`` through the optimizer.

One departure, shown by a test: a ``mu_dtype`` momentum below float32 is decayed in at
least float32 and rounded once when stored; Optax multiplies a bfloat16 momentum by
``b1`` rounded to bfloat16 (0.8984375 for 0.9).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.adam import ScaleByAdamState, canonical_dtype
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import scale_by_learning_rate
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import abs_sq, ema
from gradtx._src.tree_scalars import safe_sqrt

ADOPT_SPECS = dict(b1="[0, 1)", b2="[0, 1)", eps="[0, inf)", mu_dtype="dtype | None",
                   nesterov="bool", use_clipping="bool", clip_value_fn="callable")


@hyperparameters(**ADOPT_SPECS)
def scale_by_adopt(b1: float = 0.9, b2: float = 0.9999, eps: float = 1e-6,
                   mu_dtype: Any = None, *, nesterov: bool = False,
                   use_clipping: bool = True,
                   clip_value_fn: Callable[[jax.Array], jax.Array] = lambda x: x**0.25
                   ) -> base.GradientTransformation:
  """ADOPT's direction (Taniguchi et al. 2024; see the module docstring for the rule).

  The state is Optax's ``ScaleByAdamState(count, mu, nu)``.

  Args:
    b1: decay rate of the momentum of normalised gradients, in [0, 1).
    b2: decay rate of the second moment, in [0, 1) (ADOPT converges for any).
    eps: floor of ``sqrt(nu)`` in the normaliser.
    mu_dtype: dtype to store ``mu`` in (default: the params').
    nesterov: emit the look-ahead ``b1*mu + (1-b1)*x`` instead of ``mu``.
    use_clipping: clip the normalised gradient to ``[-c(t), c(t)]`` (the paper's
      stabilisation for early steps).
    clip_value_fn: ``c(t)`` from the number of earlier updates.
  """
  mu_dtype = canonical_dtype(mu_dtype)

  def rule(u, mu, nu, *, eps, b1_t, b2_t, clip):
    x = u / jnp.maximum(safe_sqrt(nu), eps)
    if use_clipping:
      x = jnp.clip(x, -clip, clip)
    nu = ema(b2_t, nu, abs_sq(u))
    mu = ema(b1_t, mu, x)
    return (ema(b1_t, mu, x) if nesterov else mu), mu, nu

  def scalars(count):
    # The first step: b1 = 1 keeps mu at 0, b2 = 0 sets nu = g**2 (and c(0) = 0).
    return dict(b1_t=jnp.where(count > 0, b1, 1), b2_t=jnp.where(count > 0, b2, 0),
                clip=clip_value_fn(count) if use_clipping else None)

  return leafwise("scale_by_adopt", rule, state=ScaleByAdamState,
                  init=lambda p: (tree_zeros_like(p, mu_dtype), tree_zeros_like(p)),
                  hyperparams=dict(eps=eps), scalars=scalars)


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", **ADOPT_SPECS)
def adopt(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.9999,
          eps: float = 1e-6, mu_dtype: Any = None, *, nesterov: bool = False,
          use_clipping: bool = True,
          clip_value_fn: Callable[[jax.Array], jax.Array] = lambda x: x**0.25
          ) -> base.GradientTransformation:
  """ADOPT (Taniguchi et al. 2024): ``p -= lr * mu``, with ``mu`` the momentum of
  gradients normalised by the previous second moment (see :func:`scale_by_adopt`)."""
  return chain(scale_by_adopt(b1, b2, eps, mu_dtype, nesterov=nesterov,
                              use_clipping=use_clipping, clip_value_fn=clip_value_fn),
               scale_by_learning_rate(learning_rate))
