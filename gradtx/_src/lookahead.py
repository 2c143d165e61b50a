"""Lookahead (Zhang, Lucas, Hinton & Ba 2019, "Lookahead Optimizer: k steps forward, 1
step back", Algorithm 1), and Ranger, RAdam inside Lookahead.

Lookahead keeps a second copy of the weights, the slow weights ``phi``, and lets any
inner optimizer ``A`` take ``k`` fast steps from them; then the slow weights move part of
the way towards where the fast weights went, and the fast weights restart from there::

  theta_0 = phi
  theta_i = theta_{i-1} + A(theta_{i-1})          i = 1 .. k
  phi <- phi + alpha * (theta_k - phi);  theta <- phi

Here the fast weights are the user's params, so no special params type is needed: on
the ``k``-th step of a cycle the emitted update is ``phi_new - params`` instead of the
inner update, which lands the params on the new slow weights.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.clipping import centralize
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import map_leaves
from gradtx._src.radam import scale_by_radam
from gradtx._src.tree.math import safe_increment, zero_count
from gradtx._src.scaling import add_decayed_weights, scale_by_learning_rate


class LookaheadState(NamedTuple):
  """State of :func:`lookahead`.

  Attributes:
    steps_since_sync: fast steps taken since the slow weights last moved, in
      ``[0, sync_period)``; the slow weights move on the step that would make it
      ``sync_period``.
    slow_weights: ``phi``, in the params' dtypes; the params given to ``init`` at first.
    inner_state: the inner transform's state, carried across synchronisations (never
      reset, as in the paper's experiments).
  """

  steps_since_sync: jax.Array
  slow_weights: base.Params
  inner_state: base.OptState


def _lookahead_rule(u, slow, p, *, alpha, sync):
  """One leaf: the inner update ``u``, or on a sync step the move to the new slow weights."""
  new_slow = slow + alpha * ((p + u) - slow)
  return jnp.where(sync, new_slow - p, u), jnp.where(sync, new_slow, slow)


@hyperparameters(inner="transform", sync_period="int >= 1", slow_step_size="[0, 1]")
def lookahead(inner: base.GradientTransformation, sync_period: int = 6,
              slow_step_size: base.ScalarOrSchedule = 0.5) -> base.GradientTransformation:
  """Lookahead around any transform (Zhang et al. 2019, Algorithm 1).

  ``inner`` runs on every step, on the current (fast) params, and its state is never
  reset. On steps ``k, 2k, ...`` (``k = sync_period``) the fast weights it reaches,
  ``theta = params + u``, pull the slow weights and the params move onto them:

    phi <- phi + slow_step_size * (theta - phi);  emit phi - params
    (every other step: emit u, the inner update)

  The slow weights start as the params given to ``init``. ``update`` needs ``params``.
  ``slow_step_size=1`` recovers ``inner``; ``sync_period=1`` with ``slow_step_size=a``
  scales every inner step by ``a``. Defaults: ``k=6`` (Ranger's; the paper uses 5 or 10)
  and ``alpha=0.5`` (the paper's).

  Unlike ``optax.lookahead`` the params are plain: the slow weights live in the state.
  ``torch_optimizer.Lookahead`` (0.3.0) differs in its counter: it synchronises right
  after step 1 (which only sets the slow weights to the params after that step) and then
  on steps ``k+1, 2k+1, ...``; gradtx follows the paper (slow weights from the initial
  params, synchronisation on steps ``k, 2k, ...``).

  Args:
    inner: the fast optimizer, a gradtx or a plain Optax transform; extra keyword
      arguments given to ``update`` are passed on to it.
    sync_period: fast steps per slow step, ``k``, an integer >= 1.
    slow_step_size: the slow weights' step size ``alpha``, in ``[0, 1]``, or a schedule.
  """

  def init(params):
    # A copy, not the params' own buffers: a step that donates params and state must not
    # be handed one buffer twice.
    return LookaheadState(steps_since_sync=zero_count(),
                          slow_weights=jax.tree.map(jnp.array, params),
                          inner_state=inner.init(params))

  def update(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format("lookahead"))
    base.check_same_structure("lookahead", updates, state.slow_weights)
    updates, inner_state = base.call_update(inner, updates, state.inner_state, params,
                                            extra_args)
    steps = safe_increment(state.steps_since_sync)
    # ">=", not "==": a sync_period lowered between steps (inject_hyperparams) syncs now.
    sync = steps >= jnp.asarray(sync_period, steps.dtype)
    updates, slow_weights = map_leaves("lookahead", _lookahead_rule, updates,
                                            state.slow_weights, params,
                                            alpha=slow_step_size, sync=sync)
    return updates, LookaheadState(
        steps_since_sync=jnp.where(sync, jnp.zeros_like(steps), steps),
        slow_weights=slow_weights, inner_state=inner_state)

  return base.GradientTransformation(init, update)


@hyperparameters(native=("learning_rate", "weight_decay"), learning_rate="[0, inf)",
                 b1="[0, 1)", b2="[0, 1)", eps="[0, inf)", threshold="[0, inf)",
                 sync_period="int >= 1", slow_step_size="[0, 1]", weight_decay="[0, inf)")
def ranger(learning_rate: base.ScalarOrSchedule = 1e-3, b1: float = 0.95,
           b2: float = 0.999, eps: float = 1e-5, threshold: float = 5.0,
           sync_period: int = 6, slow_step_size: float = 0.5,
           weight_decay: base.ScalarOrSchedule = 0.0) -> base.GradientTransformation:
  """Ranger (Wright 2019): RAdam inside Lookahead, on centralised gradients.

  ``g' = g - mean(g)`` over all axes but the last for leaves with ``ndim > 1`` (gradient
  centralisation, Yong et al. 2020, in JAX's kernel layout; see :func:`gradtx.centralize`);
  RAdam (Liu et al. 2019) with Optax's numerics, ``d = r_t * mu_hat / (sqrt(nu_hat) + eps)``
  once ``rho_t >= threshold``, ``d = mu_hat`` before; decoupled weight decay; Lookahead
  (Zhang et al. 2019) around it all::

    p <- p - lr * (d + weight_decay * p)               every step (the fast weights)
    phi <- phi + slow_step_size * (p - phi); p <- phi  every sync_period-th step

  Defaults are the authors' (lessw2020/Ranger-Deep-Learning-Optimizer). gradtx follows
  their version 20.4.11 (``ranger/ranger.py``, the first with centralisation) except in
  these deliberate choices:

  * eps: theirs is added to ``sqrt(nu)`` before the bias correction, i.e. it is
    ``eps / sqrt(1 - b2**t)`` in the formula above; gradtx keeps Optax's (and RAdam's)
    placement. ``eps=lambda count: eps / jnp.sqrt(1 - b2**(count + 1))`` reproduces theirs.
  * threshold: they rectify where ``rho_t > threshold``, gradtx (Optax) where
    ``rho_t >= threshold``; this matters only on a step where ``rho_t`` equals it exactly.
  * centralisation layout: they average over all axes but the first (PyTorch's
    ``(out, in)``), gradtx over all but the last (Flax's ``(in, out)``): both centre each
    output unit's incoming weights.
  * precision: their step runs in float32 whatever the params' dtype; gradtx's in the
    params' dtype (at least float32).

  Weight decay is that version's: ``p <- p - lr * weight_decay * p`` on every fast step,
  not centralised, not rectified (decoupled, Loshchilov & Hutter 2019). Their 2019
  version (``pytorch_ranger`` 0.1.1, re-exported as ``torch_optimizer.Ranger``) is the
  same without centralisation; their version 2020.9.4 (``ranger2020.py``) instead adds
  ``weight_decay * p`` to the adapted direction before the RAdam step size multiplies
  it, so its decay follows ``r_t`` and the bias corrections; gradtx does not copy that.
  """
  return lookahead(
      chain(centralize(),
            scale_by_radam(b1, b2, eps, threshold=threshold),
            add_decayed_weights(weight_decay),
            scale_by_learning_rate(learning_rate)),
      sync_period, slow_step_size)
