"""Momentum and bias correction.

``add_momentum`` keeps a trace of past updates (heavy ball, Polyak 1964; Nesterov 1983;
as an exponential moving average with ``ema=True``); ``bias_correction`` removes the bias
towards zero of an EMA started at zero (Kingma & Ba 2015, §3). Together they form Adam's
first moment: ``chain(add_momentum(b1, ema=True), bias_correction(b1))``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.adam import bias_corrections
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.tree.casting import tree_zeros_like


class AddMomentumState(NamedTuple):
  trace: base.PyTree


@hyperparameters(decay="[0, 1]", nesterov="bool", ema="bool",
                 accumulator_dtype="dtype | None")
def add_momentum(decay: float = 0.9, *, nesterov: bool = False, ema: bool = False,
                 accumulator_dtype: Any = None) -> base.GradientTransformation:
  """A momentum trace of the updates.

  Heavy ball: ``m = decay*m + u``, emits ``m`` (Optax's ``trace``); with ``nesterov=True``
  emits ``u + decay*m``. With ``ema=True`` the trace is an exponential moving average,
  ``m = decay*m + (1-decay)*u``, and Nesterov emits ``(1-decay)*u + decay*m`` (Optax's
  ``ema`` without debiasing; follow with :func:`bias_correction` to debias).

  Args:
    decay: the trace's decay rate, in [0, 1].
    nesterov: emit the Nesterov look-ahead instead of the trace.
    ema: average instead of sum.
    accumulator_dtype: dtype to store the trace in (default: the params').
  """
  accumulator_dtype = None if accumulator_dtype is None else jnp.dtype(accumulator_dtype)

  def rule(u, m, *, decay):
    m = (1 - decay) * u + decay * m if ema else u + decay * m
    if nesterov:
      return ((1 - decay) * u + decay * m if ema else u + decay * m), m
    return m, m

  return leafwise("add_momentum", rule, state=AddMomentumState,
                  init=lambda p: tree_zeros_like(p, accumulator_dtype),
                  hyperparams=dict(decay=decay))


class BiasCorrectionState(NamedTuple):
  count: jax.Array


@hyperparameters(decay="[0, 1)")
def bias_correction(decay: float) -> base.GradientTransformation:
  """Divides ``u`` by ``1 - decay**t``, ``t`` counting this transform's calls from 1."""
  return leafwise("bias_correction", lambda u, *, c: u / c, state=BiasCorrectionState,
                  scalars=lambda count: bias_corrections(count, c=decay))
