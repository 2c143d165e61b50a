"""Damped Newton's method.

Oracles: closed forms (the minimum of a convex quadratic, the Newton direction of a
small indefinite problem with the damping sequence of Nocedal & Wright's Algorithm 3.3
written out in NumPy, the minimum of a log-barrier problem from the quadratic formula)
and ``scipy.optimize.minimize`` (trust-exact) to a gradient norm of 1e-10 on L2-
regularised logistic regression on scikit-learn's digits.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from jax.flatten_util import ravel_pytree
from sklearn.datasets import load_digits

import gradtx as gtx
from gradtx._src.solvers.minimize import minimize
from gradtx._src.solvers.newton import NewtonState, newton

L2 = 1e-2


def logistic_problem(n_classes=3, dtype=jnp.float64):
  """L2-regularised softmax regression on the digits of the first ``n_classes`` classes:
  the objective (of ``{"w": (64, k), "b": (k,)}``) and the zero start."""
  digits = load_digits()
  keep = digits.target < n_classes
  x = jnp.asarray(digits.data[keep] / 16.0, dtype)
  y = jnp.asarray(digits.target[keep])

  def logits(params):
    return x @ params["w"] + params["b"]

  def cross_entropy(z):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=1))

  def loss(params):
    return cross_entropy(logits(params)) + 0.5 * L2 * sum(
        jnp.sum(p**2) for p in jax.tree.leaves(params))

  x0 = {"w": jnp.zeros((64, n_classes), dtype), "b": jnp.zeros(n_classes, dtype)}
  return loss, x0, logits, cross_entropy


def scipy_solution(loss, x0):
  """The minimiser by scipy's trust-exact (exact Hessian), to a gradient norm of 1e-10."""
  flat, unravel = ravel_pytree(x0)
  f = jax.jit(lambda v: loss(unravel(v)))
  g = jax.jit(jax.grad(f))
  h = jax.jit(jax.hessian(f))
  result = scipy.optimize.minimize(lambda v: float(f(v)), np.asarray(flat),
                                   jac=lambda v: np.asarray(g(v)),
                                   hess=lambda v: np.asarray(h(v)),
                                   method="trust-exact", options=dict(gtol=1e-10))
  assert result.success, result
  return unravel(jnp.asarray(result.x))


def assert_trees_close(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def quadratic(dtype):
  """``1/2 x.A x - b.x`` over a two-leaf pytree, with its minimiser."""
  rng = np.random.default_rng(0)
  m = rng.normal(size=(5, 5))
  a = m @ m.T + 0.5 * np.eye(5)
  b = rng.normal(size=5)
  solution = np.linalg.solve(a, b)

  def fun(params):
    v = jnp.concatenate([params["u"].ravel(), params["s"][None]])
    return 0.5 * v @ jnp.asarray(a, dtype) @ v - jnp.asarray(b, dtype) @ v

  x0 = {"u": jnp.ones((2, 2), dtype), "s": jnp.asarray(-1.0, dtype)}
  return fun, x0, {"u": solution[:4].reshape(2, 2), "s": solution[4]}


def one_update(tx, fun, params):
  state = tx.init(params)
  value, grad = jax.value_and_grad(fun)(params)
  updates, state = jax.jit(lambda g, s, p: tx.update(g, s, p, value=value, grad=grad,
                                                     value_fn=fun))(grad, state, params)
  return gtx.apply_updates(params, updates), state


def test_one_step_solves_a_convex_quadratic():
  with jax.enable_x64(True):
    fun, x0, solution = quadratic(jnp.float64)
    params, _ = one_update(newton(damping=0.0, linesearch=gtx.identity()), fun, x0)
    assert_trees_close(params, solution, rtol=1e-10, atol=1e-12)
    # With the default damping and line search: the unit step passes the Armijo test
    # at the first evaluation; the refinement step leaves an error of about
    # (1e-6 / lambda_min(A))**2 relative (lambda_min >= 0.5).
    params, (newton_state, search_state) = one_update(newton(), fun, x0)
    assert int(search_state.num_fun_evals) == 1
    assert float(search_state.learning_rate) == 1.0
    assert_trees_close(params, solution, rtol=1e-10, atol=1e-11)
    for tx in (newton(), newton(damping=0.0)):
      result = minimize(fun, x0, tx)
      assert int(result.num_steps) == 1 and bool(result.converged)
      assert_trees_close(result.params, solution, rtol=1e-10, atol=1e-11)


def test_a_small_damping_is_refined_away_and_a_large_one_damps():
  """``H = diag(4, 1, 1e-7)``, ``g = (1, 1, 1)``: with ``tau = 1e-6`` (below 1e-3
  max(max|H_ii|, 1) = 4e-3), the step is one refinement of the damped solve,
  ``-(l + 2 tau)/(l + tau)**2`` per eigenvalue ``l``, between the damped step and
  Newton's; with ``tau = 0.5`` (above), it is ``-1/(l + tau)``, the damped step."""
  with jax.enable_x64(True):
    curvatures = np.asarray([4.0, 1.0, 1e-7])
    fun = lambda x: 0.5 * jnp.sum(jnp.asarray(curvatures) * x**2) + jnp.sum(x)  # noqa: E731
    x = jnp.zeros(3)
    g = jax.grad(fun)(x)
    for tau, expected in [(1e-6, -(curvatures + 2e-6) / (curvatures + 1e-6) ** 2),
                          (0.5, -1 / (curvatures + 0.5))]:
      tx = newton(damping=tau, linesearch=gtx.identity())
      updates, (state, _) = tx.update(g, tx.init(x), x, value_fn=fun)
      np.testing.assert_allclose(updates, expected, rtol=1e-12)
      assert int(state.num_factorizations) == 1 and float(state.damping) == tau
      newton_step = -1 / curvatures
      damped_step = -1 / (curvatures + tau)
      assert np.all(np.abs(damped_step) <= np.abs(updates))
      assert np.all(np.abs(updates) <= np.abs(newton_step))


def test_float32_params_keep_their_dtype():
  fun, x0, solution = quadratic(jnp.float32)
  result = minimize(fun, x0, newton(), tol=1e-4)
  assert bool(result.converged) and int(result.num_steps) <= 2
  for p in jax.tree.leaves(result.params):
    assert p.dtype == jnp.float32
  assert_trees_close(result.params, solution, rtol=1e-4, atol=1e-4)


def test_damping_is_raised_until_the_factorisation_succeeds():
  """``f = x**2 - y**2 + y**4`` at ``(0.5, 0.1)``: ``H = diag(2, -1.88)``. Algorithm 3.3
  with tau0 = 1e-6, beta = 1e-3 max|H_ii| = 2e-3 and tau <- max(10 tau, beta) tries
  1e-6, 2e-3, 2e-2, 0.2, 2: the fifth factorisation succeeds, with tau = 2."""
  with jax.enable_x64(True):
    fun = lambda v: v[0] ** 2 - v[1] ** 2 + v[1] ** 4  # noqa: E731
    x = jnp.asarray([0.5, 0.1])
    tx = newton(linesearch=gtx.identity())
    state = tx.init(x)
    updates, (direction_state, _) = tx.update(jax.grad(fun)(x), state, x, value_fn=fun)
    taus = [1e-6]
    while np.any(np.linalg.eigvalsh(np.diag([2.0, -1.88]) + taus[-1] * np.eye(2)) <= 0):
      taus.append(max(10 * taus[-1], 2e-3))
    assert isinstance(direction_state, NewtonState)
    assert int(direction_state.num_factorizations) == len(taus) == 5
    np.testing.assert_allclose(float(direction_state.damping), taus[-1], rtol=1e-12)
    expected = -np.linalg.solve(np.diag([2.0, -1.88]) + taus[-1] * np.eye(2),
                                np.asarray(jax.grad(fun)(x)))
    np.testing.assert_allclose(updates, expected, rtol=1e-12)
    assert float(jnp.vdot(updates, jax.grad(fun)(x))) < 0  # a descent direction
    result = minimize(fun, x, newton(), tol=1e-10)
    assert bool(result.converged)
    np.testing.assert_allclose(result.params, [0.0, 1 / np.sqrt(2)], atol=1e-9)


def test_backtracking_recovers_from_a_step_into_nan():
  """``f = sum((x - 3)**2 - log(1 - x))`` from 0: the Newton step (+5/3) leaves the
  domain (NaN); the line search halves it. The minimum solves ``2x**2 - 8x + 5 = 0``."""
  with jax.enable_x64(True):
    fun = lambda x: jnp.sum((x - 3.0) ** 2 - jnp.log(1.0 - x))  # noqa: E731
    x0 = jnp.zeros(2)
    params, (_, search_state) = one_update(newton(), fun, x0)
    assert np.all(np.isfinite(params)) and float(search_state.learning_rate) == 0.5
    result = minimize(fun, x0, newton(), tol=1e-10)
    assert bool(result.converged)
    np.testing.assert_allclose(result.params, (8 - np.sqrt(24)) / 4, rtol=1e-12)


def test_rosenbrock_from_the_standard_start():
  with jax.enable_x64(True):
    rosenbrock = lambda x: 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2  # noqa: E731
    result = minimize(rosenbrock, jnp.asarray([-1.2, 1.0]), newton(), tol=1e-9)
    assert bool(result.converged) and int(result.num_steps) < 40
    np.testing.assert_allclose(result.params, [1.0, 1.0], rtol=1e-9)


def test_logistic_regression_on_digits_matches_scipy():
  with jax.enable_x64(True):
    loss, x0, _, _ = logistic_problem()
    result = minimize(loss, x0, newton(), tol=1e-9)
    assert bool(result.converged) and int(result.num_steps) < 15
    assert_trees_close(result.params, scipy_solution(loss, x0), rtol=1e-6, atol=1e-8)


def test_vmap_over_a_batch_of_quadratics():
  """Three quadratics with their own curvature and centre, solved in one vmapped call."""
  with jax.enable_x64(True):
    scales = jnp.asarray([[1.0, 3.0], [0.5, 8.0], [2.0, 2.0]])
    centres = jnp.asarray([[1.0, -2.0], [0.0, 3.0], [5.0, 2.0]])

    def solve(scale, centre):
      fun = lambda x: jnp.sum(scale * (x - centre) ** 2 + 0.1 * (x - centre) ** 4)  # noqa: E731
      return minimize(fun, jnp.zeros(2), newton(), tol=1e-10)

    batch = jax.vmap(solve)(scales, centres)
    np.testing.assert_allclose(batch.params, centres, atol=1e-10)
    assert np.all(batch.converged)
    for i in range(3):
      alone = solve(scales[i], centres[i])
      assert int(alone.num_steps) == int(batch.num_steps[i])
      np.testing.assert_allclose(alone.params, batch.params[i], rtol=1e-12)


def test_more_params_than_max_params_points_to_hessian_free():
  tx = newton(max_params=10)
  tx.init(jnp.zeros(10))
  message = r"newton: the params have 11 entries, more than max_params=10.*hessian_free"
  with pytest.raises(ValueError, match=message):
    tx.init({"a": jnp.zeros(5), "b": jnp.zeros((2, 3))})
  with pytest.raises(ValueError, match=message):
    tx.update(jnp.zeros(11), tx.init(jnp.zeros(10)), jnp.zeros(11),
              value_fn=lambda x: jnp.sum(x**2))


def test_update_needs_value_fn():
  tx = newton()
  with pytest.raises(ValueError, match="newton: update needs the objective as value_fn="):
    tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), jnp.zeros(2))


@pytest.mark.parametrize("kwargs,message", [
    (dict(damping=-1.0), r"newton: damping must be in \[0, inf\), got -1.0"),
    (dict(damping=float("nan")), r"newton: damping must be in \[0, inf\), got nan"),
    (dict(max_params=0), "newton: max_params must be an integer >= 1, got 0"),
    (dict(max_params=10.5), "newton: max_params must be an integer >= 1, got 10.5"),
])
def test_validation(kwargs, message):
  with pytest.raises(ValueError, match="^" + message):
    newton(**kwargs)
