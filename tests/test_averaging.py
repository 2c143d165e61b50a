"""Oracle: torch.optim.swa_utils.AveragedModel (torch 2.13) beside torch.optim.SGD.

``average_params(sgd(lr, momentum), decay, start_step, every)`` must follow, step by step
over 60 steps on the mixed-shape pytree of ``conftest`` (scalar, vector, matrix, 3-D), in
float64 and float32, both torch's params (``SGD(lr, momentum, foreach=False)``) and the
average of ``AveragedModel(model)`` (SWA, its default ``avg_fn``) or
``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))`` (EMA), with
``update_parameters(model)`` called after the optimizer steps of 0-based index ``k >=
start_step`` with ``(k - start_step) % every == 0``. Both sides take their gradients from
JAX at their own current params.

Tolerances: float64 rtol 1e-12, atol 1e-14 (the params are of order 1); float32
``oracles``' default. The update rules are the same on both sides (torch's CPU ``lerp`` is
the two-sided formula gradtx uses); the two differ only in the last bit (compiled
multiply-adds): the largest difference seen over 60 steps is 7e-16 in float64 and 4e-7
in float32. ``test_harness_detects_a_different_rule`` shows the tolerance tells an
average that starts one step late.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradtx as gtx
from conftest import loss, make_params
from oracles import STEPS, assert_trajectories_close

LR = 0.02
MOMENTUM = 0.9
TOL = {"float64": dict(rtol=1e-12, atol=1e-14), "float32": dict(rtol=2e-5, atol=2e-6)}

CASES = {
    "swa": {},
    "swa/start_step_every": dict(start_step=10, every=3),
    "ema": dict(decay=0.9),
    "ema/start_step_every": dict(decay=0.75, start_step=5, every=2),
}


@contextlib.contextmanager
def precision(dtype):
  previous = torch.get_default_dtype()
  torch.set_default_dtype(getattr(torch, dtype))
  try:
    with jax.enable_x64(dtype == "float64"):
      yield
  finally:
    torch.set_default_dtype(previous)


def _counts(k, start_step=0, every=1):
  return k >= start_step and (k - start_step) % every == 0


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


def torch_trajectory(params, decay=None, start_step=0, every=1, steps=STEPS):
  """Params and the AveragedModel's params after each step of torch.optim.SGD."""
  leaves, treedef = jax.tree.flatten(params)
  model = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(np.array(x)))
                                  for x in leaves])
  tensors = list(model.parameters())
  optimizer = torch.optim.SGD(tensors, lr=LR, momentum=MOMENTUM, foreach=False)
  averaged = torch.optim.swa_utils.AveragedModel(
      model, multi_avg_fn=None if decay is None
      else torch.optim.swa_utils.get_ema_multi_avg_fn(decay))
  grad_fn = jax.jit(jax.grad(loss))

  def tree(ts):
    return treedef.unflatten([jnp.asarray(t.detach().numpy().copy()) for t in ts])

  path, averages = [], []
  for k in range(steps):
    for t, g in zip(tensors, jax.tree.leaves(grad_fn(tree(tensors)))):
      t.grad = torch.from_numpy(np.array(g))
    optimizer.step()
    if _counts(k, start_step, every):
      averaged.update_parameters(model)
    path.append(tree(tensors))
    averages.append(tree(list(averaged.module.parameters())))
  return path, averages


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_averaged_model(name, dtype):
  kwargs = CASES[name]
  with precision(dtype):
    params = make_params(jnp.dtype(dtype))
    tx = gtx.average_params(gtx.sgd(LR, momentum=MOMENTUM), **kwargs)
    ours, our_averages, state = gradtx_trajectory(tx, params)
    theirs, their_averages = torch_trajectory(params, **kwargs)
  assert_trajectories_close(ours, theirs, dtype, TOL[dtype])
  assert_trajectories_close(our_averages, their_averages, dtype, TOL[dtype])
  assert int(state.n_averaged) == sum(_counts(k, kwargs.get("start_step", 0),
                                              kwargs.get("every", 1)) for k in range(STEPS))


def test_harness_detects_a_different_rule():
  with precision("float64"):
    params = make_params(jnp.float64)
    tx = gtx.average_params(gtx.sgd(LR, momentum=MOMENTUM), start_step=11, every=3)
    _, ours, _ = gradtx_trajectory(tx, params)
    _, theirs = torch_trajectory(params, start_step=10, every=3)
  with pytest.raises(AssertionError):
    assert_trajectories_close(ours, theirs, "float64", TOL["float64"])


def test_state_fields_and_the_updates_pass_through():
  params = make_params()
  inner = gtx.adam(0.1)
  tx = gtx.average_params(inner, decay=0.5)
  state = tx.init(params)
  assert gtx.AverageParamsState._fields == ("count", "n_averaged", "average",
                                            "inner_state")
  assert_trajectories_close([state.average], [params], jnp.float32, dict(rtol=0, atol=0))

  @jax.jit
  def both(params, state, inner_state):
    grads = jax.grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    expected, inner_state = inner.update(grads, inner_state, params)
    return gtx.apply_updates(params, updates), updates, state, expected, inner_state

  inner_state = inner.init(params)
  for _ in range(3):
    params, updates, state, expected, inner_state = both(params, state, inner_state)
    assert_trajectories_close([updates, state.inner_state], [expected, inner_state],
                              jnp.float32, dict(rtol=0, atol=0))


def test_before_the_first_contribution_the_average_is_the_initial_params():
  # AveragedModel starts as a copy of the model.
  params = make_params()
  tx = gtx.average_params(gtx.sgd(LR), start_step=3)
  _, averages, _ = gradtx_trajectory(tx, params, steps=4)
  for average in averages[:3]:
    assert_trajectories_close([average], [params], jnp.float32, dict(rtol=0, atol=0))
  assert not np.allclose(averages[3]["vector"], params["vector"])


@pytest.mark.parametrize("decay, which", [(0.0, -1), (1.0, 0)], ids=["latest", "first"])
def test_ema_ends_of_the_decay_range(decay, which):
  with jax.enable_x64(True):
    params = make_params(jnp.float64)
    path, averages, _ = gradtx_trajectory(
        gtx.average_params(gtx.sgd(LR), decay=decay), params, steps=4)
  assert_trajectories_close([averages[-1]], [path[which]], jnp.float64,
                            dict(rtol=0, atol=0))


def test_averaged_params_searches_wrapper_states():
  params = make_params()
  steps = lambda tx: gradtx_trajectory(tx, params, steps=4)[1]  # noqa: E731
  plain = steps(gtx.average_params(gtx.sgd(LR), decay=0.5))
  # Inside a chain, after a transform that changes nothing here; with a schedule (which
  # wraps it in inject_hyperparams).
  chained = steps(gtx.chain(gtx.clip(1e3), gtx.average_params(gtx.sgd(LR), decay=0.5)))
  scheduled = steps(gtx.average_params(gtx.sgd(LR), decay=lambda count: 0.5))
  for other in (chained, scheduled):
    assert_trajectories_close(other, plain, jnp.float32, dict(rtol=1e-6, atol=1e-7))


def test_errors():
  params = make_params()
  tx = gtx.average_params(gtx.sgd(LR))
  with pytest.raises(ValueError, match="average_params: this transform needs the params"):
    tx.update(params, tx.init(params))
  with pytest.raises(ValueError, match="averaged_params: the state holds no average"):
    gtx.averaged_params(gtx.adam(LR).init(params))
  both = gtx.chain(gtx.average_params(gtx.identity()), gtx.asgd())
  with pytest.raises(ValueError, match="averaged_params: the state holds 2 averages"):
    gtx.averaged_params(both.init(params))
  with pytest.raises(ValueError, match=r"^average_params: decay must be in \[0, 1\]"):
    gtx.average_params(gtx.sgd(LR), decay=1.5)
  with pytest.raises(TypeError, match="average_params: inner"):
    gtx.average_params(gtx.sgd)
