"""Scaling by constants and schedules, and decoupled weight decay."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, combine
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise


ScaleState = base.EmptyState


@hyperparameters(step_size="(-inf, inf)")
def scale(step_size: float | jax.Array) -> base.GradientTransformation:
  """``u * step_size``."""
  return leafwise("scale", lambda u, *, step_size: step_size * u,
                  hyperparams=dict(step_size=step_size))


class ScaleByScheduleState(NamedTuple):
  count: jax.Array


@hyperparameters(step_size_fn="callable")
def scale_by_schedule(step_size_fn: base.Schedule) -> base.GradientTransformation:
  """``step_size_fn(count) * u``, ``count`` the number of earlier calls (from 0)."""
  return leafwise(
      "scale_by_schedule", lambda u, *, step_size: step_size * u, state=ScaleByScheduleState,
      scalars=lambda count: dict(step_size=jnp.asarray(base.resolve(step_size_fn, count))))


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf) | None",
                 flip_sign="bool")
def scale_by_learning_rate(learning_rate: base.ScalarOrSchedule | None = None, *,
                           flip_sign: bool = True) -> base.GradientTransformation:
  """``-lr * u`` (``+lr * u`` with ``flip_sign=False``); ``lr`` a number or a schedule."""
  if learning_rate is None:
    return base.identity()
  sign = -1 if flip_sign else 1
  if callable(learning_rate):
    return scale_by_schedule(lambda count: sign * learning_rate(count))
  return scale(sign * learning_rate)


AddDecayedWeightsState = base.EmptyState  # Optax's name for the state without a schedule


class WeightDecaySchedule(NamedTuple):
  """State of :func:`add_decayed_weights` with a scheduled ``weight_decay`` (Optax's)."""

  count: jax.Array


@hyperparameters(native=("weight_decay",), weight_decay="[0, inf)")
def add_decayed_weights(weight_decay: base.ScalarOrSchedule = 0.0,
                        mask: Any = None) -> base.GradientTransformation:
  """``u + weight_decay * params`` (Loshchilov & Hutter 2019, decoupled weight decay).

  Args:
    weight_decay: the decay rate, a number or a schedule of the step count.
    mask: a tree of booleans (or a function of the params returning one) selecting the
      params to decay; e.g. ``lambda p: jax.tree.map(lambda x: x.ndim > 1, p)`` skips
      biases and norm scales.
  """
  owner = "add_decayed_weights"
  if isinstance(weight_decay, (int, float)) and weight_decay == 0.0:

    def update(updates, state, params=None, **extra_args):
      del extra_args
      if params is None:
        raise ValueError(base.NO_PARAMS_MSG.format(owner))
      return updates, state

    tx = base.GradientTransformation(base.init_empty_state, update)
  elif callable(weight_decay):
    tx = leafwise(owner, lambda u, p, *, rate: u + rate * p, state=WeightDecaySchedule,
                  scalars=lambda count: dict(rate=weight_decay(count)), uses_params=True)
  else:
    tx = leafwise(owner, lambda u, p, *, rate: u + rate * p,
                  hyperparams=dict(rate=weight_decay), uses_params=True)
  return tx if mask is None else combine.masked(tx, mask)
