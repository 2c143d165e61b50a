"""multiply_schedules against torch's ChainedScheduler (2.13) of multiplicative
schedulers driving an SGD optimizer: its ``get_last_lr()`` after ``t`` calls of
``step()`` is the product's value at ``count = t``. torch computes each rate from the
last (``lr *= factor``) in Python doubles; gradtx in closed form.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradtx as gtx

lr_scheduler = torch.optim.lr_scheduler
STEPS = 300


def torch_chained(init_value, make_schedulers, steps=STEPS):
  optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=init_value)
  scheduler = lr_scheduler.ChainedScheduler(make_schedulers(optimizer))
  values = []
  for _ in range(steps):
    values.append(scheduler.get_last_lr()[0])
    optimizer.step()
    scheduler.step()
  return np.array(values)


# name -> (lr, torch schedulers, gradtx schedules): the base rate in the first schedule,
# factors starting at 1 in the others.
CASES = {
    "step_exponential": (
        0.5, lambda o: [lr_scheduler.StepLR(o, 7, 0.5), lr_scheduler.ExponentialLR(o, 0.99)],
        lambda: [gtx.step_decay(0.5, 7, 0.5), gtx.exponential_decay(1.0, 1, 0.99)]),
    "constant_multistep_linear": (
        0.2, lambda o: [lr_scheduler.ConstantLR(o, factor=0.25, total_iters=20),
                        lr_scheduler.MultiStepLR(o, [50, 120], 0.1),
                        lr_scheduler.LinearLR(o, 0.5, 1.0, total_iters=40)],
        lambda: [gtx.piecewise_constant_schedule(0.25, {20: 4.0}),
                 gtx.piecewise_constant_schedule(0.2, {50: 0.1, 120: 0.1}),
                 gtx.linear_schedule(0.5, 1.0, 40)]),
    "single": (0.3, lambda o: [lr_scheduler.ExponentialLR(o, 0.98)],
               lambda: [gtx.exponential_decay(0.3, 1, 0.98)]),
}


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("case", CASES)
def test_matches_torch_chained_scheduler(case, x64):
  init_value, make_schedulers, build = CASES[case]
  theirs = torch_chained(init_value, make_schedulers)
  with jax.enable_x64(x64):
    ours = jax.jit(gtx.multiply_schedules(*build()))(jnp.arange(STEPS))
    assert ours.dtype == (jnp.float64 if x64 else jnp.float32)
  # float32 rounds a decay rate by up to 2**-24 relative; its t-th power by t times that.
  tol = dict(rtol=1e-12, atol=1e-16) if x64 else dict(rtol=2e-5, atol=1e-9)
  np.testing.assert_allclose(ours, theirs, **tol)
  assert len(np.unique(theirs)) > 3  # the oracle did change the rate


def test_every_schedule_sees_the_same_count():
  seen = []

  def spy(count):
    seen.append(count)
    return 2.0

  product = gtx.multiply_schedules(gtx.constant_schedule(3.0), spy, spy)
  counts = jnp.arange(5)
  np.testing.assert_array_equal(product(counts), 12.0)
  assert len(seen) == 2 and all(np.array_equal(s, counts) for s in seen)
  assert jax.jit(product)(jnp.int32(4)).shape == ()


@pytest.mark.parametrize("build, error, message", [
    (lambda: gtx.multiply_schedules(),
     ValueError, "multiply_schedules: give at least one schedule, got none"),
    (lambda: gtx.multiply_schedules(gtx.constant_schedule(1.0), 0.5),
     TypeError, "multiply_schedules: schedules[1] must be a schedule (a function of the "
     "step count), got 0.5"),
])
def test_construction_errors(build, error, message):
  with pytest.raises(error) as raised:
    build()
  assert str(raised.value).startswith(message)
