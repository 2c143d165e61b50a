"""Warmup schedules against their oracles, at every step from 0 to past the end.

``warmup_constant_schedule``: ``optax.schedules`` with the same arguments.
``warmup_stable_decay_schedule``: the formula of Hägele et al. (2024), transcribed in
Python doubles.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from gradtx import schedules

WARMUP_CONSTANT = {
    "rising": (0.0, 1.0, 50),
    "falling": (0.5, 0.1, 7),
    "one_step": (0.2, 0.8, 1),
    "no_warmup": (0.1, 1.0, 0),  # Optax: init_value at every step
}


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("case", WARMUP_CONSTANT)
def test_warmup_constant_matches_optax(case, x64):
  args = WARMUP_CONSTANT[case]
  with jax.enable_x64(x64):
    counts = jnp.arange(80)
    ours = jax.jit(schedules.warmup_constant_schedule(*args))(counts)
    theirs = np.broadcast_to(
        jax.jit(optax.schedules.warmup_constant_schedule(*args))(counts), counts.shape)
    assert ours.dtype == (jnp.float64 if x64 else jnp.float32)
  tol = dict(rtol=1e-12, atol=1e-15) if x64 else dict(rtol=2e-6, atol=1e-7)
  np.testing.assert_allclose(ours, theirs, **tol)


def wsd(t, peak, warmup, stable, decay, end, decay_type):
  """The warmup-stable-decay formula (Hägele et al. 2024), in Python doubles."""
  if t < warmup:
    return peak * t / warmup
  if t < warmup + stable:
    return peak
  if t < warmup + stable + decay:
    x = (t - warmup - stable) / decay
    shape = {"linear": 1 - x, "cosine": (1 + math.cos(math.pi * x)) / 2,
             "sqrt": 1 - math.sqrt(x)}[decay_type]
    return end + (peak - end) * shape
  return end


# (peak_value, warmup_steps, stable_steps, decay_steps, end_value): each stretch, and
# each one left out.
WSD = {
    "all": (1.0, 10, 20, 30, 0.0),
    "end_value": (3e-3, 25, 50, 77, 3e-4),
    "no_warmup": (0.5, 0, 15, 25, 0.05),
    "no_stable": (1.0, 12, 0, 40, 0.0),
    "no_decay": (2.0, 5, 10, 0, 0.5),
    "one_step_each": (1.0, 1, 1, 1, 0.1),
}
WSD_CASES = list(itertools.product(WSD, ["cosine", "linear", "sqrt"]))


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("case, decay_type", WSD_CASES)
def test_warmup_stable_decay_matches_the_formula(case, decay_type, x64):
  peak, warmup, stable, decay, end = WSD[case]
  steps = warmup + stable + decay + 20
  with jax.enable_x64(x64):
    ours = jax.jit(gtx.warmup_stable_decay_schedule(peak, warmup, stable, decay, end,
                                                    decay_type))(jnp.arange(steps))
    assert ours.dtype == (jnp.float64 if x64 else jnp.float32)
  expected = [wsd(t, peak, warmup, stable, decay, end, decay_type) for t in range(steps)]
  tol = dict(rtol=1e-12, atol=1e-15 * peak) if x64 else dict(rtol=2e-6, atol=1e-7 * peak)
  np.testing.assert_allclose(ours, expected, **tol)


def test_warmup_stable_decay_defaults_are_a_cosine_cooldown_to_zero():
  with jax.enable_x64(True):
    ours = gtx.warmup_stable_decay_schedule(1.0, 4, 4, 8)(jnp.arange(24))
  np.testing.assert_allclose(ours, [wsd(t, 1.0, 4, 4, 8, 0.0, "cosine") for t in range(24)],
                             rtol=1e-12, atol=1e-15)


ALL = {
    "warmup_constant": lambda: gtx.warmup_constant_schedule(0.1, 1.0, 50),
    "warmup_stable_decay": lambda: gtx.warmup_stable_decay_schedule(1.0, 20, 20, 100, 0.1,
                                                                    "sqrt"),
}


@pytest.mark.parametrize("case", ALL)
def test_jit_vmap_and_scalar_count(case):
  schedule = ALL[case]()
  counts = jnp.array([0, 1, 17, 39, 40, 41, 51, 139, 140, 300], jnp.int32)
  eager = schedule(counts)
  tol = dict(rtol=1e-6, atol=1e-7)  # XLA may divide by multiplying: an ulp apart.
  np.testing.assert_allclose(jax.jit(jax.vmap(schedule))(counts), eager, **tol)
  scalar = jax.jit(schedule)(jnp.int32(51))
  assert scalar.shape == () and scalar.dtype == jnp.float32
  np.testing.assert_allclose(scalar, eager[6], **tol)
  np.testing.assert_allclose(schedule(51), eager[6], **tol)


@pytest.mark.parametrize("build, error, message", [
    (lambda: gtx.warmup_constant_schedule(0.0, 1.0, -1),
     ValueError, "warmup_constant_schedule: warmup_steps must be in [0, inf), got -1"),
    (lambda: gtx.warmup_constant_schedule(0.0, 1.0, "10"),
     TypeError, "warmup_constant_schedule: warmup_steps must be a real number in [0, inf)"),
    (lambda: gtx.warmup_stable_decay_schedule(1.0, -1, 10, 10),
     ValueError, "warmup_stable_decay_schedule: warmup_steps must be in [0, inf), got -1"),
    (lambda: gtx.warmup_stable_decay_schedule(1.0, 10, float("nan"), 10),
     ValueError, "warmup_stable_decay_schedule: stable_steps must be in [0, inf), got nan"),
    (lambda: gtx.warmup_stable_decay_schedule(1.0, 10, 10, -5),
     ValueError, "warmup_stable_decay_schedule: decay_steps must be in [0, inf), got -5"),
    (lambda: gtx.warmup_stable_decay_schedule(1.0, 10, 10, 10, decay_type="1-sqrt"),
     ValueError, "warmup_stable_decay_schedule: decay_type must be one of 'cosine', "
     "'linear', 'sqrt', got '1-sqrt'"),
    (lambda: gtx.warmup_stable_decay_schedule(1.0, lambda count: 10, 10, 10),
     TypeError, "warmup_stable_decay_schedule: warmup_steps must be a real number in"),
])
def test_construction_errors(build, error, message):
  with pytest.raises(error) as raised:
    build()
  assert str(raised.value).startswith(message)
