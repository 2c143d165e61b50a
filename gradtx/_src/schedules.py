"""Schedules: a hyperparameter as a function of the step count.

A schedule is ``fn(count) -> value``, ``count`` an integer array counting steps from 0. It
is pure and jit-safe, works elementwise on an array of counts (and under ``vmap``), and
returns float32 (float64 under ``jax_enable_x64``) shaped like ``count``. Where Optax has
a schedule of the same name, signature, defaults and numerics are Optax's; the others
cite their source. Hyperparameters are checked at construction.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp

from gradtx._src import validation
from gradtx._src.base import Schedule
from gradtx._src.hyperparams import hyperparameters

_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def _as_float(value: Any, count: jax.Array) -> jax.Array:
  """``value`` broadcast to ``count``'s shape, in float32 (float64 under x64)."""
  value = jnp.asarray(value, jnp.result_type(float))
  return jnp.broadcast_to(value, jnp.broadcast_shapes(value.shape, jnp.shape(count)))


def constant_schedule(value: Any) -> Schedule:
  """``value`` at every step."""
  return lambda count: _as_float(value, count)


@hyperparameters(schedules=False, transition_steps="[0, inf)", transition_begin="[0, inf)")
def polynomial_schedule(init_value: Any, end_value: Any, power: Any, transition_steps: int,
                        transition_begin: int = 0) -> Schedule:
  """Polynomial transition from ``init_value`` (I) to ``end_value`` (E), as in Optax.

  ``I`` for ``t < B``; ``(I - E) * (1 - (t - B)/T)**power + E`` for ``B <= t < B + T``;
  ``E`` for ``t >= B + T``, with ``T = transition_steps`` and ``B = transition_begin``.
  ``transition_steps=0`` disables the transition (the value stays ``I``), as in Optax.
  """
  if transition_steps == 0:
    return constant_schedule(init_value)

  def schedule(count):
    count = jnp.asarray(count)
    steps = jnp.clip(count - transition_begin, 0, transition_steps)
    # Exactly 0 at the end: under jit XLA computes `steps / T` as `steps * (1/T)`, which
    # can miss 1 and leave, with power 0.5, the final value 1.5% above end_value.
    frac = jnp.where(steps < transition_steps, 1 - steps / transition_steps, 0.0)
    return _as_float((init_value - end_value) * frac**power + end_value, count)

  return schedule


@hyperparameters(schedules=False, transition_steps="[0, inf)", transition_begin="[0, inf)")
def linear_schedule(init_value: Any, end_value: Any, transition_steps: int,
                    transition_begin: int = 0) -> Schedule:
  """Linear transition: ``I + (E - I) * clip(t - B, 0, T) / T`` (Optax numerics).

  :func:`polynomial_schedule` with ``power=1``.
  """
  return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def piecewise_constant_schedule(init_value: Any,
                                boundaries_and_scales: Optional[dict[int, float]] = None
                                ) -> Schedule:
  """``init_value * prod(s_i for (b_i, s_i) in boundaries_and_scales if t >= b_i)``.

  Each scale is multiplied in from its boundary on (Optax numerics); scales must be >= 0.
  """
  items = sorted((boundaries_and_scales or {}).items())
  for boundary, scale in items:
    validation.in_interval("piecewise_constant_schedule",
                           f"boundaries_and_scales[{boundary}]", scale, "[0, inf)")

  def schedule(count):
    count = jnp.asarray(count)
    value = init_value
    for boundary, scale in items:
      before = jnp.maximum(0.0, jnp.sign(boundary - count))
      value = value * before + (1 - before) * scale * value
    return _as_float(value, count)

  return schedule


# Exponential decay's hyperparameters (also those of the decay after a warmup).
_DECAY = dict(transition_steps="(0, inf)", decay_rate="(0, inf)", transition_begin="[0, inf)")


@hyperparameters(schedules=False, **_DECAY)
def exponential_decay(init_value: Any, transition_steps: int, decay_rate: float,
                      transition_begin: int = 0, staircase: bool = False,
                      end_value: Optional[Any] = None) -> Schedule:
  """``init_value * decay_rate**p`` with ``p = (t - transition_begin) / transition_steps``.

  ``init_value`` before ``transition_begin``; with ``staircase=True``, ``p`` is floored so
  the value drops at discrete intervals. ``end_value`` bounds the value: from below when
  ``decay_rate < 1``, from above when ``decay_rate >= 1`` (growth). Optax numerics.
  """
  def schedule(count):
    count = jnp.asarray(count)
    elapsed = count - transition_begin
    p = elapsed / transition_steps
    if staircase:
      p = jnp.floor(p)
    value = jnp.where(elapsed <= 0, init_value, init_value * jnp.power(decay_rate, p))
    if end_value is not None:
      value = jnp.where(decay_rate < 1.0, jnp.maximum(value, end_value),
                        jnp.minimum(value, end_value))
    return _as_float(value, count)

  return schedule


@hyperparameters(schedules=False, decay_steps="(0, inf)")
def cosine_decay_schedule(init_value: Any, decay_steps: int, alpha: Any = 0.0,
                          exponent: Any = 1.0) -> Schedule:
  """``I * ((1 - alpha) * c**exponent + alpha)``, ``c = (1 + cos(pi * min(t, T)/T)) / 2``.

  ``T = decay_steps``; after ``T`` steps the value stays ``alpha * I``. Optax numerics.

  Reference: Loshchilov & Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts,
  ICLR 2017.
  """
  # A float avoids int32 overflow of `count / decay_steps` inside jit.
  decay_steps = float(decay_steps) if isinstance(decay_steps, int) else decay_steps

  def schedule(count):
    count = jnp.asarray(count)
    t = jnp.minimum(count, decay_steps)
    cosine = 0.5 * (1 + jnp.cos(jnp.pi * t / decay_steps))
    return _as_float(init_value * ((1 - alpha) * cosine**exponent + alpha), count)

  return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
  """``schedules[i](t - boundaries[i-1])`` for ``boundaries[i-1] <= t < boundaries[i]``.

  Each schedule sees the steps since its own start (Optax semantics).
  """
  if len(boundaries) != len(schedules) - 1:
    raise ValueError(f"join_schedules: boundaries must have len(schedules) - 1 = "
                     f"{len(schedules) - 1} entries, got {len(boundaries)}")

  def schedule(count):
    count = jnp.asarray(count)
    value = schedules[0](count)
    for boundary, later in zip(boundaries, schedules[1:]):
      value = jnp.where(count < boundary, value, later(count - boundary))
    return _as_float(value, count)

  return schedule


def _check_decay_steps(owner: str, warmup_steps: Any, decay_steps: Any) -> None:
  """``decay_steps`` is the total length, warmup included: the decay must last."""
  validation.in_interval(owner, "decay_steps - warmup_steps", decay_steps - warmup_steps,
                         "(0, inf)")


@hyperparameters(schedules=False, warmup_steps="[0, inf)")
def warmup_cosine_decay_schedule(init_value: Any, peak_value: Any, warmup_steps: int,
                                 decay_steps: int, end_value: Any = 0.0,
                                 exponent: Any = 1.0) -> Schedule:
  """Linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps``, then cosine
  decay to ``end_value`` (Optax numerics).

  ``decay_steps`` is the total length, warmup included: the cosine part lasts
  ``decay_steps - warmup_steps`` steps, with ``alpha = end_value / peak_value``.
  """
  _check_decay_steps("warmup_cosine_decay_schedule", warmup_steps, decay_steps)
  alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
  return join_schedules(
      [linear_schedule(init_value, peak_value, warmup_steps),
       cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent)],
      [warmup_steps])


@hyperparameters(schedules=False, warmup_steps="[0, inf)", **_DECAY)
def warmup_exponential_decay_schedule(init_value: Any, peak_value: Any, warmup_steps: int,
                                      transition_steps: int, decay_rate: Any,
                                      transition_begin: int = 0, staircase: bool = False,
                                      end_value: Optional[Any] = None) -> Schedule:
  """Linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps``, then
  :func:`exponential_decay` from ``peak_value``, counting from the end of the warmup
  (Optax numerics).
  """
  return join_schedules(
      [linear_schedule(init_value, peak_value, warmup_steps),
       exponential_decay(peak_value, transition_steps, decay_rate, transition_begin,
                         staircase, end_value)],
      [warmup_steps])


@hyperparameters(schedules=False, warmup_steps="[0, inf)")
def warmup_linear(init_value: Any, peak_value: Any, warmup_steps: int, decay_steps: int,
                  end_value: Any = 0.0) -> Schedule:
  """Linear warmup, then linear decay (the BERT / transformers "linear" schedule).

  The value rises linearly from ``init_value`` at step 0 to ``peak_value`` at step
  ``warmup_steps``, then falls linearly to ``end_value`` at step ``decay_steps`` and stays
  there. As in :func:`warmup_cosine_decay_schedule`, ``decay_steps`` is the total length,
  warmup included, so the decay lasts ``decay_steps - warmup_steps`` steps::

    t < W:       I + (P - I) * t / W
    W <= t < D:  P + (E - P) * (t - W) / (D - W)
    t >= D:      E
  """
  _check_decay_steps("warmup_linear", warmup_steps, decay_steps)
  return join_schedules(
      [linear_schedule(init_value, peak_value, warmup_steps),
       linear_schedule(peak_value, end_value, decay_steps - warmup_steps)],
      [warmup_steps])


@hyperparameters(schedules=False, decay_rate="[0, inf)", transition_steps="(0, inf)")
def inverse_time_decay(init_value: Any, decay_rate: Any, transition_steps: int = 1
                       ) -> Schedule:
  """``init_value / (1 + decay_rate * t / transition_steps)``.

  The ``1/t`` annealing of stochastic approximation (Robbins & Monro 1951); the formula of
  Keras' ``InverseTimeDecay`` without staircase.
  """
  def schedule(count):
    count = jnp.asarray(count)
    return _as_float(init_value / (1 + decay_rate * count / transition_steps), count)

  return schedule


@hyperparameters(schedules=False, every="int >= 1", factor="[0, inf)")
def step_decay(init_value: Any, every: int, factor: Any = 0.5) -> Schedule:
  """``init_value * factor**floor(t / every)``: multiply by ``factor`` every ``every``
  steps (torch's ``StepLR`` with ``step_size=every``, ``gamma=factor``).
  """
  def schedule(count):
    count = jnp.asarray(count)
    return _as_float(init_value * jnp.power(factor, count // every), count)

  return schedule


@hyperparameters(schedules=False, step_size="(0, inf)", gamma="(0, inf)")
def cyclic_schedule(base_value: Any, max_value: Any, step_size: int,
                    mode: str = "triangular", gamma: Any = 1.0) -> Schedule:
  """Cyclical values between ``base_value`` and ``max_value`` (Smith 2017).

  Each cycle rises linearly for ``step_size`` (s) steps and falls for ``s`` steps. With
  ``r = t mod 2s`` the steps into the current cycle and ``h = min(r, 2s - r) / s``::

    value = base_value + (max_value - base_value) * h * scale

  ``scale`` is 1 (``'triangular'``), ``0.5**floor(t / 2s)`` (``'triangular2'``: the
  amplitude halves every cycle) or ``gamma**t`` (``'exp_range'``). These are the numerics
  of ``torch.optim.lr_scheduler.CyclicLR`` with ``step_size_up = step_size_down =
  step_size``, ``base_lr = base_value`` and ``max_lr = max_value``; the position in the
  cycle is computed from the integer count, so float32 does not lose it in long runs.

  Reference: Smith, Cyclical Learning Rates for Training Neural Networks, WACV 2017.
  """
  if mode not in _CYCLIC_MODES:
    raise ValueError(f"cyclic_schedule: mode must be one of {_CYCLIC_MODES}, got {mode!r}")
  cycle_length = 2 * step_size

  def schedule(count):
    count = jnp.asarray(count)
    position = jnp.mod(count, cycle_length)
    height = jnp.minimum(position, cycle_length - position) / step_size
    if mode == "triangular":
      scale = 1.0
    elif mode == "triangular2":
      scale = jnp.power(0.5, count // cycle_length)
    else:
      scale = jnp.power(gamma, count)
    return _as_float(base_value + (max_value - base_value) * height * scale, count)

  return schedule
