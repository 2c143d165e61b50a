"""SWATS: Adam that switches to SGD with momentum (Keskar & Socher 2017, "Improving
Generalization Performance by Switching from Adam to SGD", Algorithm 1).

Adam runs until its steps look like those of SGD with a settled learning rate. Each Adam
step ``p_k`` is projected onto the gradient: the SGD learning rate that would move as far
along ``g_k`` as ``p_k`` does is

  gamma_k = p_k.p_k / -(p_k.g_k)        (dot products over the whole tree)

and its exponential average ``lambda_k = b2*lambda_{k-1} + (1-b2)*gamma_k`` (updated only
where ``p_k.g_k != 0``), bias-corrected, estimates it. Once, at a step ``k > 1``,

  |lambda_k/(1-b2**k) - gamma_k| < switch_tol,

the estimate is frozen as ``Lambda`` and every later step is SGD with momentum,
``v = b1*v + g``, ``u = -(1-b1)*Lambda*v`` (``v`` from zero); Adam's moments are no longer
updated (the paper's ``continue``).

Among the adaptive methods, SWATS adapts one global step size, once; the sign-based
family adapts one per weight, every step: Rprop (``rprop.py``) and delta-bar-delta
(``delta_bar_delta.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.adam import adam_moments, bias_corrections
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import map_leaves
from gradtx._src.tree.casting import tree_zeros_like, widest_float_dtype
from gradtx._src.tree.math import ema, reduce_leaves, safe_increment, zero_count


class SwatsState(NamedTuple):
  """State of :func:`swats`.

  Attributes:
    count: steps taken (``k`` of the step just taken).
    mu, nu: Adam's first and second moments (``m_k``, ``a_k``), frozen after the switch.
    sgd_momentum: the SGD phase's momentum ``v_k``; zero until the switch.
    lambda_avg: ``lambda_k``, the average of the projected learning rates ``gamma_k``.
    sgd_learning_rate: ``Lambda``, the SGD phase's learning rate; 0 before the switch.
    switched: whether the SGD phase has begun.
    switch_step: the step (from 1) at which the switch criterion held; 0 before.
  """

  count: jax.Array
  mu: base.PyTree
  nu: base.PyTree
  sgd_momentum: base.PyTree
  lambda_avg: jax.Array
  sgd_learning_rate: jax.Array
  switched: jax.Array
  switch_step: jax.Array


def _dot(a: base.PyTree, b: base.PyTree, dtype: Any) -> jax.Array:
  """``<a, b>`` over the whole tree, in ``dtype``."""
  return reduce_leaves(lambda x, y: jnp.sum(x.astype(dtype) * y.astype(dtype)),
                       lambda x, y: x + y, jnp.zeros([], dtype), a, b)


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", b1="[0, 1)",
                 b2="[0, 1)", eps="[0, inf)", switch_tol="[0, inf]")
def swats(learning_rate: base.ScalarOrSchedule = 1e-3, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, switch_tol: float = 1e-5) -> base.GradientTransformation:
  """SWATS (Keskar & Socher 2017, Algorithm 1): Adam, then SGD with momentum.

  Adam phase, Adam's numerics (Optax's epsilon placement, where the paper writes
  ``lr * sqrt(1-b2**k)/(1-b1**k) * m/(sqrt(a)+eps)``)::

    m = b1*m + (1-b1)*g;  a = b2*a + (1-b2)*g**2
    p = -lr * (m/(1-b1**k)) / (sqrt(a/(1-b2**k)) + eps);  emits p
    if p.g != 0:
      gamma = p.p / -(p.g);  lambda = b2*lambda + (1-b2)*gamma
      if k > 1 and |lambda/(1-b2**k) - gamma| < switch_tol:
        switch, with Lambda = lambda/(1-b2**k)

  SGD phase, from the step after the switch: ``v = b1*v + g``; emits
  ``-(1-b1)*Lambda*v``. The update emitted on the switching step is still Adam's.

  Dot products run over the whole tree, in the widest params dtype (at least float32). A
  ``gamma`` that is not finite (``p.p/p.g`` overflowing, or a NaN in the gradients) is
  treated like ``p.g == 0``: it is not averaged into ``lambda`` and cannot trigger the
  switch.

  Args:
    learning_rate: Adam's learning rate ``alpha_k``, a number or a schedule of the step
      count (from 0); the SGD phase uses the frozen ``Lambda`` instead.
    b1: Adam's first-moment decay, and the SGD phase's momentum, in [0, 1).
    b2: Adam's second-moment decay, and the decay of ``lambda``, in [0, 1).
    eps: added to Adam's denominator outside the square root.
    switch_tol: the switch criterion's tolerance (the paper reuses Adam's ``eps``,
      1e-9); 0 never switches.
  """
  def init(params):
    dtype = widest_float_dtype(params)
    return SwatsState(count=zero_count(), mu=tree_zeros_like(params),
                      nu=tree_zeros_like(params), sgd_momentum=tree_zeros_like(params),
                      lambda_avg=jnp.zeros([], dtype),
                      sgd_learning_rate=jnp.zeros([], dtype),
                      switched=jnp.array(False), switch_step=zero_count())

  def rule(g, mu, nu, v, switched, lr, b1, b2, eps, c1, c2, sgd_lr):
    new_mu, new_nu, mu_hat = adam_moments(g, mu, nu, b1, b2, c1, c1, False)
    adam_step = -lr * (mu_hat / (jnp.sqrt(new_nu / c2) + eps))
    new_v = b1 * v + g
    sgd_step = -(1 - b1) * sgd_lr * new_v
    return (jnp.where(switched, sgd_step, adam_step), jnp.where(switched, mu, new_mu),
            jnp.where(switched, nu, new_nu), jnp.where(switched, new_v, v))

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    count = safe_increment(state.count)
    c2 = bias_corrections(state.count, c2=b2)["c2"]
    steps, mu, nu, v = map_leaves(
        "swats", rule, updates, state.mu, state.nu, state.sgd_momentum,
        switched=state.switched, lr=base.resolve(learning_rate, state.count), b1=b1, b2=b2,
        eps=eps, c1=bias_corrections(state.count, c1=b1)["c1"], c2=c2,
        sgd_lr=state.sgd_learning_rate)

    # While in the Adam phase, the emitted steps are Adam's p_k.
    dtype = state.lambda_avg.dtype
    pg, pp = _dot(steps, updates, dtype), _dot(steps, steps, dtype)
    gamma = pp / jnp.where(pg != 0, -pg, 1)
    measured = ~state.switched & (pg != 0) & jnp.isfinite(gamma)
    lambda_avg = jnp.where(measured, ema(b2, state.lambda_avg, gamma),
                           state.lambda_avg).astype(dtype)
    estimate = lambda_avg / jnp.asarray(c2, dtype)
    switch = measured & (count > 1) & (jnp.abs(estimate - gamma) < switch_tol)
    return steps, SwatsState(
        count=count, mu=mu, nu=nu, sgd_momentum=v, lambda_avg=lambda_avg,
        sgd_learning_rate=jnp.where(switch, estimate,
                                    state.sgd_learning_rate).astype(dtype),
        switched=state.switched | switch,
        switch_step=jnp.where(switch, count, state.switch_step))

  return base.GradientTransformation(init, update)
