"""Transforms applied at some steps, or to some params only.

``conditionally_transform`` and ``conditionally_mask`` run their inner transform on the
steps a condition of the step count selects (passing the updates through, or zeroing
them, on the others); ``freeze`` zeroes the updates of some params and
``selective_transform`` gives the others an optimizer.

Reference: Optax's ``conditionally_transform``, ``conditionally_mask``, ``freeze`` and
``selective_transform`` (same signatures, state fields and numerics).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Union

import jax
from jax import lax

from gradtx._src import base
from gradtx._src.combine import masked, partition
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.tree.math import safe_increment, zero_count
from gradtx._src.wrappers import _zero_updates_like


class ConditionFn(Protocol):
  """``fn(step, **extra_args) -> bool``: whether the inner transform runs at ``step``.

  ``step`` counts the earlier updates (an int32 scalar); the extra arguments of
  ``update`` are passed only with ``forward_extra_args=True``.
  """

  def __call__(self, step: jax.Array, **extra_args: Any) -> jax.Array:
    ...


class ConditionallyTransformState(NamedTuple):
  """State of :func:`conditionally_transform` (Optax's field order)."""

  inner_state: Any
  step: jax.Array


class ConditionallyMaskState(NamedTuple):
  """State of :func:`conditionally_mask` (Optax's field order)."""

  step: jax.Array
  inner_state: Any


def _run_if(inner, should_transform_fn, forward_extra_args, otherwise):
  """The update shared by both wrappers: ``inner`` under ``lax.cond``, and on the other
  branch ``otherwise(step)``, given the call that would have run. Returns
  ``update(updates, step, inner_state, params, extra_args) -> (updates, inner_state)``.
  """

  def update(updates, step, inner_state, params, extra_args):
    run = should_transform_fn(step, **(extra_args if forward_extra_args else {}))

    def transform():
      return base.call_update(inner, updates, inner_state, params, extra_args)

    return lax.cond(run, transform, lambda: (otherwise(updates, transform), inner_state))

  return update


@hyperparameters(inner="transform", should_transform_fn="callable",
                 forward_extra_args="bool")
def conditionally_transform(
    inner: base.GradientTransformation, should_transform_fn: ConditionFn,
    forward_extra_args: bool = False) -> base.GradientTransformation:
  """Runs ``inner`` only at the steps ``should_transform_fn(step)`` selects::

    emits inner(u)  if should_transform_fn(step)  else u (inner state unchanged)

  ``step`` counts the earlier calls of ``update``, from 0. The inner transform runs
  under ``lax.cond``, so it costs nothing at the other steps.

  Args:
    inner: the transform to run.
    should_transform_fn: ``fn(step, **extra_args) -> bool`` (see :class:`ConditionFn`).
    forward_extra_args: also pass ``update``'s extra arguments to the condition.
  """
  step_fn = _run_if(inner, should_transform_fn, forward_extra_args,
                    otherwise=lambda updates, transform: updates)

  def init(params):
    return ConditionallyTransformState(inner_state=inner.init(params), step=zero_count())

  def update(updates, state, params=None, **extra_args):
    updates, inner_state = step_fn(updates, state.step, state.inner_state, params,
                                   extra_args)
    return updates, ConditionallyTransformState(inner_state, safe_increment(state.step))

  return base.GradientTransformation(init, update)


@hyperparameters(inner="transform", should_transform_fn="callable",
                 forward_extra_args="bool")
def conditionally_mask(inner: base.GradientTransformation,
                       should_transform_fn: ConditionFn,
                       forward_extra_args: bool = False) -> base.GradientTransformation:
  """Runs ``inner`` only at the steps ``should_transform_fn(step)`` selects, and emits
  zeros at the others::

    emits inner(u)  if should_transform_fn(step)  else 0 (inner state unchanged)

  ``step`` counts the earlier calls of ``update``, from 0.

  Args:
    inner: the transform to run.
    should_transform_fn: ``fn(step, **extra_args) -> bool`` (see :class:`ConditionFn`).
    forward_extra_args: also pass ``update``'s extra arguments to the condition.
  """
  step_fn = _run_if(inner, should_transform_fn, forward_extra_args,
                    otherwise=lambda updates, transform: _zero_updates_like(transform))

  def init(params):
    return ConditionallyMaskState(step=zero_count(), inner_state=inner.init(params))

  def update(updates, state, params=None, **extra_args):
    updates, inner_state = step_fn(updates, state.step, state.inner_state, params,
                                   extra_args)
    return updates, ConditionallyMaskState(safe_increment(state.step), inner_state)

  return base.GradientTransformation(init, update)


FreezeMask = Union[bool, base.PyTree]


def freeze(mask: FreezeMask) -> base.GradientTransformation:
  """Zeroes the updates of the params where ``mask`` is True (freezes them); the others
  pass through: ``masked(set_to_zero(), mask)``.

  Args:
    mask: True or False for all params, or a tree of booleans with the params' structure
      (or a prefix of it), or a function of the params returning one. Static.
  """
  return masked(base.set_to_zero(), mask)


@hyperparameters(optimizer="transform")
def selective_transform(optimizer: base.GradientTransformation, *,
                        freeze_mask: FreezeMask) -> base.GradientTransformation:
  """``optimizer`` for the params where ``freeze_mask`` is False, zero updates where it
  is True: ``partition({"train": optimizer, "freeze": set_to_zero()}, labels)``. The
  optimizer keeps state only for the params it trains.

  Args:
    optimizer: the transform for the trained params.
    freeze_mask: as :func:`freeze`'s ``mask`` (keyword-only, so that it reads as what it
      freezes).
  """

  def labels(params):
    mask = freeze_mask(params) if callable(freeze_mask) else freeze_mask
    return jax.tree.map(lambda frozen: "freeze" if frozen else "train", mask)

  return partition({"train": optimizer, "freeze": base.set_to_zero()},
                   param_labels=labels)
