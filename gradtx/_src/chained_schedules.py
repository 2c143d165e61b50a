"""Schedules built from schedules: their product."""

from __future__ import annotations

import jax.numpy as jnp

from gradtx._src import validation
from gradtx._src.base import Schedule
from gradtx._src.cyclic_schedules import as_float


def multiply_schedules(*schedules: Schedule) -> Schedule:
  """The product of the schedules' values: ``s_1(t) * s_2(t) * ... * s_n(t)``.

  torch's ``ChainedScheduler`` of multiplicative schedulers (``StepLR``,
  ``MultiStepLR``, ``ExponentialLR``, ``ConstantLR``, ``LinearLR``, ...): each scales the
  learning rate by its own factor, so the chained rate is the base rate times every
  factor. Give one schedule the base rate and the others factors starting at 1, e.g.
  ``multiply_schedules(step_decay(0.1, 30), exponential_decay(1.0, 1, 0.99))`` for
  ``ChainedScheduler([StepLR(opt, 30, 0.5), ExponentialLR(opt, 0.99)])`` with
  ``lr=0.1``. Every schedule sees the same count (compare :func:`join_schedules`, which
  runs them one after another).
  """
  if not schedules:
    raise ValueError("multiply_schedules: give at least one schedule, got none")
  for i, schedule in enumerate(schedules):
    if not validation.is_schedule(schedule):
      raise validation.HyperparameterTypeError(
          f"multiply_schedules: schedules[{i}] must be a schedule (a function of the step "
          f"count), got {schedule!r}")

  def product(count):
    count = jnp.asarray(count)
    value = schedules[0](count)
    for schedule in schedules[1:]:
      value = value * schedule(count)
    return as_float(value, count)

  return product
