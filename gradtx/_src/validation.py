"""Checks of hyperparameters and arguments, in one place, at construction time.

A hyperparameter is declared with a short spec (see :func:`gradtx.hyperparameters`)
and checked here, outside ``jit``, before any transform is built:

* ``"[0, 1)"``, ``"(0, inf]"``: a real number in the interval, written as a paper
  writes it. A string, a list, a complex number or an array that is not a scalar is a
  ``TypeError``; a number outside the interval (or NaN) a ``ValueError``.
* ``"int >= 1"``: an integer at least that large.
* ``"bool"``, ``"dtype"``, ``"transform"``, ``"callable"``, ``"any"``.
* ``"{'one', 'keep'}"``: one of the listed strings.
* ``" | None"`` after any of them: ``None`` is allowed too.

Every message names the function, the parameter and what is allowed
(``adam: b2 must be in [0, 1), got 1.5``). Schedules (callables given for a number) and
traced values (a constructor called inside ``jit``/``vmap``, as ``inject_hyperparams``
does) are accepted unchecked: only concrete values can be checked.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from typing import Any

import jax
import numpy as np


class HyperparameterTypeError(TypeError, ValueError):
  """A hyperparameter of the wrong type (a string for a number, a list for a scalar).

  A ``TypeError``, and also a ``ValueError`` so that code which catches ``ValueError``
  for any invalid hyperparameter keeps working.
  """


@functools.lru_cache(maxsize=None)
def _parse(interval: str) -> tuple[bool, float, float, bool]:
  """``"[0, 1)"`` -> (closed_left, 0.0, 1.0, closed_right)."""
  text = interval.replace(" ", "")
  if text[0] not in "[(" or text[-1] not in "])" or "," not in text:
    raise ValueError(f"malformed interval {interval!r}")
  low, high = text[1:-1].split(",")
  return text[0] == "[", float(low), float(high), text[-1] == "]"


def is_schedule(value: Any) -> bool:
  """A callable that is not a type (``jnp.float32`` is callable, and a dtype)."""
  return callable(value) and not isinstance(value, type)


def _kind(value: Any) -> str:
  if isinstance(value, (jax.Array, np.ndarray)):
    return f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
  return f"{value!r} ({type(value).__name__})"


def concrete_scalar(value: Any) -> float | None:
  """The value as a Python float, or None if it cannot be checked now (a schedule, a
  traced value, or not a real scalar)."""
  if is_schedule(value) or isinstance(value, jax.core.Tracer) or isinstance(
      value, (str, bytes)):
    return None
  try:
    array = np.asarray(value)
  except Exception:  # pylint: disable=broad-except
    return None
  if array.size != 1 or not (np.issubdtype(array.dtype, np.integer)
                             or np.issubdtype(array.dtype, np.floating)):
    return None
  return float(array.reshape(()))


def real(owner: str, name: str, value: Any, interval: str = "(-inf, inf)") -> None:
  """Raises unless ``value`` is a real scalar in ``interval`` (schedules and traced
  values pass unchecked)."""
  if is_schedule(value) or isinstance(value, jax.core.Tracer):
    return
  expected = f"{owner}: {name} must be a real number in {interval}"
  if isinstance(value, (bool, np.bool_, str, bytes, list, tuple, dict, set)) or value is None:
    raise HyperparameterTypeError(f"{expected} or a schedule, got {_kind(value)}")
  try:
    array = np.asarray(value)
  except Exception:  # pylint: disable=broad-except
    raise HyperparameterTypeError(f"{expected} or a schedule, got {_kind(value)}") from None
  if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
    raise HyperparameterTypeError(f"{expected} or a schedule, got {_kind(value)}")
  if array.ndim != 0:
    raise HyperparameterTypeError(f"{expected}, a scalar, got {_kind(value)}")
  in_interval(owner, name, value, interval)


def in_interval(owner: str, name: str, value: Any, interval: str) -> None:
  """Raises ``ValueError`` unless a concrete ``value`` lies in ``interval``."""
  number = concrete_scalar(value)
  if number is None:
    return
  closed_left, low, high, closed_right = _parse(interval)
  above = number >= low if closed_left else number > low
  below = number <= high if closed_right else number < high
  if not (above and below) or math.isnan(number):
    raise ValueError(f"{owner}: {name} must be in {interval}, got {value!r}")


def check(owner: str, **specs: tuple[Any, str]) -> None:
  """``check("adam", b2=(b2, "[0, 1)"), eps=(eps, "[0, inf)"))``: real scalars in
  intervals; ``None`` values are skipped."""
  for name, (value, interval) in specs.items():
    if value is not None:
      real(owner, name, value, interval)


def ordered(owner: str, low_name: str, low: Any, high_name: str, high: Any) -> None:
  """Raises ``ValueError`` if concrete ``low > high``."""
  a, b = concrete_scalar(low), concrete_scalar(high)
  if a is not None and b is not None and a > b:
    raise ValueError(f"{owner}: {low_name} must be <= {high_name}, got {low!r} > {high!r}")


def integer(owner: str, name: str, value: Any, minimum: int = 1) -> None:
  """Raises unless ``value`` is an integer >= ``minimum`` (``TypeError`` for another
  type, ``ValueError`` for a smaller integer)."""
  if isinstance(value, jax.core.Tracer):
    return
  if (isinstance(value, (jax.Array, np.ndarray)) and value.ndim == 0
      and np.issubdtype(value.dtype, np.integer)):
    value = int(value)  # inject_hyperparams stores integer hyperparameters as arrays
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    shown = repr(value) if isinstance(value, (bool, float, np.number)) else _kind(value)
    raise HyperparameterTypeError(
        f"{owner}: {name} must be an integer >= {minimum}, got {shown}")
  if value < minimum:
    raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")


def transform(owner: str, name: str, value: Any) -> None:
  """Raises ``TypeError`` unless ``value`` is a gradient transformation (anything with
  callable ``init`` and ``update``, so Optax's are accepted), with a hint when a
  factory was passed uncalled."""
  if callable(getattr(value, "init", None)) and callable(getattr(value, "update", None)):
    return
  if callable(value):
    called = getattr(value, "__name__", "the factory")
    raise HyperparameterTypeError(
        f"{owner}: {name} must be a gradient transformation, got the function {called}; "
        f"call it first, e.g. {called}(...) (gtx.adam is a factory, gtx.adam(1e-3) a "
        "transformation)")
  raise HyperparameterTypeError(
      f"{owner}: {name} must be a gradient transformation (with init and "
                  f"update), got {_kind(value)}")


@dataclasses.dataclass(frozen=True)
class Spec:
  """A parsed hyperparameter spec; ``check`` raises for a value it does not allow."""

  text: str
  kind: str
  argument: Any = None
  optional: bool = False

  @property
  def is_real(self) -> bool:
    return self.kind == "real"

  def check(self, owner: str, name: str, value: Any) -> None:
    if value is None and self.optional:
      return
    if self.kind == "real":
      real(owner, name, value, self.argument)
    elif self.kind == "int":
      integer(owner, name, value, self.argument)
    elif self.kind == "bool":
      if not isinstance(value, (bool, np.bool_)) and not isinstance(value, jax.core.Tracer):
        raise HyperparameterTypeError(
            f"{owner}: {name} must be True or False, got {_kind(value)}")
    elif self.kind == "dtype":
      try:
        np.dtype(value) if not hasattr(value, "dtype") else np.dtype(value.dtype)
      except TypeError:
        raise HyperparameterTypeError(
            f"{owner}: {name} must be a dtype (e.g. jnp.bfloat16), got "
            f"{_kind(value)}") from None
    elif self.kind == "transform":
      transform(owner, name, value)
    elif self.kind == "callable":
      if not callable(value):
        raise HyperparameterTypeError(
            f"{owner}: {name} must be callable, got {_kind(value)}")
    elif self.kind == "choice":
      if not isinstance(value, str) or value not in self.argument:
        allowed = ", ".join(repr(c) for c in self.argument)
        if self.optional:
          allowed += " or None"
        raise ValueError(f"{owner}: {name} must be one of {allowed}, got {value!r}")


@functools.lru_cache(maxsize=None)
def parse_spec(text: str) -> Spec:
  """``"[0, 1) | None"`` -> ``Spec(kind="real", argument="[0, 1)", optional=True)``."""
  body, optional = text.strip(), False
  if body.endswith("| None"):
    body, optional = body[:-len("| None")].strip(), True
  if body[:1] in "[(":
    _parse(body)
    return Spec(text, "real", body, optional)
  if body.startswith("int >="):
    return Spec(text, "int", int(body[len("int >="):]), optional)
  if body.startswith("{") and body.endswith("}"):
    choices = tuple(c.strip().strip("'\"") for c in body[1:-1].split(","))
    return Spec(text, "choice", choices, optional)
  if body in ("bool", "dtype", "transform", "callable", "any"):
    return Spec(text, body, None, optional)
  raise ValueError(f"malformed hyperparameter spec {text!r}")


def bind(owner: str, signature: inspect.Signature, args: tuple[Any, ...],
         kwargs: dict[str, Any]) -> inspect.BoundArguments:
  """``signature.bind`` whose errors name ``owner`` and list the parameters."""
  try:
    bound = signature.bind(*args, **kwargs)
  except TypeError as error:
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD
                    for p in signature.parameters.values())
    unexpected = [k for k in kwargs if k not in signature.parameters]
    names = ", ".join(signature.parameters)
    if unexpected and not takes_any:
      raise TypeError(f"{owner}: unexpected keyword argument {unexpected[0]!r}; "
                      f"{owner} takes ({names})") from None
    raise TypeError(f"{owner}: {error}; {owner} takes ({names})") from None
  bound.apply_defaults()
  return bound
