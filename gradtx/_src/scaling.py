"""Scaling by constants and schedules, and decoupled weight decay."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src.hyperparams import accepts_schedules
from gradtx._src import base, combine, validation


@accepts_schedules()
def scale(factor: float | jax.Array) -> base.GradientTransformation:
  """``u * factor``."""
  validation.check("scale", factor=(factor, "(-inf, inf)"))

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    return base.map_leaves("scale", lambda u, factor: factor * u, updates,
                           factor=factor), state

  return base.GradientTransformation(base.init_empty_state, update)


class ScaleByScheduleState(NamedTuple):
  count: jax.Array


def scale_by_schedule(step_size_fn: base.Schedule) -> base.GradientTransformation:
  """``step_size_fn(count) * u``, ``count`` the number of earlier calls (from 0)."""
  if not callable(step_size_fn):
    raise ValueError(f"scale_by_schedule: step_size_fn must be callable, got {step_size_fn!r}")

  def init(params):
    del params
    return ScaleByScheduleState(base.zero_count())

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    step_size = jnp.asarray(base.resolve(step_size_fn, state.count))
    updates = base.map_leaves("scale_by_schedule", lambda u, step_size: step_size * u,
                              updates, step_size=step_size)
    return updates, ScaleByScheduleState(base.safe_increment(state.count))

  return base.GradientTransformation(init, update)


def scale_by_learning_rate(learning_rate: base.ScalarOrSchedule | None = None, *,
                           flip_sign: bool = True) -> base.GradientTransformation:
  """``-lr * u`` (``+lr * u`` with ``flip_sign=False``); ``lr`` a number or a schedule."""
  if learning_rate is None:
    return base.identity()
  validation.check("scale_by_learning_rate", learning_rate=(learning_rate, "[0, inf)"))
  sign = -1 if flip_sign else 1
  if callable(learning_rate):
    return scale_by_schedule(lambda count: sign * learning_rate(count))
  return scale(sign * learning_rate)


class AddDecayedWeightsState(NamedTuple):
  count: jax.Array


@accepts_schedules(native=("weight_decay",), static=("mask",))
def add_decayed_weights(weight_decay: base.ScalarOrSchedule = 0.0,
                        mask: Any = None) -> base.GradientTransformation:
  """``u + weight_decay * params`` (Loshchilov & Hutter 2019, decoupled weight decay).

  Args:
    weight_decay: the decay rate, a number or a schedule of the step count.
    mask: a tree of booleans (or a function of the params returning one) selecting the
      params to decay; e.g. ``lambda p: jax.tree.map(lambda x: x.ndim > 1, p)`` skips
      biases and norm scales.
  """
  validation.check("add_decayed_weights", weight_decay=(weight_decay, "[0, inf)"))

  def init(params):
    del params
    return AddDecayedWeightsState(base.zero_count()) if callable(weight_decay) else (
        base.EmptyState())

  def update(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format("add_decayed_weights"))
    if callable(weight_decay):
      rate = weight_decay(state.count)
      state = AddDecayedWeightsState(base.safe_increment(state.count))
    elif isinstance(weight_decay, (int, float)) and weight_decay == 0.0:
      return updates, state
    else:
      rate = weight_decay
    return base.map_leaves("add_decayed_weights", lambda u, p, rate: u + rate * p,
                           updates, params, rate=rate), state

  tx = base.GradientTransformation(init, update)
  return tx if mask is None else combine.masked(tx, mask)
