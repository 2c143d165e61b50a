"""The hierarchical RNN learned optimizer (Wichrowska et al. 2017) and its meta-training.

Oracles: a plain NumPy transcription (float64, one coordinate at a time) of the equations
in gradtx/learned/hierarchical.py's docstring, written here independently and run step by
step next to the transform on the mixed-shape pytree, in float32 and float64; central
finite differences in float64 for the meta-gradient; the loss at initialisation for the
shipped meta-parameters.
"""

import functools
import math

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from conftest import loss, make_params
from gradtx._src.base import apply_updates
from gradtx.learned import (HierarchicalOptimizerState, evaluate, hierarchical_optimizer,
                            init_hierarchical_meta_params, load_meta_params, meta_loss,
                            meta_train, pretrained, pretrained_config, quadratic,
                            save_meta_params)
from gradtx.learned.meta_train import INIT_STREAM, problem_key

DECAYS = np.array([0.5, 0.9, 0.99, 0.999, 0.9999])
BETA_V, EPS = 0.999, 1e-8
SIZES = (6, 5, 4)

def assert_allclose(actual, desired, **kwargs):
  """NumPy's, on NumPy copies (NumPy's ufuncs on jax arrays compile a program each)."""
  np.testing.assert_allclose(np.asarray(actual), np.asarray(desired), **kwargs)


def assert_array_equal(actual, desired, **kwargs):
  np.testing.assert_array_equal(np.asarray(actual), np.asarray(desired), **kwargs)


# --- the oracle ----------------------------------------------------------------------------


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def np_gru(x, h, w_x, w_h, b, c):
  """z = s(x Wz + h Uz + bz + cz), r = s(x Wr + h Ur + br + cr),
  n = tanh(x Wn + (r h) Un + bn + cn), h' = (1 - z) h + z n."""
  n_h = len(h)
  W = [w_x[:, i * n_h:(i + 1) * n_h] for i in range(3)]
  U = [w_h[:, i * n_h:(i + 1) * n_h] for i in range(3)]
  B = [(b + c)[i * n_h:(i + 1) * n_h] for i in range(3)]
  z = sigmoid(x @ W[0] + h @ U[0] + B[0])
  r = sigmoid(x @ W[1] + h @ U[1] + B[1])
  n = np.tanh(x @ W[2] + (r * h) @ U[2] + B[2])
  return (1 - z) * h + z * n


class NumpyHierarchicalOptimizer:
  """The documented rule, one coordinate at a time, in float64 (or ``dtype``'s limits for
  the gradient clamp)."""

  def __init__(self, meta_params, leaves, dtype):
    self.w = {k: np.asarray(v, np.float64) for k, v in meta_params.items()}
    self.limit = math.sqrt(float(np.finfo(dtype).max)) * 1e-4
    self.t = 0
    self.leaves = []
    for leaf in leaves:
      n = int(np.prod(np.shape(leaf)))
      self.leaves.append(dict(
          mu=np.zeros((n, 5)), nu=np.zeros(n), log_lr=np.full(n, self.w["log_lr_init"]),
          h0=np.tile(self.w["h0_init"], (n, 1)), h1=self.w["h1_init"].copy(),
          shape=np.shape(leaf)))
    self.h2 = self.w["h2_init"].copy()

  def update(self, grads):
    w = self.w
    self.t += 1
    t = self.t
    out = []
    for leaf, g in zip(self.leaves, grads):
      g = np.clip(np.asarray(g, np.float64).reshape(-1), -self.limit, self.limit)
      n = len(g)
      mean_log_lr = leaf["log_lr"].mean()
      new_h0 = np.zeros_like(leaf["h0"])
      step = np.zeros(n)
      for i in range(n):
        leaf["nu"][i] = BETA_V * leaf["nu"][i] + (1 - BETA_V) * g[i]**2
        s = 1 / (np.sqrt(leaf["nu"][i] / (1 - BETA_V**t)) + EPS)
        leaf["mu"][i] = DECAYS * leaf["mu"][i] + (1 - DECAYS) * g[i]
        d = s * leaf["mu"][i] / (1 - DECAYS**t)
        x = np.concatenate([[g[i] * s], d, [leaf["log_lr"][i] - mean_log_lr]])
        c = leaf["h1"] @ w["tensor_to_gru0"] + self.h2 @ w["global_to_gru0"]
        new_h0[i] = np_gru(x, leaf["h0"][i], w["gru0_w_x"], w["gru0_w_h"], w["gru0_b"], c)
        logits = new_h0[i] @ w["w_att"] + w["b_att"]
        a = np.exp(logits - logits.max())
        a /= a.sum()
        leaf["log_lr"][i] = np.clip(leaf["log_lr"][i] + new_h0[i] @ w["w_lr"] + w["b_lr"],
                                    math.log(1e-8), 0.0)
        step[i] = -np.exp(leaf["log_lr"][i]) * (a @ d)
      leaf["h0"] = new_h0
      leaf["h1"] = np_gru(new_h0.mean(axis=0), leaf["h1"], w["gru1_w_x"], w["gru1_w_h"],
                          w["gru1_b"], self.h2 @ w["global_to_gru1"])
      out.append(step.reshape(leaf["shape"]))
    mean_h1 = np.mean([leaf["h1"] for leaf in self.leaves], axis=0)
    self.h2 = np_gru(mean_h1, self.h2, w["gru2_w_x"], w["gru2_w_h"], w["gru2_b"], 0.0)
    return out


@pytest.fixture(scope="module")
def meta_params():
  """Untrained weights with random (not zero) outputs and initial states, so that every
  part of the rule is exercised (drawn with NumPy: no compilation)."""
  params = {k: np.asarray(v) for k, v in init_hierarchical_meta_params(
      jax.random.key(3), SIZES).items()}
  rng = np.random.default_rng(4)
  for name in ["w_att", "b_att", "w_lr", "h0_init", "h1_init", "h2_init", "gru0_b"]:
    params[name] = (0.3 * rng.normal(size=params[name].shape)).astype(np.float32)
  params["b_lr"] = np.float32(0.02)
  params["log_lr_init"] = np.float32(math.log(0.05))
  return params


# One compiled program per params dtype, shared by the tests below: the meta-parameters
# are an argument (not constants), so different meta-parameters of the same sizes reuse it.
@jax.jit
def grad_step(meta, params, state):
  """The transform's update at ``params`` on ``loss``, and the gradient it saw."""
  grads = jax.grad(loss)(params)
  updates, state = hierarchical_optimizer(meta).update(grads, state, params)
  return updates, state, grads


# --- the transform -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_trajectory_matches_numpy_oracle(meta_params, dtype):
  steps = 20
  with jax.enable_x64(dtype == jnp.float64):
    meta = jax.tree.map(lambda w: jnp.asarray(w, dtype), meta_params)
    params = make_params(dtype)
    state = hierarchical_optimizer(meta).init(params)
    step = functools.partial(grad_step, meta)
    oracle = NumpyHierarchicalOptimizer(meta_params, jax.tree.leaves(params), dtype)
    rtol = 1e-9 if dtype == jnp.float64 else 3e-4
    moved = 0.0
    for t in range(steps):
      # Both sides see the same gradient, so rounding cannot build up across steps.
      updates, state, grads = step(params, state)
      expected = oracle.update(jax.tree.leaves(grads))
      for u, e in zip(jax.tree.leaves(updates), expected):
        assert u.dtype == dtype
        assert_allclose(u, e, rtol=rtol, atol=rtol * 1e-2, err_msg=f"step {t}")
        moved += float(np.abs(e).sum())
      params = apply_updates(params, updates)
    assert moved > 1.0  # not vacuous: the optimizer moved the params
    # The state (log learning rates and the global GRU) as well.
    for log_lr, leaf in zip(jax.tree.leaves(state.log_lr), oracle.leaves):
      assert_allclose(np.ravel(log_lr), leaf["log_lr"], rtol=rtol, atol=rtol)
    assert_allclose(state.global_hidden, oracle.h2, rtol=rtol, atol=rtol * 1e-2)
    assert state.global_hidden.dtype == dtype


def test_state_shapes(meta_params):
  tx = hierarchical_optimizer(meta_params)
  params = {"w": jnp.zeros((3, 4)), "nested": [jnp.zeros(()), jnp.zeros((2, 0))]}
  state = tx.init(params)
  assert isinstance(state, HierarchicalOptimizerState)
  assert jax.tree.map(jnp.shape, state.mu) == {"w": (3, 4, 5),
                                               "nested": [(5,), (2, 0, 5)]}
  assert jax.tree.map(jnp.shape, state.hidden) == {"w": (3, 4, 6),
                                                   "nested": [(6,), (2, 0, 6)]}
  assert jax.tree.map(jnp.shape, state.tensor_hidden) == {"w": (5,), "nested": [(5,), (5,)]}
  assert state.global_hidden.shape == (4,)
  # Shapes only (no compilation); the robustness test below runs an empty leaf.
  updates, new_state = jax.eval_shape(tx.update, jax.tree.map(jnp.ones_like, params), state,
                                      params)
  assert jax.tree.map(jnp.shape, updates) == jax.tree.map(jnp.shape, params)
  assert jax.tree.map(jnp.shape, new_state) == jax.tree.map(jnp.shape, state)


def test_jit_vmap_and_scan_match_a_python_loop(meta_params):
  """A vmapped ``lax.scan`` of 3 steps on 2 members against the jitted step in a Python
  loop (the trajectory test's compiled program)."""
  tx = hierarchical_optimizer(meta_params)
  members = [make_params(seed=s) for s in range(2)]

  def looped(params, steps=3):
    state = tx.init(params)
    for _ in range(steps):
      updates, state, _ = grad_step(meta_params, params, state)
      params = apply_updates(params, updates)
    return params

  def scanned(params):
    def one_step(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      return (apply_updates(params, updates), state), None

    return jax.lax.scan(one_step, (params, tx.init(params)), length=3)[0][0]

  batch = jax.tree.map(lambda *xs: jnp.stack(xs), *members)
  batched = jax.jit(jax.vmap(scanned))(batch)
  for i, member in enumerate(members):
    for a, c in zip(jax.tree.leaves(looped(member)), jax.tree.leaves(batched)):
      assert_allclose(c[i], a, rtol=1e-5, atol=1e-6)


ROBUSTNESS_DTYPES = (jnp.bfloat16, jnp.float32, jnp.float64)


def robustness_grads(dtype, nan=False):
  """Zero, tiny, huge and infinite gradients, mixed in one leaf and each kind alone in
  its own (a leaf of only zeros, tiny or huge), and an empty leaf; with ``nan``, a NaN in
  the mixed leaf."""
  values = [0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, np.inf, np.nan if nan else -np.inf]
  return {"mixed": jnp.asarray(values, dtype), "zero": jnp.zeros(3, dtype),
          "tiny": jnp.full(3, 1e-30, dtype), "huge": jnp.full(3, -1e30, dtype),
          "empty": jnp.zeros((2, 0), dtype)}


@jax.jit
def robustness_update(meta, grads, states):
  """The update of each dtype's tree, all dtypes in one compiled program."""
  tx = hierarchical_optimizer(meta)
  return [tx.update(g, s) for g, s in zip(grads, states)]


def test_never_nan_on_zero_tiny_huge_or_infinite_gradients(meta_params):
  with jax.enable_x64(True):
    tx = hierarchical_optimizer(meta_params)
    grads = [robustness_grads(dtype) for dtype in ROBUSTNESS_DTYPES]
    states = [tx.init(g) for g in grads]
    for _ in range(20):  # the state too must stay finite
      results = robustness_update(meta_params, grads, states)
      states = [state for _, state in results]
      for dtype, (updates, state) in zip(ROBUSTNESS_DTYPES, results):
        for u in jax.tree.leaves(updates):
          assert u.dtype == dtype
          u = np.asarray(u, np.float64)
          # |u| <= exp(max log lr) * max|d_k| <= 1 * sqrt(t / (1 - beta_v**t)) (t <= 20).
          assert np.isfinite(u).all() and (np.abs(u) <= 5.0).all(), (dtype, updates)
        assert all(np.isfinite(np.asarray(x, np.float64)).all()
                   for x in jax.tree.leaves(state)), dtype
    for updates, _ in results:
      # A huge gradient moves its coordinate as a unit one does (scale invariance).
      assert abs(float(updates["huge"][0])) > 1e-3 and float(updates["huge"][0]) > 0


def test_nan_gradient_is_not_hidden(meta_params):
  with jax.enable_x64(True):  # the robustness test's compiled program
    grads = [robustness_grads(dtype, nan=True) for dtype in ROBUSTNESS_DTYPES]
    tx = hierarchical_optimizer(meta_params)
    results = robustness_update(meta_params, grads, [tx.init(g) for g in grads])
    for updates, _ in results:
      assert np.isnan(np.asarray(updates["mixed"][-1], np.float64))


def test_malformed_meta_params_and_trees_raise(meta_params):
  with pytest.raises(ValueError, match="hierarchical_optimizer: meta_params must be the dict"):
    hierarchical_optimizer({"w": jnp.zeros(3)})
  bad = {**meta_params, "w_att": jnp.zeros((6, 4))}
  with pytest.raises(ValueError, match=r"meta_params\['w_att'\] must have shape \(6, 5\)"):
    hierarchical_optimizer(bad)
  with pytest.raises(ValueError, match="hidden_sizes must be three integers"):
    init_hierarchical_meta_params(jax.random.key(0), (3, 4))
  tx = hierarchical_optimizer(meta_params)
  state = tx.init({"a": jnp.zeros(2)})
  with pytest.raises(ValueError, match="tree structure"):
    tx.update({"b": jnp.zeros(2)}, state)
  with pytest.raises(ValueError, match=r"update at \['a'\] has shape \(3,\)"):
    tx.update({"a": jnp.zeros(3)}, state)


def test_untrained_rule_is_adam_like():
  """With the initial (zero) output weights and the 0.9 timescale's attention made
  dominant, the step is Adam's with b1 = 0.9, b2 = 0.999, eps = 1e-8 (eps outside the
  square root, bias corrected), learning rate exp(log_lr_init). (Hidden sizes as the
  trajectory test's, so that its compiled step is reused.)"""
  meta = init_hierarchical_meta_params(jax.random.key(0), SIZES, learning_rate=0.01)
  meta["b_att"] = jnp.asarray([-50.0, 50.0, -50.0, -50.0, -50.0])
  tx = hierarchical_optimizer(meta)
  params = make_params()
  state = tx.init(params)
  m = v = jax.tree.map(np.zeros_like, params)
  for t in range(1, 6):
    updates, state, grads = grad_step(meta, params, state)
    m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * np.asarray(g), m, grads)
    v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * np.asarray(g)**2, v, grads)
    adam = jax.tree.map(lambda m, v: -0.01 * (m / (1 - 0.9**t)) / (
        np.sqrt(v / (1 - 0.999**t)) + 1e-8), m, v)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(adam)):
      assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    params = apply_updates(params, updates)


# --- meta-training -------------------------------------------------------------------------


def test_meta_gradient_matches_finite_differences(meta_params):
  """The exact meta-gradient of an unroll's mean log loss, along a random direction,
  against a central difference in float64 on a tiny problem (3-D quadratics). The
  fixture's meta-params have non-zero outputs, so the meta-gradient reaches every weight."""
  with jax.enable_x64(True):
    family = quadratic(num_dims=3, init_scale=1.0)
    meta = {k: jnp.asarray(v, jnp.float64) for k, v in meta_params.items()}
    meta["w_lr"] = 0.1 * meta["w_lr"]
    rng = np.random.default_rng(1)
    direction = {k: jnp.asarray(0.1 + 0.3 * rng.normal(size=np.shape(v)))
                 for k, v in meta_params.items()}
    key = jax.random.key(2)
    fn = lambda m: meta_loss(m, family, key, batch_size=2, unroll=4,  # noqa: E731
                             optimizer="hierarchical")
    h = 1e-5

    def both(m):
      shifted = lambda s: jax.tree.map(lambda a, d: a + s * d, m, direction)  # noqa: E731
      grad = jax.grad(fn)(m)
      along = sum(jnp.vdot(grad[k], direction[k]) for k in m)
      plus, minus = jax.vmap(lambda s: fn(shifted(s)))(jnp.asarray([h, -h]))  # one trace
      return along, (plus - minus) / (2 * h)

    compiled = jax.jit(both).lower(meta).compile()
    along, central = compiled(meta)
    assert abs(float(along)) > 1e-3  # not vacuous
    assert_allclose(float(along), float(central), rtol=1e-6)


def test_meta_train_is_deterministic_and_selects_on_validation(meta_params):
  """Two meta-training runs give identical meta-params; a run validated after every
  meta-step returns the meta-params after its best-scoring one (the same as a run stopped
  there). A tiny problem; one compiled meta-step, shared by every run."""
  family = quadratic(num_dims=3)
  start = {k: jnp.asarray(v) for k, v in meta_params.items()}
  settings = dict(unroll=2, horizon=4, batch_size=2, optimizer="hierarchical",
                  clip_meta_gradient=1.0, meta_learning_rate=3e-2, seed=1, meta_params=start)
  first = meta_train(family, steps=3, **settings)
  second = meta_train(family, steps=3, **settings)
  for name in first.meta_params:
    assert_array_equal(first.meta_params[name], second.meta_params[name])
  assert_array_equal(first.history["meta_loss"], second.history["meta_loss"])
  assert np.isfinite(first.history["meta_loss"]).all()
  # Every meta-parameter is trained, the learned initial state too (the meta-gradient
  # reaches it through each problem's first unroll).
  for name in start:
    assert not np.array_equal(np.asarray(first.meta_params[name]), np.asarray(start[name])), name

  validated = meta_train(family, steps=3, validation=[family], validate_every=1,
                         validation_problems=2, validation_steps=4, **settings)
  history = validated.history
  # Validation does not change the training.
  assert_array_equal(history["meta_loss"], first.history["meta_loss"])
  assert_array_equal(history["validation_step"], [0, 1, 2, 3])
  scores = history["validation_score"]
  assert np.isfinite(scores).all() and len(set(scores.tolist())) == 4  # not vacuous
  best = int(np.argmin(scores))
  assert history["best_step"] == best
  stopped = (meta_train(family, steps=best, **settings).meta_params if best else start)
  for name in start:
    assert_array_equal(validated.meta_params[name], stopped[name], err_msg=name)


def test_meta_train_takes_a_mixture_of_families(meta_params):
  """A sequence of families (names, (name, kwargs) pairs, ProblemFamily objects);
  ``steps=0`` checks the arguments without compiling anything."""
  mixture = ["quadratic", ("mlp", {"hidden_size": 8}), quadratic(num_dims=3)]
  meta, history = meta_train(mixture, steps=0, optimizer="hierarchical",
                             meta_params=meta_params)
  for name in meta_params:
    assert_array_equal(meta[name], meta_params[name])
  assert history["meta_loss"].shape == (0,)
  with pytest.raises(ValueError, match="unknown problem family 'cubic'"):
    meta_train(["quadratic", "cubic"], steps=0, optimizer="hierarchical")
  with pytest.raises(ValueError, match="meta_train: unknown optimizer 'rnn'"):
    meta_train("quadratic", steps=0, optimizer="rnn")


# --- shipped meta-parameters ---------------------------------------------------------------


def test_pretrained_hierarchical_trains_a_held_out_quadratic():
  meta = pretrained("hierarchical")
  config = pretrained_config("hierarchical")
  assert config["optimizer"] == "hierarchical" and config["seed"] == 0
  curves = evaluate(hierarchical_optimizer(meta), "quadratic", num_problems=2, steps=50,
                    seed=11)
  assert np.isfinite(curves).all()
  assert curves[:, -1].mean() < 0.5 * curves[:, 0].mean(), curves[:, ::10]


def test_pretrained_hierarchical_improves_on_its_starting_point_on_held_out_problems():
  """The shipped weights are meta-trained: on 100 held-out 10-D quadratics (the
  benchmark's evaluation problems) their mean loss after 200 steps is below that of the
  Adam-like initialisation meta-training started from."""
  start = init_hierarchical_meta_params(problem_key(0, INIT_STREAM), learning_rate=0.1)
  shipped = pretrained("hierarchical")
  assert any(not np.array_equal(shipped[name], start[name]) for name in start)
  final = {label: evaluate(hierarchical_optimizer(meta), "quadratic", num_problems=100,
                           steps=200, seed=2)[:, -1].mean()
           for label, meta in (("start", start), ("shipped", shipped))}
  assert final["shipped"] < 0.99 * final["start"], final


def test_pretrained_file_is_small():
  from gradtx.learned.serialization import pretrained_path
  assert pretrained_path("hierarchical").stat().st_size < 64_000


def test_command_line_refuses_lstm_families_for_the_hierarchical_optimizer(capsys):
  from gradtx.learned.__main__ import SETTINGS, main
  with pytest.raises(SystemExit):
    main(["--optimizer", "hierarchical", "quadratic"])
  assert "choose from ['hierarchical']" in capsys.readouterr().err
  # The shipped file records the settings the command line uses.
  config = pretrained_config("hierarchical")
  assert config == SETTINGS["hierarchical"], config


def test_save_and_load_round_trip(tmp_path, meta_params):
  path = tmp_path / "meta.npz"
  save_meta_params(path, meta_params, optimizer="hierarchical")
  loaded, config = load_meta_params(path)
  assert config == {"optimizer": "hierarchical"}
  for name in meta_params:
    assert_array_equal(loaded[name], meta_params[name])
