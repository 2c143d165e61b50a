"""The probabilistic line search against a NumPy transcription of the authors' algorithm.

Oracles (``probabilistic_linesearch_oracle``, written from ``probLineSearch.m``): the GP
posterior (mean, its derivatives, variances and the covariances with the origin) as
explicit loops and ``numpy.linalg.solve``; the Wolfe probability with the bivariate
normal integrated by SciPy quadrature (not Genz's method, which gradtx uses); one step
of the search (which point to take or where to look next) on random lines; and whole
runs of many line searches, call by call, on the mixed-shape tree of conftest with
mini-batch noise, in float64 and float32. Then the Wolfe conditions of an accepted step
on a noise-free quadratic, checked on the function itself; non-finite observations;
errors; the variance helper; the example at tiny settings.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradtx as gtx
import probabilistic_linesearch_oracle as oracle
from conftest import load_script, loss, make_params
from gradtx._src.linesearch import bivariate_normal, line_gp
from gradtx._src.linesearch.probabilistic import MAX_OBSERVATIONS, search_step

C1, C2, THRESHOLD = 0.05, 0.5, 0.3
# Compiled once per dtype (run eagerly, each of their few hundred operations would be
# compiled on its own).
condition = jax.jit(line_gp.condition)
posterior = jax.jit(line_gp.posterior)
p_wolfe = jax.jit(line_gp.p_wolfe)
mean_derivatives = jax.jit(line_gp.mean_derivatives)
strip_probability = jax.jit(bivariate_normal.upper_strip_probability)
orthant_probability = jax.jit(bivariate_normal.upper_orthant_probability)


def random_line(rng, count, noise, reach=6.0):
  """``count`` observations of a line (origin first, then trials in random order up to
  ``reach``) of a smooth function with a minimum near ``t = 2``, scaled as the search
  scales them, padded to the state's size."""
  trials = rng.permutation(np.r_[1.0, rng.uniform(0.05, reach, count - 2)])[: count - 1]
  ts = np.r_[0.0, trials]
  f = lambda t: -t + 0.25 * t**2 + 0.02 * t**3 * rng.uniform(0, 1)  # noqa: E731
  df = lambda t: -1 + 0.5 * t + 0.06 * t**2 * rng.uniform(0, 1)  # noqa: E731
  ys = f(ts) + noise * rng.normal(size=count) * (ts > 0)
  dys = df(ts) + noise * rng.normal(size=count) * (ts > 0)
  pad = lambda x: np.r_[x, np.zeros(MAX_OBSERVATIONS - count)]  # noqa: E731
  return pad(ts), pad(ys), pad(dys), count


def all_finite(tree):
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def x64():
  with jax.enable_x64(True):
    yield


# --- the GP and the Wolfe probability ----------------------------------------------------


def test_bivariate_normal_strip_against_quadrature(x64):
  rng = np.random.default_rng(0)
  rhos = np.r_[rng.uniform(-1, 1, 40), 0.0, 0.93, -0.95, 0.999, -0.9999, 1.0, -1.0]
  xl, yl = rng.normal(0, 1.5, rhos.size), rng.normal(0, 1.5, rhos.size)
  yu = yl + rng.exponential(2.0, rhos.size)
  got = strip_probability(xl, yl, yu, rhos)
  expected = [oracle.bivariate_rectangle(*args) for args in zip(xl, yl, yu, rhos)]
  np.testing.assert_allclose(got, expected, atol=1e-9)
  edges = orthant_probability(
      jnp.array([-jnp.inf, 0.3, jnp.inf, -jnp.inf]), jnp.array([0.5, -jnp.inf, 0.0, -jnp.inf]),
      jnp.full(4, 0.4))
  np.testing.assert_allclose(edges, [oracle.scipy.stats.norm.sf(0.5),
                                     oracle.scipy.stats.norm.sf(0.3), 0.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_gp_posterior_and_p_wolfe_against_numpy(x64, noise):
  rng = np.random.default_rng(1)
  ts, ys, dys, count = random_line(rng, 5, noise)
  var_f, var_df = noise**2, (0.5 * noise)**2
  gp = condition(ts, ys, dys, count, var_f, var_df)
  reference = oracle.GP(ts[:count], ys[:count], dys[:count], var_f, var_df)
  qs = np.r_[ts[:count], 0.3, 1.7, 2.5, 4.0, 7.5, 12.0]
  post = posterior(gp, jnp.asarray(qs))
  close = functools.partial(np.testing.assert_allclose, rtol=1e-8, atol=1e-8)
  for name, fn in [("m", reference.m), ("dm", reference.d1m), ("v", reference.V),
                   ("vd", reference.Vd), ("dvd", reference.dVd),
                   ("v0f", lambda t: reference.cov(0.0, t)),
                   ("vd0f", lambda t: reference.cov(0.0, t, True, False)),
                   ("v0df", lambda t: reference.cov(0.0, t, False, True)),
                   ("vd0df", lambda t: reference.cov(0.0, t, True, True))]:
    close(getattr(post, name), [fn(q) for q in qs], err_msg=name)
  for name, value in [("m0", reference.m(0.0)), ("dm0", reference.d1m(0.0)),
                      ("v0", reference.V(0.0)), ("vd0", reference.Vd(0.0)),
                      ("dvd0", reference.dVd(0.0))]:
    close(getattr(post, name), value, err_msg=name)
  # The mean's derivatives inside cells (where its cubic pieces are defined).
  inner = jnp.asarray([0.3, 1.7, 2.5, 4.0])
  for order, (got, fn) in enumerate(zip(mean_derivatives(gp, inner),
                                        [reference.d1m, reference.d2m, reference.d3m]), 1):
    close(got, [fn(float(q)) for q in inner], err_msg=f"derivative {order}")
  p = p_wolfe(post, jnp.asarray(qs), C1, C2)
  np.testing.assert_allclose(p, [oracle.prob_wolfe(reference, q, C1, C2) for q in qs],
                             atol=1e-7)
  if noise:
    assert 0.05 < p.max() < 0.999 and p.min() < 0.05  # neither certain nor trivial
  else:
    # Exact observations: the conditions are certain at them (not between them).
    assert set(np.asarray(p[:count]).tolist()) == {0.0, 1.0}


def test_search_step_against_numpy(x64):
  """Which point is taken, or which trial is next, on random lines of 2 to 8
  observations, noisy or not: every decision of the loop body."""
  step = jax.jit(search_step, static_argnums=(7, 8, 9))
  reasons = []
  rng = np.random.default_rng(3)
  for case in range(48):
    count = 2 + case % (MAX_OBSERVATIONS - 1)
    noise = [0.0, 0.05, 0.5][case % 3]
    ts, ys, dys, count = random_line(rng, count, noise, reach=0.8 if case % 4 == 3 else 6.0)
    if case % 8 == 5:  # an ascending line: the "steep" case
      ys, dys = -ys, -dys
    ext = float(2 ** (case % 3))
    outcome = step(ts, ys, dys, count, noise**2, (0.5 * noise)**2, ext, C1, C2, THRESHOLD)
    gp = oracle.GP(ts[:count], ys[:count], dys[:count], noise**2, (0.5 * noise)**2)
    expected = oracle.search_step(gp, ts[count - 1], ext, C1, C2, THRESHOLD)
    reasons.append(expected[-1])
    where = f"case {case}: {expected}"
    assert bool(outcome.ends) == (expected[0] == "take"), where
    if expected[0] == "take":
      np.testing.assert_allclose(outcome.t_end, expected[1], rtol=1e-9, err_msg=where)
      assert bool(outcome.here) == (expected[1] == ts[count - 1]), where
    else:
      np.testing.assert_allclose(outcome.t_next, expected[1], rtol=1e-7, err_msg=where)
      assert float(outcome.extrapolation) == expected[2], where
  assert set(reasons) == {"accept", "budget", "steep", "wolfe", "cubic", "extrapolation"}, (
      reasons)


# --- whole runs ---------------------------------------------------------------------------


def numpy_loss_and_grad(params):
  """``conftest.loss`` and its gradient on the flat vector of ``params``'s layout."""
  index = np.concatenate([np.full(np.size(leaf), i, np.float64)
                          for i, leaf in enumerate(jax.tree.leaves(params))])

  def fn(x):
    return (np.sum((index + 1) * (x - 0.5 * index)**2 + 0.3 * np.sin(3 * x)),
            2 * (index + 1) * (x - 0.5 * index) + 0.9 * np.cos(3 * x))

  return fn


def run_both(dtype, calls, noise, seed=0):
  """The params at every call of the oracle's run and of gradtx's, flat."""
  params = make_params(dtype)
  flat, unravel = ravel_pytree(params)
  rng = np.random.default_rng(seed)
  # The mini-batch noise of call k: loss + <b_k, x> + c_k, in the params' dtype.
  b = np.asarray(rng.normal(size=(calls, flat.size)) * noise, dtype).astype(np.float64)
  c = np.asarray(rng.normal(size=calls) * noise, dtype).astype(np.float64)
  var_f, var_g = noise**2, np.full(flat.size, (0.5 * noise)**2)
  fn = numpy_loss_and_grad(params)
  count = iter(range(calls))

  def objective(x):
    k = next(count)
    value, grad = fn(x)
    return value + b[k] @ x + c[k], grad + b[k], var_f, var_g

  log = []
  expected = oracle.run(objective, np.asarray(flat, np.float64), calls, log=log)

  tx = gtx.chain(gtx.scale(-1.0), gtx.probabilistic_linesearch())

  @jax.jit
  def step(params, state, b, c):
    value, grad = jax.value_and_grad(loss)(params)
    noise_tree = unravel(b)
    value = value + gtx.tree_utils.tree_vdot(noise_tree, params) + c
    grad = jax.tree.map(jnp.add, grad, noise_tree)
    updates, state = tx.update(grad, state, params, value=value, grad=grad,
                               value_var=var_f, grad_var=unravel(jnp.asarray(var_g, dtype)))
    return gtx.apply_updates(params, updates), state

  state = tx.init(params)
  got = []
  for k in range(calls):
    got.append(np.asarray(ravel_pytree(params)[0], np.float64))
    params, state = step(params, state, jnp.asarray(b[k], dtype), jnp.asarray(c[k], dtype))
  return np.array(got), np.array(expected), log, state


def test_runs_of_line_searches_match_numpy_in_float64(x64):
  got, expected, log, state = run_both(jnp.float64, 45, 0.3)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
  searches = state[1].info.num_searches
  assert log.count("accept") + log.count("budget") >= searches >= 10
  assert {"accept", "budget", "cubic", "extrapolation"} <= set(log), log


def test_run_in_float32_follows_float64_numpy():
  got, expected, log, state = run_both(jnp.float32, 45, 0.3)
  scale = np.abs(expected).max()
  np.testing.assert_allclose(got, expected, rtol=0, atol=2e-4 * scale)
  assert state[1].alpha0.dtype == jnp.float32 and state[1].info.num_searches >= 10


# --- properties of the algorithm ---------------------------------------------------------


def quadratic(x):
  return 0.5 * jnp.sum(jnp.array([1.0, 4.0, 10.0, 0.5]) * x**2)


@functools.lru_cache(maxsize=None)
def sgd_with_the_search():
  """SGD with the search and its compiled update, shared by the tests on a 4-vector in
  float64 (one compilation)."""
  tx = gtx.chain(gtx.scale(-1.0), gtx.probabilistic_linesearch(initial_step_size=0.5))
  return tx, jax.jit(tx.update)


def test_noise_free_quadratic_accepts_steps_that_meet_the_wolfe_conditions(x64):
  f = quadratic
  x = jnp.array([1.0, -2.0, 0.5, 3.0])
  tx, update = sgd_with_the_search()
  state = tx.init(x)
  origin, direction, accepted = x, None, 0
  for _ in range(40):
    value, grad = jax.value_and_grad(f)(x)
    line = state[1]
    updates, state = update(grad, state, x, value=value, grad=grad)
    if state[1].info.num_searches > line.info.num_searches:  # x ends a search
      assert state[1].info.num_fallbacks == 0
      d0 = jax.grad(f)(origin) @ direction
      step = state[1].info.learning_rate
      np.testing.assert_allclose(x, origin + step * direction, rtol=1e-12)
      assert f(x) <= f(origin) + C1 * step * d0  # sufficient decrease
      assert jax.grad(f)(x) @ direction >= C2 * d0  # curvature
      accepted += 1
    if state[1].num_observations == 1:  # a line starts at x
      origin, direction = x, -grad
    x = x + updates
  assert accepted >= 8 and f(x) < 1e-3 * f(jnp.array([1.0, -2.0, 0.5, 3.0]))


def test_non_finite_observations_move_back_and_keep_the_state_finite(x64):
  loss = quadratic
  params = jnp.array([1.0, -2.0, 0.5, 3.0])
  tx, update = sgd_with_the_search()
  state = tx.init(params)
  value, grad = jax.value_and_grad(loss)(params)
  nan_grad = jax.tree.map(lambda g: g.at[...].set(jnp.nan), grad)

  # At a line's first point: no line, no step.
  updates, state = update(nan_grad, state, params, value=value, grad=nan_grad)
  assert all(jnp.all(u == 0) for u in jax.tree.leaves(updates))
  assert state[1].num_observations == 0 and all_finite(state)

  for _ in range(10):  # start a line and go along it
    value, grad = jax.value_and_grad(loss)(params)
    updates, state = update(grad, state, params, value=value, grad=grad)
    if state[1].num_observations == 1:
      origin = params
    params = gtx.apply_updates(params, updates)
    if state[1].num_observations >= 2:
      break
  before = state[1]
  n = int(before.num_observations)
  assert n >= 2
  # A NaN gradient at the trial: back to the observed point with the lowest mean.
  value, grad = jax.value_and_grad(loss)(params)
  updates, state = update(nan_grad, state, params, value=value, grad=nan_grad)
  params = gtx.apply_updates(params, updates)
  after = state[1]
  assert all_finite(state)
  assert after.num_observations == 0 and after.info.num_fallbacks == 1
  gp = oracle.GP(before.ts[:n], before.ys[:n], before.dys[:n], 0.0, 0.0)
  t = before.ts[int(np.argmin([gp.m(float(s)) for s in before.ts[:n]]))]
  np.testing.assert_allclose(params, origin + t * before.alpha0 * before.direction,
                             rtol=1e-10, atol=1e-12)
  # A NaN value likewise; then the search goes on from there.
  for k in range(3):
    value, grad = jax.value_and_grad(loss)(params)
    updates, state = update(grad, state, params, value=value, grad=grad)
    params = gtx.apply_updates(params, updates)
  assert state[1].num_observations > 0
  updates, state = update(grad, state, params, value=jnp.asarray(jnp.nan, jnp.float64),
                          grad=grad)
  assert state[1].info.num_fallbacks == 2 and all_finite(state)
  assert all_finite(updates)


def test_errors():
  with pytest.raises(ValueError, match="^probabilistic_linesearch: slope_rtol must be <= "
                                       "curv_rtol, got 0.6 > 0.5"):
    gtx.probabilistic_linesearch(slope_rtol=0.6)
  with pytest.raises(ValueError, match=r"^probabilistic_linesearch: wolfe_threshold must be "
                                       r"in \[0, 1\), got 1.0"):
    gtx.probabilistic_linesearch(wolfe_threshold=1.0)
  tx = gtx.probabilistic_linesearch()
  params = make_params()
  grad = jax.tree.map(jnp.ones_like, params)  # any tree like params
  state = jax.jit(tx.init)(params)
  for kwargs in [dict(grad=grad), dict(value=1.0), {}]:
    with pytest.raises(TypeError, match="^probabilistic_linesearch: update needs the extra "
                                        "arguments value= .* and grad="):
      tx.update(grad, state, params, **kwargs)
  with pytest.raises(ValueError, match="tree structure"):
    tx.update(grad, state, params, value=1.0, grad=grad, grad_var={"w": 1.0})


def test_variances_from_a_mini_batch():
  rng = np.random.default_rng(4)
  values = rng.normal(size=16)
  grads = {"w": rng.normal(size=(16, 3, 2)), "b": rng.normal(size=(16,))}
  value_var, grad_var = gtx.probabilistic_linesearch_variances(values, grads)
  # The variance of a mean of 16: the unbiased sample variance over 16.
  np.testing.assert_allclose(value_var, np.var(values, ddof=1) / 16, rtol=1e-6)
  for key in grads:
    np.testing.assert_allclose(grad_var[key], np.var(grads[key], axis=0, ddof=1) / 16,
                               rtol=1e-6)
  with pytest.raises(ValueError, match="B >= 2"):
    gtx.probabilistic_linesearch_variances(values[:1], {"b": grads["b"][:1]})
  with pytest.raises(ValueError, match=r"\['w'\] has shape \(3, 2\)"):
    gtx.probabilistic_linesearch_variances(values, {"w": grads["w"][0]})


def test_example_runs_at_tiny_settings(capsys):
  example = load_script("examples/probabilistic_linesearch.py")
  results = example.main(["--problems", "logistic", "--steps", "4", "--seeds", "1",
                          "--batch-size", "8"])
  (result,) = results.values()
  assert np.isfinite(result["probls"]) and len(result["sgd"]) == 10
  assert "line search" in capsys.readouterr().out


def test_example_oracles_take_the_steps_their_rules_pick():
  """The example's --oracles, one step from the logistic problem's zero params: each
  rule's step checked on a finer grid of the exact loss along the line."""
  example = load_script("examples/probabilistic_linesearch.py")
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((64, 64)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, 64))
  params = example.init_params("logistic", jax.random.key(0))
  grads = jax.grad(example.mean_loss)(params, x[:16], y[:16])
  line = jax.jit(lambda t: example.mean_loss(
      jax.tree.map(lambda w, g: w - t * g, params, grads), x, y))
  value0, slope0 = jax.value_and_grad(line)(0.0)
  ts = np.exp(np.linspace(np.log(1e-3), np.log(30.0), 1500))  # 0.7% apart
  values, slopes = (np.asarray(a) for a in jax.vmap(jax.value_and_grad(line))(ts))
  taken = {}
  for rule in example.ORACLES:
    final, steps = example.train_oracle(params, jnp.arange(16)[None], (x, y), rule)
    (t,) = np.asarray(steps)
    np.testing.assert_allclose(final, line(t), rtol=1e-6)
    taken[rule] = t
  # The line minimum: its value within 1e-4 of the finer grid's lowest.
  assert value0 > line(taken["line minimum"]) > values.min() - 1e-4 > 0
  assert line(taken["line minimum"]) < values.min() + 1e-4
  for rule in ("largest strong-Wolfe step", "largest sufficient-decrease step"):
    c1, c2 = example.ORACLES[rule]
    meets = lambda v, s, t: (v <= value0 + c1 * t * slope0) & (  # noqa: E731, B023
        True if c2 is None else np.abs(s) <= c2 * abs(slope0))
    t = taken[rule]
    assert meets(line(t), jax.grad(line)(t), t), rule
    # The largest: no step more than 1.5% further meets the rule on the finer grid.
    assert not np.any(meets(values, slopes, ts) & (ts > 1.015 * t)), rule
  assert (taken["largest sufficient-decrease step"] > taken["largest strong-Wolfe step"]
          > taken["line minimum"] > 0)
