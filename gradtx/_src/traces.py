"""Optax's names for momentum traces: ``trace`` and ``ema``.

Both are :func:`~gradtx.add_momentum` (and, for a debiased ``ema``, followed by
:func:`~gradtx.bias_correction`) under Optax's state classes, so that code that reads
``state.trace`` or ``state.ema`` keeps working; the per-array rules are those two
transforms', not copies of them::

  trace:  t = decay * t + u,              emits t  (u + decay * t with nesterov)
  ema:    m = decay * m + (1 - decay) * u, emits m / (1 - decay**k) (debias) or m

with ``k`` the number of updates so far, this one included.

Reference: Optax's ``trace`` and ``ema`` (same signatures, state fields and numerics).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from gradtx._src import base
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.momentum import (AddMomentumState, BiasCorrectionState, add_momentum,
                                  bias_correction)


def with_state_class(tx: base.GradientTransformation, outer: Callable[[Any], Any],
                     inner: Callable[[Any], Any]) -> base.GradientTransformation:
  """``tx`` with its state presented differently: ``outer(tx_state)`` is what ``init``
  and ``update`` return, ``inner(state)`` what ``tx`` is given back."""

  def init(params):
    return outer(tx.init(params))

  def update(updates, state, params=None, **extra_args):
    updates, tx_state = tx.update(updates, inner(state), params, **extra_args)
    return updates, outer(tx_state)

  return base.GradientTransformation(init, update)


class TraceState(NamedTuple):
  """State of :func:`trace`: the momentum trace, per param."""

  trace: base.Params


@hyperparameters(decay="[0, 1]", nesterov="bool", accumulator_dtype="dtype | None")
def trace(decay: float, nesterov: bool = False,
          accumulator_dtype: Any = None) -> base.GradientTransformation:
  """A trace of past updates (heavy-ball momentum, Polyak 1964)::

    t = decay * t + u,   emits t, or u + decay * t with ``nesterov``

  :func:`~gradtx.add_momentum` with Optax's state class.

  Args:
    decay: the trace's decay rate, in [0, 1].
    nesterov: emit Nesterov's look-ahead ``u + decay * t`` (Sutskever et al. 2013).
    accumulator_dtype: dtype the trace is stored in (default: the params').
  """
  return with_state_class(
      add_momentum(decay, nesterov=nesterov, accumulator_dtype=accumulator_dtype),
      outer=lambda s: TraceState(trace=s.trace),
      inner=lambda s: AddMomentumState(trace=s.trace))


class EmaState(NamedTuple):
  """State of :func:`ema`.

  Attributes:
    count: updates so far (int32).
    ema: the (biased) moving average, per param.
  """

  count: jax.Array
  ema: base.Params


class _Count(NamedTuple):
  count: jax.Array


def _count() -> base.GradientTransformation:
  """Passes updates through and counts them (``ema``'s count without debiasing)."""
  return leafwise("ema", lambda u: u, state=_Count)


@hyperparameters(decay="[0, 1)", debias="bool", accumulator_dtype="dtype | None")
def ema(decay: float, debias: bool = True,
        accumulator_dtype: Any = None) -> base.GradientTransformation:
  """An exponential moving average of past updates::

    m = decay * m + (1 - decay) * u,   emits m / (1 - decay**k) if debias, else m

  ``k`` counts the updates, this one included: dividing by ``1 - decay**k`` removes the
  bias towards the zero ``m`` starts at (Kingma & Ba 2015, section 3). It is
  ``chain(add_momentum(decay, ema=True), bias_correction(decay))`` under Optax's state
  class ``EmaState(count, ema)``.

  Args:
    decay: the average's decay rate, in [0, 1) (1 would keep ``m`` at zero, and
      debiasing would divide by zero).
    debias: divide by ``1 - decay**k``.
    accumulator_dtype: dtype the average is stored in (default: the params').
  """
  average = add_momentum(decay, ema=True, accumulator_dtype=accumulator_dtype)
  counted = bias_correction(decay) if debias else _count()
  state_class = BiasCorrectionState if debias else _Count
  return with_state_class(
      chain(average, counted),
      outer=lambda s: EmaState(count=s[1].count, ema=s[0].trace),
      inner=lambda s: (AddMomentumState(trace=s.ema), state_class(count=s.count)))
