"""Schedule-Free (``contrib.schedule_free``, ``schedule_free_sgd``,
``schedule_free_adamw``, ``schedule_free_eval_params``) against Optax 0.2.8, and its
averaging against the paper's Algorithm 1.

Oracles: Optax, step by step over 60 jitted steps on the mixed-shape tree, float32 and
float64, defaults and configurations changing every hyperparameter (warmup, weight
decay, weight power, z in another dtype), with the evaluation params compared after the
last step (``tests/contrib_pairs.py``); a transcription of Defazio et al. 2024's
update (SGD form) for three steps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params
from contrib_pairs import DTYPES, assert_same_state_class, compare, precision
from oracles import assert_trajectories_close, trajectory

CASES = {
    "schedule_free": lambda m: m.contrib.schedule_free(m.adam(0.05, b1=0.0), 0.05),
    "schedule_free/options": lambda m: m.contrib.schedule_free(
        m.sgd(lambda count: 0.1 * jnp.minimum(1.0, (count + 1) / 5)),
        lambda count: 0.1 * jnp.minimum(1.0, (count + 1) / 5), b1=0.95,
        weight_lr_power=1.0),
    "schedule_free_sgd": lambda m: m.contrib.schedule_free_sgd(),
    "schedule_free_sgd/options": lambda m: m.contrib.schedule_free_sgd(
        0.1, warmup_steps=10, b1=0.95, weight_decay=0.01, weight_lr_power=1.0),
    "schedule_free_adamw": lambda m: m.contrib.schedule_free_adamw(),
    "schedule_free_adamw/options": lambda m: m.contrib.schedule_free_adamw(
        0.01, warmup_steps=10, b1=0.95, b2=0.99, eps=1e-6, weight_decay=0.01,
        weight_lr_power=1.0),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  ours, theirs, moved = compare(CASES[name], dtype)
  assert moved > 1e-2
  assert_same_state_class(ours, theirs, "ScheduleFreeState")
  with precision(dtype):
    params = make_params(jnp.dtype(dtype))
    for (path, x), y in zip(
        jax.tree_util.tree_leaves_with_path(gtx.contrib.schedule_free_eval_params(ours,
                                                                                   params)),
        jax.tree.leaves(optax.contrib.schedule_free_eval_params(theirs, params))):
      assert x.dtype == y.dtype
      np.testing.assert_allclose(x, y, rtol=1e-12 if dtype == "float64" else 2e-5,
                                 atol=1e-13 if dtype == "float64" else 2e-6,
                                 err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("dtype", DTYPES)
def test_z_in_another_dtype_matches_optax_to_that_dtype(dtype):
  """With z kept in a lower precision, Optax computes (1 - b1) z in z's dtype (see the
  next test); gradtx in the params'. The trajectories agree to z's precision."""
  state_dtype = jnp.bfloat16 if dtype == "float32" else jnp.float32
  make = lambda m: m.contrib.schedule_free_adamw(0.01, state_dtype=state_dtype)  # noqa: E731
  with precision(dtype):
    params = make_params(jnp.dtype(dtype))
    ours, state = trajectory(make(gtx), params, 60, return_state=True)
    theirs = trajectory(make(optax), params, 60)
    assert jax.tree.leaves(state.z)[0].dtype == state_dtype
  resolution = 2 * float(jnp.finfo(state_dtype).eps)
  assert_trajectories_close(ours, theirs, tol=dict(rtol=resolution, atol=resolution))


def test_optax_rounds_the_interpolation_to_the_state_dtype():
  """One SGD step from y = z = x (c_1 = 1): x_1 = z_1 and y_1 = b1 x_1 + (1 - b1) z_1.
  float64 params, z in float32: gradtx computes in float64 on the float32 z; Optax
  computes (1 - b1) z in float32 (a Python float times a float32 array), and is off by
  float32's rounding of that product."""
  with jax.enable_x64(True):
    y = jnp.asarray([0.3, -1.7, 2.2], jnp.float64)
    g = jnp.asarray([0.5, 0.25, -1.0], jnp.float64)
    b1 = 0.9
    z0 = np.asarray(y, np.float32).astype(np.float64)
    z1 = (z0 - 0.1 * np.asarray(g)).astype(np.float32).astype(np.float64)
    exact = b1 * z1 + (1 - b1) * z1
    optax_way = b1 * z1 + np.float32((1 - b1) * np.float32(z1)).astype(np.float64)
    for m, expected in ((gtx, exact), (optax, optax_way)):
      tx = m.contrib.schedule_free_sgd(0.1, b1=b1, state_dtype=jnp.float32)
      updates, _ = tx.update(g, tx.init(y), y)
      np.testing.assert_allclose(y + updates, expected, rtol=1e-15, err_msg=m.__name__)
    assert np.abs(exact - optax_way).max() > 1e-9


def test_averaging_follows_the_paper():
  """The paper's update with SGD, constant lr, weights lr**2 (so c_{t+1} = 1 / (t + 1)):
  y_t = (1 - b) z_t + b x_t; z_{t+1} = z_t - lr grad(y_t); x_{t+1} = (1 - c) x_t + c z_{t+1}."""
  lr, b = 0.1, 0.9
  grad = lambda y: np.asarray([2.0 * y[0], np.sin(y[1])])  # noqa: E731
  x = z = y = np.asarray([1.0, -2.0])
  tx = gtx.contrib.schedule_free_sgd(lr, b1=b)
  params = jnp.asarray(y, jnp.float32)
  state = tx.init(params)
  for t in range(1, 4):
    updates, state = tx.update(jnp.asarray(grad(np.asarray(params, np.float64)),
                                           jnp.float32), state, params)
    params = params + updates
    z = z - lr * grad(y)
    x = (1 - 1 / t) * x + (1 / t) * z
    y = (1 - b) * z + b * x
    np.testing.assert_allclose(params, y, rtol=1e-5, err_msg=f"step {t}")
    np.testing.assert_allclose(gtx.contrib.schedule_free_eval_params(state, params), x,
                               rtol=1e-5, err_msg=f"step {t}")


def test_eval_params_find_the_state_inside_a_wrapper():
  params = {"w": jnp.asarray([1.0, -2.0])}
  plain = gtx.contrib.schedule_free_adamw(0.1)
  wrapped = gtx.inject_hyperparams(gtx.contrib.schedule_free_adamw)(learning_rate=0.1)
  states = [tx.update(params, tx.init(params), params) for tx in (plain, wrapped)]
  (u1, s1), (u2, s2) = states
  # Injected hyperparameters are float32 arrays: 1 - b2 (0.001) rounds differently.
  np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-4)
  np.testing.assert_allclose(gtx.contrib.schedule_free_eval_params(s1, params)["w"],
                             gtx.contrib.schedule_free_eval_params(s2, params)["w"],
                             rtol=1e-4)
  with pytest.raises(ValueError, match="requires a ScheduleFreeState"):
    gtx.contrib.schedule_free_eval_params(gtx.adam(0.1).init(params), params)


def test_state_fields_are_optax():
  assert gtx.contrib.ScheduleFreeState._fields == optax.contrib.ScheduleFreeState._fields
