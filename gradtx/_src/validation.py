"""Hyperparameter validation, in one place, at construction time.

Every constructor calls :func:`check` with the intervals its hyperparameters must lie in,
written the way a paper writes them: ``"[0, 1)"``, ``"(0, inf)"``. Schedules (callables)
and traced values (a constructor called inside ``jit``/``vmap``, as ``inject_hyperparams``
does) are accepted unchecked: only concrete numbers can be checked.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import numpy as np


@functools.lru_cache(maxsize=None)
def _parse(interval: str) -> tuple[bool, float, float, bool]:
  """``"[0, 1)"`` -> (closed_left, 0.0, 1.0, closed_right)."""
  text = interval.replace(" ", "")
  if text[0] not in "[(" or text[-1] not in "])" or "," not in text:
    raise ValueError(f"malformed interval {interval!r}")
  low, high = text[1:-1].split(",")
  return text[0] == "[", float(low), float(high), text[-1] == "]"


def _concrete_scalar(value: Any) -> float | None:
  """The value as a Python float, or None if it cannot be checked now."""
  if callable(value) or isinstance(value, jax.core.Tracer):
    return None
  array = np.asarray(value)
  if array.size != 1 or not np.issubdtype(array.dtype, np.number):
    return None
  return float(array.reshape(()))


def in_interval(owner: str, name: str, value: Any, interval: str) -> None:
  """Raises ``ValueError`` unless a concrete ``value`` lies in ``interval``."""
  number = _concrete_scalar(value)
  if number is None:
    return
  closed_left, low, high, closed_right = _parse(interval)
  above = number >= low if closed_left else number > low
  below = number <= high if closed_right else number < high
  if not (above and below) or math.isnan(number):
    raise ValueError(f"{owner}: {name} must be in {interval}, got {value!r}")


def check(owner: str, **specs: tuple[Any, str]) -> None:
  """``check("adam", b2=(b2, "[0, 1)"), eps=(eps, "[0, inf)"))``."""
  for name, (value, interval) in specs.items():
    in_interval(owner, name, value, interval)


def ordered(owner: str, low_name: str, low: Any, high_name: str, high: Any) -> None:
  """Raises ``ValueError`` if concrete ``low > high``."""
  a, b = _concrete_scalar(low), _concrete_scalar(high)
  if a is not None and b is not None and a > b:
    raise ValueError(f"{owner}: {low_name} must be <= {high_name}, got {low!r} > {high!r}")


def integer(owner: str, name: str, value: Any, minimum: int = 1) -> None:
  """Raises ``ValueError`` unless ``value`` is an integer >= ``minimum``."""
  if isinstance(value, jax.core.Tracer):
    return
  if (isinstance(value, (jax.Array, np.ndarray)) and value.ndim == 0
      and np.issubdtype(value.dtype, np.integer)):
    value = int(value)  # inject_hyperparams stores integer hyperparameters as arrays
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
