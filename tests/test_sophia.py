"""Sophia (``contrib.sophia``) and Hutchinson's estimator
(``contrib.hutchinson_estimator_diag_hessian``) against Optax 0.2.8, and the estimator
against the Hessian it estimates.

Oracles: Optax, step by step over 60 jitted steps on the mixed-shape tree, float32 and
float64, with ``obj_fn=`` passed to every update: the defaults (key ``PRNGKey(0)``), a
configuration changing every hyperparameter (its own key, a schedule, a mask), no
clipping, and an estimator that needs no ``obj_fn``; the initial and final states leaf by
leaf (the Hessian average and the key included). The exact Hessian diagonal of a
quadratic (for the estimator's mean).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import loss, make_params
from contrib_pairs import DTYPES, assert_same_state_class, assert_states_close, precision
from oracles import assert_trajectories_close

STEPS = 60

not_scalar = lambda tree: jax.tree_util.tree_map_with_path(  # noqa: E731
    lambda path, _: "scalar" not in jax.tree_util.keystr(path), tree)


def squared_gradient(m):
  """A Hessian-diagonal stand-in that needs no ``obj_fn`` (Gauss-Newton-like ``g**2``)."""
  return m.stateless(lambda u, p: jax.tree.map(jnp.square, u))


CASES = {
    "sophia": lambda m: m.contrib.sophia(0.05),
    "sophia/options": lambda m: m.contrib.sophia(
        lambda count: 0.05 / (1.0 + 0.05 * count), b1=0.9, b2=0.95, eps=1e-6,
        weight_decay=0.01, weight_decay_mask=not_scalar, gamma=0.05, clip_threshold=0.5,
        update_interval=3,
        hessian_diagonal_fn=m.contrib.hutchinson_estimator_diag_hessian(
            jax.random.PRNGKey(7))),
    # eps=1: m / max(gamma h, 1) stays bounded without the clip.
    "sophia/no_clip": lambda m: m.contrib.sophia(0.02, eps=1.0, gamma=1.0,
                                                 clip_threshold=None, update_interval=2),
    "sophia/squared_gradient": lambda m: m.contrib.sophia(
        0.05, update_interval=1, hessian_diagonal_fn=squared_gradient(m)),
    "hutchinson_estimator_diag_hessian": lambda m: m.chain(
        m.contrib.hutchinson_estimator_diag_hessian(jax.random.PRNGKey(3)), m.scale(-0.01)),
}


def run(tx, params, steps=STEPS):
  """Params after each of ``steps`` jitted steps on ``conftest.loss`` (``obj_fn=loss``),
  and the last state."""
  return run_together((tx,), params, steps)[0]


def run_together(txs, params, steps=STEPS):
  """:func:`run` of each of ``txs``, their steps compiled into one program (one
  compilation) and advanced together, each on its own params and state."""

  def one(tx, params, state):
    updates, state = tx.update(jax.grad(loss)(params), state, params, obj_fn=loss)
    return jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates), state

  step = jax.jit(lambda carry: [one(tx, *c) for tx, c in zip(txs, carry)])
  carry = [(params, tx.init(params)) for tx in txs]
  paths = [[] for _ in txs]
  for _ in range(steps):
    carry = step(carry)
    for path, (params, _) in zip(paths, carry):
      path.append(params)
  return [(path, state) for path, (_, state) in zip(paths, carry)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  make = CASES[name]
  with precision(dtype):
    params = make_params(jnp.dtype(dtype))
    ours, theirs = make(gtx), make(optax)
    assert_states_close(ours.init(params), theirs.init(params), dtype, "init")
    (path, state), (oracle, oracle_state) = run_together((ours, theirs), params)
    assert_trajectories_close(path, oracle, dtype)
    assert_states_close(state, oracle_state, dtype)
    moved = max(float(jnp.max(jnp.abs(a - b)))
                for a, b in zip(jax.tree.leaves(path[-1]), jax.tree.leaves(params)))
    assert moved > 1e-2
    if name.startswith("sophia"):
      assert_same_state_class(state, oracle_state, "SophiaState")
      # The Hessian average was refreshed (not vacuous).
      assert min(float(np.max(np.abs(x))) for x in jax.tree.leaves(state[0].nu)) > 0.1
    if name != "sophia/squared_gradient":
      assert_same_state_class(state, oracle_state, "HutchinsonState")


def test_state_classes_are_optax():
  assert gtx.contrib.SophiaState._fields == optax.contrib.SophiaState._fields
  assert gtx.contrib.HutchinsonState._fields == optax.contrib.HutchinsonState._fields


@pytest.mark.parametrize("seed", ["typed", "int"])
def test_a_typed_key_or_a_seed_gives_optax_stream_and_raw_state(seed):
  """Optax keeps a typed key as it is; gradtx keeps its raw data (it checkpoints) and
  draws the same vectors. An integer seed means ``jax.random.key(seed)``."""
  params = make_params()
  grads = jax.grad(loss)(params)
  ours_seed = jax.random.key(5) if seed == "typed" else 5
  ours = gtx.contrib.hutchinson_estimator_diag_hessian(ours_seed)
  theirs = optax.contrib.hutchinson_estimator_diag_hessian(jax.random.key(5))
  state, oracle_state = ours.init(params), theirs.init(params)
  update = jax.jit(lambda tx, s: tx.update(grads, s, params, obj_fn=loss),
                   static_argnums=0)
  for _ in range(3):
    estimate, state = update(ours, state)
    expected, oracle_state = update(theirs, oracle_state)
    for x, y in zip(jax.tree.leaves(estimate), jax.tree.leaves(expected)):
      np.testing.assert_array_equal(x, y)
  assert state.key.dtype == jnp.uint32
  np.testing.assert_array_equal(state.key, jax.random.key_data(oracle_state.key))


def test_the_estimate_averages_to_the_hessian_diagonal():
  """f(x) = x^T A x / 2 with A dense: E[r * (A r)] = diag(A); the off-diagonal terms
  average out (4000 draws, standard error ~ ||A_i,:||/sqrt(4000))."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    b = rng.normal(size=(5, 5))
    a = jnp.asarray(b @ b.T + np.diag(np.arange(1.0, 6.0)))
    x = {"x": jnp.asarray(rng.normal(size=5))}
    objective = lambda p: 0.5 * p["x"] @ a @ p["x"]  # noqa: E731
    tx = gtx.contrib.hutchinson_estimator_diag_hessian()

    def draw(key):
      estimate, _ = tx.update(x, gtx.contrib.HutchinsonState(jax.random.key_data(key)),
                              x, obj_fn=objective)
      return estimate["x"]

    draws = jax.jit(jax.vmap(draw))(jax.random.split(jax.random.key(1), 4000))
    spread = np.linalg.norm(np.asarray(a), axis=1) / np.sqrt(4000)
    np.testing.assert_array_less(np.abs(draws.mean(0) - np.diag(a)), 4 * spread)
    # One draw is exact only for a diagonal Hessian: not vacuous.
    assert np.abs(draws[0] - np.diag(a)).max() > 0.1


def test_mixed_dtype_params_get_signs_in_each_dtype():
  """Optax casts the signs to the lowest dtype and jax.jvp then rejects the float64
  leaf's tangent; gradtx draws each leaf's signs in its own dtype."""
  with jax.enable_x64(True):
    params = {"a": jnp.asarray([0.5, -1.0], jnp.float32),
              "b": jnp.asarray([[2.0, 0.25]], jnp.float64)}
    objective = lambda p: jnp.sum(p["a"] ** 4) + jnp.sum(p["b"] ** 3)  # noqa: E731
    with pytest.raises(TypeError):
      tx = optax.contrib.hutchinson_estimator_diag_hessian()
      tx.update(params, tx.init(params), params, obj_fn=objective)
    tx = gtx.contrib.hutchinson_estimator_diag_hessian()
    estimate, _ = tx.update(params, tx.init(params), params, obj_fn=objective)
    # r_i * (H r)_i = H_ii for a diagonal Hessian: 12 a**2, 6 b.
    np.testing.assert_allclose(estimate["a"], 12 * params["a"] ** 2, rtol=1e-6)
    np.testing.assert_allclose(estimate["b"], 6 * params["b"], rtol=1e-12)
    assert estimate["a"].dtype == jnp.float32 and estimate["b"].dtype == jnp.float64


def test_a_low_precision_momentum_is_stored_in_mu_dtype():
  """mu_dtype=bfloat16: the momentum is kept in bfloat16; gradtx computes the step from
  it in float32 (Optax multiplies b1 * mu in bfloat16 first), so the two agree to
  bfloat16 precision."""
  params = make_params()
  results = {}
  for m in (gtx, optax):
    tx = m.contrib.sophia(0.05, mu_dtype=jnp.bfloat16, update_interval=2)
    path, state = run(tx, params, steps=5)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(state[0].mu))
    results[m.__name__] = path[-1], state[0].mu
  for x, y in zip(jax.tree.leaves(results["gradtx"]), jax.tree.leaves(results["optax"])):
    np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32),
                               rtol=2**-6, atol=1e-3)


def test_verbose_prints_the_win_rate(capfd):
  params = make_params()
  tx = gtx.contrib.sophia(0.05, verbose=True, print_win_rate_every_n_steps=2)
  _, state = run(tx, params, steps=4)
  jax.effects_barrier()
  printed = capfd.readouterr().out.splitlines()
  rates = [float(line.split(":")[1]) for line in printed if "win rate" in line]
  assert len(rates) == 2 and all(0.0 <= r <= 1.0 for r in rates), printed  # steps 2, 4


def test_needs_params_and_the_loss():
  params = make_params()
  tx = gtx.contrib.sophia(0.1)
  state = tx.init(params)
  with pytest.raises(ValueError, match="hutchinson_estimator_diag_hessian: give the loss "
                     "as obj_fn"):
    tx.update(params, state, params)
  with pytest.raises(ValueError, match="scale_by_sophia: this transform needs the params"):
    tx.update(params, state)


def test_ranges_are_checked():
  with pytest.raises(ValueError, match=r"^sophia: b1 must be in \[0, 1\), got 1.0"):
    gtx.contrib.sophia(0.1, b1=1.0)
  with pytest.raises(ValueError, match=r"^sophia: update_interval must be an integer >= 1"):
    gtx.contrib.sophia(0.1, update_interval=0)
  with pytest.raises(TypeError, match="^sophia: hessian_diagonal_fn must be a gradient "
                     "transformation"):
    gtx.contrib.sophia(0.1,
                       hessian_diagonal_fn=gtx.contrib.hutchinson_estimator_diag_hessian)
