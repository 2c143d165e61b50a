"""Stateful schedules, and hyperparameters injected into the state with them.

A stateful schedule keeps a state of its own (a pytree of arrays) and may read the extra
arguments of ``update`` (``value=``, say) to move it on: ``init() -> state``,
``update(state, **extra_args) -> state`` and ``__call__(state, **extra_args) -> value``.
A plain schedule ``fn(count)`` is one whose state is the count (:class:`WrappedSchedule`).
:func:`inject_stateful_hyperparams` holds the hyperparameters of a transform, and the
states of their schedules, in its state. Optax 0.2.8's names, fields and numerics.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, NamedTuple, Optional, Protocol, Union
from typing import runtime_checkable

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.hyperparams import split_hyperparams
from gradtx._src.tree.casting import widest_float_dtype
from gradtx._src.tree.math import safe_increment, zero_count

ScheduleState = Any


@runtime_checkable
class StatefulSchedule(Protocol):
  """A schedule with a state: ``init()``, ``update(state, **extra_args)`` and
  ``__call__(state, **extra_args)`` (the current value)."""

  def init(self) -> ScheduleState:
    """The schedule's initial state."""

  def update(self, state: ScheduleState, **extra_args: Any) -> ScheduleState:
    """The state after one more step."""

  def __call__(self, state: ScheduleState, **extra_args: Any) -> Any:
    """The value at ``state``."""


class WrappedScheduleState(NamedTuple):
  """State of :class:`WrappedSchedule`: the steps taken."""

  count: jax.Array


class WrappedSchedule:
  """A plain schedule ``schedule_fn(count)`` as a :class:`StatefulSchedule` whose state
  is the count."""

  def __init__(self, schedule_fn: base.Schedule):
    self.schedule_fn = schedule_fn

  def init(self) -> WrappedScheduleState:
    return WrappedScheduleState(count=zero_count())

  def update(self, state: WrappedScheduleState, **extra_args: Any) -> WrappedScheduleState:
    del extra_args
    return WrappedScheduleState(count=safe_increment(state.count))

  def __call__(self, state: WrappedScheduleState, **extra_args: Any) -> Any:
    del extra_args
    return self.schedule_fn(jnp.asarray(state.count))


class InjectStatefulHyperparamsState(NamedTuple):
  """State of :func:`inject_stateful_hyperparams`.

  Attributes:
    count: steps taken.
    hyperparams: the current value of each numeric hyperparameter, by name.
    hyperparams_states: the state of each scheduled hyperparameter's schedule, by name.
    inner_state: the state of the transform the factory built.
  """

  count: jax.Array
  hyperparams: dict[str, Any]
  hyperparams_states: dict[str, ScheduleState]
  inner_state: base.OptState


def _is_stateful(value: Any) -> bool:
  return (callable(value) and callable(getattr(value, "init", None))
          and callable(getattr(value, "update", None)))


def _as_schedule(value: Any) -> Any:
  """A stateful schedule as it is, a plain one wrapped, anything else None."""
  if _is_stateful(value):
    return value
  if callable(value) and not isinstance(value, type):
    return WrappedSchedule(value)
  return None


def _in_dtype(value: Any, dtype: Any) -> Any:
  """Floating values in ``dtype``, except arrays already strongly typed; others as
  they are (Optax's rule)."""
  if isinstance(value, jax.Array) and not getattr(value, "weak_type", False):
    return value
  if jnp.issubdtype(getattr(value, "dtype", type(value)), jnp.floating):
    return jnp.asarray(value, dtype)
  return value


def _call(fn: Callable[..., Any], state: Any, extra_args: dict[str, Any]) -> Any:
  """``fn(state, **extra_args)``, given only the extra arguments it accepts."""
  if extra_args:
    extra_args = base.accepted_extra_args(fn, extra_args)
  return fn(state, **extra_args)


def inject_stateful_hyperparams(
    inner_factory: Callable[..., base.GradientTransformation],
    static_args: Union[str, Iterable[str]] = (),
    hyperparam_dtype: Optional[Any] = None,
) -> Callable[..., base.GradientTransformation]:
  """Wraps a transform factory so that its numeric hyperparameters, and the states of
  their schedules, live in the state.

  ``inject_stateful_hyperparams(gtx.adam)(learning_rate=schedule, b1=0.9)`` builds the
  transform with each hyperparameter's current value: numbers are stored in
  ``state.hyperparams`` (overwrite them between steps to change them); a
  :class:`StatefulSchedule` keeps its state in ``state.hyperparams_states`` and is
  evaluated, then moved on, every step with the extra arguments of ``update``; any other
  callable is a plain schedule of the step count (a :class:`WrappedSchedule`). Step ``t``
  (from 0) uses each schedule's value at its ``t``-th state. Booleans and the names in
  ``static_args`` are passed to the factory unchanged.

  Floating hyperparameters (not those given as strongly typed JAX arrays) are held in
  ``hyperparam_dtype``, or in the params' widest floating dtype but at least float32:
  Optax uses the params' dtype, which rounds Adam's ``b2=0.999`` to 1.0 for bfloat16
  params. Otherwise as Optax 0.2.8's ``inject_hyperparams`` (which this function is an
  alias of there; Optax deprecates this name). :func:`gradtx.inject_hyperparams` takes
  plain schedules only and keeps the smaller :class:`InjectHyperparamsState`.

  Raises:
    ValueError: ``static_args`` names a parameter the factory does not have.
  """
  split = split_hyperparams("inject_stateful_hyperparams", inner_factory, static_args,
                            _as_schedule)

  @functools.wraps(inner_factory)
  def wrapped(*args, **kwargs) -> base.GradientTransformation:
    arguments, schedules, numbers, others = split(*args, **kwargs)
    # Validate the concrete values once, with the factory's own messages.
    inner_factory(**arguments)

    def dtype_of(params):
      return hyperparam_dtype or widest_float_dtype(params)

    def init(params):
      dtype = dtype_of(params)
      hyperparams = {k: jnp.asarray(_in_dtype(v, dtype)) for k, v in numbers.items()}
      states = {k: f.init() for k, f in schedules.items()}
      hyperparams.update({k: _in_dtype(f(states[k]), dtype) for k, f in schedules.items()})
      inner = inner_factory(**others, **hyperparams)
      return InjectStatefulHyperparamsState(zero_count(), hyperparams, states,
                                            inner.init(params))

    def update(updates, state, params=None, **extra_args):
      dtype = dtype_of(params)
      hyperparams = {k: _in_dtype(v, dtype) for k, v in state.hyperparams.items()}
      old = state.hyperparams_states
      hyperparams.update({k: _in_dtype(_call(f, old[k], extra_args), dtype)
                          for k, f in schedules.items()})
      states = {k: _call(f.update, old[k], extra_args)
                for k, f in schedules.items()}
      inner = inner_factory(**others, **hyperparams)
      updates, inner_state = base.call_update(inner, updates, state.inner_state, params,
                                              extra_args)
      return updates, InjectStatefulHyperparamsState(safe_increment(state.count),
                                                     hyperparams, states, inner_state)

    return base.GradientTransformation(init, update)

  return wrapped
