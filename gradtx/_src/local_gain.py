"""Local gains: a learning rate per weight, adapted from the sign agreement of its
gradients (Jacobs 1988, "Increased Rates of Convergence Through Learning Rate
Adaptation", the delta-bar-delta rule).

Each weight keeps a gain and an exponential trace ``gbar`` of its past gradients. Where
this step's gradient agrees in sign with the trace the weight has been moving steadily,
and its gain grows linearly (``+increment``); where it disagrees the weight has
overshot, and its gain shrinks geometrically (``*decay``). Jacobs' reasons: linear
growth keeps a gain from growing too fast, geometric shrinking lets it fall quickly and
keeps it positive.

Delta-bar-delta and Rprop (``sign.py``, Riedmiller & Braun 1993) are the sign-based
adaptive family: both adapt one step size per weight from sign agreement. Rprop compares
with the previous gradient alone and steps by ``step * sign(g)``; delta-bar-delta compares
with a smoothed trace and scales the gradient itself by its gain.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src.hyperparams import accepts_schedules
from gradtx._src import adaptive, base, validation
from gradtx._src.combine import chain
from gradtx._src.scaling import scale_by_learning_rate


class ScaleByLocalGainState(NamedTuple):
  """State of :func:`scale_by_local_gain`.

  Attributes:
    gain: the gain of each weight (from 1), in the params' dtype or float32, whichever is
      wider: in bfloat16 an increment of 0.05 is lost once the gain reaches 16.
    trace: ``gbar``, the exponential trace of the updates (Jacobs' delta-bar), in the
      params' dtype.
  """

  gain: base.PyTree
  trace: base.PyTree


def _check_gain_family(owner: str, increment: Any, decay: Any, theta: Any) -> None:
  validation.check(owner, increment=(increment, "[0, inf)"), decay=(decay, "(0, 1]"),
                   theta=(theta, "[0, 1)"))


@accepts_schedules()
def scale_by_local_gain(increment: float = 0.05, decay: float = 0.95, theta: float = 0.7,
                        min_gain: float = 1e-3,
                        max_gain: float = 100.0) -> base.GradientTransformation:
  """Delta-bar-delta's per-weight gains (Jacobs 1988).

  Per weight, with ``gbar`` the trace from before this step::

    gain = gain + increment   where gbar * u > 0
    gain = gain * decay       where gbar * u < 0   (unchanged where it is 0)
    gain = clip(gain, min_gain, max_gain)
    gbar = theta*gbar + (1-theta)*u

  and emits ``gain * u`` with the new gain. Gains start at 1 and the trace at 0, so the
  first step emits ``u``. Jacobs writes the decrement as ``-phi*gain``: ``decay = 1-phi``.
  The defaults are this library's (the paper tunes ``kappa``, ``phi``, ``theta`` per
  task); the clamp is not in the paper, it keeps a weight from freezing or exploding on a
  long run of disagreements or agreements.

  Args:
    increment: added to a gain where the signs agree (``kappa``, relative to the learning
      rate applied after), >= 0.
    decay: multiplies a gain where the signs disagree (``1 - phi``), in (0, 1].
    theta: the trace's decay, in [0, 1).
    min_gain, max_gain: the bounds of the gains, ``0 < min_gain <= max_gain``.
  """
  _check_gain_family("scale_by_local_gain", increment, decay, theta)
  validation.check("scale_by_local_gain", min_gain=(min_gain, "(0, inf)"),
                   max_gain=(max_gain, "(0, inf]"))
  validation.ordered("scale_by_local_gain", "min_gain", min_gain, "max_gain", max_gain)

  def init(params):

    def ones(p):
      return base.full_like(p, 1, jnp.promote_types(jnp.result_type(p), jnp.float32))

    return ScaleByLocalGainState(gain=jax.tree.map(ones, params),
                                 trace=adaptive._zeros_like(params))

  def rule(u, gain, gbar, increment, decay, theta, min_gain, max_gain):
    agreement = gbar * u
    gain = jnp.where(agreement > 0, gain + increment,
                     jnp.where(agreement < 0, gain * decay, gain))
    gain = jnp.clip(gain, min_gain, max_gain)
    return gain * u, gain, adaptive.ema(theta, gbar, u)

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    updates, gain, trace = base.map_leaves(
        "scale_by_local_gain", rule, updates, state.gain, state.trace, increment=increment,
        decay=decay, theta=theta, min_gain=min_gain, max_gain=max_gain)
    return updates, ScaleByLocalGainState(gain, trace)

  return base.GradientTransformation(init, update)


@accepts_schedules(native=("learning_rate",))
def delta_bar_delta(learning_rate: base.ScalarOrSchedule, increment: float = 0.05,
                    decay: float = 0.95, theta: float = 0.7) -> base.GradientTransformation:
  """Delta-bar-delta (Jacobs 1988): gradient descent with a gain per weight.

  ``p -= lr * gain * g``, each ``gain`` adapted by :func:`scale_by_local_gain`:
  ``+increment`` where ``g`` agrees in sign with the trace
  ``gbar = theta*gbar + (1-theta)*g`` of earlier gradients, ``*decay`` where it
  disagrees, within ``[1e-3, 100]``. Jacobs' per-weight learning rate is ``lr * gain``,
  his ``kappa`` is ``lr * increment`` and his ``phi`` is ``1 - decay``.
  """
  _check_gain_family("delta_bar_delta", increment, decay, theta)
  validation.check("delta_bar_delta", learning_rate=(learning_rate, "[0, inf)"))
  return chain(scale_by_local_gain(increment, decay, theta),
               scale_by_learning_rate(learning_rate))
