"""AdaBound and AMSBound (Luo et al. 2019) against the authors' package, and clip_bounds.

Oracles:
  * the authors' reference implementation, ``adabound.AdaBound`` (PyPI ``adabound`` 0.0.5,
    PyTorch), over 60 steps on the mixed-shape pytree of ``conftest``, float32 and
    float64; both sides take their gradients from JAX (``jax.grad(conftest.loss)`` at
    torch's current params), so a difference can only come from the update rule. A
    scheduled learning rate is given to the package the way a torch lr scheduler does it:
    ``param_group['lr']`` is set before each step, and the package rescales ``final_lr`` by
    ``lr / base_lr``. Where the bounds should bind, the pre-clip step size is recomputed
    from the package's own state and the test asserts that it left the bounds on both
    sides, so the comparison exercises the clipping;
  * a NumPy transcription of the authors' update with ``lower``/``upper`` schedules, and
    of ``np.clip`` against the bounds' formulas, for ``clip_bounds`` alone.
"""

import contextlib
import math
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradtx as gtx
from conftest import loss, make_params
from gradtx._src.adabound import adabound, adabound_step_size, amsbound, clip_bounds
from oracles import STEPS, assert_trajectories_close, reference_trajectory, trajectory

adabound_package = pytest.importorskip("adabound")

# float64: the two sides round differently (the package forms lr*sqrt(1-b2**t)/(1-b1**t)
# in Python doubles, then divides; the bounds are doubles): ~1e-14 after 60 steps.
# float32: the same, plus gradtx's bias corrections 1 - b**t computed in float32 from b
# rounded to float32 (1 - 0.999 is 1.3e-5 off), where the package uses Python doubles.
TOL = {"float64": dict(rtol=1e-11, atol=1e-13), "float32": dict(rtol=1e-4, atol=1e-5)}


def decaying_lr(count):
  """A learning-rate schedule, evaluated by JAX for gradtx and for the package alike."""
  return 0.03 * 0.95**count


# name: (gradtx factory, AdaBound keyword arguments, whether both bounds must bind).
# The package's learning rate is the same number or schedule as gradtx's.
CASES = {
    "defaults": (lambda ams: (amsbound if ams else adabound)(),
                 dict(lr=1e-3), False),
    "hyperparameters_weight_decay": (
        lambda ams: (amsbound if ams else adabound)(0.02, final_lr=0.2, b1=0.8, b2=0.99,
                                                    gamma=2e-3, eps=1e-6, weight_decay=0.1),
        dict(lr=0.02, final_lr=0.2, betas=(0.8, 0.99), gamma=2e-3, eps=1e-6,
             weight_decay=0.1), False),
    "lr_schedule_weight_decay": (
        lambda ams: (amsbound if ams else adabound)(decaying_lr, final_lr=0.05,
                                                    weight_decay=0.01),
        dict(lr=decaying_lr, final_lr=0.05, weight_decay=0.01), False),
    # b2=0.9 makes v follow the shrinking gradients, so the step size crosses the upper
    # bound too; gamma=0.05 closes the bounds within the 60 steps.
    "bounds_bind": (lambda ams: (amsbound if ams else adabound)(0.02, final_lr=0.05,
                                                                b2=0.9, gamma=0.05),
                    dict(lr=0.02, final_lr=0.05, betas=(0.9, 0.9), gamma=0.05), True),
    "bounds_bind_lr_schedule": (
        lambda ams: (amsbound if ams else adabound)(decaying_lr, final_lr=0.02, b2=0.9,
                                                    gamma=0.1, weight_decay=0.05),
        dict(lr=decaying_lr, final_lr=0.02, betas=(0.9, 0.9), gamma=0.1, weight_decay=0.05),
        True),
}


@contextlib.contextmanager
def precision(dtype):
  """x64 on or off for JAX, and torch's default dtype to match."""
  previous = torch.get_default_dtype()
  torch.set_default_dtype(getattr(torch, dtype))
  try:
    with jax.enable_x64(dtype == "float64"):
      yield
  finally:
    torch.set_default_dtype(previous)


GRAD = jax.jit(jax.grad(loss))


def _lr_at(lr, count):
  """The schedule's value as gradtx sees it (jitted: eagerly, ``0.95**count`` would
  compile once per distinct count)."""
  return float(jax.jit(lr)(jnp.asarray(count, jnp.int32))) if callable(lr) else lr


def package_trajectory(params, amsbound, steps=STEPS, lr=1e-3, **kwargs):
  """Params after each step of ``adabound.AdaBound``, and how many (step, coordinate)
  pairs had a pre-clip step size below the lower and above the upper bound."""
  leaves, treedef = jax.tree.flatten(params)
  tensors = [torch.tensor(np.array(x), requires_grad=True) for x in leaves]
  optimizer = adabound_package.AdaBound(tensors, lr=_lr_at(lr, 0), amsbound=amsbound,
                                        **kwargs)
  group = optimizer.param_groups[0]
  (base_lr,) = optimizer.base_lrs

  def snapshot():
    return treedef.unflatten([jnp.asarray(t.detach().numpy().copy()) for t in tensors])

  path, below, above = [], 0, 0
  for t in range(1, steps + 1):
    group["lr"] = _lr_at(lr, t - 1)
    for tensor, g in zip(tensors, jax.tree.leaves(GRAD(snapshot()))):
      tensor.grad = torch.from_numpy(np.array(g))
    with warnings.catch_warnings():  # the package uses torch's deprecated add(Number, ...)
      warnings.simplefilter("ignore", UserWarning)
      optimizer.step()
    path.append(snapshot())
    # The package's bounds and pre-clip step size at this step, from its own state.
    (b1, b2), gamma = group["betas"], group["gamma"]
    final_lr = group["final_lr"] * group["lr"] / base_lr
    lower = final_lr * (1 - 1 / (gamma * t + 1))
    upper = final_lr * (1 + 1 / (gamma * t))
    for tensor in tensors:
      state = optimizer.state[tensor]
      v = state["max_exp_avg_sq" if amsbound else "exp_avg_sq"].double().numpy()
      step_size = group["lr"] * math.sqrt(1 - b2**t) / (1 - b1**t) / (
          np.sqrt(v) + group["eps"])
      below += int((step_size < lower).sum())
      above += int((step_size > upper).sum())
  return path, below, above


# float32 runs the two most general cases; the others differ only in hyperparameters,
# which float64 covers tightly.
FLOAT32 = ["hyperparameters_weight_decay", "bounds_bind_lr_schedule"]


@pytest.mark.parametrize("ams", [False, True], ids=["adabound", "amsbound"])
@pytest.mark.parametrize("case, dtype", [(case, "float64") for case in CASES]
                         + [(case, "float32") for case in FLOAT32])
def test_matches_the_authors_package(case, dtype, ams):
  make, kwargs, must_bind = CASES[case]
  with precision(dtype):
    params = make_params(jnp.dtype(dtype))
    theirs, below, above = package_trajectory(params, ams, **kwargs)
    ours = trajectory(make(ams), params)
  assert_trajectories_close(ours, theirs, dtype, TOL[dtype])
  if must_bind:
    assert below > 0 and above > 0, (below, above)


def _chain(learning_rate, final_lr, b2, gamma, *, step_size=None, clip=True):
  """AdaBound's chain with one piece swapped, for the tests that the oracle can fail."""
  return gtx.chain(
      gtx.multiply(gtx.add_momentum(0.9, ema=True),
                   gtx.chain(step_size or adabound_step_size(b2), gtx.bias_correction(0.9),
                             gtx.scale_by_learning_rate(learning_rate, flip_sign=False),
                             clip_bounds(final_lr, gamma) if clip else gtx.identity())),
      gtx.scale(-1.0))


@pytest.mark.parametrize("case, ours", [
    # No clipping where the bounds bind.
    ("bounds_bind", lambda: _chain(0.02, 0.05, 0.9, 0.05, clip=False)),
    # final_lr not rescaled by lr(t)/lr(0) under a learning-rate schedule.
    ("bounds_bind_lr_schedule", lambda: gtx.chain(
        gtx.add_decayed_weights(0.05), _chain(decaying_lr, 0.02, 0.9, 0.1))),
    # Adam's (Optax's) eps placement, 1/(sqrt(v_hat) + eps), instead of the authors'.
    ("defaults", lambda: _chain(1e-3, 0.1, 0.999, 1e-3,
                                step_size=gtx.adaptive_step_size(0.999, 1e-8))),
], ids=["no_clipping", "final_lr_not_rescaled", "optax_eps_placement"])
def test_the_oracle_tells_apart_a_different_rule(case, ours):
  _, kwargs, _ = CASES[case]
  with precision("float64"):
    params = make_params(jnp.float64)
    theirs, _, _ = package_trajectory(params, False, **kwargs)
    path = trajectory(ours(), params)
  with pytest.raises(AssertionError):
    assert_trajectories_close(path, theirs, "float64", TOL["float64"])


def test_amsbound_is_not_adabound_where_v_decreases():
  """With b2=0.9, v falls as the gradients shrink, so AMSBound's running maximum matters."""
  make, _, _ = CASES["bounds_bind"]
  with pytest.raises(AssertionError):
    assert_trajectories_close(trajectory(make(True), make_params()),
                              trajectory(make(False), make_params()))


# --- clip_bounds on its own --------------------------------------------------------------


def _lower(count):
  return 0.01 * (1 - 0.8**(count + 1))


def _upper(count):
  return 0.05 + 2.0 * 0.9**count


# name: (clip_bounds keyword arguments, NumPy bounds at count (from 0)).
BOUNDS = {
    "defaults": ({}, lambda c: (0.1 * (1 - 1 / (1e-3 * (c + 1) + 1)),
                                0.1 * (1 + 1 / (1e-3 * (c + 1))))),
    "final_lr_gamma": (dict(final_lr=0.05, gamma=0.1),
                       lambda c: (0.05 * (1 - 1 / (0.1 * (c + 1) + 1)),
                                  0.05 * (1 + 1 / (0.1 * (c + 1))))),
    "final_lr_schedule": (dict(final_lr=lambda c: 0.2 * 0.95**c, gamma=0.1),
                          lambda c: (0.2 * 0.95**c * (1 - 1 / (0.1 * (c + 1) + 1)),
                                     0.2 * 0.95**c * (1 + 1 / (0.1 * (c + 1))))),
    "lower_schedule": (dict(gamma=0.1, lower=_lower),
                       lambda c: (_lower(c), 0.1 * (1 + 1 / (0.1 * (c + 1))))),
    "upper_schedule": (dict(gamma=0.1, upper=_upper),
                       lambda c: (0.1 * (1 - 1 / (0.1 * (c + 1) + 1)), _upper(c))),
    "both_schedules": (dict(lower=_lower, upper=_upper), lambda c: (_lower(c), _upper(c))),
    "constants": (dict(lower=0.01, upper=0.5), lambda c: (0.01, 0.5)),
}


def _step_sizes(dtype, steps, seed=0):
  """Per-coordinate step sizes from 1e-6 to 1e4 (log-uniform), on the mixed-shape tree."""
  rng = np.random.default_rng(seed)
  shapes = jax.tree.map(np.shape, make_params())
  return [jax.tree.map(lambda s: jnp.asarray(10.0**rng.uniform(-6, 4, size=s), dtype),
                       shapes, is_leaf=lambda x: isinstance(x, tuple))
          for _ in range(steps)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", BOUNDS)
def test_clip_bounds_matches_numpy(name, dtype):
  kwargs, bounds = BOUNDS[name]
  with jax.enable_x64(dtype == "float64"):
    tx = clip_bounds(**kwargs)
    inputs = _step_sizes(dtype, STEPS)
    state = tx.init(inputs[0])
    update = jax.jit(tx.update)
    below = above = 0
    for count, s in enumerate(inputs):
      out, state = update(s, state)
      low, high = bounds(count)
      for x, y in zip(jax.tree.leaves(out), jax.tree.leaves(s)):
        assert x.dtype == y.dtype
        y = np.asarray(y, np.float64)
        np.testing.assert_allclose(np.asarray(x, np.float64), np.clip(y, low, high),
                                   rtol=1e-6 if dtype == "float32" else 1e-12,
                                   err_msg=f"{name}, step {count + 1}")
        below += int((y < low).sum())
        above += int((y > high).sum())
    assert below > 0 and above > 0
    assert int(state.count) == STEPS


def test_default_bounds_have_no_float32_cancellation():
  """At gamma*t = 1e-3 the lower bound ``final_lr*(1 - 1/(gamma*t + 1))`` loses 4 digits to
  cancellation if computed as written in float32; gradtx keeps float32 precision."""
  tx = clip_bounds(final_lr=1.0, gamma=1e-3)
  out, _ = tx.update(jnp.zeros([], jnp.float32), tx.init(jnp.zeros([], jnp.float32)))
  np.testing.assert_allclose(float(out), 1 - 1 / 1.001, rtol=3e-7)


def adabound_rule(lr, b1, b2, eps, lower, upper):
  """The authors' AdaBound update for one array, with the bounds at count ``t - 1``."""

  def init(p):
    return np.zeros_like(p), np.zeros_like(p)

  def rule(t, g, p, m, v):
    del p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t) / (np.sqrt(v) + eps)
    step_size = np.clip(step_size, lower(t - 1), upper(t - 1))
    return -step_size * m, m, v

  return rule, init


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adabound_chain_with_bound_schedules_matches_numpy(dtype):
  """The composable chain of the module docstring with ``lower``/``upper`` schedules."""
  lr, b1, b2, eps = 0.02, 0.9, 0.9, 1e-8
  lower, upper = (lambda c: 0.01 * (1 - 0.9**(c + 1))), (lambda c: 0.02 + 0.5 * 0.9**c)
  tx = gtx.multiply(gtx.add_momentum(b1, ema=True),
                    gtx.chain(adabound_step_size(b2, eps), gtx.bias_correction(b1),
                              gtx.scale_by_learning_rate(lr, flip_sign=False),
                              clip_bounds(lower=lower, upper=upper)))
  tx = gtx.chain(tx, gtx.scale(-1.0))
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    rule, init = adabound_rule(lr, b1, b2, eps, lower, upper)
    assert_trajectories_close(trajectory(tx, params),
                              reference_trajectory(rule, init, params), dtype,
                              TOL[dtype])


# --- edge cases ----------------------------------------------------------------------------


def test_zero_gradient_with_zero_eps_gives_a_finite_zero_update():
  """eps=0 and v=0: the step size is inf, clipped to the (finite) upper bound, times m=0,
  as in the authors' code; no inf or NaN reaches the params."""
  params = {"w": jnp.asarray([1.0, -2.0, 0.5])}
  grads = {"w": jnp.asarray([0.0, 3.0, 0.0])}
  for tx in (adabound(0.1, eps=0.0), amsbound(0.1, eps=0.0)):
    state, update = tx.init(params), jax.jit(tx.update)
    for _ in range(3):
      updates, state = update(grads, state, params)
      assert np.isfinite(updates["w"]).all()
      np.testing.assert_array_equal(np.asarray(updates["w"])[[0, 2]], 0.0)


def test_inject_hyperparams_and_schedules_of_other_hyperparameters():
  """``inject_hyperparams`` holds every number as state; a constant schedule of gamma or
  b2 (built through inject_hyperparams) gives the same steps as the number."""
  params = make_params()
  expected = trajectory(adabound(0.02, final_lr=0.05, b2=0.9, gamma=0.05), params, steps=5)
  injected = gtx.inject_hyperparams(adabound)(0.02, final_lr=0.05, b2=0.9, gamma=0.05)
  assert set(injected.init(params).hyperparams) == {
      "learning_rate", "final_lr", "b1", "b2", "gamma", "eps", "weight_decay"}
  for tx in (injected, adabound(0.02, final_lr=0.05, b2=lambda c: jnp.full([], 0.9),
                                gamma=lambda c: jnp.full([], 0.05))):
    assert_trajectories_close(trajectory(tx, params, steps=5), expected, "float32",
                              dict(rtol=1e-6, atol=1e-7))


# --- validation ----------------------------------------------------------------------------

ALIAS_RANGES = dict(learning_rate="[0, inf)", final_lr="(0, inf)", b1="[0, 1)",
                    b2="[0, 1)", gamma="(0, 1)", eps="[0, inf)", weight_decay="[0, inf)")
INVALID = (
    [(name, param, bad, interval) for name in ("adabound", "amsbound")
     for param, interval in ALIAS_RANGES.items()
     for bad in {"[0, inf)": [-0.5], "(0, inf)": [0.0, -1.0], "[0, 1)": [-0.5, 1.0],
                 "(0, 1)": [0.0, 1.0]}[interval] + [math.nan]]
    + [("clip_bounds", "final_lr", bad, "(0, inf)") for bad in (0.0, -0.1, math.nan)]
    + [("clip_bounds", "gamma", bad, "(0, 1)") for bad in (0.0, 1.0, 1.5)]
    + [("clip_bounds", "lower", bad, "[0, inf)") for bad in (-0.1, math.nan)]
    + [("clip_bounds", "upper", bad, "[0, inf)") for bad in (-0.1, math.nan)]
    + [("adabound_step_size", "b2", bad, "[0, 1)") for bad in (-0.1, 1.0)]
    + [("adabound_step_size", "eps", -1e-8, "[0, inf)")])
CONSTRUCTORS = dict(adabound=adabound, amsbound=amsbound, clip_bounds=clip_bounds,
                    adabound_step_size=adabound_step_size)


@pytest.mark.parametrize("name, param, bad, interval", INVALID)
def test_invalid_hyperparameter_raises_naming_it_and_its_range(name, param, bad, interval):
  message = f"{name}: {param} must be in {interval}, got {bad!r}"
  with pytest.raises(ValueError, match="^" + re.escape(message)):
    CONSTRUCTORS[name](**{param: bad})


def test_clip_bounds_lower_must_not_exceed_upper():
  with pytest.raises(ValueError, match="^clip_bounds: lower must be <= upper, got 0.5 > 0.1"):
    clip_bounds(lower=0.5, upper=0.1)


@pytest.mark.parametrize("factory", [adabound, amsbound])
def test_learning_rate_schedule_must_not_start_at_zero(factory):
  with pytest.raises(ValueError, match=r"learning-rate schedule must not start at 0.*"
                                       r"rescaled by learning_rate\(t\)/learning_rate\(0\)"):
    factory(gtx.linear_schedule(0.0, 1e-3, 100))


def test_schedules_and_traced_values_are_not_checked():
  assert isinstance(clip_bounds(final_lr=lambda c: -1.0, lower=lambda c: -1.0,
                                upper=lambda c: -2.0), gtx.GradientTransformation)
  assert isinstance(adabound(lambda c: 1e-3 * (c + 1), gamma=lambda c: 5.0),
                    gtx.GradientTransformation)
  params = {"w": jnp.ones(3)}

  @jax.jit
  def step(gamma, lower):
    tx = clip_bounds(gamma=gamma, lower=lower)
    return tx.update(params, tx.init(params))[0]

  # Upper bound 0.1 * (1 + 1/1.5) at t=1, the lower one -1 (both unchecked).
  np.testing.assert_allclose(step(jnp.asarray(1.5), jnp.asarray(-1.0))["w"], 0.1 / 0.6,
                             rtol=1e-6)
