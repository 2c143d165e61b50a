"""Warmup schedules: a linear warmup, then a constant, or a constant and a cooldown.

A schedule is ``fn(count) -> value`` (see :mod:`gradtx._src.schedules`): pure, jit-safe,
elementwise on an array of counts, float32 (float64 under ``jax_enable_x64``).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gradtx._src.base import Schedule
from gradtx._src.cyclic_schedules import as_float
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.schedules import linear_schedule


@hyperparameters(warmup_steps="[0, inf)", schedules=False)
def warmup_constant_schedule(init_value: Any, peak_value: Any, warmup_steps: int
                             ) -> Schedule:
  """Linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps``, then
  ``peak_value`` (Optax numerics): ``I + (P - I) * min(t, W) / W``.

  :func:`linear_schedule` from ``init_value`` to ``peak_value``; as there (and in Optax),
  ``warmup_steps=0`` gives ``init_value`` at every step.
  """
  return linear_schedule(init_value, peak_value, warmup_steps)


_COOLDOWNS = {
    "linear": lambda x: 1 - x,
    "cosine": lambda x: (1 + jnp.cos(jnp.pi * x)) / 2,
    "sqrt": lambda x: 1 - jnp.sqrt(x),
}


@hyperparameters(warmup_steps="[0, inf)", stable_steps="[0, inf)", decay_steps="[0, inf)",
                 decay_type="{'cosine', 'linear', 'sqrt'}", schedules=False)
def warmup_stable_decay_schedule(peak_value: Any, warmup_steps: int, stable_steps: int,
                                 decay_steps: int, end_value: Any = 0.0,
                                 decay_type: str = "cosine") -> Schedule:
  """Warmup-stable-decay ("trapezoidal"): a linear warmup from 0 to ``peak_value`` (P),
  a constant stretch at P, and a cooldown to ``end_value`` (E).

  With ``W = warmup_steps``, ``S = stable_steps``, ``D = decay_steps``::

    0 <= t < W:              P * t / W
    W <= t < W + S:          P
    W + S <= t < W + S + D:  E + (P - E) * f((t - W - S) / D)
    t >= W + S + D:          E

  where the cooldown shape ``f`` falls from 1 at ``x = 0`` to 0 at ``x = 1``:
  ``f(x) = (1 + cos(pi x)) / 2`` (``'cosine'``), ``1 - x`` (``'linear'``) or
  ``1 - sqrt(x)`` (``'sqrt'``, the paper's "1-sqrt" cooldown, its best). A stretch of
  no steps is skipped (``W = 0`` starts at P, ``D = 0`` drops to E at ``W + S``).

  Reference: Hägele, Bakouch, Kosson, Ben Allal, Von Werra & Jaggi, Scaling Laws and
  Compute-Optimal Training Beyond Fixed Training Durations, NeurIPS 2024
  (arXiv:2405.18392).
  """
  cooldown = _COOLDOWNS[decay_type]
  decay_begin = warmup_steps + stable_steps
  decay_end = decay_begin + decay_steps

  def schedule(count):
    count = jnp.asarray(count)
    value = jnp.where(count < decay_end, peak_value, end_value)
    if decay_steps > 0:
      x = jnp.clip((count - decay_begin) / decay_steps, 0.0, 1.0)
      decaying = end_value + (peak_value - end_value) * cooldown(x)
      value = jnp.where((count >= decay_begin) & (count < decay_end), decaying, value)
    if warmup_steps > 0:
      value = jnp.where(count < warmup_steps, peak_value * count / warmup_steps, value)
    return as_float(value, count)

  return schedule
