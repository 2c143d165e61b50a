"""Schedules against their oracles.

Optax-named schedules: ``optax.schedules`` with the same arguments. ``cyclic_schedule``:
``torch.optim.lr_scheduler.CyclicLR``. ``inverse_time_decay``, ``step_decay``,
``warmup_linear``: a NumPy / plain-Python transcription of the documented formula.
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

COUNTS = np.arange(301)

# Each case builds a schedule from a module, so the same call runs in gradtx and in Optax.
OPTAX_CASES = {
    "constant": lambda s: s.constant_schedule(0.3),
    "polynomial_sq": lambda s: s.polynomial_schedule(1.0, 0.01, 2, 100),
    "polynomial_sqrt_begin": lambda s: s.polynomial_schedule(1.0, 0.01, 0.5, 100, 50),
    "polynomial_rising": lambda s: s.polynomial_schedule(0.1, 1.0, 3, 150, 10),
    "linear": lambda s: s.linear_schedule(1.0, 0.01, 100),
    "linear_begin": lambda s: s.linear_schedule(0.0, 1.0, 50, 20),
    "linear_zero_steps": lambda s: s.linear_schedule(1.0, 0.5, 0),
    "piecewise": lambda s: s.piecewise_constant_schedule(1.0, {100: 0.1, 200: 0.01}),
    "piecewise_unsorted": lambda s: s.piecewise_constant_schedule(
        0.5, {50: 2.0, 10: 0.5, 250: 0.0}),
    "piecewise_none": lambda s: s.piecewise_constant_schedule(0.7),
    "exponential": lambda s: s.exponential_decay(1.0, 100, 0.5),
    "exponential_staircase": lambda s: s.exponential_decay(1.0, 30, 0.5, staircase=True),
    "exponential_begin": lambda s: s.exponential_decay(2.0, 40, 0.3, transition_begin=50),
    "exponential_floor": lambda s: s.exponential_decay(1.0, 20, 0.5, end_value=0.2),
    "exponential_all": lambda s: s.exponential_decay(1.0, 25, 0.8, 30, True, 0.3),
    "exponential_growth": lambda s: s.exponential_decay(0.1, 1, 1.02),
    "exponential_growth_cap": lambda s: s.exponential_decay(1.0, 10, 1.5, end_value=3.0),
    "exponential_growth_staircase": lambda s: s.exponential_decay(
        1.0, 50, 2.0, transition_begin=10, staircase=True, end_value=5.0),
    "cosine": lambda s: s.cosine_decay_schedule(1.0, 200),
    "cosine_alpha": lambda s: s.cosine_decay_schedule(0.5, 100, alpha=0.1),
    "cosine_exponent": lambda s: s.cosine_decay_schedule(1.0, 150, exponent=2.0),
    "cosine_both": lambda s: s.cosine_decay_schedule(2.0, 250, 0.2, 0.5),
    "warmup_cosine": lambda s: s.warmup_cosine_decay_schedule(0.0, 1.0, 50, 250),
    "warmup_cosine_no_warmup": lambda s: s.warmup_cosine_decay_schedule(
        0.1, 1.0, 0, 200, end_value=0.01),
    "warmup_cosine_exponent": lambda s: s.warmup_cosine_decay_schedule(
        0.0, 2.0, 30, 300, 0.1, exponent=2.0),
    "warmup_cosine_zero_peak": lambda s: s.warmup_cosine_decay_schedule(0.5, 0.0, 10, 100),
    "warmup_exponential": lambda s: s.warmup_exponential_decay_schedule(0.0, 1.0, 50, 20, 0.9),
    "warmup_exponential_all": lambda s: s.warmup_exponential_decay_schedule(
        0.1, 1.0, 10, 30, 0.5, transition_begin=20, staircase=True, end_value=0.1),
    "warmup_exponential_growth": lambda s: s.warmup_exponential_decay_schedule(
        0.0, 1.0, 20, 10, 1.1, end_value=2.0),
    "join": lambda s: s.join_schedules(
        [s.constant_schedule(1.0), s.linear_schedule(1.0, 0.1, 50), s.cosine_decay_schedule(
            0.1, 80)], [100, 200]),
    "join_single": lambda s: s.join_schedules([s.exponential_decay(1.0, 10, 0.9)], []),
}


@pytest.mark.parametrize("case", OPTAX_CASES)
def test_matches_optax(case):
  ours = OPTAX_CASES[case](schedules)(COUNTS)
  theirs = np.broadcast_to(OPTAX_CASES[case](optax.schedules)(COUNTS), COUNTS.shape)
  assert ours.dtype == jnp.float32 and ours.shape == COUNTS.shape
  np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def torch_cyclic_lr(base_value, max_value, step_size, mode, gamma, steps):
  """``get_last_lr()`` at steps 0..steps-1 of a torch ``CyclicLR``."""
  optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_value)
  scheduler = torch.optim.lr_scheduler.CyclicLR(
      optimizer, base_lr=base_value, max_lr=max_value, step_size_up=step_size, mode=mode,
      gamma=gamma, cycle_momentum=False)
  values = []
  for _ in range(steps):
    values.append(scheduler.get_last_lr()[0])
    optimizer.step()
    scheduler.step()
  return np.array(values)


@pytest.mark.parametrize("base_value, max_value, step_size, mode, gamma", [
    (0.1, 1.0, 20, "triangular", 1.0),
    (1e-3, 6e-3, 7, "triangular", 1.0),
    (0.1, 1.0, 25, "triangular2", 1.0),
    (0.5, 0.05, 15, "triangular2", 1.0),
    (1e-3, 6e-3, 15, "exp_range", 0.99),
    (0.0, 2.0, 40, "exp_range", 0.995),
])
def test_cyclic_matches_torch(base_value, max_value, step_size, mode, gamma):
  ours = schedules.cyclic_schedule(base_value, max_value, step_size, mode, gamma)(COUNTS)
  theirs = torch_cyclic_lr(base_value, max_value, step_size, mode, gamma, len(COUNTS))
  # float32 rounds gamma; exp_range's gamma**t amplifies that by t.
  rtol = 2e-5 if mode == "exp_range" else 2e-6
  np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-8)


def warmup_linear_reference(t, init_value, peak_value, warmup_steps, decay_steps,
                            end_value):
  if t < warmup_steps:
    return init_value + (peak_value - init_value) * t / warmup_steps
  if t < decay_steps:
    return peak_value + (end_value - peak_value) * (t - warmup_steps) / (
        decay_steps - warmup_steps)
  return end_value


NUMPY_CASES = {
    "inverse_time": (lambda: schedules.inverse_time_decay(1.0, 0.5),
                     lambda t: 1.0 / (1 + 0.5 * t / 1)),
    "inverse_time_steps": (lambda: schedules.inverse_time_decay(0.1, 2.0, 50),
                           lambda t: 0.1 / (1 + 2.0 * t / 50)),
    "step_decay": (lambda: schedules.step_decay(1.0, 30),
                   lambda t: 1.0 * 0.5**math.floor(t / 30)),
    "step_decay_factor": (lambda: schedules.step_decay(0.3, 7, 0.9),
                          lambda t: 0.3 * 0.9**math.floor(t / 7)),
    "warmup_linear": (lambda: schedules.warmup_linear(0.0, 1.0, 50, 250),
                      lambda t: warmup_linear_reference(t, 0.0, 1.0, 50, 250, 0.0)),
    "warmup_linear_end": (lambda: schedules.warmup_linear(0.1, 2.0, 20, 120, 0.5),
                          lambda t: warmup_linear_reference(t, 0.1, 2.0, 20, 120, 0.5)),
    "warmup_linear_no_warmup": (lambda: schedules.warmup_linear(0.1, 1.0, 0, 100, 0.2),
                                lambda t: warmup_linear_reference(t, 0.1, 1.0, 0, 100,
                                                                  0.2)),
}


@pytest.mark.parametrize("case", NUMPY_CASES)
def test_matches_numpy(case):
  build, formula = NUMPY_CASES[case]
  np.testing.assert_allclose(build()(COUNTS), [formula(t) for t in COUNTS],
                             rtol=2e-6, atol=1e-7)


# One case per schedule function, with its non-default options switched on.
ALL_SCHEDULES = {
    **{name: lambda name=name: OPTAX_CASES[name](schedules) for name in [
        "constant", "polynomial_sqrt_begin", "linear_begin", "piecewise_unsorted",
        "exponential_all", "exponential_growth_cap", "cosine_both", "warmup_cosine_exponent",
        "warmup_exponential_all", "join"]},
    **{name: NUMPY_CASES[name][0] for name in ["inverse_time_steps", "step_decay_factor",
                                                "warmup_linear_end"]},
    "cyclic_triangular2": lambda: schedules.cyclic_schedule(0.1, 1.0, 20, "triangular2"),
    "cyclic_exp_range": lambda: schedules.cyclic_schedule(0.1, 1.0, 20, "exp_range", 0.99),
}


@pytest.mark.parametrize("case", ALL_SCHEDULES)
def test_jit_vmap_and_scalar_count(case):
  schedule = ALL_SCHEDULES[case]()
  counts = jnp.array([0, 1, 17, 49, 50, 51, 199, 300], jnp.int32)
  eager = schedule(counts)
  # XLA may turn a division by a constant into a multiplication: an ulp apart.
  tol = dict(rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(jax.jit(jax.vmap(schedule))(counts), eager, **tol)
  scalar = jax.jit(schedule)(jnp.int32(51))
  assert scalar.shape == () and scalar.dtype == jnp.float32
  np.testing.assert_allclose(scalar, eager[5], **tol)
  np.testing.assert_allclose(schedule(51), eager[5], **tol)


@pytest.mark.parametrize("case", ["constant", "exponential_all", "warmup_cosine", "join",
                                  "piecewise", "polynomial_sq"])
def test_float64_under_x64(case):
  with jax.enable_x64(True):
    counts = jnp.arange(301)
    ours = OPTAX_CASES[case](schedules)(counts)
    theirs = np.broadcast_to(OPTAX_CASES[case](optax.schedules)(counts), counts.shape)
    assert ours.dtype == jnp.float64
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", ["step_decay", "inverse_time", "warmup_linear"])
def test_float64_under_x64_own_schedules(case):
  build, formula = NUMPY_CASES[case]
  with jax.enable_x64(True):
    ours = build()(jnp.arange(301))
    assert ours.dtype == jnp.float64
    np.testing.assert_allclose(ours, [formula(t) for t in COUNTS], rtol=1e-12)


def test_cyclic_float64_under_x64():
  with jax.enable_x64(True):
    ours = schedules.cyclic_schedule(1e-3, 6e-3, 15, "exp_range", 0.99)(jnp.arange(301))
  assert ours.dtype == jnp.float64
  np.testing.assert_allclose(ours, torch_cyclic_lr(1e-3, 6e-3, 15, "exp_range", 0.99, 301),
                             rtol=1e-12)


def test_traced_hyperparameters_are_accepted():
  """Constructors called inside jit (as inject_hyperparams does) skip the checks."""

  @jax.jit
  def at(init_value, decay_rate, end_value, count):
    return schedules.exponential_decay(init_value, 10, decay_rate, end_value=end_value)(count)

  counts = jnp.arange(0, 100, 7)
  np.testing.assert_allclose(at(1.0, 0.5, 0.1, counts),
                             schedules.exponential_decay(1.0, 10, 0.5, end_value=0.1)(counts),
                             rtol=1e-6)
  np.testing.assert_allclose(at(1.0, 1.5, 4.0, counts),
                             schedules.exponential_decay(1.0, 10, 1.5, end_value=4.0)(counts),
                             rtol=1e-6)


def test_exported_at_top_level():
  for name in schedules.__all__:
    assert getattr(gtx, name) is getattr(schedules, name)
  assert gtx.schedules is schedules


@pytest.mark.parametrize("build, match", [
    (lambda: schedules.exponential_decay(1.0, 0, 0.5),
     r"exponential_decay: transition_steps must be in \(0, inf\), got 0"),
    (lambda: schedules.exponential_decay(1.0, 10, -1),
     r"exponential_decay: decay_rate must be in \(0, inf\), got -1"),
    (lambda: schedules.exponential_decay(1.0, 10, 0.0), "decay_rate"),
    (lambda: schedules.exponential_decay(1.0, 10, 0.5, transition_begin=-1),
     "transition_begin"),
    (lambda: schedules.polynomial_schedule(1.0, 0.0, 1, -5), "transition_steps"),
    (lambda: schedules.linear_schedule(1.0, 0.0, 10, -1), "linear_schedule: transition_begin"),
    (lambda: schedules.piecewise_constant_schedule(1.0, {10: -0.1}),
     r"boundaries_and_scales\[10\] must be in \[0, inf\)"),
    (lambda: schedules.cosine_decay_schedule(1.0, 0), "decay_steps"),
    (lambda: schedules.warmup_cosine_decay_schedule(0.0, 1.0, 100, 50),
     "decay_steps - warmup_steps"),
    (lambda: schedules.warmup_cosine_decay_schedule(0.0, 1.0, -1, 50), "warmup_steps"),
    (lambda: schedules.warmup_exponential_decay_schedule(0.0, 1.0, 10, 0, 0.5),
     "warmup_exponential_decay_schedule: transition_steps"),
    (lambda: schedules.warmup_linear(0.0, 1.0, 10, 10), "decay_steps - warmup_steps"),
    (lambda: schedules.inverse_time_decay(1.0, -0.1), "decay_rate"),
    (lambda: schedules.inverse_time_decay(1.0, 0.1, 0), "transition_steps"),
    (lambda: schedules.step_decay(1.0, 0), "every"),
    (lambda: schedules.step_decay(1.0, 2.5), "every"),
    (lambda: schedules.step_decay(1.0, 10, -0.5), "factor"),
    (lambda: schedules.cyclic_schedule(0.1, 1.0, 0), "step_size"),
    (lambda: schedules.cyclic_schedule(0.1, 1.0, 10, "bogus"), "mode"),
    (lambda: schedules.cyclic_schedule(0.1, 1.0, 10, "exp_range", 0.0), "gamma"),
    (lambda: schedules.join_schedules([schedules.constant_schedule(1.0)] * 2, [1, 2]),
     "boundaries"),
])
def test_construction_errors(build, match):
  with pytest.raises(ValueError, match=match):
    build()


@pytest.mark.parametrize("make", [gtx.scale_by_schedule, gtx.scale_by_learning_rate],
                         ids=["scale_by_schedule", "scale_by_learning_rate"])
def test_schedules_see_a_jax_count_after_a_numpy_restore(make):
  """A checkpoint restores the count as a NumPy integer; the schedule still gets a JAX
  array, so a schedule written with array methods behaves as before the restore."""
  seen = []

  def schedule(count):
    seen.append(type(count))
    return 0.5 ** count.astype(jnp.float32)

  tx = make(schedule)
  params = {"w": jnp.ones(2)}
  state = jax.tree.map(np.asarray, tx.init(params))
  state = jax.tree.map(lambda x: np.asarray(3, x.dtype) if x.ndim == 0 else x, state)
  updates, _ = tx.update({"w": jnp.ones(2)}, state, params)
  assert all(issubclass(t, jax.Array) for t in seen)
  np.testing.assert_allclose(np.abs(np.asarray(updates["w"])), 0.125)
