"""Oracle: torch.optim.ASGD (torch 2.13, the single-tensor ``foreach=False`` path).

gradtx's ``asgd`` must follow torch's trajectory step by step, the params AND the
averaged iterate ``ax`` (``gtx.averaged_params(state)`` against ``optimizer.state[p]
["ax"]``), over 60 steps on the mixed-shape pytree of ``conftest`` (scalar, vector,
matrix, 3-D), in float64 and float32. Both sides take their gradients from JAX at their
own current params, so a difference can only come from the update rule.

Tolerances. float64: rtol 1e-12, atol 1e-14 (the params are of order 1): torch computes
``p*(1 - lambd*eta) - eta*g'``, gradtx emits the update ``-eta*(g' + lambd*p)`` that is
added to ``p``; the two round differently in the last bit (the largest difference seen
over 60 steps is 9e-16). ``test_harness_detects_a_different_rule`` shows the tolerance
tells ``t0`` from ``t0 + 1``. float32: ``oracles``' default (rtol 2e-5, atol 2e-6); the
largest difference seen is 1e-6 (a few ulps): torch computes ``eta`` and ``mu`` from
Python doubles and rounds them to float32, gradtx computes them in float32.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradtx as gtx
from gradtx._src.asgd import asgd_averaging_weight, asgd_step_size
from conftest import loss, make_params
from oracles import STEPS, assert_trajectories_close

TOL = {"float64": dict(rtol=1e-12, atol=1e-14), "float32": dict(rtol=2e-5, atol=2e-6)}

# name: (gradtx kwargs = torch kwargs with lr for learning_rate)
CASES = {
    # torch's defaults: t0=1e6, so ax is the latest iterate throughout (mu = 1).
    "defaults": {},
    # Averaging from the 12th step, a fast-decaying step size, L2 weight decay.
    "weight_decay_t0": dict(learning_rate=0.05, lambd=0.02, alpha=0.6, t0=10.0,
                            weight_decay=0.1),
    # A fractional t0: mu = 1/(t - 1 - t0) is then no equal-weight mean.
    "fractional_t0": dict(learning_rate=0.03, lambd=1e-3, t0=4.5),
    # A negative t0: torch's first mu is still 1, then 1/(t - 1 - t0) < 1 at once.
    "negative_t0": dict(learning_rate=0.03, t0=-3.0),
}


def _torch_kwargs(kwargs):
  kwargs = dict(kwargs)
  if "learning_rate" in kwargs:
    kwargs["lr"] = kwargs.pop("learning_rate")
  return kwargs


@contextlib.contextmanager
def precision(dtype):
  """x64 for JAX, and torch's default dtype, which ASGD keeps eta and mu in, to match."""
  previous = torch.get_default_dtype()
  torch.set_default_dtype(getattr(torch, dtype))
  try:
    with jax.enable_x64(dtype == "float64"):
      yield
  finally:
    torch.set_default_dtype(previous)


def gradtx_trajectory(tx, params, steps=STEPS):
  """Params and averaged params after each of ``steps`` jitted steps."""

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = gtx.apply_updates(params, updates)
    return params, state, gtx.averaged_params(state)

  state = tx.init(params)
  path, averages = [], []
  for _ in range(steps):
    params, state, average = step(params, state)
    path.append(params)
    averages.append(average)
  return path, averages, state


def torch_trajectory(kwargs, params, steps=STEPS):
  """Params, ``ax`` and ``(eta, mu)`` after each step of torch.optim.ASGD."""
  leaves, treedef = jax.tree.flatten(params)
  tensors = [torch.tensor(np.array(x), requires_grad=True) for x in leaves]
  optimizer = torch.optim.ASGD(tensors, foreach=False, **_torch_kwargs(kwargs))
  grad_fn = jax.jit(jax.grad(loss))

  def tree(ts):
    return treedef.unflatten([jnp.asarray(t.detach().numpy().copy()) for t in ts])

  path, averages, scalars = [], [], []
  for _ in range(steps):
    for t, g in zip(tensors, jax.tree.leaves(grad_fn(tree(tensors)))):
      t.grad = torch.from_numpy(np.array(g))
    optimizer.step()
    path.append(tree(tensors))
    averages.append(tree([optimizer.state[t]["ax"] for t in tensors]))
    first = optimizer.state[tensors[0]]
    scalars.append((float(first["eta"]), float(first["mu"])))
  return path, averages, scalars


# float64 runs every case; float32 the defaults and weight decay (the t0 variants differ
# from them only in float64-exact step counting).
@pytest.mark.parametrize("name, dtype", [(name, "float64") for name in CASES] + [
    (name, "float32") for name in CASES if name not in ("fractional_t0", "negative_t0")])
def test_matches_torch_params_and_average(name, dtype):
  kwargs = CASES[name]
  with precision(dtype):
    params = make_params(jnp.dtype(dtype))
    ours, our_averages, _ = gradtx_trajectory(gtx.asgd(**kwargs), params)
    theirs, their_averages, _ = torch_trajectory(kwargs, params)
  assert_trajectories_close(ours, theirs, dtype, TOL[dtype])
  assert_trajectories_close(our_averages, their_averages, dtype, TOL[dtype])


@pytest.mark.parametrize("name", ["weight_decay_t0", "fractional_t0", "negative_t0"])
def test_step_size_and_averaging_weight_are_torchs(name):
  """torch's stored ``eta`` and ``mu`` after step ``t`` are gradtx's for count ``t``."""
  kwargs = {"learning_rate": 1e-2, "lambd": 1e-4, "alpha": 0.75, "t0": 1e6, **CASES[name]}
  with precision("float64"):
    _, _, scalars = torch_trajectory(CASES[name], make_params(jnp.float64), steps=20)
    counts = jnp.arange(1, 21)
    eta = asgd_step_size(kwargs["learning_rate"], kwargs["lambd"], kwargs["alpha"], counts)
    mu = asgd_averaging_weight(kwargs["t0"], counts)
  np.testing.assert_allclose(eta, [e for e, _ in scalars], rtol=1e-14)
  np.testing.assert_allclose(mu, [m for _, m in scalars], rtol=1e-14)
  assert float(asgd_averaging_weight(kwargs["t0"], jnp.asarray(0))) == 1.0


def test_harness_detects_a_different_rule():
  """The float64 tolerance tells apart averages that start one step apart."""
  kwargs = CASES["weight_decay_t0"]
  with precision("float64"):
    params = make_params(jnp.float64)
    _, ours, _ = gradtx_trajectory(gtx.asgd(**{**kwargs, "t0": 11.0}), params)
    _, theirs, _ = torch_trajectory(kwargs, params)
  with pytest.raises(AssertionError):
    assert_trajectories_close(ours, theirs, "float64", TOL["float64"])


def test_is_a_chain_of_weight_decay_and_scale_by_asgd_with_its_state():
  params = make_params()
  state = gtx.asgd(weight_decay=0.1).init(params)
  assert isinstance(state, tuple) and len(state) == 2
  assert type(state[1]) is gtx.ASGDState and gtx.ASGDState._fields == ("count", "ax")
  # torch's ax starts at zeros.
  assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(gtx.averaged_params(state)))
  path, _, state = gradtx_trajectory(
      gtx.chain(gtx.add_decayed_weights(0.1), gtx.scale_by_asgd(0.05, 0.02, 0.6, 10.0)),
      params, steps=5)
  chained, _, _ = gradtx_trajectory(gtx.asgd(0.05, 0.02, 0.6, 10.0, 0.1), params, steps=5)
  assert_trajectories_close(path, chained, jnp.float32, dict(rtol=0, atol=0))
  assert int(state[1].count) == 5


def test_schedule_for_lambd_keeps_the_average_readable():
  # A schedule for a hyperparameter that is not native wraps asgd in inject_hyperparams.
  params = make_params()
  tx = gtx.asgd(0.05, lambd=lambda count: 0.02, t0=2.0)
  _, averages, state = gradtx_trajectory(tx, params, steps=6)
  _, expected, _ = gradtx_trajectory(gtx.asgd(0.05, lambd=0.02, t0=2.0), params, steps=6)
  assert isinstance(state, gtx.InjectHyperparamsState)
  assert_trajectories_close(averages, expected, jnp.float32, dict(rtol=1e-6, atol=1e-7))


def test_needs_params():
  params = make_params()
  tx = gtx.asgd()
  with pytest.raises(ValueError, match="needs the params"):
    tx.update(params, tx.init(params))
