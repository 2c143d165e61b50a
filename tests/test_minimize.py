"""``minimize``: the compiled full-batch loop and what its result reports.

Oracles: closed forms (gradient descent on a quadratic contracts by ``1 - lr * a`` per
step, so the number of steps to a tolerance is a logarithm), a Python loop of the same
transform's steps, and the transform's own state (the evaluations a line search counted).
Newton and Hessian-free through ``minimize`` are tested in their own files.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
from conftest import make_params
from gradtx._src.linesearch import scale_by_backtracking_linesearch
from gradtx._src.solvers.minimize import MinimizeResult, count_fun_evals, minimize

A = 2.0


def scaled_bowl(x):
  """``a/2 |x - 1|^2`` over a pytree."""
  return sum(0.5 * A * jnp.sum((p - 1.0) ** 2) for p in jax.tree.leaves(x))


def grad_norm(fun, x):
  g = jax.grad(fun)(x)
  return math.sqrt(sum(float(np.sum(np.asarray(leaf, np.float64) ** 2))
                       for leaf in jax.tree.leaves(g)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_descent_steps_match_the_closed_form(dtype):
  """From x0, ``lr`` gradient descent gives ``x_k - 1 = (1 - lr a)^k (x0 - 1)``: the first
  k with ``a |x_k - 1| <= tol`` is the number of steps; one evaluation per step + x0."""
  with jax.enable_x64(dtype == "float64"):
    x0 = make_params(jnp.dtype(dtype))
    lr, tol = 0.2, 1e-4
    norm0 = grad_norm(scaled_bowl, x0)
    expected = math.ceil(math.log(tol / norm0) / math.log(1 - lr * A))
    result = minimize(scaled_bowl, x0, gtx.sgd(lr), tol=tol)
    assert isinstance(result, MinimizeResult)
    assert int(result.num_steps) == expected
    assert int(result.num_fun_evals) == expected + 1
    assert bool(result.converged)
    assert float(result.grad_norm) <= tol
    np.testing.assert_allclose(float(result.grad_norm), grad_norm(scaled_bowl, result.params),
                               rtol=1e-5)
    np.testing.assert_allclose(float(result.value), float(scaled_bowl(result.params)),
                               rtol=1e-5, atol=1e-12)
    for x, p in zip(jax.tree.leaves(x0), jax.tree.leaves(result.params)):
      assert p.dtype == x.dtype
      np.testing.assert_allclose(np.asarray(p) - 1, (1 - lr * A) ** expected
                                 * (np.asarray(x) - 1), rtol=1e-4, atol=1e-7)


def test_matches_a_python_loop_of_the_same_steps():
  x0 = make_params()
  tx = gtx.adam(0.05)
  result = minimize(scaled_bowl, x0, tx, max_steps=40, tol=0.0)
  params, state = x0, tx.init(x0)
  step = jax.jit(lambda p, s: tx.update(jax.grad(scaled_bowl)(p), s, p))
  for _ in range(40):
    updates, state = step(params, state)
    params = gtx.apply_updates(params, updates)
  assert int(result.num_steps) == 40 and not bool(result.converged)
  for a, b in zip(jax.tree.leaves(result.params), jax.tree.leaves(params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_max_steps_zero_and_already_converged_start():
  x0 = make_params()
  result = minimize(scaled_bowl, x0, gtx.sgd(0.1), max_steps=0)
  assert int(result.num_steps) == 0 and int(result.num_fun_evals) == 1
  assert not bool(result.converged)
  ones = jax.tree.map(jnp.ones_like, x0)
  result = minimize(scaled_bowl, ones, gtx.sgd(0.1))
  assert int(result.num_steps) == 0 and bool(result.converged)
  assert float(result.grad_norm) == 0.0


def test_a_diverging_run_stops_at_the_last_finite_params():
  """Gradient descent with ``lr = 1.5`` on ``x**2`` doubles ``|x|`` every step, from 1:
  in float32 ``x**2`` is finite up to ``x = 2**63`` and overflows at ``2**64``, so the
  loop returns ``x = (-2)**63`` after 63 steps, not converged."""
  fun = lambda x: jnp.sum(x**2)  # noqa: E731
  result = minimize(fun, jnp.asarray([1.0], jnp.float32), gtx.sgd(1.5), max_steps=100)
  assert not bool(result.converged)
  assert int(result.num_steps) == 63
  np.testing.assert_array_equal(result.params, [-(2.0**63)])
  assert float(result.value) == 2.0**126
  np.testing.assert_allclose(float(result.grad_norm), 2.0**64)
  assert int(result.num_fun_evals) == 65  # x0, 63 steps, and the step that overflowed


def test_a_non_finite_start_takes_no_step():
  result = minimize(lambda x: jnp.sum(jnp.log(x)), jnp.asarray([-1.0, 2.0]), gtx.sgd(0.1))
  assert int(result.num_steps) == 0 and not bool(result.converged)
  np.testing.assert_array_equal(result.params, [-1.0, 2.0])


def replay(tx, fun, x0, steps):
  """``steps`` steps of ``tx`` in a Python loop; the params and the state."""
  params, state = x0, tx.init(x0)
  for _ in range(steps):
    value, grad = jax.value_and_grad(fun)(params)
    updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=fun)
    params = gtx.apply_updates(params, updates)
  return params, state


@pytest.mark.parametrize("store_grad", [True, False])
def test_line_search_values_are_reused_and_counted(store_grad):
  """With a line search that stores value and gradient, the loop evaluates ``fun`` only
  at x0; every other evaluation is the line search's, counted in its state. Without the
  stored gradient the loop evaluates once per step too. sgd(1.0) on ``a/2 |x - 1|^2``
  with ``a = 2`` jumps to the mirror point, which the Armijo test rejects: two or more
  evaluations per search."""
  x0 = jnp.asarray([3.0, -1.0, 0.5])
  ls = scale_by_backtracking_linesearch(max_backtracking_steps=20, store_grad=store_grad)
  tx = gtx.chain(gtx.sgd(1.0), ls)
  result = minimize(scaled_bowl, x0, tx, max_steps=5, tol=0.0)
  params, state = replay(tx, scaled_bowl, x0, 5)
  searches = int(count_fun_evals(state))
  assert searches >= 10
  own = 1 if store_grad else 1 + 5
  assert int(result.num_fun_evals) == own + searches
  np.testing.assert_allclose(result.params, params, rtol=1e-6)


def test_count_fun_evals_walks_any_state():
  from typing import NamedTuple

  class Inner(NamedTuple):
    num_fun_evals: jax.Array
    other: jax.Array

  state = {"a": (Inner(jnp.asarray(3), jnp.asarray(100)),),
           "b": [Inner(jnp.asarray(4), jnp.asarray(7))], "c": jnp.asarray(1000)}
  assert int(count_fun_evals(state)) == 7


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vmap_over_a_batch_of_problems(dtype):
  """Each problem stops at its own tolerance; the batch agrees with solving one by one."""
  with jax.enable_x64(dtype == "float64"):
    scales = jnp.asarray([0.5, 1.0, 4.0], dtype)
    centres = jnp.asarray([[1.0, -2.0], [0.0, 3.0], [2.0, 2.0]], dtype)

    def solve(scale, centre, x0):
      fun = lambda x: 0.5 * scale * jnp.sum((x["w"] - centre) ** 2) + x["b"] ** 2  # noqa: E731
      return minimize(fun, x0, gtx.sgd(0.2), tol=1e-5)

    x0 = {"w": jnp.zeros((3, 2), dtype), "b": jnp.ones(3, dtype)}
    batch = jax.vmap(solve)(scales, centres, x0)
    steps = set()
    for i in range(3):
      alone = solve(scales[i], centres[i], jax.tree.map(lambda x: x[i], x0))
      for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(batch)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b[i]), rtol=1e-6, atol=1e-12)
      steps.add(int(alone.num_steps))
    assert len(steps) == 3  # they really stopped at different steps
    assert np.all(batch.converged)


def test_under_jit():
  x0 = make_params()
  jitted = jax.jit(lambda x: minimize(scaled_bowl, x, gtx.sgd(0.2), tol=1e-4))
  a, b = jitted(x0), minimize(scaled_bowl, x0, gtx.sgd(0.2), tol=1e-4)
  assert int(a.num_steps) == int(b.num_steps)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_steps=-1), "minimize: max_steps must be an integer >= 0, got -1"),
    (dict(max_steps=2.5), "minimize: max_steps must be an integer >= 0, got 2.5"),
    (dict(tol=-1.0), r"minimize: tol must be in \[0, inf\), got -1.0"),
    (dict(tol=float("nan")), r"minimize: tol must be in \[0, inf\), got nan"),
    (dict(stall_steps=0), "minimize: stall_steps must be an integer >= 1, got 0"),
])
def test_validation(kwargs, message):
  with pytest.raises(ValueError, match="^" + message):
    minimize(scaled_bowl, jnp.zeros(2), gtx.sgd(0.1), **kwargs)


def test_tx_must_be_a_transform():
  with pytest.raises(TypeError, match="minimize: tx must be a gradient transformation"):
    minimize(scaled_bowl, jnp.zeros(2), 0.1)


def test_x0_must_be_floating_point():
  with pytest.raises(TypeError, match=r"minimize: x0 must hold floating-point arrays, but "
                                      r"\['b'\] has dtype int32"):
    minimize(lambda p: jnp.sum(p["a"] ** 2), {"a": jnp.zeros(2), "b": jnp.arange(3)},
             gtx.sgd(0.1))


def test_a_transform_that_never_moves_stops_after_stall_steps():
  x0 = {"a": jnp.zeros(2), "b": jnp.ones((2, 3))}
  result = minimize(scaled_bowl, x0, gtx.set_to_zero(), max_steps=100, stall_steps=7)
  assert int(result.num_steps) == 7 and not bool(result.converged)
  assert int(result.num_fun_evals) == 8
  result = minimize(scaled_bowl, x0, gtx.set_to_zero(), max_steps=100, stall_steps=None)
  assert int(result.num_steps) == 100 and not bool(result.converged)


def test_lbfgs_at_the_float32_rounding_floor_stops_once_it_stalls():
  """10-D Rosenbrock in float32 to ``tol=1e-6``: the gradient's rounding error at the
  minimum is about 5e-5, so the tolerance cannot be met. Once the zoom search finds no
  decrease the params stop changing: the loop ends ``stall_steps`` updates later, at the
  params it had then (the same as a run stopped at that step, and as one that runs on
  to ``max_steps``)."""

  def rosenbrock(x):
    return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

  x0 = jnp.tile(jnp.asarray([-1.2, 1.0], jnp.float32), 5)
  tx = gtx.lbfgs()
  stalled = minimize(rosenbrock, x0, tx, max_steps=500)
  steps = int(stalled.num_steps)
  assert steps < 150 and not bool(stalled.converged)
  assert 1e-6 < float(stalled.grad_norm) < 1e-3
  np.testing.assert_allclose(stalled.params, np.ones(10), atol=1e-6)
  at_stall = minimize(rosenbrock, x0, tx, max_steps=steps - 10, stall_steps=None)
  np.testing.assert_array_equal(at_stall.params, stalled.params)
  running_on = minimize(rosenbrock, x0, tx, max_steps=500, stall_steps=None)
  assert int(running_on.num_steps) == 500
  np.testing.assert_array_equal(running_on.params, stalled.params)
  assert int(running_on.num_fun_evals) > 10 * int(stalled.num_fun_evals)


def test_a_transform_still_adapting_is_not_stopped_as_stalled():
  """Hessian-free with little damping on ``sum(c (x - 3000)**2) - log(1 - x[1])`` from 0:
  its first CG steps cross the barrier, every backtracked step too, and it makes more
  than ten zero updates in a row while its damping rises by 3/2 each time. The params
  stay put but the state does not, so the loop goes on and converges."""
  with jax.enable_x64(True):
    c = jnp.asarray([0.1, 3.0, 30.0])
    fun = lambda x: jnp.sum(c * (x - 3000.0) ** 2) - jnp.log(1.0 - x[1])  # noqa: E731
    x0 = jnp.zeros(3)
    tx = gtx.hessian_free(damping=1e-3)
    update = jax.jit(lambda x, s: tx.update(jax.grad(fun)(x), s, x, value=fun(x),
                                            value_fn=fun))
    x, state, zero_run = x0, tx.init(x0), 0
    for _ in range(12):
      updates, state = update(x, state)
      zero_run = zero_run + 1 if not np.any(np.asarray(updates)) else 0
      x = x + updates
    assert zero_run == 12
    result = minimize(fun, x0, tx, tol=1e-6, max_steps=3000)
    assert bool(result.converged)
    # x[1] solves 6 (x - 3000) (x - 1) = 1.
    root = (18006 - np.sqrt(18006.0**2 - 24 * 17999)) / 12
    np.testing.assert_allclose(result.params, [3000.0, root, 3000.0], rtol=1e-9)
