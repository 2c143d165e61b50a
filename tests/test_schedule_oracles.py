"""Schedules against ``torch.optim.lr_scheduler`` (2.13).

Each torch scheduler drives an SGD optimizer with ``lr = init_value``; its
``get_last_lr()`` before the ``t``-th ``scheduler.step()`` is the learning rate of step
``t`` (from 0), which a gradtx schedule gives at ``count = t``:

  torch                                                    gradtx
  CyclicLR(base_lr, max_lr, step_size_up=s, mode, gamma,   cyclic_schedule(base_lr, max_lr,
           cycle_momentum=False)                             s, mode, gamma)
  StepLR(step_size=k, gamma=f)                             step_decay(lr, k, f)
  LambdaLR(lambda t: 1 / (1 + r * t / n))                  inverse_time_decay(lr, r, n)
  ExponentialLR(gamma)                                     exponential_decay(lr, 1, gamma)
  MultiStepLR(milestones, gamma)                           piecewise_constant_schedule(
                                                             lr, {m: gamma, ...})
  CosineAnnealingLR(T_max, eta_min), t <= T_max            cosine_decay_schedule(lr, T_max,
                                                             alpha=eta_min / lr)
  LinearLR(start_factor, end_factor, total_iters)          linear_schedule(lr * start,
                                                             lr * end, total_iters)
  PolynomialLR(total_iters, power)                         polynomial_schedule(lr, 0, power,
                                                             total_iters)

torch computes in Python doubles, several of these recursively (each lr from the last);
gradtx in closed form, in float32 (float64 under x64).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from gradtx import schedules

STEPS = 600


def torch_lrs(init_value, make_scheduler, steps=STEPS):
  """``get_last_lr()`` at steps 0..steps-1 of ``make_scheduler(optimizer)``."""
  optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=init_value)
  scheduler = make_scheduler(optimizer)
  values = []
  for _ in range(steps):
    values.append(scheduler.get_last_lr()[0])
    optimizer.step()
    scheduler.step()
  return np.array(values)


def cyclic_lr(base_value, max_value, step_size, mode, gamma):
  return lambda optimizer: torch.optim.lr_scheduler.CyclicLR(
      optimizer, base_lr=base_value, max_lr=max_value, step_size_up=step_size, mode=mode,
      gamma=gamma, cycle_momentum=False)


CYCLIC = {
    "triangular": (0.1, 1.0, 20, "triangular", 1.0),
    "triangular_short": (1e-3, 6e-3, 1, "triangular", 1.0),
    "triangular_odd": (1e-4, 3e-2, 37, "triangular", 1.0),
    "triangular_falling": (0.5, 0.05, 13, "triangular", 1.0),
    "triangular2": (0.1, 1.0, 25, "triangular2", 1.0),
    "triangular2_short": (0.0, 1.0, 3, "triangular2", 1.0),
    "triangular2_falling": (0.5, 0.05, 15, "triangular2", 1.0),
    "exp_range": (1e-3, 6e-3, 15, "exp_range", 0.99),
    "exp_range_slow": (0.0, 2.0, 40, "exp_range", 0.9995),
    "exp_range_gamma1": (0.2, 0.4, 9, "exp_range", 1.0),
}


@pytest.mark.parametrize("case", CYCLIC)
def test_cyclic_matches_torch_cyclic_lr(case):
  ours = schedules.cyclic_schedule(*CYCLIC[case])(jnp.arange(STEPS))
  theirs = torch_lrs(CYCLIC[case][0], cyclic_lr(*CYCLIC[case]))
  assert ours.dtype == jnp.float32
  # float32 rounds gamma; exp_range's gamma**t amplifies that by up to t.
  rtol = 5e-5 if CYCLIC[case][3] == "exp_range" else 2e-6
  np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-9)
  # Sanity of the oracle: it does cycle, between the two bounds.
  low, high = sorted(CYCLIC[case][:2])
  assert theirs.min() >= low - 1e-12 and theirs.max() <= high + 1e-12
  assert len(np.unique(np.round(theirs, 12))) >= 2


@pytest.mark.parametrize("case", ["triangular", "triangular_odd", "triangular2",
                                  "exp_range"])
def test_cyclic_jitted_scalar_counts(case):
  schedule = jax.jit(schedules.cyclic_schedule(*CYCLIC[case]))
  theirs = torch_lrs(CYCLIC[case][0], cyclic_lr(*CYCLIC[case]), 120)
  ours = [schedule(jnp.int32(t)) for t in range(120)]
  np.testing.assert_allclose(ours, theirs, rtol=5e-5, atol=1e-9)


def torch_cyclic_lr_at(counts, *args):
  """torch's CyclicLR at large step counts: its lr is a closed form of ``last_epoch``,
  so the scheduler is moved there and stepped once."""
  values = []
  for count in counts:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=args[0])
    scheduler = cyclic_lr(*args)(optimizer)
    scheduler.last_epoch = int(count) - 1
    optimizer.step()
    scheduler.step()
    values.append(scheduler.get_last_lr()[0])
  return np.array(values)


@pytest.mark.parametrize("case", ["triangular", "triangular_odd"])
def test_cyclic_keeps_its_phase_at_large_counts(case):
  """float32 cannot hold ``count / step_size`` to the step at 2**30; the schedule reduces
  the integer count modulo the cycle first."""
  counts = np.array([2**24 + k for k in range(0, 80, 7)] + [2**30 + k for k in range(0, 80, 7)]
                    + [2**31 - 1 - k for k in range(0, 80, 7)])
  ours = schedules.cyclic_schedule(*CYCLIC[case])(jnp.asarray(counts, jnp.int32))
  np.testing.assert_allclose(ours, torch_cyclic_lr_at(counts, *CYCLIC[case]), rtol=2e-6)


@pytest.mark.parametrize("case", ["triangular_odd", "triangular2", "exp_range_slow"])
def test_cyclic_float64_under_x64(case):
  with jax.enable_x64(True):
    ours = schedules.cyclic_schedule(*CYCLIC[case])(jnp.arange(STEPS))
    assert ours.dtype == jnp.float64
    np.testing.assert_allclose(ours, torch_lrs(CYCLIC[case][0], cyclic_lr(*CYCLIC[case])),
                               rtol=1e-12, atol=1e-15)


lr_scheduler = torch.optim.lr_scheduler

# float32 rounds a decay rate by up to 2**-24 relative; its t-th power by t times that.
POWERS = dict(rtol=4e-5)

# name -> (init_value, torch scheduler factory, gradtx schedule, steps compared[, tol])
OTHERS = {
    "step_decay": (1.0, lambda o: lr_scheduler.StepLR(o, step_size=30, gamma=0.5),
                   lambda: schedules.step_decay(1.0, 30), STEPS),
    "step_decay_factor": (0.3, lambda o: lr_scheduler.StepLR(o, step_size=7, gamma=0.9),
                          lambda: schedules.step_decay(0.3, 7, 0.9), STEPS, POWERS),
    "step_decay_every_step": (0.05, lambda o: lr_scheduler.StepLR(o, 1, gamma=0.99),
                              lambda: schedules.step_decay(0.05, 1, 0.99), STEPS, POWERS),
    "inverse_time": (1.0, lambda o: lr_scheduler.LambdaLR(o, lambda t: 1 / (1 + 0.5 * t)),
                     lambda: schedules.inverse_time_decay(1.0, 0.5), STEPS),
    "inverse_time_steps": (
        0.1, lambda o: lr_scheduler.LambdaLR(o, lambda t: 1 / (1 + 2.0 * t / 50)),
        lambda: schedules.inverse_time_decay(0.1, 2.0, 50), STEPS),
    "exponential": (0.5, lambda o: lr_scheduler.ExponentialLR(o, gamma=0.99),
                    lambda: schedules.exponential_decay(0.5, 1, 0.99), STEPS, POWERS),
    "multistep": (1.0, lambda o: lr_scheduler.MultiStepLR(o, [100, 250, 400], gamma=0.1),
                  lambda: schedules.piecewise_constant_schedule(
                      1.0, {100: 0.1, 250: 0.1, 400: 0.1}), STEPS),
    "cosine": (0.8, lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=300, eta_min=0.08),
               lambda: schedules.cosine_decay_schedule(0.8, 300, alpha=0.1), 301),
    "linear": (0.6, lambda o: lr_scheduler.LinearLR(o, start_factor=0.25, end_factor=1.0,
                                                    total_iters=150),
               lambda: schedules.linear_schedule(0.15, 0.6, 150), STEPS),
    "polynomial": (0.6, lambda o: lr_scheduler.PolynomialLR(o, total_iters=200, power=2.0),
                   lambda: schedules.polynomial_schedule(0.6, 0.0, 2.0, 200), STEPS,
                   # Near 0 the rounding of float32 is large relative to the value.
                   dict(rtol=2e-6, atol=2e-7 * 0.6)),
}


@pytest.mark.parametrize("case", OTHERS)
def test_matches_torch_scheduler(case):
  init_value, make_scheduler, build, steps, *tol = OTHERS[case]
  theirs = torch_lrs(init_value, make_scheduler, steps)
  ours = build()(jnp.arange(steps))
  assert ours.dtype == jnp.float32
  np.testing.assert_allclose(ours, theirs, **(tol[0] if tol else dict(rtol=2e-6)))
  assert len(np.unique(theirs)) > 3  # the oracle did change the rate


@pytest.mark.parametrize("case", ["step_decay_factor", "inverse_time_steps", "exponential"])
def test_matches_torch_scheduler_in_float64(case):
  init_value, make_scheduler, build, steps, *_ = OTHERS[case]
  with jax.enable_x64(True):
    ours = build()(jnp.arange(steps))
    assert ours.dtype == jnp.float64
    np.testing.assert_allclose(ours, torch_lrs(init_value, make_scheduler, steps),
                               rtol=1e-12)
