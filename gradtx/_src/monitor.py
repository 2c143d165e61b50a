"""Measurements of the updates, kept in the state for logging.

``snapshot`` stores one measurement of the updates as they pass; ``monitor`` stores
several, each a function of the updates or a transform whose output is the measurement
(``measure_with_ema``: a measurement averaged over steps). The updates pass through
unchanged. Read a measurement back with ``gtx.tree_utils.tree_get(state, name)``.

Reference: Optax's ``snapshot``, ``monitor`` and ``measure_with_ema`` (same signatures,
state fields and numerics). One departure, for ``monitor``: Optax's ``init`` leaves
``measurements`` empty, so the state changes structure at the first update and cannot
be a ``lax.scan`` or ``lax.while_loop`` carry, nor be restored from a checkpoint into a
freshly initialised state; here ``init`` holds zeros of each measurement's shape.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Union

import jax
import jax.numpy as jnp

from gradtx._src import base, validation
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.traces import ema

Measure = Callable[[base.Updates], base.PyTree]


class SnapshotState(NamedTuple):
  """State of :func:`snapshot`: ``{measure_name: measurement}``."""

  measurement: dict[str, Any]


def snapshot(measure_name: str, measure: Measure) -> base.GradientTransformation:
  """Stores ``measure(updates)`` in the state under ``measure_name``, and passes the
  updates on unchanged. ``init`` stores ``measure(params)``.

  Useful between members of a chain: ``chain(sgd(0.1, momentum=0.9),
  snapshot("norm", gtx.tree_utils.tree_norm), clip_by_global_norm(1.0))`` records the
  norm before clipping.

  Args:
    measure_name: the key of the measurement (``tree_get(state, measure_name)``).
    measure: a function of the updates returning a pytree of arrays.
  """
  if not isinstance(measure_name, str):
    raise TypeError(f"snapshot: measure_name must be a string, got {measure_name!r}")
  if not callable(measure):
    raise TypeError(f"snapshot: measure must be callable, got {measure!r}")

  def init(params):
    return SnapshotState({measure_name: measure(params)})

  def update(updates, state, params=None, **extra_args):
    del state, params, extra_args
    return updates, SnapshotState({measure_name: measure(updates)})

  return base.GradientTransformation(init, update)


class MonitorState(NamedTuple):
  """State of :func:`monitor`.

  Attributes:
    measurements: ``{name: the last measurement}`` (zeros of its shape after ``init``).
    measure_states: the state of each measuring transform, in the order of the names.
  """

  measurements: dict[str, base.PyTree]
  measure_states: tuple[base.OptState, ...]


def _as_transform(name: str, measure: Any) -> base.GradientTransformation:
  if callable(measure):
    return base.stateless(lambda updates, params: measure(updates))
  validation.transform("monitor", f"measures[{name!r}]", measure)
  return measure


def monitor(measures: Mapping[str, Union[base.GradientTransformation, Measure]]
            ) -> base.GradientTransformation:
  """Stores several measurements of the updates, and passes the updates on unchanged.

  Each measure is a function of the updates, or a transform whose output is the
  measurement (its state is kept, so a measurement can be averaged over steps: see
  :func:`measure_with_ema`). Each measuring transform gets the params and the extra
  arguments of ``update``.

  Args:
    measures: ``{name: measure}``.
  """
  if not isinstance(measures, Mapping):
    raise TypeError("monitor: measures must be a dict from name to a function of the "
                    f"updates or a transform, got {type(measures).__name__}")
  transforms = {name: _as_transform(name, m) for name, m in measures.items()}

  def measure_all(updates, states, params, extra_args):
    measured = [base.call_update(tx, updates, s, params, extra_args)
                for tx, s in zip(transforms.values(), states)]
    return ({name: m for name, (m, _) in zip(transforms, measured)},
            tuple(s for _, s in measured))

  def init(params):
    states = tuple(tx.init(params) for tx in transforms.values())
    shapes, _ = jax.eval_shape(lambda: measure_all(params, states, params, {}))
    measurements = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return MonitorState(measurements, states)

  def update(updates, state, params=None, **extra_args):
    measurements, states = measure_all(updates, state.measure_states, params, extra_args)
    return updates, MonitorState(measurements, states)

  return base.GradientTransformation(init, update)


def _as_float(tree: base.PyTree) -> base.PyTree:
  """Boolean and integer leaves as the default float dtype (the others unchanged)."""

  def cast(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.result_type(float))

  return jax.tree.map(cast, tree)


@hyperparameters(measure="callable", decay="[0, 1)", debias="bool",
                 accumulator_dtype="dtype | None")
def measure_with_ema(measure: Measure, decay: float, debias: bool = True,
                     accumulator_dtype: Any = None) -> base.GradientTransformation:
  """A measurement of the updates, averaged over steps: :func:`~gradtx.ema` of
  ``measure(updates)`` (its output is the average; use it inside :func:`monitor`)::

    m = decay * m + (1 - decay) * measure(u),   emits m / (1 - decay**k) if debias

  A boolean or integer measurement (``norm > threshold``, say) is averaged as a float,
  the fraction of steps it held (Optax's ``init`` keeps its dtype, which the first
  update changes to float).

  Args:
    measure: a function of the updates returning a pytree of arrays.
    decay: the average's decay rate, in [0, 1).
    debias: divide by ``1 - decay**k``, ``k`` counting the updates.
    accumulator_dtype: dtype the average is stored in (default: the measurement's).
  """
  average = ema(decay, debias, accumulator_dtype)
  measured = base.stateless(lambda updates, params: _as_float(measure(updates)))
  # The average is of measurements, so it is initialised from one (of the params).
  return chain(measured, average._replace(
      init=lambda params: average.init(_as_float(measure(params)))))
