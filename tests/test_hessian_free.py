"""Hessian-free optimisation (Martens 2010).

Oracles: a NumPy transcription of Martens' truncated CG (iterates, model values and the
iteration at which the relative-progress test stops it) and ``np.linalg.solve``; dense
``jax.hessian`` / Jacobian matrices for the curvature-vector products on a small problem;
the Newton and ``scipy.optimize.minimize`` solutions of L2-regularised logistic regression
on the digits; ``scipy.optimize.least_squares`` for a nonlinear least-squares fit; the
quadratic formula for the minimum of a log-barrier problem.
"""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import gradtx as gtx
from gradtx._src.solvers.hessian_free import (HessianFreeState, _curvature_product,
                                              hessian_free)
from gradtx._src.solvers.linalg import conjugate_gradient
from gradtx._src.solvers.minimize import minimize
from gradtx._src.solvers.newton import newton
from test_newton import L2, assert_trees_close, logistic_problem, scipy_solution


def numpy_cg(a, g, x0, max_iters, tol, m_inv=None, iterates=None):
  """Martens 2010, Algorithm 2 (preconditioned CG on ``phi(x) = g.x + 1/2 x.A x``) with
  his stopping test, for a dense ``A``: the solution, its model value, the iterations.
  Each iteration's ``x`` is appended to the list ``iterates`` if one is given."""
  m_inv = np.ones_like(g) if m_inv is None else m_inv
  phi = lambda x: g @ x + 0.5 * x @ a @ x  # noqa: E731
  x = x0 if phi(x0) <= 0 else np.zeros_like(g)
  r = a @ x + g
  y = m_inv * r
  p = -y
  phis = [phi(x)]
  for i in range(1, max_iters + 1):
    ap = a @ p
    alpha = (r @ y) / (p @ ap)
    x = x + alpha * p
    r_new = r + alpha * ap
    y_new = m_inv * r_new
    p = -y_new + (r_new @ y_new) / (r @ y) * p
    r, y = r_new, y_new
    phis.append(phi(x))
    if iterates is not None:
      iterates.append(x)
    k = max(10, i // 10)
    if i > k and phis[i] < 0 and (phis[i] - phis[i - k]) / phis[i] < k * tol:
      return x, phis[i], i
  return x, phis[-1], max_iters


def spd_matrix(n, condition, seed=0):
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(n, n)))
  return (q * np.geomspace(1, condition, n)) @ q.T, rng.normal(size=n)


@pytest.mark.parametrize("preconditioned", [False, True])
def test_cg_matches_martens_algorithm_in_numpy(preconditioned):
  """Same iterates, model value and stopping iteration as the transcription, from a warm
  start, with the progress test stopping it before the cap. Condition number 100: CG
  amplifies rounding differences between any two implementations (by ~1e10 over 40
  iterations at condition 1e4), so a better-conditioned matrix lets them be compared."""
  with jax.enable_x64(True):
    a, g = spd_matrix(60, 100.0)
    x0 = 0.1 * np.linalg.solve(a, -g)
    m_inv = 1 / np.diag(a) ** 0.75 if preconditioned else None
    expected = numpy_cg(a, g, x0, 200, 5e-4, m_inv)
    assert 10 < expected[2] < 60
    precondition = (lambda r: r * m_inv) if preconditioned else (lambda r: r)
    x, phi, iters = jax.jit(lambda g, x0: conjugate_gradient(
        lambda v: jnp.asarray(a) @ v, g, x0, 200, 5e-4, precondition))(g, x0)
    assert int(iters) == expected[2]
    np.testing.assert_allclose(x, expected[0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(float(phi), expected[1], rtol=1e-10)


def test_cg_solves_the_system_and_drops_a_bad_warm_start():
  with jax.enable_x64(True):
    a, g = spd_matrix(20, 10.0, seed=1)
    solve = jax.jit(lambda x0: conjugate_gradient(lambda v: jnp.asarray(a) @ v,
                                                  jnp.asarray(g), x0, 100, 0.0))
    x, phi, iters = solve(jnp.asarray(5 * np.linalg.solve(a, g)))  # phi(x0) > 0
    np.testing.assert_allclose(x, np.linalg.solve(a, -g), rtol=1e-9)
    np.testing.assert_allclose(float(phi), -0.5 * g @ np.linalg.solve(a, g), rtol=1e-12)
    assert int(iters) < 100  # stopped by the rounding-level residual, not the cap


def test_cg_stops_at_negative_curvature():
  """``A = diag(1, -1)`` with ``g = (1, 1)``: the first direction ``-g`` has curvature 0,
  so CG stops at once and keeps the start."""
  a = jnp.diag(jnp.asarray([1.0, -1.0]))
  x, phi, iters = conjugate_gradient(lambda v: a @ v, jnp.ones(2), jnp.zeros(2), 10, 0.0)
  np.testing.assert_array_equal(x, [0.0, 0.0])
  assert int(iters) == 1 and float(phi) == 0.0


def test_curvature_products_match_dense_matrices():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(3, 4)))
    x = jnp.asarray(rng.normal(size=6))
    model = lambda v: jnp.tanh(w @ v[:4]) * v[4] + v[5]  # noqa: E731
    loss = lambda z: jnp.sum(jnp.log1p(jnp.exp(z)) - 0.3 * z)  # noqa: E731
    objective = lambda v: loss(model(v))  # noqa: E731
    v = jnp.asarray(rng.normal(size=6))
    hvp = _curvature_product("hessian", objective, None, None, x)
    # The dense matrices compiled: nested autodiff eagerly dispatches hundreds of ops.
    np.testing.assert_allclose(hvp(v), jax.jit(jax.hessian(objective))(x) @ v, rtol=1e-12)
    gvp = _curvature_product("gauss_newton", objective, model, loss, x)
    jac, loss_hessian = jax.jit(lambda x: (jax.jacobian(model)(x),
                                           jax.hessian(loss)(model(x))))(x)
    gauss_newton = jac.T @ loss_hessian @ jac
    np.testing.assert_allclose(gvp(v), gauss_newton @ v, rtol=1e-12)


def regularised_logistic_gauss_newton():
  """The digits problem as outputs and a convex loss of them: the outputs are the logits
  and the params (for the L2 term), so the Gauss-Newton matrix includes ``L2 * I``."""
  loss, x0, logits, cross_entropy = logistic_problem()

  def output_fn(params):
    return logits(params), params

  def loss_fn(outputs):
    z, params = outputs
    return cross_entropy(z) + 0.5 * L2 * sum(jnp.sum(p**2) for p in jax.tree.leaves(params))

  return loss, x0, output_fn, loss_fn


def test_logistic_regression_reaches_the_newton_solution():
  """Hessian, Gauss-Newton, and preconditioned curvature all land on Newton's solution
  of the digits problem, which is scipy's."""
  with jax.enable_x64(True):
    loss, x0, output_fn, loss_fn = regularised_logistic_gauss_newton()
    reference = minimize(loss, x0, newton(), tol=1e-10)
    assert bool(reference.converged)
    assert_trees_close(reference.params, scipy_solution(loss, x0), rtol=1e-6, atol=1e-8)
    for tx in [hessian_free(),
               hessian_free(curvature="gauss_newton", output_fn=output_fn, loss_fn=loss_fn),
               hessian_free(preconditioner="diagonal")]:
      result = minimize(loss, x0, tx, tol=1e-10)
      assert bool(result.converged) and int(result.num_steps) < 60
      assert_trees_close(result.params, reference.params, rtol=1e-7, atol=1e-9)


def test_gauss_newton_least_squares_fit_matches_scipy():
  """``y = a exp(-b t) + c`` fitted to noisy data, the model and the squared error
  given at construction; scipy's least_squares (trust region reflective) is the oracle."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4, 40)
    y = 2.5 * np.exp(-1.3 * t) + 0.5 + 0.02 * rng.normal(size=t.size)

    def model(params):
      return params["a"] * jnp.exp(-params["b"] * t) + params["c"]

    def squared_error(z):
      return 0.5 * jnp.sum((z - y) ** 2)

    x0 = {"a": jnp.asarray(1.0), "b": jnp.asarray(0.5), "c": jnp.asarray(0.0)}
    tx = hessian_free(curvature="gauss_newton", output_fn=model, loss_fn=squared_error)
    result = minimize(lambda p: squared_error(model(p)), x0, tx, tol=1e-10)
    assert bool(result.converged)
    fit = scipy.optimize.least_squares(
        lambda v: v[0] * np.exp(-v[1] * t) + v[2] - y, [1.0, 0.5, 0.0],
        xtol=1e-15, ftol=1e-15, gtol=1e-15)
    np.testing.assert_allclose([result.params[k] for k in "abc"], fit.x, rtol=1e-8)


def run_steps(tx, fun, x, steps):
  """``steps`` jitted updates; the params and state after each."""
  update = jax.jit(lambda g, s, x: tx.update(g, s, x, value=fun(x), value_fn=fun))
  state = tx.init(x)
  history = []
  for _ in range(steps):
    updates, state = update(jax.grad(fun)(x), state, x)
    x = gtx.apply_updates(x, updates)
    history.append((x, state))
  return history


def test_damping_rises_on_rosenbrock_and_the_run_converges():
  """From (-1.2, 1) the Hessian is indefinite; with a small damping the second step's
  model is poor (rho < 1/4) and the damping rises by 3/2; the run still converges."""
  with jax.enable_x64(True):
    rosenbrock = lambda x: 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2  # noqa: E731
    x0 = jnp.asarray([-1.2, 1.0])
    history = run_steps(hessian_free(damping=1e-3), rosenbrock, x0, 4)
    damping = [1e-3] + [float(state.damping) for _, state in history]
    rho = [float(state.rho) for _, state in history]
    for before, after, r in zip(damping, damping[1:], rho):
      expected = 1.5 if r < 0.25 else 2 / 3 if r > 0.75 else 1.0
      np.testing.assert_allclose(after, before * expected, rtol=1e-12)
    assert any(r < 0.25 for r in rho) and max(damping[1:]) > min(damping)
    values = [float(rosenbrock(x)) for x, _ in history]
    assert all(b <= a for a, b in zip([float(rosenbrock(x0))] + values, values))
    result = minimize(rosenbrock, x0, hessian_free(damping=1e-3), tol=1e-9)
    assert bool(result.converged)
    np.testing.assert_allclose(result.params, [1.0, 1.0], rtol=1e-8)


def test_a_step_into_nan_is_cut_back_and_raises_the_damping():
  """``f = sum((x - 3)**2 - log(1 - x))`` from 0 with little damping: the CG step leaves
  the domain (NaN); the line search cuts it back, the damping rises (rho is 0), and
  no NaN reaches the params or the state. The minimum solves ``2x**2 - 8x + 5 = 0``."""
  with jax.enable_x64(True):
    fun = lambda x: jnp.sum((x - 3.0) ** 2 - jnp.log(1.0 - x))  # noqa: E731
    x0 = jnp.zeros(2)
    (x1, state), = run_steps(hessian_free(damping=1e-3), fun, x0, 1)
    assert isinstance(state, HessianFreeState)
    assert float(state.rho) == 0.0 and float(state.damping) == 1.5e-3
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state)
               if jnp.issubdtype(leaf.dtype, jnp.floating))
    assert np.all(np.isfinite(x1)) and float(fun(x1)) < float(fun(x0))
    assert np.all(np.isfinite(state.solution))
    result = minimize(fun, x0, hessian_free(damping=1e-3), tol=1e-10)
    assert bool(result.converged)
    np.testing.assert_allclose(result.params, (8 - np.sqrt(24)) / 4, rtol=1e-12)


def test_twenty_thousand_params_without_a_dense_matrix():
  """No intermediate of the compiled step has more than a few times n entries (a dense
  curvature matrix would have n**2 = 4e8), and the step runs."""
  n = 20_000
  rng = np.random.default_rng(0)
  target = jnp.asarray(rng.normal(size=n), jnp.float32)
  fun = lambda x: jnp.sum(jnp.logaddexp(0.0, x["w"] - target) + 0.5 * x["w"] ** 2)  # noqa: E731
  tx = hessian_free(cg_max_iters=5)
  x = {"w": jnp.zeros(n, jnp.float32)}

  def step(g, s, x):
    return tx.update(g, s, x, value_fn=fun)

  state = tx.init(x)
  jaxpr = jax.make_jaxpr(step)(jax.grad(fun)(x), state, x)
  sizes = []

  def visit(jaxpr):
    for eqn in jaxpr.eqns:
      sizes.extend(int(np.prod(v.aval.shape)) for v in eqn.outvars if hasattr(v.aval, "shape"))
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        visit(sub)

  visit(jaxpr.jaxpr)
  assert max(sizes) <= 4 * n
  updates, state = jax.jit(step)(jax.grad(fun)(x), state, x)
  assert np.all(np.isfinite(updates["w"])) and float(fun(gtx.apply_updates(x, updates))) < float(fun(x))


def test_vmap_over_a_batch_of_problems_and_jit():
  with jax.enable_x64(True):
    centres = jnp.asarray([[1.0, -2.0], [0.0, 3.0], [2.0, 0.5]])
    scales = jnp.asarray([1.0, 10.0, 0.1])

    def solve(scale, centre):
      fun = lambda x: jnp.sum(scale * (x["v"] - centre) ** 2 + 0.1 * (x["v"] - centre) ** 4)  # noqa: E731
      return minimize(fun, {"v": jnp.zeros(2)}, hessian_free(), tol=1e-9)

    batch = jax.jit(jax.vmap(solve))(scales, centres)
    assert np.all(batch.converged)
    np.testing.assert_allclose(batch.params["v"], centres, atol=1e-8)
    for i in range(3):
      alone = solve(scales[i], centres[i])
      assert int(alone.num_steps) == int(batch.num_steps[i])
      np.testing.assert_allclose(alone.params["v"], batch.params["v"][i], rtol=1e-10)


def test_with_a_line_search_transform():
  with jax.enable_x64(True):
    from gradtx._src.linesearch import scale_by_backtracking_linesearch
    loss, x0, _, _ = logistic_problem()
    tx = hessian_free(linesearch=scale_by_backtracking_linesearch(20, store_grad=True))
    result = minimize(loss, x0, tx, tol=1e-8)
    assert bool(result.converged)


def test_missing_extras_are_reported():
  tx = hessian_free()
  with pytest.raises(ValueError, match="hessian_free: update needs the objective as value_fn="):
    tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), jnp.zeros(2))
  tx = hessian_free(curvature="gauss_newton")
  with pytest.raises(ValueError, match="hessian_free: curvature='gauss_newton' needs output_fn="):
    tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), jnp.zeros(2), value_fn=jnp.sum)


@pytest.mark.parametrize("kwargs,message", [
    (dict(damping=0.0), r"hessian_free: damping must be in \(0, inf\), got 0.0"),
    (dict(damping=float("nan")), r"hessian_free: damping must be in \(0, inf\), got nan"),
    (dict(cg_max_iters=0), "hessian_free: cg_max_iters must be an integer >= 1, got 0"),
    (dict(cg_max_iters=2.5), "hessian_free: cg_max_iters must be an integer >= 1, got 2.5"),
    (dict(cg_tol=-1.0), r"hessian_free: cg_tol must be in \[0, inf\), got -1.0"),
    (dict(curvature="fisher"), "hessian_free: curvature must be one of"),
    (dict(preconditioner="martens"), "hessian_free: preconditioner must be one of"),
    (dict(cg_backtracking=1), "hessian_free: cg_backtracking must be True or False, got 1"),
])
def test_validation(kwargs, message):
  with pytest.raises(ValueError, match="^" + message):
    hessian_free(**kwargs)


def numpy_rosenbrock(x):
  return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


@pytest.mark.parametrize("iters", [5, 6])
def test_cg_backtracking_matches_martens_procedure_in_numpy(iters):
  """Martens 2010, 4.6, transcribed: CG (``iters`` iterations, from zero) on ``H +
  lambda I`` of 6-D Rosenbrock at the standard start keeps its iterates at iterations
  1, 2, 3, 4, 5 (``ceil(1.3**j)``) and its last; from the last it steps back while the
  (NumPy) objective does not increase. The update is the iterate reached (the fourth,
  past the fifth and, with 6 iterations, the sixth), with its model value in ``rho``;
  CG's last iterate is the next warm start. With 5 iterations the last is also kept."""
  with jax.enable_x64(True):
    fun = lambda x: jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)  # noqa: E731
    x0 = np.tile([-1.2, 1.0], 3)
    lam = 1e-3
    g = np.asarray(jax.grad(fun)(x0))
    a = np.asarray(jax.hessian(fun)(x0)) + lam * np.eye(6)
    iterates = []
    numpy_cg(a, g, np.zeros(6), iters, 0.0, iterates=iterates)  # tol 0: all iterations
    assert len(iterates) == iters
    kept = sorted({1, 2, 3, 4, 5, iters})
    chosen = len(kept) - 1
    best = numpy_rosenbrock(x0 + iterates[kept[chosen] - 1])
    evals = 1
    while chosen > 0:
      value = numpy_rosenbrock(x0 + iterates[kept[chosen - 1] - 1])
      evals += 1
      if not value <= best:
        break
      chosen, best = chosen - 1, value
    step = iterates[kept[chosen] - 1]
    assert kept[chosen] == 4  # the procedure did step back

    tx = hessian_free(damping=lam, cg_max_iters=iters, cg_tol=0.0, cg_backtracking=True,
                      linesearch=gtx.identity())
    value, grad = jax.value_and_grad(fun)(jnp.asarray(x0))
    updates, (state, _) = jax.jit(lambda p: tx.update(
        grad, tx.init(p), p, value=value, value_fn=fun))(jnp.asarray(x0))
    np.testing.assert_allclose(updates, step, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(state.solution, iterates[-1], rtol=1e-9, atol=1e-12)
    assert int(state.num_cg_iters) == iters and int(state.num_fun_evals) == evals
    phi = g @ step + 0.5 * step @ a @ step
    np.testing.assert_allclose(float(state.rho), (best - float(value)) / phi, rtol=1e-9)


def test_cg_backtracking_steps_back_past_non_finite_iterates():
  """``f = sum(c (x - 3)**2) - log(1 - x[1])`` from 0, ``c = (0.1, 3, 30)``: CG's later
  iterates cross the barrier at ``x[1] = 1`` (NaN, counted as ``+inf``), so backtracking
  steps back over them to the first, ``-(g.g / g.Ag) g``, while CG's last iterate stays
  the warm start. The run reaches the minimum, ``x[1]`` from ``6x**2 - 24x + 17 = 0``
  (to ``tol / (2 c_0)`` in ``x[0]``)."""
  with jax.enable_x64(True):
    c = jnp.asarray([0.1, 3.0, 30.0])
    fun = lambda x: jnp.sum(c * (x - 3.0) ** 2) - jnp.log(1.0 - x[1])  # noqa: E731
    x0 = jnp.zeros(3)
    value, grad = jax.value_and_grad(fun)(x0)
    g = np.asarray(grad)
    a = np.asarray(jax.hessian(fun)(x0)) + 1e-3 * np.eye(3)
    tx = hessian_free(damping=1e-3, cg_backtracking=True, linesearch=gtx.identity())
    updates, (state, _) = tx.update(grad, tx.init(x0), x0, value=value, value_fn=fun)
    np.testing.assert_allclose(updates, -(g @ g) / (g @ a @ g) * g, rtol=1e-10)
    assert np.isfinite(float(fun(x0 + updates))) and float(fun(x0 + updates)) < float(value)
    iters = int(state.num_cg_iters)
    assert iters >= 3 and int(state.num_fun_evals) == iters  # the last, then iters - 1
    assert not np.isfinite(float(fun(x0 + state.solution)))
    minimum = np.asarray([3.0, (24 - np.sqrt(168)) / 12, 3.0])
    result = minimize(fun, x0, hessian_free(damping=1e-3, cg_backtracking=True), tol=1e-10)
    assert bool(result.converged)
    np.testing.assert_allclose(result.params, minimum, rtol=0, atol=1e-9)
