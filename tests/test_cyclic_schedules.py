"""Cyclic schedules against their oracles, at every step from 0 to past the end.

Optax's names (``piecewise_interpolate_schedule``, ``linear_onecycle_schedule``,
``cosine_onecycle_schedule``, ``sgdr_schedule``): ``optax.schedules`` with the same
arguments (Optax's piecewise interpolation takes one count at a time, so it is vmapped).
``one_cycle_schedule`` and ``cosine_annealing_warm_restarts``: ``OneCycleLR`` and
``CosineAnnealingWarmRestarts`` of ``torch.optim.lr_scheduler`` (2.13) driving an SGD
optimizer; their ``get_last_lr()`` after ``t`` calls of ``scheduler.step()`` is the
gradtx schedule's value at ``count = t``. torch computes in Python doubles.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx as gtx
from gradtx import schedules

lr_scheduler = torch.optim.lr_scheduler

# Each case builds a schedule from a module, so the same call runs in gradtx and in Optax;
# and the number of steps it lasts.
OPTAX_CASES = {
    "interpolate_linear": (lambda s: s.piecewise_interpolate_schedule(
        "linear", 1.0, {4: 0.1, 8: 0.01}), 8),
    "interpolate_cosine": (lambda s: s.piecewise_interpolate_schedule(
        "cosine", 0.5, {50: 2.0, 10: 0.5, 250: 0.0, 100: 3.0}), 250),
    "interpolate_zero_boundary": (lambda s: s.piecewise_interpolate_schedule(
        "linear", 2.0, {0: 0.5, 30: 4.0, 31: 0.25}), 31),
    "interpolate_none": (lambda s: s.piecewise_interpolate_schedule("cosine", 0.7), 0),
    "linear_onecycle": (lambda s: s.linear_onecycle_schedule(300, 1.0), 300),
    "linear_onecycle_options": (lambda s: s.linear_onecycle_schedule(
        157, 0.3, pct_start=0.1, pct_final=0.6, div_factor=10.0, final_div_factor=100.0),
                                157),
    "cosine_onecycle": (lambda s: s.cosine_onecycle_schedule(300, 1.0), 300),
    "cosine_onecycle_options": (lambda s: s.cosine_onecycle_schedule(
        83, 2.0, pct_start=0.45, div_factor=5.0, final_div_factor=50.0), 83),
    "sgdr": (lambda s: s.sgdr_schedule(
        [dict(init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=100)] * 3), 300),
    "sgdr_varied": (lambda s: s.sgdr_schedule([
        dict(init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=60),
        dict(init_value=0.5, peak_value=0.7, warmup_steps=0, decay_steps=90, end_value=0.1),
        dict(init_value=0.1, peak_value=0.4, warmup_steps=30, decay_steps=120,
             end_value=0.05, exponent=2.0)]), 270),
}


def optax_values(case, counts):
  schedule = OPTAX_CASES[case][0](optax.schedules)
  return np.broadcast_to(jax.jit(jax.vmap(schedule))(counts), counts.shape)


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("case", OPTAX_CASES)
def test_matches_optax_at_every_step(case, x64):
  build, steps = OPTAX_CASES[case]
  with jax.enable_x64(x64):
    counts = jnp.arange(steps + 40)
    ours = jax.jit(build(schedules))(counts)
    theirs = optax_values(case, counts)
    assert ours.dtype == (jnp.float64 if x64 else jnp.float32)
    assert ours.shape == counts.shape
  scale = np.max(np.abs(theirs))
  tol = dict(rtol=1e-12, atol=1e-15 * scale) if x64 else dict(rtol=2e-6, atol=2e-7 * scale)
  np.testing.assert_allclose(ours, theirs, **tol)
  if steps:
    assert len(np.unique(np.round(theirs, 6))) > 3  # the oracle does change the value


# --- torch's OneCycleLR -------------------------------------------------------------------


def torch_one_cycle(max_lr, total_steps, **kwargs):
  """``get_last_lr()`` after 0..total_steps-1 calls of ``step()``."""
  optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=max_lr)
  scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr, total_steps, cycle_momentum=False,
                                      **kwargs)
  values = [scheduler.get_last_lr()[0]]
  for _ in range(total_steps - 1):
    optimizer.step()
    scheduler.step()
    values.append(scheduler.get_last_lr()[0])
  return np.array(values)


# (max_lr, total_steps, pct_start, div_factor, final_div_factor): defaults, short cycles,
# a warmup of no steps (pct_start=0), all warmup (pct_start=1), a three-phase cycle
# whose second phase runs past the end (pct_start > 0.5), and non-default factors.
ONE_CYCLE = {
    "default": (1.0, 100, 0.3, 25.0, 1e4),
    "odd": (0.05, 37, 0.25, 25.0, 1e4),
    "short": (0.3, 5, 0.5, 25.0, 1e4),
    "no_warmup": (1.0, 50, 0.0, 25.0, 1e4),
    "all_warmup": (1.0, 20, 1.0, 25.0, 1e4),
    "late_peak": (2.0, 41, 0.6, 25.0, 1e4),
    "factors": (0.4, 200, 0.1, 4.0, 30.0),
}
ONE_CYCLE_CASES = [(case, strategy, three_phase) for case in ONE_CYCLE
                   for strategy in ("cos", "linear") for three_phase in (False, True)]


def _one_cycle_pair(case, strategy, three_phase):
  max_lr, total_steps, pct_start, div_factor, final_div_factor = ONE_CYCLE[case]
  options = dict(pct_start=pct_start, anneal_strategy=strategy, div_factor=div_factor,
                 final_div_factor=final_div_factor, three_phase=three_phase)
  return (gtx.one_cycle_schedule(max_lr, total_steps, **options),
          torch_one_cycle(max_lr, total_steps, **options))


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("case, strategy, three_phase", ONE_CYCLE_CASES)
def test_one_cycle_matches_torch(case, strategy, three_phase, x64):
  ours, theirs = _one_cycle_pair(case, strategy, three_phase)
  total_steps = ONE_CYCLE[case][1]
  with jax.enable_x64(x64):
    values = jax.jit(ours)(jnp.arange(total_steps + 30))
    assert values.dtype == (jnp.float64 if x64 else jnp.float32)
  max_lr = ONE_CYCLE[case][0]
  tol = dict(rtol=1e-12, atol=1e-15 * max_lr) if x64 else dict(rtol=2e-6, atol=2e-7 * max_lr)
  np.testing.assert_allclose(values[:total_steps], theirs, **tol)
  # Past the end, the value of the last step is held.
  np.testing.assert_array_equal(values[total_steps:], values[total_steps - 1])


def test_one_cycle_ends_at_its_minimum_where_torch_extrapolates():
  """torch computes one more rate after the cycle, at step total_steps, by continuing the
  last phase past its end: a linear one goes below the minimum, here below zero; the
  gradtx schedule holds the minimum."""
  optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
  scheduler = lr_scheduler.OneCycleLR(optimizer, 1.0, 10, anneal_strategy="linear",
                                      cycle_momentum=False)
  for _ in range(10):
    optimizer.step()
    scheduler.step()
  assert scheduler.get_last_lr()[0] < 0
  with jax.enable_x64(True):
    ours = gtx.one_cycle_schedule(1.0, 10, anneal_strategy="linear")(jnp.arange(9, 13))
  np.testing.assert_allclose(ours, 1.0 / 25 / 1e4, rtol=0, atol=1e-15)


@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_first_phase_of_no_steps_starts_at_the_peak(three_phase):
  """pct_start * total_steps = 1 ends the warmup at step 0; torch divides 0 by 0 there.
  The oracle is the formula of the docstring, transcribed."""
  max_lr, total_steps, pct_start = 1.0, 10, 0.1
  with pytest.raises(ZeroDivisionError):
    lr_scheduler.OneCycleLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                            max_lr, total_steps, pct_start=pct_start, three_phase=three_phase)
  initial, minimum = max_lr / 25.0, max_lr / 25.0 / 1e4
  ends = [0.0, 0.0, 9.0] if three_phase else [0.0, 9.0]
  levels = [(initial, max_lr), (max_lr, initial), (initial, minimum)] if three_phase else [
      (initial, max_lr), (max_lr, minimum)]

  def formula(t):
    start = 0.0
    for k, (end, (a, b)) in enumerate(zip(ends, levels)):
      if t <= end or k == len(ends) - 1:
        pct = 1.0 if end == start else (t - start) / (end - start)
        return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)
      start = end

  with jax.enable_x64(True):
    ours = gtx.one_cycle_schedule(max_lr, total_steps, pct_start, three_phase=three_phase)(
        jnp.arange(total_steps))
    ours = np.asarray(ours)
  np.testing.assert_allclose(ours, [formula(t) for t in range(total_steps)], rtol=1e-12,
                             atol=1e-16)
  assert ours[0] == max_lr


# --- torch's CosineAnnealingWarmRestarts --------------------------------------------------


def torch_warm_restarts(init_value, t_0, t_mult, eta_min, steps):
  optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=init_value)
  scheduler = lr_scheduler.CosineAnnealingWarmRestarts(optimizer, t_0, t_mult, eta_min)
  values = []
  for _ in range(steps):
    values.append(scheduler.get_last_lr()[0])
    optimizer.step()
    scheduler.step()
  return np.array(values)


# (init_value, t_0, t_mult, eta_min): a restart every step, t_mult 1, 2 and 3.
WARM_RESTARTS = {
    "every_step": (0.5, 1, 1, 0.0),
    "t_mult_1": (0.1, 10, 1, 0.0),
    "t_mult_1_eta_min": (0.5, 13, 1, 0.05),
    "t_mult_2": (1.0, 7, 2, 0.01),
    "t_mult_2_from_1": (0.3, 1, 2, 0.0),
    "t_mult_3": (0.2, 4, 3, 0.02),
}
STEPS = 500


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("case", WARM_RESTARTS)
def test_warm_restarts_match_torch(case, x64):
  init_value, t_0, t_mult, eta_min = WARM_RESTARTS[case]
  theirs = torch_warm_restarts(*WARM_RESTARTS[case], STEPS)
  with jax.enable_x64(x64):
    ours = jax.jit(gtx.cosine_annealing_warm_restarts(init_value, t_0, t_mult, eta_min))(
        jnp.arange(STEPS))
    assert ours.dtype == (jnp.float64 if x64 else jnp.float32)
  tol = dict(rtol=1e-12, atol=1e-15) if x64 else dict(rtol=2e-6, atol=2e-7 * init_value)
  np.testing.assert_allclose(ours, theirs, **tol)


def warm_restarts_at(count, init_value, t_0, t_mult, eta_min):
  """The closed form of torch's recursion, in Python integers: the cycle containing
  ``count`` and the steps into it."""
  start, length = count - count % t_0 if t_mult == 1 else 0, t_0
  while count >= start + length:
    start, length = start + length, length * t_mult
  return eta_min + (init_value - eta_min) * (1 + math.cos(math.pi * (count - start) / length)) / 2


@pytest.mark.parametrize("case", ["t_mult_1_eta_min", "t_mult_2", "t_mult_3"])
def test_warm_restarts_keep_their_phase_at_large_counts(case):
  """float32 cannot hold a count of 2**30 to the step; the cycle and the steps into it are
  computed from the integer count."""
  counts = [2**24 + k for k in range(0, 60, 7)] + [2**30 + k for k in range(0, 60, 7)] + [
      2**31 - 1 - k for k in range(0, 60, 7)]
  ours = gtx.cosine_annealing_warm_restarts(*WARM_RESTARTS[case])(
      jnp.asarray(counts, jnp.int32))
  expected = [warm_restarts_at(c, *WARM_RESTARTS[case]) for c in counts]
  np.testing.assert_allclose(ours, expected, rtol=2e-6, atol=2e-7)
  with jax.enable_x64(True):
    big = [2**40 + 3, 2**62 + 5]
    ours = gtx.cosine_annealing_warm_restarts(*WARM_RESTARTS[case])(jnp.asarray(big))
  np.testing.assert_allclose(ours, [warm_restarts_at(c, *WARM_RESTARTS[case]) for c in big],
                             rtol=1e-12, atol=1e-15)


# --- jit, vmap and validation -------------------------------------------------------------

ALL = {
    **{case: (lambda case=case: OPTAX_CASES[case][0](schedules)) for case in [
        "interpolate_cosine", "linear_onecycle_options", "cosine_onecycle_options",
        "sgdr_varied"]},
    "one_cycle": lambda: gtx.one_cycle_schedule(1.0, 60, three_phase=True),
    "one_cycle_linear": lambda: gtx.one_cycle_schedule(1.0, 60, anneal_strategy="linear"),
    "warm_restarts": lambda: gtx.cosine_annealing_warm_restarts(1.0, 7, 2, 0.01),
}


@pytest.mark.parametrize("case", ALL)
def test_jit_vmap_and_scalar_count(case):
  schedule = ALL[case]()
  counts = jnp.array([0, 1, 5, 17, 49, 50, 51, 199, 300], jnp.int32)
  eager = schedule(counts)
  tol = dict(rtol=1e-6, atol=1e-7)  # XLA may divide by multiplying: an ulp apart.
  np.testing.assert_allclose(jax.jit(jax.vmap(schedule))(counts), eager, **tol)
  scalar = jax.jit(schedule)(jnp.int32(51))
  assert scalar.shape == () and scalar.dtype == jnp.float32
  np.testing.assert_allclose(scalar, eager[6], **tol)
  np.testing.assert_allclose(schedule(51), eager[6], **tol)
  np.testing.assert_allclose(schedule(counts.reshape(3, 3)), eager.reshape(3, 3))


@pytest.mark.parametrize("build, error, message", [
    (lambda: gtx.piecewise_interpolate_schedule("cos", 1.0),
     ValueError, "piecewise_interpolate_schedule: interpolate_type must be one of 'linear', "
     "'cosine', got 'cos'"),
    (lambda: gtx.piecewise_interpolate_schedule("linear", 1.0, {10: -0.5}),
     ValueError, r"piecewise_interpolate_schedule: boundaries_and_scales[10] must be in "
     "[0, inf), got -0.5"),
    (lambda: gtx.piecewise_interpolate_schedule("linear", 1.0, {-3: 0.5}),
     ValueError, "piecewise_interpolate_schedule: a boundary of boundaries_and_scales must "
     "be in [0, inf), got -3"),
    (lambda: gtx.linear_onecycle_schedule(0, 1.0),
     ValueError, "linear_onecycle_schedule: transition_steps must be in (0, inf), got 0"),
    (lambda: gtx.linear_onecycle_schedule(100, 1.0, pct_start=1.5),
     ValueError, "linear_onecycle_schedule: pct_start must be in [0, 1], got 1.5"),
    (lambda: gtx.linear_onecycle_schedule(100, 1.0, pct_final=-0.1),
     ValueError, "linear_onecycle_schedule: pct_final must be in [0, 1], got -0.1"),
    (lambda: gtx.linear_onecycle_schedule(100, 1.0, pct_start=0.9, pct_final=0.5),
     ValueError, "linear_onecycle_schedule: pct_start must be <= pct_final, got 0.9 > 0.5"),
    (lambda: gtx.linear_onecycle_schedule(100, 1.0, div_factor=0.0),
     ValueError, "linear_onecycle_schedule: div_factor must be in (0, inf), got 0.0"),
    (lambda: gtx.cosine_onecycle_schedule(-5, 1.0),
     ValueError, "cosine_onecycle_schedule: transition_steps must be in (0, inf), got -5"),
    (lambda: gtx.cosine_onecycle_schedule(100, 1.0, final_div_factor=float("nan")),
     ValueError, "cosine_onecycle_schedule: final_div_factor must be in (0, inf), got nan"),
    (lambda: gtx.cosine_onecycle_schedule(100, 1.0, pct_start=lambda count: 0.3),
     TypeError, "cosine_onecycle_schedule: pct_start must be a real number in [0, 1], got"),
    (lambda: gtx.sgdr_schedule([]),
     ValueError, "sgdr_schedule: cosine_kwargs must hold at least one cycle, got none"),
    (lambda: gtx.sgdr_schedule([dict(init_value=0.0, peak_value=1.0, warmup_steps=1)]),
     ValueError, "sgdr_schedule: cosine_kwargs[0] must give decay_steps"),
    (lambda: gtx.sgdr_schedule([dict(init_value=0.0, peak_value=1.0, warmup_steps=10,
                                      decay_steps=5)]),
     ValueError, "warmup_cosine_decay_schedule: decay_steps - warmup_steps must be in "
     "(0, inf), got -5"),
    (lambda: gtx.cosine_annealing_warm_restarts(1.0, 0),
     ValueError, "cosine_annealing_warm_restarts: t_0 must be an integer >= 1, got 0"),
    (lambda: gtx.cosine_annealing_warm_restarts(1.0, 2.5),
     TypeError, "cosine_annealing_warm_restarts: t_0 must be an integer >= 1, got 2.5"),
    (lambda: gtx.cosine_annealing_warm_restarts(1.0, 10, 0),
     ValueError, "cosine_annealing_warm_restarts: t_mult must be an integer >= 1, got 0"),
    (lambda: gtx.cosine_annealing_warm_restarts(1.0, 10, eta_min="0"),
     TypeError, "cosine_annealing_warm_restarts: eta_min must be a real number"),
    (lambda: gtx.one_cycle_schedule(1.0, 0),
     ValueError, "one_cycle_schedule: total_steps must be an integer >= 1, got 0"),
    (lambda: gtx.one_cycle_schedule(1.0, 100.0),
     TypeError, "one_cycle_schedule: total_steps must be an integer >= 1, got 100.0"),
    (lambda: gtx.one_cycle_schedule(1.0, 100, pct_start=1.01),
     ValueError, "one_cycle_schedule: pct_start must be in [0, 1], got 1.01"),
    (lambda: gtx.one_cycle_schedule(1.0, 100, anneal_strategy="cosine"),
     ValueError, "one_cycle_schedule: anneal_strategy must be one of 'cos', 'linear', "
     "got 'cosine'"),
    (lambda: gtx.one_cycle_schedule(1.0, 100, div_factor=-1.0),
     ValueError, "one_cycle_schedule: div_factor must be in (0, inf), got -1.0"),
    (lambda: gtx.one_cycle_schedule(1.0, 100, final_div_factor=0),
     ValueError, "one_cycle_schedule: final_div_factor must be in (0, inf), got 0"),
    (lambda: gtx.one_cycle_schedule(1.0, 100, three_phase="yes"),
     TypeError, "one_cycle_schedule: three_phase must be True or False, got 'yes'"),
])
def test_construction_errors(build, error, message):
  with pytest.raises(error) as raised:
    build()
  assert str(raised.value).startswith(message)


def test_closed_ends_are_accepted():
  gtx.linear_onecycle_schedule(10, 1.0, pct_start=0.0, pct_final=1.0)
  gtx.cosine_onecycle_schedule(10, 1.0, pct_start=1.0)
  gtx.one_cycle_schedule(1.0, 1, pct_start=0.0)
  gtx.one_cycle_schedule(1.0, 1, pct_start=1.0, three_phase=True)
  gtx.cosine_annealing_warm_restarts(1.0, 1, 1, eta_min=-1.0)
  gtx.piecewise_interpolate_schedule("linear", 1.0, {0: 0.0})
