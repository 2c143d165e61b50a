"""L-BFGS against Optax 0.2.8 and a dense NumPy transcription of the BFGS recursion.

Oracles: ``optax.lbfgs`` iterates, side by side for 40 jitted steps (value and gradient
reused from the line search's state, as both libraries recommend), on Rosenbrock in 2
and 10 dimensions and on a least-squares fit with pytree params, in float64 (and one
float32 case); and, for the direction alone, the inverse-Hessian approximation written
as dense matrices, ``H <- V^T H V + rho s s^T`` with ``V = I - rho y s^T`` from ``gamma I``
(Nocedal & Wright 2006, (7.19)), in NumPy. Also: convergence, recovery from non-descent
and non-finite directions, vmap over a batch of problems, evaluation counts, validation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradtx._src import base
from gradtx._src.solvers.lbfgs import ScaleByLBFGSState, lbfgs, scale_by_lbfgs
from gradtx._src.linesearch import (scale_by_backtracking_linesearch,
                                    value_and_grad_from_state)
from oracles import (assert_trajectories_close, fresh_value_and_grad, paired_solver_paths,
                     solver_path)

STEPS = 40


def rosenbrock(x):
  return jnp.sum(100.0 * (x[1:] - x[:-1]**2)**2 + (1.0 - x[:-1])**2)


def rosenbrock_start(n, dtype):
  return jnp.tile(jnp.array([-1.2, 1.0], dtype), n // 2)


_rng = np.random.default_rng(0)
_A, _Y = _rng.normal(size=(12, 3)), _rng.normal(size=(12, 2))


def least_squares(params):
  """A nonlinear least-squares fit with pytree params (a matrix, a vector, a scalar)."""
  a, y = jnp.asarray(_A, params["w"].dtype), jnp.asarray(_Y, params["w"].dtype)
  pred = jnp.tanh(a @ params["w"] + params["b"]) * params["scale"]
  return 0.5 * jnp.sum((pred - y)**2) + 0.01 * jnp.sum(params["w"]**2)


def least_squares_start(dtype):
  return {"w": jnp.full((3, 2), 0.1, dtype), "b": jnp.zeros(2, dtype),
          "scale": jnp.asarray(1.0, dtype)}


PROBLEMS = {
    "rosenbrock2": (rosenbrock, lambda dtype: rosenbrock_start(2, dtype)),
    "rosenbrock10": (rosenbrock, lambda dtype: rosenbrock_start(10, dtype)),
    "least_squares": (least_squares, least_squares_start),
}


def run(tx, fn, params, vag, steps=STEPS):
  """Params after each jitted step of ``tx``, value and gradient from ``vag``."""
  return solver_path(tx, fn, params, vag, steps)


CASES = [
    ("rosenbrock2", "float64", {}),
    ("least_squares", "float64", {}),
    ("rosenbrock10", "float32", {}),
    ("rosenbrock10", "float64", dict(memory_size=3, scale_init_precond=False)),
    ("least_squares", "float64", dict(memory_size=1)),
]


@pytest.mark.parametrize("problem,dtype,kwargs", CASES)
def test_iterates_match_optax(problem, dtype, kwargs):
  fn, make = PROBLEMS[problem]
  with jax.enable_x64(dtype == "float64"):
    params = make(jnp.dtype(dtype))
    (path, state), (expected, _) = paired_solver_paths(
        lbfgs(**kwargs), optax.lbfgs(**kwargs), fn, params,
        (value_and_grad_from_state, optax.value_and_grad_from_state), STEPS)
    assert_trajectories_close(path, expected, jnp.dtype(dtype))
    assert fn(path[-1]) < 0.01 * fn(params) if fn is rosenbrock else fn(path[-1]) < fn(params)
    # 40 searches of at least one evaluation each, counted in the line search's state.
    assert int(state[2].num_fun_evals) >= STEPS


@pytest.mark.parametrize("linesearch", ["none", "backtracking"])
def test_other_line_searches_match_optax(linesearch):
  ours, theirs = {
      "none": (lbfgs(0.05, linesearch=None), optax.lbfgs(0.05, linesearch=None)),
      "backtracking": (lbfgs(linesearch=scale_by_backtracking_linesearch(20, store_grad=True)),
                       optax.lbfgs(linesearch=optax.scale_by_backtracking_linesearch(
                           20, store_grad=True)))}[linesearch]
  plain = fresh_value_and_grad
  with jax.enable_x64(True):
    params = least_squares_start(jnp.float64)
    (path, _), (expected, _) = paired_solver_paths(ours, theirs, least_squares, params,
                                                   (plain, plain), 30)
    assert_trajectories_close(path, expected, jnp.float64)


def test_reaches_the_rosenbrock_minimum():
  with jax.enable_x64(True):
    path, _ = run(lbfgs(), rosenbrock, rosenbrock_start(2, jnp.float64),
                  value_and_grad_from_state, steps=60)
    np.testing.assert_allclose(path[-1], [1.0, 1.0], atol=1e-8)
    assert jnp.linalg.norm(jax.grad(rosenbrock)(path[-1])) < 1e-8


def dense_lbfgs_direction(g, pairs, gamma):
  """``H g`` with ``H`` built from ``gamma I`` by the BFGS update, oldest pair first."""
  h = gamma * np.eye(g.size)
  for s, y in pairs:
    rho = 1.0 / (y @ s)
    v = np.eye(g.size) - rho * np.outer(y, s)
    h = v.T @ h @ v + rho * np.outer(s, s)
  return h @ g


@pytest.mark.parametrize("memory_size", [2, 4])
def test_direction_matches_dense_bfgs_recursion(memory_size):
  """Points on a convex quadratic (so every <s, y> > 0); the direction at each step
  uses the last ``memory_size`` pairs and ``gamma = <s, y>/<y, y>`` of the newest."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(1)
    m = rng.normal(size=(5, 5))
    hessian = m @ m.T + np.eye(5)
    xs = [rng.normal(size=5) for _ in range(7)]
    gs = [hessian @ x for x in xs]
    tx = scale_by_lbfgs(memory_size)
    update = jax.jit(tx.update)
    state = tx.init(jnp.asarray(xs[0]))
    for k, (x, g) in enumerate(zip(xs, gs)):
      direction, state = update(jnp.asarray(g), state, jnp.asarray(x))
      if k == 0:
        expected = min(1.0, 1.0 / np.linalg.norm(g)) * g
      else:
        pairs = [(xs[j + 1] - xs[j], gs[j + 1] - gs[j]) for j in range(k)][-memory_size:]
        s, y = pairs[-1]
        expected = dense_lbfgs_direction(g, pairs, (s @ y) / (y @ y))
      np.testing.assert_allclose(direction, expected, rtol=1e-10, atol=1e-12)


# --- recovery ----------------------------------------------------------------------------


def test_non_descent_direction_resets_the_memory():
  """A pair with <s, y> < 0 (negative curvature) makes the two-loop direction point
  uphill; the first-step direction is used instead and the memory is cleared."""
  tx = scale_by_lbfgs(5)
  x0, g0 = jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0])
  x1, g1 = jnp.array([1.0, 0.0]), jnp.array([-1.0, 0.1])  # <s, y> = -2
  _, state = tx.update(g0, tx.init(x0), x0)
  # Optax emits this direction, which is not a descent direction.
  optax_tx = optax.scale_by_lbfgs(5)
  _, optax_state = optax_tx.update(g0, optax_tx.init(x0), x0)
  optax_direction, _ = optax_tx.update(g1, optax_state, x1)
  assert jnp.vdot(optax_direction, g1) <= 0
  direction, state = tx.update(g1, state, x1)
  np.testing.assert_allclose(direction, g1 * min(1.0, 1.0 / float(jnp.linalg.norm(g1))))
  np.testing.assert_array_equal(state.weights_memory, 0.0)
  np.testing.assert_array_equal(state.diff_params_memory, 0.0)
  # Afterwards it builds its memory again from the next pair.
  x2, g2 = jnp.array([1.0, -0.5]), jnp.array([-0.5, -0.4])
  direction, state = tx.update(g2, state, x2)
  assert jnp.vdot(direction, g2) > 0 and jnp.count_nonzero(state.weights_memory) == 1


def test_non_finite_gradient_gives_zero_update_then_recovers():
  with jax.enable_x64(True):
    tx = lbfgs()
    fn = least_squares
    params = least_squares_start(jnp.float64)
    state = tx.init(params)
    step = jax.jit(lambda p, s, g: tx.update(g, s, p, value=fn(p), grad=g, value_fn=fn))
    for _ in range(3):
      updates, state = step(params, state, jax.grad(fn)(params))
      params = base.apply_updates(params, updates)
    bad = jax.tree.map(lambda g: jnp.full_like(g, jnp.nan), jax.grad(fn)(params))
    updates, state = step(params, state, bad)
    for u in jax.tree.leaves(updates):
      np.testing.assert_array_equal(u, 0.0)
    before = fn(params)
    for _ in range(5):
      updates, state = step(params, state, jax.grad(fn)(params))
      assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))
      params = base.apply_updates(params, updates)
    assert fn(params) < before


# --- jit, vmap ---------------------------------------------------------------------------


def test_vmap_over_a_batch_of_problems():
  """Rosenbrock with three different ``a`` in ``(a - x)^2 + 100 (y - x^2)^2``."""

  def fn(x, a):
    return (a - x[0])**2 + 100.0 * (x[1] - x[0]**2)**2

  tx = lbfgs()

  def step(x, state, a):
    value, grad = jax.value_and_grad(fn)(x, a)
    updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=fn, a=a)
    return x + updates, state

  a = jnp.array([0.5, 1.0, 1.5])
  xs = jnp.tile(jnp.array([-1.2, 1.0]), (3, 1))
  states = jax.vmap(tx.init)(xs)
  batched, single = jax.jit(jax.vmap(step)), jax.jit(step)
  alone = [(xs[i], tx.init(xs[i])) for i in range(3)]
  for _ in range(50):
    xs, states = batched(xs, states, a)
  for _ in range(50):
    alone = [single(x, s, a[i]) for i, (x, s) in enumerate(alone)]
  for i, (x, _) in enumerate(alone):
    np.testing.assert_allclose(xs[i], x, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(xs[i], [a[i], a[i]**2], rtol=1e-3)


def test_state_is_optax_shaped():
  params = least_squares_start(jnp.float32)
  state = lbfgs(memory_size=4).init(params)
  lbfgs_state = state[0]
  assert isinstance(lbfgs_state, ScaleByLBFGSState)
  assert lbfgs_state.diff_params_memory["w"].shape == (4, 3, 2)
  assert lbfgs_state.weights_memory.shape == (4,)
  assert int(state[2].num_fun_evals) == 0


@pytest.mark.parametrize("factory,kwargs,message", [
    (lbfgs, dict(memory_size=0), "lbfgs: memory_size must be an integer >= 1"),
    (lbfgs, dict(memory_size=2.5), "lbfgs: memory_size must be an integer >= 1"),
    (lbfgs, dict(learning_rate=-1.0), r"lbfgs: learning_rate must be in \[0, inf\)"),
    (scale_by_lbfgs, dict(memory_size=0), "scale_by_lbfgs: memory_size must be an integer"),
])
def test_invalid_hyperparameters(factory, kwargs, message):
  with pytest.raises(ValueError, match=message):
    factory(**kwargs)


def test_needs_params():
  tx = scale_by_lbfgs()
  with pytest.raises(ValueError, match="needs the params"):
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
