"""Reduce on plateau: shrink the step when the loss stops improving.

The rule of Keras' and PyTorch's ``ReduceLROnPlateau``, as a transform that reads the loss
from the ``value=`` extra argument and multiplies the updates by a scale, itself multiplied
by ``factor`` after ``patience`` evaluations without improvement. Signature, defaults,
state and step counting are Optax's (``optax.contrib.reduce_on_plateau``), with one
correction for negative losses, below.

An improvement is a new (averaged) loss ``v`` below the best one by more than the
tolerances: ``v < best - (rtol * |best| + atol)``. For a positive ``best`` that is Optax's
``v < (1 - rtol) * best - atol`` and torch's ``threshold_mode='rel'`` test ``v < best *
(1 - threshold)``; both of these are wrong-signed for a negative ``best`` (``(1 - rtol) *
best`` lies above ``best``), so a flat or slightly worse negative loss would count as
improving and the scale would never shrink. For a negative ``best`` the test here is
``v < (1 + rtol) * best - atol``, which is torch's ``mode='max'`` test on ``-v``: a loss
going from -1.0 to -1.5 improves, one going from -1.0 to -0.99995 does not.

Patience counts as Optax does: the scale shrinks on the ``patience``-th evaluation in a
row without improvement (torch's ``patience=p`` waits for ``p + 1``). ``cooldown``
evaluations after each reduction ignore plateaus, as in both.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import map_leaves
from gradtx._src.tree.casting import widest_float_dtype
from gradtx._src.tree.math import safe_increment, tree_where, zero_count


class ReduceOnPlateauState(NamedTuple):
  """State of :func:`reduce_on_plateau` (Optax's fields).

  Attributes:
    scale: the factor the updates are multiplied by, 1 at first.
    best_value: the best averaged loss so far (``inf`` before the first evaluation).
    plateau_count: evaluations in a row without improvement (reset by a reduction).
    cooldown_count: evaluations left in which plateaus are ignored.
    count: losses accumulated towards the next evaluation (reset to 0 by it).
    avg_value: their running mean.
  """

  scale: jax.Array
  best_value: jax.Array
  plateau_count: jax.Array
  cooldown_count: jax.Array
  count: jax.Array
  avg_value: jax.Array


@hyperparameters(factor="(0, 1)", patience="int >= 1", rtol="[0, 1]", atol="[0, inf)",
                 cooldown="int >= 0", accumulation_size="int >= 1", min_scale="[0, 1]")
def reduce_on_plateau(factor: float = 0.1, patience: int = 10, rtol: float = 1e-4,
                      atol: float = 0.0, cooldown: int = 0, accumulation_size: int = 1,
                      min_scale: float = 0.0) -> base.GradientTransformation:
  """Multiplies the updates by a scale that shrinks when the loss stops improving.

  Each ``update(updates, state, params, value=loss)`` adds ``loss`` to a running mean;
  every ``accumulation_size`` calls the mean ``v`` is evaluated::

    improved = v < best - (rtol * |best| + atol)      (never for a NaN or infinite v)
    best     = v if improved else best
    plateau  = 0 if improved else plateau + 1
    if cooldown_count > 0:   cooldown_count -= 1; plateau = 0
    elif plateau >= patience: scale = max(factor * scale, min_scale); plateau = 0;
                              cooldown_count = cooldown

  and the updates are multiplied by the scale after this call's evaluation. A NaN or
  infinite mean loss counts as an evaluation without improvement, so a diverging run has
  its step shrunk (Optax would take a loss of ``-inf`` as the best ever, and stop).
  Numerics are Optax's for positive losses, and correct for negative ones (module
  docstring). The scale and the loss statistics are held in the params' widest floating
  dtype, at least float32.

  Args:
    factor: the scale is multiplied by ``factor``, in (0, 1), at each reduction.
    patience: evaluations in a row without improvement that trigger a reduction.
    rtol: relative tolerance, in [0, 1], of what counts as an improvement.
    atol: absolute tolerance, >= 0; with ``rtol=atol=0`` any decrease improves.
    cooldown: evaluations after a reduction during which plateaus are ignored.
    accumulation_size: losses averaged into one evaluation (a minibatch loss is noisy:
      average over many; a validation loss: 1).
    min_scale: the scale never goes below this, in [0, 1].

  Example::

    tx = gtx.chain(gtx.adam(1e-3), gtx.reduce_on_plateau(patience=5))
    updates, state = tx.update(grads, state, params, value=loss)
  """
  owner = "reduce_on_plateau"
  def init(params):
    dtype = widest_float_dtype(params)
    zero = zero_count()
    return ReduceOnPlateauState(scale=jnp.ones([], dtype),
                                best_value=jnp.full([], jnp.inf, dtype),
                                plateau_count=zero, cooldown_count=zero, count=zero,
                                avg_value=jnp.zeros([], dtype))

  def evaluate(state, v):
    """The state after evaluating the mean loss ``v`` (Optax's ``_update_scale``)."""
    best = state.best_value
    # Not `best - rtol*|best|`: for best > 0 this rounds exactly as Optax and torch do.
    threshold = jnp.where(best >= 0, (1 - rtol) * best, (1 + rtol) * best) - atol
    improved = jnp.isfinite(v) & (jnp.isinf(best) | (v < threshold))
    plateau = jnp.where(improved, 0, safe_increment(state.plateau_count))
    in_cooldown = state.cooldown_count > 0
    reduce = ~in_cooldown & (plateau >= patience)
    scale = jnp.where(reduce, jnp.maximum(state.scale * factor, min_scale), state.scale)
    cooldown_count = jnp.where(in_cooldown, state.cooldown_count - 1,
                               jnp.where(reduce, cooldown, 0))
    return ReduceOnPlateauState(
        scale=scale.astype(state.scale.dtype),
        best_value=jnp.where(improved, v, best).astype(best.dtype),
        plateau_count=jnp.where(in_cooldown | reduce, 0, plateau).astype(jnp.int32),
        cooldown_count=cooldown_count.astype(jnp.int32),
        count=jnp.zeros_like(state.count),
        avg_value=jnp.zeros_like(state.avg_value))

  def update(updates, state, params=None, *, value, **extra_args):
    del params, extra_args
    value = jnp.asarray(value)
    if value.ndim != 0:
      raise ValueError(f"{owner}: value must be the scalar loss, got shape {value.shape}")
    count = safe_increment(state.count)
    # Optax's running mean, so that the averages round as Optax's do.
    avg_value = ((state.count * state.avg_value + value.astype(state.avg_value.dtype))
                 / count).astype(state.avg_value.dtype)
    accumulating = state._replace(count=count, avg_value=avg_value)
    evaluated = evaluate(state, avg_value)
    state = tree_where(count >= accumulation_size, evaluated, accumulating)
    updates = map_leaves(owner, lambda u, scale: scale * u, updates, scale=state.scale)
    return updates, state

  return base.GradientTransformation(init, update)
