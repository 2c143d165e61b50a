"""reduce_on_plateau against Optax, torch, and a plain-Python transcription of its rule.

Oracles:
  * ``optax.contrib.reduce_on_plateau`` (0.2.8), for positive losses: every state field
    and the scaled updates, bit for bit, step by step over 160-200 losses, in float32
    and float64, in settings that reduce the scale several times (asserted).
  * ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (2.13), driven with the same losses,
    its ``lr / base_lr`` against our scale after every step. The mapping, where the
    semantics agree:

      torch                               gradtx
      patience=p                          patience=p + 1 (torch reduces when the count
                                          of bad epochs exceeds p, Optax when it reaches
                                          patience)
      mode='min', threshold_mode='rel', t rtol=t, atol=0, for positive losses
      mode='max', threshold_mode='rel', t rtol=t, atol=0, for negative losses, torch fed
        on the negated losses               the negated losses: ``-v > -best * (1 + t)``
                                          is our ``v < (1 + t) * best``
      mode='min', threshold_mode='abs', t rtol=0, atol=t, any sign
      cooldown=c, factor=f                cooldown=c, factor=f
      min_lr=m (base_lr 1, eps=0)         min_scale=m
      step(mean of k losses)              accumulation_size=k, compared after each k-th

    Where they do not agree (kept, tested below): torch's and Optax's relative test is
    wrong-signed for negative losses (a flat negative loss "improves" for ever, a
    slightly worse one replaces the best), so for losses that change sign neither
    applies; there the oracle is ``reference_scales``, a plain-Python transcription of
    the documented rule. Optax takes a loss of ``-inf`` as an improvement; gradtx counts
    every non-finite loss as an evaluation without improvement.
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from conftest import loss, make_params
from oracles import assert_trajectories_close, trajectory
import gradtx as gtx
from gradtx._src.reduce_on_plateau import ReduceOnPlateauState, reduce_on_plateau

FIELDS = ReduceOnPlateauState._fields


def losses(n=160, seed=0, low=0.0, quantum=2.0**-8):
  """A loss that drops to a new level every 40 steps and is noisy in between: plateaus.

  ``low + 4 * 0.6**k`` plus noise, rounded to multiples of ``quantum`` (so that, with
  dyadic tolerances, every comparison is exact in float32 and in double alike).
  """
  rng = np.random.default_rng(seed)
  level = 4.0 * 0.6 ** (np.arange(n) // 40)
  values = low + level * (1 + 0.03 * rng.standard_normal(n))
  return values if quantum is None else np.round(values / quantum) * quantum


def reductions(scales):
  return int(np.sum(np.diff(np.asarray(scales, np.float64)) < 0))


def grads_like(params, t):
  return jax.tree.map(lambda p: jnp.cos(p + 0.1 * t).astype(p.dtype), params)


def scan_run(tx, values, params):
  """Per step: the updates of a fixed gradient tree and the state, under ``lax.scan``."""
  dtype = jax.tree.leaves(params)[0].dtype

  def step(state, inputs):
    t, value = inputs
    updates, state = tx.update(grads_like(params, t), state, params, value=value)
    return state, (updates, state)

  steps = jnp.arange(len(values))
  return jax.lax.scan(step, tx.init(params), (steps, jnp.asarray(values, dtype)))[1]


# --- Optax, positive losses ---------------------------------------------------------------

OPTAX_CONFIGS = {
    "patience": (dict(factor=0.5, patience=3), dict()),
    "cooldown_rtol": (dict(factor=0.3, patience=2, rtol=1e-2, cooldown=3), dict(seed=1)),
    "accumulation": (dict(factor=0.5, patience=2, cooldown=1, accumulation_size=4),
                     dict(n=200, seed=2, quantum=None)),
    "min_scale": (dict(factor=0.5, patience=2, min_scale=0.05), dict(seed=3)),
    "atol": (dict(factor=0.5, patience=3, rtol=0.0, atol=0.05), dict(seed=4)),
    "defaults": (dict(), dict(n=200, seed=5)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", OPTAX_CONFIGS)
def test_matches_optax_step_by_step(config, dtype):
  kwargs, sequence = OPTAX_CONFIGS[config]
  values = losses(**sequence)
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    ours_updates, ours = scan_run(reduce_on_plateau(**kwargs), values, params)
    theirs_updates, theirs = scan_run(optax.contrib.reduce_on_plateau(**kwargs), values,
                                      params)
    for field in FIELDS:
      a, b = np.asarray(getattr(ours, field)), np.asarray(getattr(theirs, field))
      assert a.dtype == b.dtype, field
      np.testing.assert_array_equal(a, b, err_msg=field)
    for a, b in zip(jax.tree.leaves(ours_updates), jax.tree.leaves(theirs_updates),
                    strict=True):
      assert a.dtype == b.dtype
      np.testing.assert_array_equal(a, b)
    expected = {"defaults": 2, "min_scale": 4}.get(config, 3)
    assert reductions(ours.scale) >= expected, ours.scale
    if config == "min_scale":
      assert np.asarray(ours.scale)[-1] == np.asarray(0.05, dtype)


def shifted_loss(params):
  """``conftest.loss`` + 10: positive (where Optax's rule is right), same gradients."""
  return loss(params) + 10.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chain_trajectory_matches_optax(dtype):
  """SGD then reduce_on_plateau on the mixed-shape tree, 80 steps: a user's training loop
  (``value=`` the loss of the params before the step)."""
  kwargs = dict(factor=0.5, patience=2, rtol=1e-3, cooldown=1)
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    ours_tx = gtx.chain(gtx.sgd(0.09), reduce_on_plateau(**kwargs))
    ours = trajectory(ours_tx, params, 80, shifted_loss, extra_args=True)
    theirs = trajectory(optax.chain(optax.sgd(0.09), optax.contrib.reduce_on_plateau(
        **kwargs)), params, 80, shifted_loss, extra_args=True)
    assert_trajectories_close(ours, theirs, jnp.dtype(dtype))
    # The run did plateau: the scale was reduced several times on the way.
    update = jax.jit(lambda p, state: ours_tx.update(jax.grad(loss)(p), state, p,
                                                     value=shifted_loss(p))[1])
    state = ours_tx.init(params)
    scales = []
    for p in [params, *ours[:-1]]:
      state = update(p, state)
      scales.append(state[1].scale)
    assert reductions(scales) >= 3, scales


# --- torch --------------------------------------------------------------------------------


def torch_scales(values, *, mode, threshold_mode, threshold, patience, cooldown, factor,
                 min_lr):
  """``lr / base_lr`` after each ``ReduceLROnPlateau.step(value)``, base_lr 1."""
  optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
  scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
      optimizer, mode=mode, factor=factor, patience=patience, threshold=threshold,
      threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr, eps=0.0)
  scales = []
  for value in values:
    optimizer.step()
    scheduler.step(float(value))
    scales.append(scheduler.get_last_lr()[0])
  return np.array(scales)


def as_gradtx(threshold_mode, threshold, patience, cooldown, factor, min_lr, **_):
  tolerance = dict(rtol=threshold, atol=0.0) if threshold_mode == "rel" else dict(
      rtol=0.0, atol=threshold)
  return reduce_on_plateau(factor=factor, patience=patience + 1, cooldown=cooldown,
                           min_scale=min_lr, **tolerance)


TORCH_CONFIGS = {
    "rel": dict(threshold_mode="rel", threshold=2.0**-5, patience=2, cooldown=0,
                factor=0.5, min_lr=0.0),
    "rel_default_threshold": dict(threshold_mode="rel", threshold=1e-4, patience=4,
                                  cooldown=2, factor=0.1, min_lr=0.0),
    "rel_patience0": dict(threshold_mode="rel", threshold=2.0**-6, patience=0, cooldown=3,
                          factor=0.7, min_lr=0.0),
    "abs_min_lr": dict(threshold_mode="abs", threshold=2.0**-4, patience=1, cooldown=1,
                       factor=0.5, min_lr=0.03),
}


def plateau_scales(tx, values, dtype=jnp.float32):
  """Our scale after each loss, under ``lax.scan`` (jit) on a one-leaf tree."""
  _, states = scan_run(tx, values, {"w": jnp.zeros(2, dtype)})
  return np.asarray(states.scale)


@pytest.mark.parametrize("sign", ["positive", "negative"])
@pytest.mark.parametrize("config", TORCH_CONFIGS)
def test_matches_torch_reduce_lr_on_plateau(config, sign):
  settings = TORCH_CONFIGS[config]
  values = losses(200, seed=10) if sign == "positive" else losses(200, seed=11, low=-9.0)
  assert (values > 0).all() if sign == "positive" else (values < 0).all()
  if sign == "negative" and settings["threshold_mode"] == "rel":
    theirs = torch_scales(-values, mode="max", **settings)
  else:
    theirs = torch_scales(values, mode="min", **settings)
  ours = plateau_scales(as_gradtx(**settings), values)
  np.testing.assert_allclose(ours, theirs, rtol=1e-6)
  assert reductions(theirs) >= 3, theirs


@pytest.mark.parametrize("sign", ["positive", "negative"])
def test_accumulation_matches_torch_on_window_means(sign):
  k = 5
  settings = TORCH_CONFIGS["rel"]
  low = 0.0 if sign == "positive" else -9.0
  values = losses(300, seed=12, low=low, quantum=None)
  means = values.reshape(-1, k).mean(axis=1)
  mode, fed = ("max", -means) if sign == "negative" else ("min", means)
  theirs = torch_scales(fed, mode=mode, **settings)
  tx = reduce_on_plateau(factor=0.5, patience=3, rtol=2.0**-5, accumulation_size=k)
  ours = plateau_scales(tx, values).reshape(-1, k)
  # Constant within a window; after its last loss, torch's scale after that window.
  np.testing.assert_array_equal(ours[1:, :-1], np.repeat(ours[:-1, -1:], k - 1, axis=1))
  np.testing.assert_allclose(ours[:, -1], theirs, rtol=1e-6)
  assert reductions(theirs) >= 3


# --- negative losses and losses that change sign ------------------------------------------


def reference_scales(values, factor=0.1, patience=10, rtol=1e-4, atol=0.0, cooldown=0,
                     accumulation_size=1, min_scale=0.0):
  """The documented rule, transcribed in plain Python (doubles)."""
  scale, best, plateau, cooldown_left, window = 1.0, math.inf, 0, 0, []
  scales = []
  for value in values:
    window.append(float(value))
    if len(window) == accumulation_size:
      mean, window = sum(window) / accumulation_size, []
      if math.isfinite(mean) and (best == math.inf
                                  or mean < best - (rtol * abs(best) + atol)):
        best, plateau = mean, 0
      else:
        plateau += 1
      if cooldown_left > 0:
        cooldown_left, plateau = cooldown_left - 1, 0
      elif plateau >= patience:
        scale, plateau, cooldown_left = max(scale * factor, min_scale), 0, cooldown
    scales.append(scale)
  return np.array(scales)


CROSSING = {
    "rel": dict(factor=0.5, patience=3, rtol=2.0**-4),
    "rel_atol_cooldown": dict(factor=0.5, patience=2, rtol=2.0**-5, atol=2.0**-6,
                              cooldown=2),
    "abs_min_scale": dict(factor=0.25, patience=2, rtol=0.0, atol=2.0**-5, min_scale=0.01),
    "accumulation": dict(factor=0.5, patience=2, rtol=2.0**-5, accumulation_size=2),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", CROSSING)
def test_losses_that_change_sign_follow_the_documented_rule(config, dtype):
  values = losses(240, seed=20, low=-2.5)
  assert (values > 0).any() and (values < 0).any()
  with jax.enable_x64(dtype == "float64"):
    ours = plateau_scales(reduce_on_plateau(**CROSSING[config]), values, jnp.dtype(dtype))
  theirs = reference_scales(values, **CROSSING[config])
  np.testing.assert_allclose(ours, theirs, rtol=1e-6 if dtype == "float32" else 1e-15)
  assert reductions(theirs) >= 3


def states_after(tx, values):
  params = {"w": jnp.zeros(3)}
  update = jax.jit(tx.update)
  state = tx.init(params)
  for value in values:
    _, state = update(params, state, value=jnp.float32(value))
  return state


def test_an_improvement_from_minus_one_to_minus_one_and_a_half_is_an_improvement():
  state = states_after(reduce_on_plateau(patience=1), [-1.0, -1.5])
  assert state.best_value == -1.5 and state.plateau_count == 0 and state.scale == 1.0


def test_a_slightly_worse_negative_loss_is_no_improvement():
  """-1.0 then -0.99995 (worse): a plateau step, reduced with patience 1. Optax takes it
  as an improvement, since -0.99995 < (1 - 1e-4) * -1.0 = -0.9999, and keeps the worse
  loss as its best."""
  ours = states_after(reduce_on_plateau(patience=1), [-1.0, -0.99995])
  assert ours.best_value == -1.0 and ours.scale == np.float32(0.1)
  theirs = states_after(optax.contrib.reduce_on_plateau(patience=1), [-1.0, -0.99995])
  assert theirs.best_value == np.float32(-0.99995) and theirs.scale == 1.0


@pytest.mark.parametrize("level", [2.0, -2.0])
def test_a_flat_loss_reduces_whatever_its_sign(level):
  """A constant loss improves once, then plateaus: with patience 5 the scale is cut at
  the 6th, 11th, 16th... loss. Optax never cuts it for a negative constant (each repeat
  is below ``(1 - rtol) * best``), and agrees with us for a positive one."""
  tx_kwargs = dict(factor=0.5, patience=5)
  ours = plateau_scales(reduce_on_plateau(**tx_kwargs), np.full(30, level))
  expected = 0.5 ** (np.arange(30) // 5)
  np.testing.assert_array_equal(ours, expected.astype(np.float32))
  theirs = plateau_scales(optax.contrib.reduce_on_plateau(**tx_kwargs), np.full(30, level))
  if level > 0:
    np.testing.assert_array_equal(theirs, ours)
  else:
    assert (theirs == 1.0).all()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_is_no_improvement(bad):
  """A NaN or infinite loss counts as a plateau step and never becomes the best; with
  patience 2 two of them in a row cut the scale. (Optax would take -inf as the best.)"""
  state = states_after(reduce_on_plateau(factor=0.5, patience=2), [3.0, bad, bad, 2.0])
  assert state.best_value == 2.0 and state.scale == 0.5 and state.plateau_count == 0
  for field in state:
    assert jnp.isfinite(field).all()


def test_accumulated_nan_spoils_only_its_window():
  tx = reduce_on_plateau(factor=0.5, patience=1, accumulation_size=2)
  state = states_after(tx, [3.0, 3.0, 1.0, math.nan])
  assert state.scale == 0.5 and state.best_value == 3.0 and state.count == 0
  state = states_after(tx, [3.0, 3.0, 1.0, math.nan, 1.0, 1.0])
  assert state.best_value == 1.0 and state.avg_value == 0.0


# --- the transform ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
def test_updates_are_scaled_in_the_params_dtype(dtype):
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    mixed = {**params, "half": jnp.ones(3, jnp.bfloat16)}
    tx = reduce_on_plateau(factor=0.5, patience=1)
    state = tx.init(mixed)
    state_dtype = jnp.float64 if dtype == "float64" else jnp.float32
    for field in ("scale", "best_value", "avg_value"):
      assert getattr(state, field).dtype == state_dtype, field
    grads = jax.tree.map(lambda p: (p * 3).astype(p.dtype), mixed)
    update = jax.jit(tx.update)
    for value, scale in [(1.0, 1.0), (1.0, 0.5), (1.0, 0.25)]:
      updates, state = update(grads, state, mixed, value=jnp.asarray(value, dtype))
      assert state.scale == scale
      for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads), strict=True):
        assert u.dtype == g.dtype
        compute = jnp.promote_types(g.dtype, jnp.float32)
        np.testing.assert_array_equal(u, (scale * g.astype(compute)).astype(g.dtype))


def test_needs_the_loss():
  tx = reduce_on_plateau()
  params = make_params()
  with pytest.raises(TypeError, match="value"):
    tx.update(params, tx.init(params), params)
  with pytest.raises(ValueError, match="reduce_on_plateau: value must be the scalar loss"):
    tx.update(params, tx.init(params), params, value=jnp.ones(3))


def test_scan_and_vmap_match_a_python_loop_of_jitted_steps():
  tx = reduce_on_plateau(factor=0.5, patience=2, cooldown=1, accumulation_size=2)
  params = {"w": jnp.ones(2)}
  batch = np.stack([losses(80, seed=s) for s in range(3)]).astype(np.float32)
  update = jax.jit(tx.update)
  looped = []
  for values in batch:
    state = tx.init(params)
    for value in values:
      _, state = update(params, state, params, value=value)
    looped.append(state)

  def run(values):
    return jax.lax.scan(lambda s, v: (tx.update(params, s, params, value=v)[1], None),
                        tx.init(params), values)[0]

  batched = jax.jit(jax.vmap(run))(batch)
  for i, expected in enumerate(looped):
    for field in FIELDS:
      np.testing.assert_array_equal(getattr(batched, field)[i], getattr(expected, field))
  assert all(reductions([1.0, s.scale]) for s in looped)


def test_traced_hyperparameters_under_jit():
  """The constructor called inside jit, every hyperparameter traced: same scales."""
  kwargs = dict(factor=0.5, patience=2, rtol=2.0**-5, atol=2.0**-8, cooldown=1,
                accumulation_size=2, min_scale=0.125)
  values = losses(120, seed=30)

  @jax.jit
  def traced(kwargs, values):
    _, states = scan_run(reduce_on_plateau(**kwargs), values, {"w": jnp.zeros(2)})
    return states.scale

  np.testing.assert_array_equal(traced(kwargs, values),
                                plateau_scales(reduce_on_plateau(**kwargs), values))


def test_a_scheduled_factor():
  """Any numeric hyperparameter may be a schedule (here of the update count)."""
  values = np.full(12, 1.0)
  constant = plateau_scales(reduce_on_plateau(factor=0.5, patience=2), values)
  scheduled = reduce_on_plateau(factor=lambda count: jnp.asarray(0.5), patience=2)
  state = scheduled.init({"w": jnp.zeros(2)})
  scales = []
  for value in values:
    _, state = scheduled.update({"w": jnp.ones(2)}, state, value=value)
    scales.append(state.inner_state.scale)
  np.testing.assert_array_equal(scales, constant)
  assert reductions(constant) == 5


@pytest.mark.parametrize("name, bad, allowed", [
    ("factor", 0.0, "(0, 1)"), ("factor", 1.0, "(0, 1)"), ("factor", -0.5, "(0, 1)"),
    ("factor", math.nan, "(0, 1)"),
    ("rtol", -1e-4, "[0, 1]"), ("rtol", 1.5, "[0, 1]"),
    ("atol", -0.1, "[0, inf)"), ("atol", math.nan, "[0, inf)"),
    ("min_scale", -0.1, "[0, 1]"), ("min_scale", 1.5, "[0, 1]"),
])
def test_out_of_range_hyperparameters_raise(name, bad, allowed):
  message = f"reduce_on_plateau: {name} must be in {allowed}, got {bad!r}"
  with pytest.raises(ValueError, match="^" + re.escape(message)):
    reduce_on_plateau(**{name: bad})


@pytest.mark.parametrize("name, bad, minimum", [
    ("patience", 0, 1), ("patience", 2.5, 1), ("patience", True, 1),
    ("cooldown", -1, 0), ("cooldown", 1.0, 0),
    ("accumulation_size", 0, 1), ("accumulation_size", math.nan, 1),
])
def test_counts_must_be_integers(name, bad, minimum):
  with pytest.raises(ValueError, match=f"^reduce_on_plateau: {name} must be an integer "
                                       f">= {minimum}, got "):
    reduce_on_plateau(**{name: bad})


def test_closed_ends_are_accepted():
  for kwargs in [dict(rtol=0.0, atol=0.0), dict(rtol=1.0), dict(min_scale=1.0),
                 dict(min_scale=0.0), dict(cooldown=0), dict(patience=1)]:
    assert isinstance(reduce_on_plateau(**kwargs), gtx.GradientTransformation)
