"""Schedule-Free learning (Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky 2024,
"The Road Less Scheduled"): no learning-rate decay, but an average of the
iterates that a base optimizer (without momentum) drives.

Three sequences: ``z`` takes the base optimizer's steps, ``x`` (where to evaluate) is a
weighted average of the ``z``'s, and the gradient is taken at their interpolation ``y``,
which is what the params hold::

  z_{t+1} = z_t + base_update(grad f(y_t))
  x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}
  y_{t+1} = b1 x_{t+1} + (1 - b1) z_{t+1}

with ``c_{t+1} = w_t / sum_{i<=t} w_i`` and weights ``w_t = max_{i<=t} lr_i**p``
(``p = weight_lr_power``; the paper's warmup-aware weighting). ``x`` is not stored: it
is recovered as ``(y - (1 - b1) z) / b1`` (:func:`schedule_free_eval_params`).

Numerics, defaults and state follow Optax 0.2.8's ``optax.contrib`` functions of the same
names (the state's scalars in at least float32, see :mod:`gradtx._src.tree_scalars`),
except where ``z`` is kept in a lower precision than the params (``state_dtype``): Optax
computes ``(1 - b1) z`` in ``z``'s dtype, gradtx in the params' (``tests/test_schedule_free.py``
shows both).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.alias import sgd
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.rmsprop import scale_by_rms
from gradtx._src.schedules import linear_schedule
from gradtx._src.scaling import add_decayed_weights, scale_by_learning_rate
from gradtx._src.tree.casting import compute_dtype, tree_cast
from gradtx._src.tree.math import safe_increment
from gradtx._src.tree_scalars import scalar_dtype


class ScheduleFreeState(NamedTuple):
  """State of :func:`schedule_free` (Optax's fields).

  Attributes:
    b1: the interpolation ``b1`` of the last step (read by
      :func:`schedule_free_eval_params`).
    weight_sum: ``sum_i w_i``.
    step_count: the number of updates so far plus one (the schedule ``learning_rate`` is
      evaluated at it).
    max_lr: the largest learning rate so far.
    base_optimizer_state: the base optimizer's state.
    z: the base optimizer's iterate ``z`` (in ``state_dtype``).
  """

  b1: jax.Array
  weight_sum: jax.Array
  step_count: jax.Array
  max_lr: jax.Array
  base_optimizer_state: base.OptState
  z: base.Params


def _find_state(state: Any) -> Any:
  """The :class:`ScheduleFreeState` in ``state`` (itself, or inside a wrapper's state)."""
  if isinstance(state, ScheduleFreeState) or (hasattr(state, "b1") and hasattr(state, "z")):
    return state
  children = (state.values() if isinstance(state, dict) else
              state if isinstance(state, (tuple, list)) else ())
  found = [s for s in map(_find_state, children) if s is not None]
  if len(found) > 1:
    raise ValueError("schedule_free_eval_params: the state holds several schedule-free "
                     "states; pass the one that belongs to the params")
  return found[0] if found else None


def schedule_free_eval_params(state: base.OptState, params: base.Params) -> base.Params:
  """The params to evaluate a schedule-free model at: ``x = (y - (1 - b1) z) / b1``,
  ``y`` the params being trained.

  ``state`` is the state of :func:`schedule_free` (or of an optimizer built on it, such
  as ``inject_hyperparams(schedule_free_adamw)(...)``'s, which holds one).

  Raises:
    ValueError: ``state`` holds no schedule-free state.
  """
  found = _find_state(state)
  if found is None:
    raise ValueError("schedule_free_eval_params requires a ScheduleFreeState as input.")
  b1, z = found.b1, found.z
  return jax.tree.map(lambda y, z: ((y - (1.0 - b1) * z) / b1).astype(jnp.asarray(y).dtype),
                      params, z)


def _iterates(y, z, u, b1, ck):
  """One leaf's step: the new ``z`` (rounded to its storage dtype first, as Optax does,
  so that ``x`` is recovered exactly from the stored ``z``) and the update of ``y``."""
  y, z, u = jnp.asarray(y), jnp.asarray(z), jnp.asarray(u)
  wide = compute_dtype(y.dtype, z.dtype, u.dtype)
  new_z = (z.astype(wide) + u.astype(wide)).astype(z.dtype)
  y_, z_, new_z_ = y.astype(wide), z.astype(wide), new_z.astype(wide)
  b1, ck = (jnp.asarray(b1).astype(wide) if isinstance(b1, jax.Array) else b1,
            jnp.asarray(ck).astype(wide))
  x = (1.0 - ck) * ((y_ - (1.0 - b1) * z_) / b1) + ck * new_z_
  return ((b1 * x + (1.0 - b1) * new_z_) - y_).astype(y.dtype), new_z


@hyperparameters(native=("learning_rate",), base_optimizer="transform",
                 learning_rate="[0, inf)", b1="(0, 1]", weight_lr_power="[0, inf)",
                 state_dtype="dtype | None")
def schedule_free(base_optimizer: base.GradientTransformation,
                  learning_rate: base.ScalarOrSchedule, b1: float = 0.9,
                  weight_lr_power: float = 2.0, state_dtype: Any = None
                  ) -> base.GradientTransformation:
  """Schedule-Free around ``base_optimizer`` (Defazio et al. 2024), as Optax's
  ``optax.contrib.schedule_free``.

  Turn the base optimizer's momentum off (``adam(lr, b1=0)``, ``sgd(lr)``): the
  interpolation replaces it. Evaluate at :func:`schedule_free_eval_params`. See the
  module docstring for the update.

  Args:
    base_optimizer: computes the steps of ``z``; it gets the extra keyword arguments
      of ``update`` that it accepts.
    learning_rate: the base optimizer's learning rate or schedule (with warmup, no
      decay), for the averaging weights; a schedule is evaluated at ``step_count``
      (from 1).
    b1: the interpolation ``b1`` in ``(0, 1]`` (0.9, the paper's default; 0.95 and
      0.98 also work well).
    weight_lr_power: ``p`` of the weights ``max lr**p`` (2, the paper's).
    state_dtype: the dtype to keep ``z`` in (default the params').
  """
  def init(params):
    dtype = scalar_dtype(params)
    z = tree_cast(params, state_dtype) if state_dtype is not None else params
    return ScheduleFreeState(b1=jnp.asarray(b1, dtype), weight_sum=jnp.zeros([], dtype),
                             step_count=jnp.ones([], jnp.int32),
                             max_lr=jnp.zeros([], dtype),
                             base_optimizer_state=base_optimizer.init(params),
                             z=jax.tree.map(jnp.array, z))

  def update(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format("schedule_free"))
    dtype = state.max_lr.dtype
    lr = learning_rate
    if callable(learning_rate):
      lr = jnp.asarray(learning_rate(state.step_count), dtype)
    max_lr = jnp.maximum(state.max_lr, lr).astype(dtype)
    weight = max_lr**weight_lr_power
    weight_sum = (state.weight_sum + weight).astype(dtype)
    # 0 before the first positive learning rate (0 / 0); NaN stays NaN.
    ck = jnp.where(jnp.isnan(weight) | jnp.isnan(weight_sum), jnp.full(weight.shape, jnp.nan),
                   jnp.nan_to_num(weight / weight_sum, nan=0.0, posinf=jnp.inf))
    base_updates, base_state = base.call_update(base_optimizer, updates,
                                                state.base_optimizer_state, params, extra_args)
    base.check_same_structure("schedule_free", base_updates, params, state.z)
    steps = jax.tree.map(lambda y, z, u: _iterates(y, z, u, b1, ck), params, state.z,
                         base_updates)
    treedef = jax.tree.structure(params)
    pairs = treedef.flatten_up_to(steps)
    new_updates = treedef.unflatten([step for step, _ in pairs])
    z = treedef.unflatten([z for _, z in pairs])
    return new_updates, ScheduleFreeState(
        b1=jnp.asarray(b1, state.b1.dtype), weight_sum=weight_sum,
        step_count=safe_increment(state.step_count), max_lr=max_lr,
        base_optimizer_state=base_state, z=z)

  return base.GradientTransformation(init, update)


SCHEDULE_FREE = dict(native=("learning_rate",), learning_rate="[0, inf)",
                     warmup_steps="int >= 1 | None", b1="(0, 1]",
                     weight_lr_power="[0, inf)", state_dtype="dtype | None")


def _warmed_up(learning_rate: Any, warmup_steps: Optional[int]) -> Any:
  """Optax's ``warmup_constant_schedule(0, lr, warmup_steps)``: 0 -> lr linearly over
  ``warmup_steps``, then lr; a scheduled lr is multiplied by the same ramp."""
  if warmup_steps is None:
    return learning_rate
  if callable(learning_rate):
    ramp = linear_schedule(0, 1, warmup_steps)
    return lambda count: ramp(count) * learning_rate(count)
  return linear_schedule(0, learning_rate, warmup_steps)


@hyperparameters(**SCHEDULE_FREE, weight_decay="[0, inf) | None")
def schedule_free_sgd(learning_rate: float = 1.0, warmup_steps: Optional[int] = None,
                      b1: float = 0.9, weight_decay: Optional[float] = None,
                      weight_lr_power: float = 2.0, state_dtype: Any = None
                      ) -> base.GradientTransformation:
  """Schedule-Free SGD, as Optax's ``optax.contrib.schedule_free_sgd``:
  ``schedule_free(chain(add_decayed_weights(weight_decay), sgd(lr)), lr, ...)``, with
  ``lr`` warmed up linearly from 0 over ``warmup_steps`` if given. ``weight_decay``
  (None: none) is added to the gradient, so it is multiplied by the learning rate.
  """
  learning_rate = _warmed_up(learning_rate, warmup_steps)
  optimizer = sgd(learning_rate)
  if weight_decay is not None:
    optimizer = chain(add_decayed_weights(weight_decay), optimizer)
  return schedule_free(optimizer, learning_rate=learning_rate, b1=b1,
                       weight_lr_power=weight_lr_power, state_dtype=state_dtype)


@hyperparameters(**SCHEDULE_FREE, b2="[0, 1)", eps="[0, inf)", weight_decay="[0, inf)")
def schedule_free_adamw(learning_rate: float = 0.0025, warmup_steps: Optional[int] = None,
                        b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                        weight_decay: float = 0.0, weight_lr_power: float = 2.0,
                        state_dtype: Any = None) -> base.GradientTransformation:
  """Schedule-Free AdamW, as Optax's ``optax.contrib.schedule_free_adamw``: AdamW
  without momentum (``scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True)``,
  Adam's normaliser with ``b1 = 0``), decoupled ``weight_decay`` and the learning rate,
  inside :func:`schedule_free`; ``lr`` warmed up linearly from 0 over ``warmup_steps``
  if given.
  """
  learning_rate = _warmed_up(learning_rate, warmup_steps)
  optimizer = chain(scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
                    add_decayed_weights(weight_decay), scale_by_learning_rate(learning_rate))
  return schedule_free(optimizer, learning_rate=learning_rate, b1=b1,
                       weight_lr_power=weight_lr_power, state_dtype=state_dtype)
