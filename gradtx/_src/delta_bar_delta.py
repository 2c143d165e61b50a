"""Local gains: a learning rate per weight, adapted from the sign agreement of its
gradients (Jacobs 1988, "Increased Rates of Convergence Through Learning Rate
Adaptation", the delta-bar-delta rule).

Each weight keeps a gain and an exponential trace ``gbar`` of its past gradients. Where
this step's gradient agrees in sign with the trace the weight has been moving steadily,
and its gain grows linearly (``+increment``); where it disagrees the weight has
overshot, and its gain shrinks geometrically (``*decay``). Jacobs' reasons: linear
growth keeps a gain from growing too fast, geometric shrinking lets it fall quickly and
keeps it positive.

Delta-bar-delta and Rprop (``rprop.py``, Riedmiller & Braun 1993) are the sign-based
adaptive family: both adapt one step size per weight from sign agreement. Rprop compares
with the previous gradient alone and steps by ``step * sign(g)``; delta-bar-delta compares
with a smoothed trace and scales the gradient itself by its gain.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, validation
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import scale_by_learning_rate
from gradtx._src.tree.casting import tree_full_like, tree_zeros_like
from gradtx._src.tree.math import ema


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


GAIN_SPECS = dict(increment="[0, inf)", decay="(0, 1]", theta="[0, 1)")


@hyperparameters(**GAIN_SPECS, min_gain="(0, inf)", max_gain="(0, inf]")
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
  validation.ordered("scale_by_local_gain", "min_gain", min_gain, "max_gain", max_gain)

  def init(p):
    return (tree_full_like(p, 1, jnp.promote_types(jnp.result_type(p), jnp.float32)),
            tree_zeros_like(p))

  def rule(u, gain, gbar, *, increment, decay, theta, min_gain, max_gain):
    agreement = gbar * u
    gain = jnp.where(agreement > 0, gain + increment,
                     jnp.where(agreement < 0, gain * decay, gain))
    gain = jnp.clip(gain, min_gain, max_gain)
    return gain * u, gain, ema(theta, gbar, u)

  return leafwise(
      "scale_by_local_gain", rule, state=ScaleByLocalGainState, init=init,
      hyperparams=dict(increment=increment, decay=decay, theta=theta, min_gain=min_gain,
                       max_gain=max_gain))


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", **GAIN_SPECS)
def delta_bar_delta(learning_rate: base.ScalarOrSchedule, increment: float = 0.05,
                    decay: float = 0.95, theta: float = 0.7) -> base.GradientTransformation:
  """Delta-bar-delta (Jacobs 1988): gradient descent with a gain per weight.

  ``p -= lr * gain * g``, each ``gain`` adapted by :func:`scale_by_local_gain`:
  ``+increment`` where ``g`` agrees in sign with the trace
  ``gbar = theta*gbar + (1-theta)*g`` of earlier gradients, ``*decay`` where it
  disagrees, within ``[1e-3, 100]``. Jacobs' per-weight learning rate is ``lr * gain``,
  his ``kappa`` is ``lr * increment`` and his ``phi`` is ``1 - decay``.
  """
  return chain(scale_by_local_gain(increment, decay, theta),
               scale_by_learning_rate(learning_rate))
