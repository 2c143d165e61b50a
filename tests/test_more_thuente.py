"""More-Thuente line search against SciPy's transcription of MINPACK-2's ``dcsrch``.

Oracles, all independent of gradtx:

* single searches on More & Thuente's (1994) test functions: the accepted step and the
  number of evaluations of ``scipy.optimize._dcsrch.DCSRCH``, driven as L-BFGS-B drives
  it;
* 40 full-batch steps of steepest descent and 20 of L-BFGS on a quadratic, the 3-D Rosenbrock
  function and the mixed-shape pytree of conftest, in float64, against a NumPy loop
  that takes its steps from ``DCSRCH`` and its L-BFGS directions from a NumPy
  transcription of the two-loop recursion;
* ``scipy.optimize.minimize(method='L-BFGS-B')`` itself: the same iterates and the same
  number of evaluations on the 2-D Rosenbrock function.

One designed difference: when ``dcsrch`` ends on a warning (the interval below ``xtol``,
or rounding), it evaluates the best step ``stx`` once more before returning it; gradtx
kept that point's gradient and returns it without the extra evaluation. The oracle
driver counts accordingly and says so.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from jax.flatten_util import ravel_pytree
from scipy.optimize._dcsrch import DCSRCH

import gradtx as gtx
from conftest import loss as tree_loss, make_params
from gradtx._src.linesearch.more_thuente import (ScaleByMoreThuenteLinesearchState,
                                                 scale_by_more_thuente_linesearch)
from gradtx._src.solvers.minimize import count_fun_evals
from test_linesearch import quadratic, rosenbrock

STEPS = 40

PROBLEMS = {
    "quadratic": (quadratic, lambda: jnp.array([1.0, -2.0, 0.5, 3.0], jnp.float64)),
    "rosenbrock": (rosenbrock, lambda: jnp.array([-1.2, 1.0, 0.5], jnp.float64)),
    "pytree": (tree_loss, lambda: make_params(jnp.float64)),
}


# --- the oracle: SciPy's dcsrch, driven as L-BFGS-B drives it ----------------------------


def dcsrch_search(phi_and_slope, f0, g0, guess, ftol=1e-3, gtol=0.9, xtol=0.1,
                  stpmax=1e10, max_evals=20):
  """``(step, evaluations)`` of one search. ``dcsrch`` accepts its step on CONVERGENCE or
  a warning; a warning that sends it back to ``stx`` (the step it would evaluate again)
  is taken at once, without that evaluation, as gradtx does (module docstring). No
  step if ``max_evals`` evaluations end nothing."""
  search = DCSRCH(None, None, ftol, gtol, xtol, 0.0, stpmax)
  stp, f, g, task = search._iterate(guess, f0, g0, b"START")
  evals = 0
  while task[:2] == b"FG":
    if search.brackt and (stp <= search.stmin or stp >= search.stmax):
      return search.stx, evals
    if evals == max_evals:
      return search.stx, evals
    f, g = phi_and_slope(stp)
    evals += 1
    stp, f, g, task = search._iterate(stp, f, g, task)
  assert task[:4] in (b"CONV", b"WARN"), task
  return stp, evals


def numpy_two_loop(g, pairs, first_scale):
  """Nocedal & Wright's Algorithm 7.4 with Optax's scalings, oldest pair first."""
  if not pairs:
    return first_scale * g
  q, alphas = g.copy(), []
  for s, y in reversed(pairs):
    alpha = (s @ q) / (y @ s)
    q = q - alpha * y
    alphas.append(alpha)
  s, y = pairs[-1]
  r = (s @ y) / (y @ y) * q
  for (s, y), alpha in zip(pairs, reversed(alphas)):
    beta = (y @ r) / (y @ s)
    r = r + (alpha - beta) * s
  return r


def reference_path(fn, params, steps, lbfgs, first_step_length=None, memory=10):
  """NumPy iterates of ``x - step * P g`` with ``P = I`` or L-BFGS, steps from dcsrch;
  and the evaluations of every search."""
  x, unravel = ravel_pytree(params)
  x = np.asarray(x)
  value_and_grad = jax.jit(jax.value_and_grad(lambda v: fn(unravel(v))))

  def at(v):
    value, grad = value_and_grad(jnp.asarray(v))
    return float(value), np.asarray(grad)

  f, g = at(x)
  pairs, path, counts = [], [], []
  for k in range(steps):
    if lbfgs:
      first_scale = min(1.0, 1.0 / np.linalg.norm(g))
      d = -numpy_two_loop(g, pairs[-memory:], first_scale)
    else:
      d = -g
    guess = first_step_length / np.linalg.norm(d) if first_step_length and k == 0 else 1.0
    seen = {}

    def phi_and_slope(stp):
      seen[stp] = at(x + stp * d)
      return seen[stp][0], seen[stp][1] @ d

    stp, evals = dcsrch_search(phi_and_slope, f, g @ d, guess)
    new_x = x + stp * d
    new_f, new_g = seen[stp] if stp in seen else (f, g)
    pairs.append((new_x - x, new_g - g))
    x, f, g = new_x, new_f, new_g
    path.append(unravel(jnp.asarray(x)))
    counts.append(evals)
  return path, counts


def gradtx_path(tx, fn, params, steps):
  value_and_grad = gtx.value_and_grad_from_state(fn)

  @jax.jit
  def step(params, state):
    value, grad = value_and_grad(params, state=state)
    updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=fn)
    return gtx.apply_updates(params, updates), state

  state = tx.init(params)
  path, counts, total = [], [], 0
  for _ in range(steps):
    params, state = step(params, state)
    evals = int(count_fun_evals(state))
    path.append(params)
    counts.append(evals - total)
    total = evals
  return path, counts


# --- single searches ---------------------------------------------------------------------

# More & Thuente (1994), Section 5: phi_1 to phi_3 (phi_4 to phi_6 need their helper
# functions; phi_1-phi_3 exercise all four cases of dcstep).
def phi1(a, beta=2.0):
  return -a / (a**2 + beta)


def phi2(a, beta=0.004):
  return (a + beta)**5 - 2.0 * (a + beta)**4


def phi3(a, beta=0.01, ell=39.0):
  phi0 = jnp.where(a <= 1 - beta, 1 - a,
                   jnp.where(a >= 1 + beta, a - 1, (a - 1)**2 / (2 * beta) + beta / 2))
  return phi0 + 2 * (1 - beta) / (ell * jnp.pi) * jnp.sin(ell * jnp.pi / 2 * a)


@functools.lru_cache(maxsize=None)
def single_search(phi, ftol, gtol):
  """The search from 0 on ``phi``, jitted once for all initial guesses (the guess is the
  state's ``learning_rate``, an array): ``(value, slope, init, search)``."""
  w = jnp.zeros([], jnp.float64)
  value, slope = jax.value_and_grad(phi)(w)
  tx = scale_by_more_thuente_linesearch(slope_rtol=ftol, curv_rtol=gtol,
                                        initial_guess_strategy="keep")
  search = jax.jit(lambda s: tx.update(jnp.ones([], jnp.float64), s, w, value=value,
                                       grad=slope, value_fn=phi))
  return value, slope, tx.init(w), search


SEARCHES = [(phi1, 1e-3, 0.1), (phi2, 0.1, 0.1), (phi3, 0.1, 0.1), (phi1, 1e-3, 0.9)]


@pytest.mark.parametrize("phi,ftol,gtol", [
    pytest.param(*case, marks=pytest.mark.xdist_group(f"more_thuente:search{i}"))
    for i, case in enumerate(SEARCHES)])
@pytest.mark.parametrize("guess", [1e-3, 1e-1, 10.0, 1e3])
def test_single_search_matches_dcsrch(phi, ftol, gtol, guess):
  with jax.enable_x64(True):
    value, slope, state, search = single_search(phi, ftol, gtol)
    state = state._replace(learning_rate=jnp.asarray(guess, jnp.float64))
    updates, state = search(state)
    phi_and_slope = lambda a: tuple(map(float, jax.value_and_grad(phi)(jnp.float64(a))))  # noqa: E731
    step, evals = dcsrch_search(phi_and_slope, float(value), float(slope), guess, ftol=ftol,
                                gtol=gtol)
    np.testing.assert_allclose(float(updates), step, rtol=1e-12)
    assert int(state.info.num_linesearch_steps) == evals
    assert int(state.num_fun_evals) == evals
    np.testing.assert_allclose(float(state.value), float(phi(step)), rtol=1e-12)
    np.testing.assert_allclose(float(state.grad), float(jax.grad(phi)(step)), rtol=1e-10)


# --- trajectories ------------------------------------------------------------------------


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("direction", ["steepest_descent", "lbfgs"])
def test_trajectory_matches_numpy_dcsrch(problem, direction):
  fn, make = PROBLEMS[problem]
  with jax.enable_x64(True):
    params = make()
    if direction == "lbfgs":
      tx = gtx.lbfgs(linesearch=scale_by_more_thuente_linesearch(first_step_length=1.0))
    else:
      tx = gtx.chain(gtx.scale(-1.0),
                     scale_by_more_thuente_linesearch(first_step_length=1.0))
    # L-BFGS reaches the pytree's minimum to rounding (|g| ~ 1e-8) in about 25 steps;
    # searches from there only see rounding noise.
    steps = STEPS if direction == "steepest_descent" else 20
    ours, our_counts = gradtx_path(tx, fn, params, steps)
    theirs, their_counts = reference_path(fn, params, steps, lbfgs=direction == "lbfgs",
                                          first_step_length=1.0)
    assert our_counts == their_counts
    for k, (a, b) in enumerate(zip(ours, theirs)):
      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-7, atol=1e-9, err_msg=f"step {k}")


def test_lbfgs_follows_scipy_lbfgsb():
  """gradtx L-BFGS with this search takes L-BFGS-B's steps on an unconstrained problem:
  the same iterates, and the same evaluations, to the 2-D Rosenbrock minimum."""
  with jax.enable_x64(True):
    x0 = jnp.array([-1.2, 1.0], jnp.float64)
    value_and_grad = jax.jit(jax.value_and_grad(rosenbrock))
    iterates, points = [], []

    def fun(x):
      points.append(x.copy())
      value, grad = value_and_grad(jnp.asarray(x))
      return float(value), np.asarray(grad)

    def stop(intermediate_result):
      iterates.append(intermediate_result.x.copy())
      if np.linalg.norm(value_and_grad(jnp.asarray(intermediate_result.x))[1]) <= 1e-7:
        raise StopIteration

    scipy.optimize.minimize(fun, np.asarray(x0), jac=True, method="L-BFGS-B", callback=stop,
                            options=dict(maxiter=200, ftol=0.0, gtol=0.0, maxls=20))
    tx = gtx.lbfgs(linesearch=scale_by_more_thuente_linesearch(first_step_length=1.0))
    result = gtx.minimize(rosenbrock, x0, tx, max_steps=200, tol=1e-7)
    assert int(result.num_steps) == len(iterates)
    assert int(result.num_fun_evals) == len(points)
    ours, _ = gradtx_path(tx, rosenbrock, x0, len(iterates))
    np.testing.assert_allclose(np.stack(ours), np.stack(iterates), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(result.params, [1.0, 1.0], atol=1e-7)


def test_float32_pytree_converges():
  """To the float32 limit of a sufficient decrease test: around |g| = 5e-4 here the
  decrease a step can make is below the rounding of the loss (docstring)."""
  params = make_params(jnp.float32)
  tx = gtx.lbfgs(linesearch=scale_by_more_thuente_linesearch())
  result = gtx.minimize(tree_loss, params, tx, max_steps=200, tol=1e-3)
  assert bool(result.converged)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(result.params))


# --- failures ----------------------------------------------------------------------------


def cliff(x):
  """A bowl around 0.5 whose loss is NaN beyond ``|x| > 1``."""
  return jnp.where(jnp.max(jnp.abs(x)) > 1.0, jnp.nan, jnp.sum((x - 0.5)**2))


def search_once(tx, fn, x, direction, state=None):
  value, grad = jax.value_and_grad(fn)(x)
  state = tx.init(x) if state is None else state
  return tx.update(direction, state, x, value=value, grad=grad, value_fn=fn)


def test_nan_trial_points_are_never_accepted():
  tx = scale_by_more_thuente_linesearch()
  x = jnp.array([0.9, -0.9])
  updates, state = search_once(tx, cliff, x, -10.0 * jax.grad(cliff)(x))
  assert np.isfinite(cliff(x + updates)) and cliff(x + updates) < cliff(x)
  np.testing.assert_allclose(state.value, cliff(x + updates), rtol=1e-6)
  np.testing.assert_allclose(state.grad, jax.grad(cliff)(x + updates), rtol=1e-5)


def test_no_decrease_found_gives_a_zero_step_and_recovers():
  tx = scale_by_more_thuente_linesearch(max_linesearch_steps=5)
  x = jnp.array([0.9, -0.9])
  grad = jax.grad(cliff)(x)
  updates, state = search_once(tx, cliff, x, -1e6 * grad)
  np.testing.assert_array_equal(updates, 0.0)
  assert state.learning_rate == 0.0 and int(state.info.num_linesearch_steps) == 5
  np.testing.assert_allclose(state.value, cliff(x))
  np.testing.assert_allclose(state.grad, grad)
  updates, state = search_once(tx, cliff, x, -0.1 * grad, state)
  assert state.learning_rate > 0.0 and cliff(x + updates) < cliff(x)


@pytest.mark.parametrize("direction", [jnp.array([jnp.nan, 1.0]), None])
def test_non_finite_or_ascent_direction_gives_a_zero_step(direction):
  tx = scale_by_more_thuente_linesearch()
  x = jnp.array([0.3, 0.2])
  grad = jax.grad(quadratic)(x)
  updates, state = search_once(tx, quadratic, x, grad if direction is None else direction)
  np.testing.assert_array_equal(updates, 0.0)
  assert int(state.info.num_linesearch_steps) == 0
  np.testing.assert_allclose(state.value, quadratic(x))


@jax.enable_x64(True)
def test_vmap_over_a_batch_of_problems():
  tx = gtx.lbfgs(linesearch=scale_by_more_thuente_linesearch())
  scales = jnp.array([0.5, 1.0, 4.0], jnp.float64)
  x0 = jnp.array([-1.2, 1.0, 0.5], jnp.float64)
  batched = jax.jit(jax.vmap(lambda scale: gtx.minimize(
      lambda x: scale * rosenbrock(x), x0, tx, max_steps=300, tol=1e-8)))(scales)
  for i, scale in enumerate(scales):
    alone = gtx.minimize(lambda x: scale * rosenbrock(x), x0, tx, max_steps=300, tol=1e-8)
    np.testing.assert_allclose(batched.params[i], alone.params, rtol=1e-9, atol=1e-12)
    assert int(batched.num_fun_evals[i]) == int(alone.num_fun_evals)
    assert bool(batched.converged[i])


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_linesearch_steps=0), "max_linesearch_steps must be an integer >= 1"),
    (dict(slope_rtol=1.0), r"slope_rtol must be in \[0, 1\)"),
    (dict(curv_rtol=0.0), r"curv_rtol must be in \(0, inf\)"),
    (dict(slope_rtol=0.5, curv_rtol=0.4), "slope_rtol must be <= curv_rtol"),
    (dict(xtol=-1.0), r"xtol must be in \[0, inf\)"),
    (dict(max_learning_rate=0.0), r"max_learning_rate must be in \(0, inf\]"),
    (dict(first_step_length=0.0), r"first_step_length must be in \(0, inf\)"),
    (dict(initial_guess_strategy="two"), "initial_guess_strategy must be 'one' or 'keep'"),
])
def test_invalid_hyperparameters(kwargs, message):
  with pytest.raises(ValueError, match=f"scale_by_more_thuente_linesearch: {message}"):
    scale_by_more_thuente_linesearch(**kwargs)


def test_state_keeps_value_gradient_and_count():
  params = make_params()
  state = scale_by_more_thuente_linesearch().init(params)
  assert isinstance(state, ScaleByMoreThuenteLinesearchState)
  assert jax.tree.structure(state.grad) == jax.tree.structure(params)
  assert state.num_fun_evals.dtype == jnp.int32 and state.value == np.inf
