"""Line searches against Optax 0.2.8, step by step.

Oracle: ``optax.scale_by_backtracking_linesearch`` and ``optax.scale_by_zoom_linesearch``
after the same direction (the negative gradient), run side by side for 50 jitted steps
on a quadratic, the 3-D Rosenbrock function and the mixed-shape pytree of conftest, in
float32 and float64; the iterates must agree to ``oracles.tolerance``. Also: reuse of the
stored value and gradient (evaluations counted by a callback inside the loss against
``num_fun_evals``), extra arguments forwarded to the loss, failed searches (NaN losses,
non-descent and non-finite directions), jit/vmap over a batch of problems, validation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from conftest import loss as tree_loss, make_params
from gradtx._src import base, combine, scaling
from gradtx._src.solvers.lbfgs import scale_by_lbfgs
from gradtx._src.linesearch import (ScaleByBacktrackingLinesearchState,
                                    ScaleByZoomLinesearchState,
                                    scale_by_backtracking_linesearch,
                                    scale_by_zoom_linesearch, value_and_grad_from_state)
from oracles import (assert_trajectories_close, fresh_value_and_grad, paired_solver_paths,
                     solver_path)

STEPS = 50


def quadratic(x):
  """A positive convex quadratic (minimum 10 - 0.5 * sum(1/i))."""
  return 0.5 * jnp.sum(jnp.arange(1.0, x.size + 1, dtype=x.dtype) * x**2) + jnp.sum(x) + 10.0


def rosenbrock(x):
  return jnp.sum(100.0 * (x[1:] - x[:-1]**2)**2 + (1.0 - x[:-1])**2)


PROBLEMS = {
    "quadratic": (quadratic, lambda dtype: jnp.array([1.0, -2.0, 0.5, 3.0], dtype)),
    "rosenbrock": (rosenbrock, lambda dtype: jnp.array([-1.2, 1.0, 0.5], dtype)),
    "pytree": (tree_loss, make_params),
}

BACKTRACKING = {
    "defaults": dict(max_backtracking_steps=30),
    "store_grad_tolerances": dict(max_backtracking_steps=30, slope_rtol=0.3,
                                  decrease_factor=0.5, increase_factor=2.0,
                                  max_learning_rate=0.5, atol=1e-6, rtol=1e-4,
                                  store_grad=True),
}
ZOOM = {
    "defaults": dict(max_linesearch_steps=15),
    "one_capped": dict(max_linesearch_steps=15, max_learning_rate=0.05,
                       initial_guess_strategy="one"),
    "no_approx_tight_curvature": dict(max_linesearch_steps=25, approx_dec_rtol=None,
                                      curv_rtol=0.1, increase_factor=3.0),
}
FACTORIES = {
    "backtracking": (scale_by_backtracking_linesearch, optax.scale_by_backtracking_linesearch,
                     BACKTRACKING),
    "zoom": (scale_by_zoom_linesearch, optax.scale_by_zoom_linesearch, ZOOM),
}
# (kind, config, problem, dtype): each config on the problems where it acts (rtol > 0 on
# positive losses only: a relative tolerance on a negative loss can never be met, and then
# the step sizes shrink to underflow, where Optax stays at 0 and gradtx restarts).
CASES = [
    *(("backtracking", "defaults", problem, "float64") for problem in PROBLEMS),
    ("backtracking", "defaults", "pytree", "float32"),
    ("backtracking", "store_grad_tolerances", "quadratic", "float32"),
    ("backtracking", "store_grad_tolerances", "rosenbrock", "float64"),
    *(("zoom", "defaults", problem, "float64") for problem in PROBLEMS),
    ("zoom", "defaults", "pytree", "float32"),
    ("zoom", "one_capped", "quadratic", "float64"),
    ("zoom", "one_capped", "rosenbrock", "float32"),
    ("zoom", "no_approx_tight_curvature", "pytree", "float64"),
    ("zoom", "no_approx_tight_curvature", "rosenbrock", "float32"),
]


def run(tx, fn, params, steps=STEPS, reuse=False):
  """Params after each jitted step of ``chain(-grad, tx)``, and the final state."""
  vag = value_and_grad_from_state if reuse else fresh_value_and_grad
  return solver_path(tx, fn, params, vag, steps)


@pytest.mark.parametrize("kind,config,problem,dtype", CASES)
def test_iterates_match_optax(kind, config, problem, dtype):
  ours, theirs, configs = FACTORIES[kind]
  fn, make = PROBLEMS[problem]
  with jax.enable_x64(dtype == "float64"):
    params = make(jnp.dtype(dtype))
    kwargs = configs[config]
    (path, state), (expected, optax_state) = paired_solver_paths(
        combine.chain(scaling.scale(-1.0), ours(**kwargs)),
        optax.chain(optax.scale(-1.0), theirs(**kwargs)), fn, params,
        (fresh_value_and_grad, fresh_value_and_grad), STEPS)
    assert_trajectories_close(path, expected, jnp.dtype(dtype))
    # atol: the step sizes of searches that never pass the test shrink to underflow.
    # rtol: an interpolated step divides differences of nearby losses; in float32 how
    # XLA fuses the interpolation (a multiply-add contracted or not) moves it by ~1e-4.
    np.testing.assert_allclose(state[1].learning_rate, optax_state[1].learning_rate,
                               rtol=1e-4 if dtype == "float32" else 1e-5, atol=1e-12)
    assert np.isfinite(fn(path[-1])) and fn(path[-1]) < fn(params)


@pytest.mark.parametrize("kind", ["backtracking", "zoom"])
def test_reuses_the_stored_value_and_gradient(kind):
  """Every evaluation of the loss is counted by a callback; the line search's own are
  ``num_fun_evals`` and the caller's only one, at the first step. The reused value and
  gradient are those at the params."""
  calls = []

  def fn(x):
    jax.debug.callback(lambda: calls.append(1))
    return rosenbrock(x)

  tx = combine.chain(scaling.scale(-1.0), {
      "backtracking": scale_by_backtracking_linesearch(30, store_grad=True),
      "zoom": scale_by_zoom_linesearch(15)}[kind])
  with jax.enable_x64(True):
    params = jnp.array([-1.2, 1.0, 0.5])
    path, state = run(tx, fn, params, steps=10, reuse=True)
    jax.effects_barrier()
    info = state[1]
    assert info.num_fun_evals.dtype == jnp.int32
    assert len(calls) == int(info.num_fun_evals) + 1
    assert int(info.num_fun_evals) >= 10
    value, grad = value_and_grad_from_state(rosenbrock)(path[-1], state=state)
    np.testing.assert_allclose(value, rosenbrock(path[-1]), rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(rosenbrock)(path[-1]), rtol=1e-10)


def test_num_fun_evals_counts_each_search():
  tx = scale_by_zoom_linesearch(15)
  x = jnp.array([2.0, -1.0])
  state = tx.init(x)
  update = jax.jit(lambda u, s, x, v, g: tx.update(u, s, x, value=v, grad=g,
                                                   value_fn=quadratic))
  total = 0
  for _ in range(3):
    value, grad = jax.value_and_grad(quadratic)(x)
    updates, state = update(-grad, state, x, value, grad)
    total += int(state.info.num_linesearch_steps)
    assert int(state.num_fun_evals) == total
    x = x + updates


def test_value_and_grad_from_state_errors():
  params = jnp.ones(2)
  state = scale_by_backtracking_linesearch(5).init(params)  # store_grad=False
  with pytest.raises(ValueError, match="store_grad=True"):
    value_and_grad_from_state(quadratic)(params, state=state)
  with pytest.raises(ValueError, match="no stored value"):
    value_and_grad_from_state(quadratic)(params, state=(base.EmptyState(),))
  two = (scale_by_zoom_linesearch(5).init(params),) * 2
  with pytest.raises(ValueError, match="one line search"):
    value_and_grad_from_state(quadratic)(params, state=two)
  # The first call computes: the stored value is inf.
  zoom_state = scale_by_zoom_linesearch(5).init(params)
  value, grad = value_and_grad_from_state(quadratic)(params, state=zoom_state)
  np.testing.assert_allclose(value, quadratic(params))
  np.testing.assert_allclose(grad, jax.grad(quadratic)(params))


def test_extra_args_reach_value_fn_and_others_are_ignored():
  """``x=``, ``y=`` go to the loss (as in Optax's docstring example); ``unused=`` is
  ignored (the protocol: every transform ignores extras it does not use), where Optax
  raises."""

  def fn(params, x, y):
    return optax.l2_loss(x.dot(params), y)

  params = jnp.array([1.0, 2.0, 3.0])
  x, y = jnp.array([3.0, 2.0, 1.0]), jnp.array(0.0)
  for ours, theirs in [(scale_by_zoom_linesearch(15), optax.scale_by_zoom_linesearch(15)),
                       (scale_by_backtracking_linesearch(15),
                        optax.scale_by_backtracking_linesearch(15))]:
    value, grad = jax.value_and_grad(fn)(params, x, y)
    direction = -grad
    got, _ = ours.update(direction, ours.init(params), params, value=value, grad=grad,
                         value_fn=fn, x=x, y=y, unused=1.0)
    want, _ = theirs.update(direction, theirs.init(params), params, value=value,
                            grad=grad, value_fn=fn, x=x, y=y)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("factory", [lambda: scale_by_backtracking_linesearch(5),
                                     lambda: scale_by_zoom_linesearch(5)])
def test_missing_extra_args_say_what_to_pass(factory):
  tx = factory()
  params = jnp.ones(2)
  state = tx.init(params)
  with pytest.raises(TypeError, match=r"value_fn=.*the loss as a function of the params"):
    tx.update(-params, state, params, value=1.0, grad=params)
  with pytest.raises(TypeError, match=r"value=, grad=, value_fn="):
    tx.update(-params, state, params)
  with pytest.raises(ValueError, match="needs the params"):
    tx.update(-params, state, value=1.0, grad=params, value_fn=quadratic)


# --- failures: NaN, non-descent, non-finite directions -----------------------------------


def cliff(x):
  """A bowl around 0 whose loss is NaN beyond ``|x| > 1``: long steps land in NaN."""
  return jnp.where(jnp.max(jnp.abs(x)) > 1.0, jnp.nan, jnp.sum((x - 0.5)**2))


@pytest.mark.parametrize("factory", [
    lambda: scale_by_backtracking_linesearch(20, max_learning_rate=10.0),
    lambda: scale_by_zoom_linesearch(20, initial_guess_strategy="one")])
def test_nan_trial_points_are_never_accepted(factory):
  tx = factory()
  x = jnp.array([0.9, -0.9])
  value, grad = jax.value_and_grad(cliff)(x)
  direction = -10.0 * grad  # a step of 1 lands in the NaN region
  updates, state = tx.update(direction, tx.init(x), x, value=value, grad=grad,
                             value_fn=cliff)
  assert np.isfinite(cliff(x + updates)) and cliff(x + updates) < value
  assert np.isfinite(state.value)


@pytest.mark.parametrize("factory", [lambda: scale_by_backtracking_linesearch(10),
                                     lambda: scale_by_zoom_linesearch(10)])
def test_no_finite_value_gives_a_zero_step_and_recovers(factory):
  tx = factory()
  x = jnp.array([0.9, -0.9])
  value, grad = jax.value_and_grad(cliff)(x)
  state = tx.init(x)
  updates, state = tx.update(-1e6 * grad, state, x, value=value, grad=grad, value_fn=cliff)
  np.testing.assert_array_equal(updates, 0.0)
  assert state.learning_rate == 0.0
  # The next search does not stay at a step of 0 (Optax would).
  updates, state = tx.update(-0.1 * grad, state, x, value=value, grad=grad,
                             value_fn=cliff)
  assert state.learning_rate > 0.0 and cliff(x + updates) < value


def test_zoom_with_a_non_finite_value_at_params_searches_to_its_limit_and_stays():
  """No trial passes the decrease test against a NaN value at params, so the search takes
  its ``max_linesearch_steps`` evaluations and then no step. (The first of them is the
  loop's: the trial run before the loop is skipped when the value at params is not
  finite.)"""
  tx = scale_by_zoom_linesearch(7)
  x = jnp.array([0.3, 0.2])
  grad = jax.grad(quadratic)(x)
  updates, state = jax.jit(lambda x, v, g: tx.update(-g, tx.init(x), x, value=v, grad=g,
                                                     value_fn=quadratic))(x, jnp.nan, grad)
  np.testing.assert_array_equal(updates, 0.0)
  assert state.learning_rate == 0.0
  assert int(state.info.num_linesearch_steps) == 7 and int(state.num_fun_evals) == 7


@pytest.mark.parametrize("factory", [lambda: scale_by_backtracking_linesearch(10),
                                     lambda: scale_by_zoom_linesearch(10)])
def test_non_finite_direction_gives_a_zero_step(factory):
  tx = factory()
  x = jnp.array([0.3, 0.2])
  value, grad = jax.value_and_grad(quadratic)(x)
  updates, state = tx.update(jnp.array([jnp.nan, 1.0]), tx.init(x), x, value=value,
                             grad=grad, value_fn=quadratic)
  np.testing.assert_array_equal(updates, 0.0)
  assert np.isfinite(state.value)


@pytest.mark.parametrize("factory", [lambda: scale_by_backtracking_linesearch(10),
                                     lambda: scale_by_zoom_linesearch(10)])
def test_ascent_direction_never_gives_nan(factory):
  tx = factory()
  x = jnp.array([0.3, 0.2])
  value, grad = jax.value_and_grad(quadratic)(x)
  updates, state = tx.update(grad, tx.init(x), x, value=value, grad=grad,
                             value_fn=quadratic)
  assert np.all(np.isfinite(updates)) and np.isfinite(state.value)
  assert state.info.decrease_error > 0  # reported as a failed search


# --- jit, vmap ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["backtracking", "zoom"])
def test_vmap_over_a_batch_of_problems(kind):
  """A batch of quadratics with different curvatures, one line search each."""
  tx = combine.chain(scaling.scale(-1.0), {
      "backtracking": scale_by_backtracking_linesearch(30, store_grad=True),
      "zoom": scale_by_zoom_linesearch(15)}[kind])
  scales = jnp.array([0.5, 1.0, 4.0])

  def fn(x, scale):
    return scale * quadratic(x)

  def step(x, state, scale):
    value, grad = jax.value_and_grad(fn)(x, scale)
    updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=fn,
                               scale=scale)
    return x + updates, state

  xs = jnp.stack([jnp.array([1.0, -2.0, 0.5])] * 3)
  batched = jax.jit(jax.vmap(step))
  states = jax.vmap(tx.init)(xs)
  single = jax.jit(step)
  alone = [(xs[i], tx.init(xs[i])) for i in range(3)]
  for _ in range(4):
    xs, states = batched(xs, states, scales)
    alone = [single(x, s, scales[i]) for i, (x, s) in enumerate(alone)]
  for i, (x, s) in enumerate(alone):
    np.testing.assert_allclose(xs[i], x, rtol=1e-5, atol=1e-6)
    assert int(states[1].num_fun_evals[i]) == int(s[1].num_fun_evals)


def test_schedule_hyperparameter():
  """Every numeric hyperparameter may be a schedule (gradtx's convention)."""
  tx = scale_by_backtracking_linesearch(10, slope_rtol=lambda count: 1e-4)
  x = jnp.array([1.0, -1.0])
  value, grad = jax.value_and_grad(quadratic)(x)
  updates, _ = jax.jit(lambda s: tx.update(-grad, s, x, value=value, grad=grad,
                                           value_fn=quadratic))(tx.init(x))
  assert quadratic(x + updates) < value


# --- validation --------------------------------------------------------------------------

INVALID = [
    (scale_by_backtracking_linesearch, dict(max_backtracking_steps=-1),
     "max_backtracking_steps must be an integer >= 0"),
    (scale_by_backtracking_linesearch, dict(max_backtracking_steps=2.5),
     "max_backtracking_steps must be an integer >= 0"),
    (scale_by_backtracking_linesearch, dict(max_backtracking_steps=5, slope_rtol=1.0),
     r"slope_rtol must be in \[0, 1\)"),
    (scale_by_backtracking_linesearch, dict(max_backtracking_steps=5, decrease_factor=1.0),
     r"decrease_factor must be in \(0, 1\)"),
    (scale_by_backtracking_linesearch, dict(max_backtracking_steps=5, increase_factor=0.5),
     r"increase_factor must be in \[1, inf\]"),
    (scale_by_backtracking_linesearch, dict(max_backtracking_steps=5, max_learning_rate=0.0),
     r"max_learning_rate must be in \(0, inf\)"),
    (scale_by_backtracking_linesearch, dict(max_backtracking_steps=5, atol=-1.0),
     r"atol must be in \[0, inf\)"),
    (scale_by_backtracking_linesearch, dict(max_backtracking_steps=5, rtol=float("nan")),
     r"rtol must be in \[0, inf\)"),
    (scale_by_zoom_linesearch, dict(max_linesearch_steps=0),
     "max_linesearch_steps must be an integer >= 1"),
    (scale_by_zoom_linesearch, dict(max_linesearch_steps=5, max_learning_rate=-1.0),
     r"max_learning_rate must be in \(0, inf\)"),
    (scale_by_zoom_linesearch, dict(max_linesearch_steps=5, tol=-1.0),
     r"tol must be in \[0, inf\)"),
    (scale_by_zoom_linesearch, dict(max_linesearch_steps=5, increase_factor=1.0),
     r"increase_factor must be in \(1, inf\)"),
    (scale_by_zoom_linesearch, dict(max_linesearch_steps=5, slope_rtol=-0.1),
     r"slope_rtol must be in \[0, 1\)"),
    (scale_by_zoom_linesearch, dict(max_linesearch_steps=5, curv_rtol=0.0),
     r"curv_rtol must be in \(0, inf\]"),
    (scale_by_zoom_linesearch, dict(max_linesearch_steps=5, slope_rtol=0.5, curv_rtol=0.4),
     "slope_rtol must be <= curv_rtol"),
    (scale_by_zoom_linesearch, dict(max_linesearch_steps=5, approx_dec_rtol=-1.0),
     r"approx_dec_rtol must be in \[0, inf\)"),
    (scale_by_zoom_linesearch, dict(max_linesearch_steps=5, stepsize_precision=-1.0),
     r"stepsize_precision must be in \[0, inf\)"),
    (scale_by_zoom_linesearch, dict(max_linesearch_steps=5, initial_guess_strategy="two"),
     "initial_guess_strategy must be 'one' or 'keep'"),
]


@pytest.mark.parametrize("factory,kwargs,message", INVALID)
def test_invalid_hyperparameters(factory, kwargs, message):
  with pytest.raises(ValueError, match=f"{factory.__name__}: {message}"):
    factory(**kwargs)


def test_states_are_optax_named_with_an_evaluation_count():
  params = make_params()
  bt = scale_by_backtracking_linesearch(5).init(params)
  zoom = scale_by_zoom_linesearch(5).init(params)
  assert isinstance(bt, ScaleByBacktrackingLinesearchState) and bt.grad is None
  assert isinstance(zoom, ScaleByZoomLinesearchState)
  assert jax.tree.structure(zoom.grad) == jax.tree.structure(params)
  for state in (bt, zoom):
    assert state.num_fun_evals.dtype == jnp.int32 and int(state.num_fun_evals) == 0
    assert state.value == np.inf


# --- backtracking with the curvature check (weak Wolfe) ----------------------------------


def weak_wolfe_reference(f, df, x, d, guess, c1, c2, shrink, max_step, max_steps):
  """A NumPy transcription of the weak Wolfe bracketing of Lewis & Overton (2013, section
  4.2), with Armijo backtracking by ``shrink`` below an upper bound only and growth by
  ``1 / shrink`` above a lower bound only, as ``curv_rtol`` documents. Returns the step
  taken and the number of evaluations."""
  f0, slope = f(x), df(x) @ d
  t, low, high, low_ok = guess, 0.0, np.inf, None
  for count in range(1, max_steps + 2):
    ft, st = f(x + t * d), df(x + t * d) @ d
    decreases = ft - f0 - t * c1 * slope <= 0.0
    if decreases and (st >= c2 * slope or t >= max_step):
      return t, count
    if decreases:
      low, low_ok = t, t
    else:
      high = t
    if count > max_steps:
      break
    if np.isinf(high):
      t = min(low / shrink, max_step)
    elif low > 0:
      t = 0.5 * (low + high)
    else:
      t = shrink * high
  return (low_ok, count) if low_ok is not None else (t, count)


@pytest.mark.parametrize("problem", ["quadratic", "rosenbrock", "pytree"])
def test_curvature_check_matches_a_numpy_transcription(problem):
  """Steepest descent scaled so that the first trials are too short (the search expands)
  or too long (it backtracks, then bisects), 40 steps: the step sizes and evaluation
  counts of a NumPy transcription of the bracketing, on its own evaluations of the loss
  at gradtx's iterates."""
  fn, make = PROBLEMS[problem]
  c1, c2, shrink, max_step = 1e-4, 0.5, 0.6, 20.0
  with jax.enable_x64(True):
    params = make(jnp.float64)
    _, unravel = ravel_pytree(params)
    f = lambda v: float(fn(unravel(jnp.asarray(v))))  # noqa: E731
    df = lambda v: np.asarray(ravel_pytree(  # noqa: E731
        jax.grad(fn)(unravel(jnp.asarray(v))))[0])
    tx = scale_by_backtracking_linesearch(
        12, slope_rtol=c1, decrease_factor=shrink, increase_factor=2.0,
        max_learning_rate=max_step, store_grad=True, curv_rtol=c2)
    step = jax.jit(lambda p, s, v, g, scale: tx.update(
        jax.tree.map(lambda x: -scale * x, g), s, p, value=v, grad=g, value_fn=fn))
    state = tx.init(params)
    expanded = bisected = 0
    for k in range(40):
      value, grad = jax.value_and_grad(fn)(params)
      scale = (1e-3, 3.0)[k % 2]  # alternately far too short and far too long
      guess = min(2.0 * float(state.learning_rate), max_step)
      if float(state.learning_rate) == 0:
        guess = max_step
      x = np.asarray(ravel_pytree(params)[0])
      d = -scale * df(x)
      expected_step, expected_count = weak_wolfe_reference(f, df, x, d, guess, c1, c2, shrink,
                                                           max_step, 12)
      updates, state = step(params, state, value, grad, scale)
      assert int(state.info.num_linesearch_steps) == expected_count, k
      np.testing.assert_allclose(float(state.learning_rate), expected_step, rtol=1e-12)
      expanded += expected_step > guess
      bisected += expected_count > 2 and expected_step < guess
      new_params = jax.tree.map(lambda p, u: p + u, params, updates)
      # The state's gradient is the one at the new params (kept for the next step).
      np.testing.assert_allclose(ravel_pytree(state.grad)[0],
                                 df(np.asarray(ravel_pytree(new_params)[0])),
                                 rtol=1e-12, atol=1e-12)
      params = new_params
    assert expanded > 0 and bisected > 0, (expanded, bisected)


def test_curvature_check_accepts_only_weak_wolfe_steps():
  """From a direction 1000x too short, the search grows the step until the slope has
  flattened to ``c2`` of its start; the search without the check takes the first trial."""
  with jax.enable_x64(True):
    x = jnp.array([1.0, -2.0, 0.5, 3.0])
    value, grad = jax.value_and_grad(quadratic)(x)
    d = -1e-3 * grad
    for c2, expect_longer in ((None, False), (0.5, True)):
      tx = scale_by_backtracking_linesearch(30, max_learning_rate=1e4, curv_rtol=c2)
      updates, state = tx.update(d, tx.init(x), x, value=value, grad=grad,
                                 value_fn=quadratic)
      slope0 = float(jnp.vdot(grad, d))
      slope = float(jnp.vdot(jax.grad(quadratic)(x + updates), d))
      assert quadratic(x + updates) <= value + 1e-4 * float(state.learning_rate) * slope0
      assert (slope >= 0.5 * slope0) == expect_longer
      assert (float(state.learning_rate) > 1.5) == expect_longer


def test_curvature_check_out_of_trials_takes_its_largest_sufficient_decrease():
  """f = x**2 / 2 from 1 along -0.3: the first trial (step 1, to 0.7) decreases enough but
  is too steep for c2 = 0.5; the expanded one (step 10, to -2) does not decrease; with one
  reduction allowed the search ends there and takes the step of 1, its value and
  gradient."""
  with jax.enable_x64(True):
    fn = lambda x: 0.5 * jnp.sum(x**2)  # noqa: E731
    x = jnp.array([1.0])
    tx = scale_by_backtracking_linesearch(1, decrease_factor=0.1, increase_factor=1.0,
                                          max_learning_rate=100.0, store_grad=True,
                                          curv_rtol=0.5)
    updates, state = tx.update(jnp.array([-0.3]), tx.init(x), x, value=fn(x),
                               grad=jax.grad(fn)(x), value_fn=fn)
    np.testing.assert_allclose(updates, [-0.3])
    assert float(state.learning_rate) == 1.0 and int(state.info.num_linesearch_steps) == 2
    np.testing.assert_allclose(state.value, 0.245, rtol=1e-15)
    np.testing.assert_allclose(state.grad, [0.7], rtol=1e-15)
    assert float(state.info.decrease_error) == 0.0


def test_curvature_check_keeps_the_state_in_the_params_dtypes():
  """bfloat16 params with float32 gradients: the stored gradient has the dtype ``init``
  gave it, so the state can be carried through a loop."""
  fn = lambda p: jnp.sum(p["w"].astype(jnp.float32)**2)  # noqa: E731
  params = {"w": jnp.array([1.0, -2.0, 0.5], jnp.bfloat16)}
  grad = {"w": 2.0 * params["w"].astype(jnp.float32)}
  tx = scale_by_backtracking_linesearch(10, store_grad=True, curv_rtol=0.5)
  state = tx.init(params)
  updates, new_state = tx.update({"w": -grad["w"]}, state, params, value=fn(params),
                                 grad=grad, value_fn=fn)
  assert jax.tree.map(lambda x: x.dtype, new_state) == jax.tree.map(lambda x: x.dtype, state)
  assert fn(jax.tree.map(lambda p, u: p + u.astype(p.dtype), params, updates)) < fn(params)


def test_curvature_check_keeps_lbfgs_pairs_positive():
  """L-BFGS with backtracking reaches the Rosenbrock minimum; with the curvature check no
  pair in its memory has <s, y> <= 0 at any step."""
  with jax.enable_x64(True):
    tx = combine.chain(
        scale_by_lbfgs(), scaling.scale(-1.0),
        scale_by_backtracking_linesearch(30, store_grad=True, curv_rtol=0.9))
    x = jnp.array([-1.2, 1.0, -1.2, 1.0])
    path, state = solver_path(tx, rosenbrock, x, value_and_grad_from_state, 60)
    np.testing.assert_allclose(path[-1], 1.0, atol=1e-6)
    assert np.all(np.asarray(state[0].weights_memory) >= 0)


@pytest.mark.parametrize("curv_rtol,match", [
    (1.0, r"curv_rtol must be in \(0, 1\)"), (0.0, r"curv_rtol must be in \(0, 1\)"),
    (1e-5, "slope_rtol")])
def test_curvature_check_validation(curv_rtol, match):
  with pytest.raises(ValueError, match=match):
    scale_by_backtracking_linesearch(10, curv_rtol=curv_rtol)
