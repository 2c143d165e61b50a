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
inner update, which lands the params on the new slow weights. Optax's interface, params
that are a :class:`LookaheadParams` pair ``(fast, slow)``, is accepted too.
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
  """State of :func:`lookahead`: Optax's two fields, then gradtx's slow weights.

  Attributes:
    fast_state: the fast optimizer's state (reset at each synchronisation only with
      ``reset_state=True``).
    steps_since_sync: fast steps taken since the slow weights last moved, in
      ``[0, sync_period)``; the slow weights move on the step that would make it
      ``sync_period``.
    slow_weights: ``phi``, in the params' dtypes; the params given to ``init`` at first.
      None when the params are :class:`LookaheadParams`, which carry the slow weights.
  """

  fast_state: base.OptState
  steps_since_sync: jax.Array
  slow_weights: base.Params = None


class LookaheadParams(NamedTuple):
  """Fast and slow weights as one params tree, Optax's interface to :func:`lookahead`.

  Gradients are taken at ``fast``; ``slow`` are the weights to evaluate. With plain
  params instead, :func:`lookahead` keeps the slow weights in its state.
  """

  fast: base.Params
  slow: base.Params

  @classmethod
  def init_synced(cls, params: base.Params) -> LookaheadParams:
    """Fast and slow weights both equal to ``params``."""
    return cls(slow=params, fast=params)


def _is_lookahead_params(params) -> bool:
  """A ``(fast, slow)`` params pair, gradtx's or Optax's ``LookaheadParams``."""
  return isinstance(params, tuple) and getattr(type(params), "_fields", None) == ("fast",
                                                                                  "slow")


def _lookahead_rule(u, slow, p, *, alpha, sync):
  """One leaf: the inner update ``u``, or on a sync step the move to the new slow weights."""
  new_slow = slow + alpha * ((p + u) - slow)
  return jnp.where(sync, new_slow - p, u), jnp.where(sync, new_slow, slow)


def _pair_rule(u, slow, fast, *, alpha, sync):
  """One leaf of :class:`LookaheadParams` updates, in Optax's arithmetic: with
  ``d = fast + u - slow``, the fast weights get ``u - (1 - alpha) d`` and the slow ones
  ``alpha d`` on a sync step (``u`` and 0 otherwise)."""
  difference = fast + u - slow
  return (jnp.where(sync, u - (1 - alpha) * difference, u),
          jnp.where(sync, alpha * difference, jnp.zeros_like(difference)))


@hyperparameters(fast_optimizer="transform", sync_period="int >= 1",
                 slow_step_size="[0, 1]", reset_state="bool")
def lookahead(fast_optimizer: base.GradientTransformation, sync_period: int = 6,
              slow_step_size: base.ScalarOrSchedule = 0.5,
              reset_state: bool = False) -> base.GradientTransformation:
  """Lookahead around any transform (Zhang et al. 2019, Algorithm 1).

  ``fast_optimizer`` runs on every step, on the current (fast) params. On steps
  ``k, 2k, ...`` (``k = sync_period``) the fast weights it reaches, ``theta = params + u``,
  pull the slow weights and the params move onto them:

    phi <- phi + slow_step_size * (theta - phi);  emit phi - params
    (every other step: emit u, the inner update)

  The params may be plain: the slow weights then live in the state, start as the params
  given to ``init``, and ``update`` needs ``params``. Or, as in Optax, they may be
  :class:`LookaheadParams` ``(fast, slow)`` (``LookaheadParams.init_synced(params)``):
  the gradients are taken at ``params.fast``, the updates are a ``LookaheadParams``
  moving both, and the state keeps no slow weights (``optax.lookahead``'s numerics).
  ``slow_step_size=1`` recovers the fast optimizer; ``sync_period=1`` with
  ``slow_step_size=a`` scales every inner step by ``a``. Defaults (not in Optax, whose
  arguments are required): ``k=6`` (Ranger's; the paper uses 5 or 10) and ``alpha=0.5``
  (the paper's).

  ``torch_optimizer.Lookahead`` (0.3.0) differs in its counter: it synchronises right
  after step 1 (which only sets the slow weights to the params after that step) and then
  on steps ``k+1, 2k+1, ...``; gradtx follows the paper (slow weights from the initial
  params, synchronisation on steps ``k, 2k, ...``).

  Args:
    fast_optimizer: the inner optimizer, a gradtx or a plain Optax transform; extra
      keyword arguments given to ``update`` are passed on to it.
    sync_period: fast steps per slow step, ``k``, an integer >= 1.
    slow_step_size: the slow weights' step size ``alpha``, in ``[0, 1]``, or a schedule.
    reset_state: re-initialise the fast optimizer's state (from the fast params before
      the step) on every synchronisation, as Optax does; by default it is carried across,
      as in the paper's experiments.
  """
  inner = fast_optimizer

  def init(params):
    if _is_lookahead_params(params):
      return LookaheadState(fast_state=inner.init(params.fast), steps_since_sync=zero_count())
    # A copy, not the params' own buffers: a step that donates params and state must not
    # be handed one buffer twice.
    return LookaheadState(fast_state=inner.init(params), steps_since_sync=zero_count(),
                          slow_weights=jax.tree.map(jnp.array, params))

  def update(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format("lookahead"))
    paired = _is_lookahead_params(params)
    if paired != (state.slow_weights is None):
      raise ValueError(
          "lookahead: the state was initialised with "
          f"{'plain params' if paired else 'LookaheadParams'} but update is given "
          f"{'LookaheadParams' if paired else 'plain params'}")
    fast = params.fast if paired else params
    base.check_same_structure("lookahead", updates, fast)
    new_updates, fast_state = base.call_update(inner, updates, state.fast_state, fast,
                                               extra_args)
    steps = safe_increment(state.steps_since_sync)
    # ">=", not "==": a sync_period lowered between steps (inject_hyperparams) syncs now.
    sync = steps >= jnp.asarray(sync_period, steps.dtype)
    if paired:
      fast_updates, slow_updates = map_leaves("lookahead", _pair_rule, new_updates,
                                              params.slow, fast, alpha=slow_step_size,
                                              sync=sync)
      new_updates, slow_weights = type(params)(fast_updates, slow_updates), None
    else:
      new_updates, slow_weights = map_leaves("lookahead", _lookahead_rule, new_updates,
                                             state.slow_weights, fast,
                                             alpha=slow_step_size, sync=sync)
    if reset_state:
      fast_state = jax.tree.map(lambda current, initial: jnp.where(sync, initial, current),
                                fast_state, inner.init(fast))
    return new_updates, LookaheadState(
        fast_state=fast_state,
        steps_since_sync=jnp.where(sync, jnp.zeros_like(steps), steps),
        slow_weights=slow_weights)

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
