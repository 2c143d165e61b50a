"""Cyclic schedules: one-cycle policies, and cosine annealing with warm restarts.

A schedule is ``fn(count) -> value`` (see :mod:`gradtx._src.schedules`): pure, jit-safe,
elementwise on an array of counts, float32 (float64 under ``jax_enable_x64``). Optax's
names keep Optax's signatures, defaults and numerics; the torch.optim ones
(:func:`one_cycle_schedule`, :func:`cosine_annealing_warm_restarts`) give at ``count``
the learning rate a torch scheduler holds after ``count`` calls of ``scheduler.step()``.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._src import validation
from gradtx._src.base import Schedule
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.schedules import join_schedules, warmup_cosine_decay_schedule


def as_float(value: Any, count: jax.Array) -> jax.Array:
  """``value`` broadcast to ``count``'s shape, in float32 (float64 under x64)."""
  value = jnp.asarray(value, jnp.result_type(float))
  return jnp.broadcast_to(value, jnp.broadcast_shapes(value.shape, jnp.shape(count)))


def _linear(start: Any, end: Any, pct: Any) -> Any:
  """``start`` at ``pct = 0`` to ``end`` at ``pct = 1``, on a line."""
  return (end - start) * pct + start


def _cosine(start: Any, end: Any, pct: Any) -> Any:
  """``start`` at ``pct = 0`` to ``end`` at ``pct = 1``, on half a cosine."""
  return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)


_INTERPOLATE = {"linear": _linear, "cosine": _cosine, "cos": _cosine}


@hyperparameters(interpolate_type="{'linear', 'cosine'}", schedules=False)
def piecewise_interpolate_schedule(interpolate_type: str, init_value: Any,
                                   boundaries_and_scales: Optional[dict[int, float]] = None
                                   ) -> Schedule:
  """Interpolates between the running products of scales at step boundaries (Optax).

  With the boundaries sorted, ``b_0 = 0 < b_1 <= ... <= b_n`` and the values
  ``v_0 = init_value``, ``v_i = v_{i-1} * s_i`` (``s_i`` the scale of ``b_i``)::

    b_{i-1} <= t < b_i:  interpolate(v_{i-1}, v_i, (t - b_{i-1}) / max(b_i - b_{i-1}, 1))
    t >= b_n:            v_n

  ``interpolate`` is ``(end - start) * pct + start`` (``'linear'``) or
  ``end + (start - end) / 2 * (cos(pi * pct) + 1)`` (``'cosine'``). The interpolation is
  between the accumulated values, not between the scales. Scales must be >= 0 and
  boundaries >= 0. Optax's numerics; unlike Optax's, the schedule also takes an array of
  counts.
  """
  owner = "piecewise_interpolate_schedule"
  items = sorted((boundaries_and_scales or {}).items())
  for boundary, scale in items:
    validation.in_interval(owner, "a boundary of boundaries_and_scales", boundary,
                           "[0, inf)")
    validation.in_interval(owner, f"boundaries_and_scales[{boundary}]", scale, "[0, inf)")
  interpolate = _INTERPOLATE[interpolate_type]
  boundaries = (0,) + tuple(b for b, _ in items)
  scales = tuple(s for _, s in items)

  def schedule(count):
    count = jnp.asarray(count)
    bounds = jnp.asarray(boundaries)
    values = jnp.cumprod(jnp.stack([jnp.asarray(v, jnp.result_type(float))
                                    for v in (init_value,) + scales]))
    starts, ends = bounds[:-1], bounds[1:]
    at = count[..., None]  # the segments along a last axis
    inside = (starts <= at) & (at < ends)
    pct = (at - starts) / jnp.maximum(ends - starts, 1)
    segment = jnp.sum(jnp.where(inside, interpolate(values[:-1], values[1:], pct), 0.0), -1)
    return as_float(segment + jnp.where(bounds[-1] <= count, values[-1], 0.0), count)

  return schedule


_ONECYCLE = dict(transition_steps="(0, inf)", pct_start="[0, 1]", div_factor="(0, inf)",
                 final_div_factor="(0, inf)")


@hyperparameters(pct_final="[0, 1]", schedules=False, **_ONECYCLE)
def linear_onecycle_schedule(transition_steps: int, peak_value: Any, pct_start: float = 0.3,
                             pct_final: float = 0.85, div_factor: float = 25.0,
                             final_div_factor: float = 1e4) -> Schedule:
  """One cycle of three linear phases (Smith & Topin 2017; Optax numerics).

  With ``T = transition_steps`` and ``I = peak_value / div_factor``: from ``I`` up to
  ``peak_value`` over steps ``[0, int(pct_start * T)]``, back down to ``I`` at step
  ``int(pct_final * T)``, then to ``I / final_div_factor`` at step ``T``, where it stays.
  A :func:`piecewise_interpolate_schedule` with ``'linear'`` interpolation.

  Reference: Smith & Topin, Super-Convergence: Very Fast Training of Neural Networks
  Using Large Learning Rates, 2017 (arXiv:1708.07120).
  """
  validation.ordered("linear_onecycle_schedule", "pct_start", pct_start, "pct_final",
                     pct_final)
  return piecewise_interpolate_schedule(
      "linear", peak_value / div_factor,
      {int(pct_start * transition_steps): div_factor,
       int(pct_final * transition_steps): 1.0 / div_factor,
       transition_steps: 1.0 / final_div_factor})


@hyperparameters(schedules=False, **_ONECYCLE)
def cosine_onecycle_schedule(transition_steps: int, peak_value: Any, pct_start: float = 0.3,
                             div_factor: float = 25.0, final_div_factor: float = 1e4
                             ) -> Schedule:
  """One cycle of two cosine phases (Smith & Topin 2017; Optax numerics).

  With ``T = transition_steps`` and ``I = peak_value / div_factor``: from ``I`` up to
  ``peak_value`` at step ``int(pct_start * T)`` on half a cosine, then down to
  ``I / final_div_factor`` at step ``T``, where it stays. A
  :func:`piecewise_interpolate_schedule` with ``'cosine'`` interpolation. Unlike
  :func:`one_cycle_schedule` (torch's ``OneCycleLR``), the peak is at step
  ``int(pct_start * T)``, not ``pct_start * T - 1``.

  Reference: Smith & Topin, Super-Convergence: Very Fast Training of Neural Networks
  Using Large Learning Rates, 2017 (arXiv:1708.07120).
  """
  return piecewise_interpolate_schedule(
      "cosine", peak_value / div_factor,
      {int(pct_start * transition_steps): div_factor,
       int(transition_steps): 1.0 / (div_factor * final_div_factor)})


def sgdr_schedule(cosine_kwargs: Iterable[dict[str, Any]]) -> Schedule:
  """Stochastic gradient descent with warm restarts: cycles of
  :func:`warmup_cosine_decay_schedule`, one per dict of ``cosine_kwargs`` (its keyword
  arguments), each lasting its ``decay_steps`` and seeing the steps since its own start
  (Optax numerics).

  Reference: Loshchilov & Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts,
  ICLR 2017.
  """
  cycles = [dict(kwargs) for kwargs in cosine_kwargs]
  if not cycles:
    raise ValueError("sgdr_schedule: cosine_kwargs must hold at least one cycle, got none")
  for i, kwargs in enumerate(cycles):
    if "decay_steps" not in kwargs:
      raise ValueError(f"sgdr_schedule: cosine_kwargs[{i}] must give decay_steps (the "
                       f"cycle's length), got the keys {sorted(kwargs)}")
  ends = np.cumsum([kwargs["decay_steps"] for kwargs in cycles]).tolist()
  return join_schedules([warmup_cosine_decay_schedule(**kwargs) for kwargs in cycles],
                        ends[:-1])


@hyperparameters(t_0="int >= 1", t_mult="int >= 1", eta_min="(-inf, inf)",
                 schedules=False)
def cosine_annealing_warm_restarts(init_value: Any, t_0: int, t_mult: int = 1,
                                   eta_min: Any = 0.0) -> Schedule:
  """Cosine annealing from ``init_value`` to ``eta_min`` that restarts at ``init_value``
  after cycles of ``t_0``, ``t_0 * t_mult``, ``t_0 * t_mult**2``, ... steps::

    value = eta_min + (init_value - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2

  ``T_i`` the length of the current cycle and ``T_cur`` the steps since it began. The
  numerics of ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=t_0,
  T_mult=t_mult, eta_min=eta_min)`` with ``lr = init_value``. The cycle and ``T_cur``
  are found from the integer count, so a long run keeps its phase in float32.

  Reference: Loshchilov & Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts,
  ICLR 2017.
  """
  # Cycle starts S_n = t_0 (t_mult**n - 1) / (t_mult - 1), up to any int64 count.
  starts, lengths = [0], [t_0]
  while t_mult > 1 and starts[-1] + lengths[-1] < 2**63:
    starts.append(starts[-1] + lengths[-1])
    lengths.append(lengths[-1] * t_mult)

  def schedule(count):
    count = jnp.asarray(count)
    if t_mult == 1:
      t_cur, t_i = count % t_0, float(t_0)
    else:
      top = jnp.iinfo(count.dtype).max if jnp.issubdtype(count.dtype, jnp.integer) else 2**63
      usable = sum(start <= top for start in starts)
      cycle_starts = jnp.asarray(starts[:usable], count.dtype)
      cycle = jnp.maximum(jnp.sum(count[..., None] >= cycle_starts, -1) - 1, 0)
      t_cur = count - cycle_starts[cycle]
      t_i = jnp.asarray(np.array(lengths[:usable], np.float64), jnp.result_type(float))[cycle]
    cosine = 1 + jnp.cos(jnp.pi * t_cur / t_i)
    return as_float(eta_min + (init_value - eta_min) * cosine / 2, count)

  return schedule


@hyperparameters(total_steps="int >= 1", pct_start="[0, 1]",
                 anneal_strategy="{'cos', 'linear'}", div_factor="(0, inf)",
                 final_div_factor="(0, inf)", three_phase="bool", schedules=False)
def one_cycle_schedule(max_lr: Any, total_steps: int, pct_start: float = 0.3,
                       anneal_strategy: str = "cos", div_factor: float = 25.0,
                       final_div_factor: float = 1e4, three_phase: bool = False
                       ) -> Schedule:
  """The 1cycle policy's learning rate, as torch's ``OneCycleLR`` (Smith & Topin 2017).

  With ``I = max_lr / div_factor``, ``m = I / final_div_factor``, ``T = total_steps`` and
  ``p = pct_start``, the rate moves through phases ending at steps ``e_k``::

    two phases (default):  I -> max_lr by e_1 = p T - 1;  max_lr -> m by e_2 = T - 1
    three_phase=True:      I -> max_lr by e_1 = p T - 1;  max_lr -> I by e_2 = 2 p T - 2;
                           I -> m by e_3 = T - 1

  At step ``t`` the first phase with ``t <= e_k`` (the last phase otherwise) gives
  ``anneal(start, end, (t - e_{k-1}) / (e_k - e_{k-1}))``, ``e_0 = 0``, where ``anneal`` is
  ``end + (start - end) / 2 * (cos(pi * pct) + 1)`` (``'cos'``) or
  ``(end - start) * pct + start`` (``'linear'``): the numerics of
  ``torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr, total_steps, pct_start,
  anneal_strategy, div_factor=div_factor, final_div_factor=final_div_factor,
  three_phase=three_phase)``, whose learning rate after ``t`` calls of
  ``scheduler.step()`` is the value at ``count = t``, for ``t < total_steps``.

  From ``t = T - 1`` on, the value is held (``m`` at the end of the last phase). torch
  computes one more rate, at ``t = T``, by continuing the last phase past its end (a
  cosine rising back above ``m``, a line falling below it: negative for a short
  linear cycle), and raises after it; here the schedule stays at its end. Where torch
  divides 0 by 0 (``p T = 1``: a first phase of no steps), its end value is taken.

  Reference: Smith & Topin, Super-Convergence: Very Fast Training of Neural Networks
  Using Large Learning Rates, 2017 (arXiv:1708.07120).
  """
  initial_lr = max_lr / div_factor
  min_lr = initial_lr / final_div_factor
  if three_phase:
    phases = [(float(pct_start * total_steps) - 1, initial_lr, max_lr),
              (float(2 * pct_start * total_steps) - 2, max_lr, initial_lr),
              (total_steps - 1, initial_lr, min_lr)]
  else:
    phases = [(float(pct_start * total_steps) - 1, initial_lr, max_lr),
              (total_steps - 1, max_lr, min_lr)]
  anneal = _INTERPOLATE[anneal_strategy]
  last_step = total_steps - 1

  def schedule(count):
    count = jnp.asarray(count)
    step = jnp.minimum(count, last_step)
    values, start_step = [], 0.0
    for end_step, start_lr, end_lr in phases:
      if end_step == start_step:
        pct = jnp.ones_like(step, jnp.result_type(float))
      else:
        pct = (step - start_step) / (end_step - start_step)
      values.append(anneal(start_lr, end_lr, pct))
      start_step = end_step
    value = values[-1]
    for (end_step, _, _), earlier in reversed(list(zip(phases[:-1], values[:-1]))):
      value = jnp.where(step <= end_step, earlier, value)
    return as_float(value, count)

  return schedule

