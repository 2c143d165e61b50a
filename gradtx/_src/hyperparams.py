"""Hyperparameters as state: read, log and overwrite them between steps."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._src import base, validation
from gradtx._src.tree.math import safe_increment, zero_count


class InjectHyperparamsState(NamedTuple):
  """State of :func:`inject_hyperparams`.

  Attributes:
    count: steps taken (the count schedules are evaluated at).
    hyperparams: the current value of each numeric hyperparameter, by name.
    inner_state: the state of the transform the factory built.
  """

  count: jax.Array
  hyperparams: dict[str, jax.Array]
  inner_state: base.OptState

  def with_hyperparams(self, **values: Any) -> InjectHyperparamsState:
    """A copy of the state with ``values`` written into ``hyperparams``.

    Each value becomes an array of the dtype and shape of the one it replaces, so a
    jitted step sees the same input types and is not compiled again:
    ``state = state.with_hyperparams(learning_rate=1e-4)``. (A Python float assigned
    into the dict directly is weakly typed, and a jitted step compiles once more for
    it; see :func:`inject_hyperparams`.) The state itself is not modified.

    Raises:
      ValueError: a name is not one of ``hyperparams``.
    """
    unknown = sorted(set(values) - set(self.hyperparams))
    if unknown:
      raise ValueError(f"with_hyperparams: {unknown} are not among this state's "
                       f"hyperparameters {sorted(self.hyperparams)}")
    hyperparams = dict(self.hyperparams)
    for name, value in values.items():
      old = jnp.asarray(self.hyperparams[name])
      hyperparams[name] = jnp.broadcast_to(jnp.asarray(value, old.dtype), old.shape)
    return self._replace(hyperparams=hyperparams)


def _as_hyperparam(value: Any, dtype: Any) -> Any:
  """Floating values become arrays of ``dtype``; integers keep their type."""
  array = jnp.asarray(value)
  if jnp.issubdtype(array.dtype, jnp.floating):
    return array.astype(dtype)
  return array


def split_hyperparams(owner: str, inner_factory: Callable[..., Any],
                      static_args: Union[str, Iterable[str]],
                      as_schedule: Callable[[Any], Any]) -> Callable[..., tuple[dict, ...]]:
  """The argument classification :func:`inject_hyperparams` and
  ``inject_stateful_hyperparams`` share.

  Checks that ``static_args`` names parameters of ``inner_factory`` and returns
  ``split(*args, **kwargs) -> (arguments, schedules, numbers, others)``: the call's
  arguments with defaults applied, divided into schedules (``as_schedule(value)``, where
  it is not None), numeric hyperparameters, and what passes to the factory unchanged
  (booleans, the names in ``static_args``, anything else).
  """
  static_args = {static_args} if isinstance(static_args, str) else set(static_args)
  signature = inspect.signature(inner_factory)
  if not static_args.issubset(signature.parameters):
    raise ValueError(f"{owner}: static_args {sorted(static_args)} are not all "
                     f"parameters of {inner_factory.__name__}: {list(signature.parameters)}")

  def split(*args, **kwargs):
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    schedules, numbers, others = {}, {}, {}
    for name, value in bound.arguments.items():
      static = name in static_args or isinstance(value, bool)
      schedule = None if static else as_schedule(value)
      if schedule is not None:
        schedules[name] = schedule
      elif not static and isinstance(value, (int, float, jax.Array, np.ndarray, np.number)):
        numbers[name] = value
      else:
        others[name] = value
    return bound.arguments, schedules, numbers, others

  return split


def _plain_schedule(value: Any) -> Any:
  """``value`` if it is a schedule (a callable that is not a class), else None."""
  return value if callable(value) and not isinstance(value, type) else None


def inject_hyperparams(
    inner_factory: Callable[..., base.GradientTransformation],
    static_args: Union[str, Iterable[str]] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., base.GradientTransformation]:
  """Wraps a transform factory so its numeric hyperparameters live in the state.

  ``inject_hyperparams(gtx.adam)(learning_rate=1e-3)`` keeps ``learning_rate``, ``b1``,
  ``b2``, ... in ``state.hyperparams`` as arrays, where they can be read (for logging) and
  overwritten between steps without recompiling a jitted step, as long as the new value
  has the stored dtype: ``state = state.with_hyperparams(learning_rate=1e-4)``, or
  ``state.hyperparams["learning_rate"] = jnp.float32(1e-4)`` (``jnp.float64`` under x64).
  A Python float (or ``jnp.asarray(1e-4)``) is *weakly typed*, which ``jax.jit`` keys its
  cache on: assigned as it is, the step is compiled once more (once per set of weakly
  typed entries: each update stores the values back in their strong dtype, so a loop
  that assigns Python floats to the learning rate compiles twice in all). A
  hyperparameter given as a schedule is evaluated at the step count every step and its
  current value is stored; overwriting it has no effect, as in Optax.
  Booleans, strings, dtypes and the names in ``static_args`` are passed to the factory
  unchanged; a callable that is not a schedule (a mask function, say) must be named in
  ``static_args``.

  Floating hyperparameters are held in float32 (float64 under ``jax_enable_x64``), or in
  ``hyperparam_dtype``, never in a low-precision params dtype: Adam's ``b2=0.999`` would
  round to 1.0 in bfloat16.
  """
  split = split_hyperparams("inject_hyperparams", inner_factory, static_args,
                            _plain_schedule)

  @functools.wraps(inner_factory)
  def wrapped(*args, **kwargs) -> base.GradientTransformation:
    arguments, schedules, numbers, others = split(*args, **kwargs)
    # Validate the concrete values once, with the factory's own messages.
    inner_factory(**arguments)
    dtype = hyperparam_dtype or jnp.result_type(float)

    def current(hyperparams, count):
      values = {k: _as_hyperparam(v, dtype) for k, v in hyperparams.items()}
      values.update({k: _as_hyperparam(f(count), dtype) for k, f in schedules.items()})
      return values

    def init(params):
      count = zero_count()
      hyperparams = current(numbers, count)
      inner = inner_factory(**others, **hyperparams)
      return InjectHyperparamsState(count, hyperparams, inner.init(params))

    def update(updates, state, params=None, **extra_args):
      hyperparams = current(state.hyperparams, state.count)
      inner = inner_factory(**others, **hyperparams)
      updates, inner_state = base.call_update(inner, updates, state.inner_state, params,
                                              extra_args)
      return updates, InjectHyperparamsState(safe_increment(state.count), hyperparams,
                                             inner_state)

    return base.GradientTransformation(init, update)

  return wrapped


def hyperparameters(*, native: Iterable[str] = (), schedules: bool = True, **specs: str):
  """Declares a transform factory's hyperparameters: checked at construction, and
  scheduled.

  Each keyword names a parameter and its spec (see :mod:`gradtx._src.validation`):
  ``"[0, 1)"`` a real number in an interval, ``"int >= 1"``, ``"bool"``, ``"dtype"``,
  ``"transform"``, ``"callable"``, ``"{'one', 'keep'}"``, each optionally ``"| None"``.
  Parameters not named are passed as they are. On every call the arguments are bound
  (a keyword mistake names the factory and lists its parameters) and checked, raising
  ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of range,
  naming the factory, the parameter and what is allowed.

  Every real hyperparameter may also be a schedule of the step count. Those named in
  ``native`` take schedules themselves (a learning rate); if any other is given one,
  the transform is built through :func:`inject_hyperparams` with the schedules alone
  injected: each step evaluates them at the step count, and their current values
  appear in ``state.hyperparams``. Without schedules the factory is called as it is, so
  its state stays exactly Optax's. ``schedules=False`` (for functions that build no
  transform) rejects a callable given for a number::

    @hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", b1="[0, 1)")
    def my_adam(learning_rate, b1=0.9): ...
  """
  native = set(native)
  parsed = {name: validation.parse_spec(spec) for name, spec in specs.items()}

  def decorate(factory):
    signature = inspect.signature(factory)
    owner = factory.__name__
    undeclared = set(specs) - set(signature.parameters)
    if undeclared:
      raise TypeError(f"hyperparameters: {sorted(undeclared)} are not parameters of {owner}")

    @functools.wraps(factory)
    def wrapped(*args, **kwargs):
      bound = validation.bind(owner, signature, args, kwargs)
      for name, spec in parsed.items():
        value = bound.arguments[name]
        if not schedules and spec.is_real and validation.is_schedule(value):
          raise validation.HyperparameterTypeError(
              f"{owner}: {name} must be a real number in {spec.argument}, got {value!r}")
        spec.check(owner, name, value)
      scheduled = [name for name, value in bound.arguments.items()
                   if name in parsed and parsed[name].is_real and name not in native
                   and validation.is_schedule(value)]
      if not scheduled:
        return factory(*bound.args, **bound.kwargs)
      # Only the schedules become state; numbers stay Python floats, so that
      # `1 - b2` is still computed in double precision as without schedules.
      fixed = set(bound.arguments) - set(scheduled)
      return inject_hyperparams(factory, static_args=fixed)(**bound.arguments)

    wrapped.hyperparameter_specs = dict(specs)
    return wrapped

  return decorate
