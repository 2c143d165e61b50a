"""The learned LSTM optimizer and its meta-training (Andrychowicz et al. 2016).

Oracles: a plain NumPy transcription of the paper's preprocessing and coordinatewise
two-layer LSTM, written here from the paper (Appendix A) and run step by step next to the
transform on the mixed-shape pytree, in float32 and float64; central finite differences
in float64 for the meta-gradient; tuned Adam on held-out problems for the shipped
meta-parameters.
"""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from conftest import loss, make_params
from gradtx._src.base import GradientTransformation, apply_updates
from gradtx._src.clipping import clip_by_global_norm
from gradtx._src.combine import chain
from gradtx._src.alias import adam
from gradtx.learned import (LSTMOptimizerState, digits_mlp, evaluate, init_meta_params,
                            load_meta_params, lstm_optimizer, meta_loss, meta_train,
                            preprocess, pretrained, pretrained_config, quadratic,
                            save_meta_params, tune_learning_rate)

P = 10.0

# --- the oracle ----------------------------------------------------------------------------


def np_preprocess(g):
  """Appendix A: (log|g|/p, sign g) if |g| >= e^-p, else (-1, e^p g)."""
  g = np.asarray(g, np.float64)
  out = np.empty(g.shape + (2,))
  for index, x in np.ndenumerate(g):
    if abs(x) >= np.exp(-P):
      out[index] = (np.log(min(abs(x), np.finfo(np.float32).max)) / P, np.sign(x))
    else:
      out[index] = (-1.0, np.exp(P) * x)
  return out


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


class NumpyLSTMOptimizer:
  """The coordinatewise LSTM optimizer, one coordinate at a time, in float64."""

  def __init__(self, meta_params, output_scale=0.1):
    self.w = {k: np.asarray(v, np.float64) for k, v in meta_params.items()}
    self.layers = sum(k.startswith("w_x_") for k in self.w)
    self.hidden = self.w["w_out"].shape[0]
    self.output_scale = output_scale
    self.state = {}

  def coordinate(self, key, g):
    h, c = self.state.get(key, (np.zeros((self.layers, self.hidden)),
                                np.zeros((self.layers, self.hidden))))
    h, c = h.copy(), c.copy()
    x = np_preprocess(g)
    for layer in range(self.layers):
      z = x @ self.w[f"w_x_{layer}"] + h[layer] @ self.w[f"w_h_{layer}"] + self.w[f"b_{layer}"]
      i, f, cell_in, o = np.split(z, 4)
      c[layer] = sigmoid(f) * c[layer] + sigmoid(i) * np.tanh(cell_in)
      h[layer] = sigmoid(o) * np.tanh(c[layer])
      x = h[layer]
    self.state[key] = (h, c)
    return self.output_scale * (x @ self.w["w_out"] + self.w["b_out"])

  def update(self, grads):
    leaves, treedef = jax.tree.flatten(grads)
    out = []
    for n, leaf in enumerate(leaves):
      leaf = np.asarray(leaf, np.float64)
      out.append(np.array([self.coordinate((n, index), x)
                           for index, x in np.ndenumerate(leaf)]).reshape(leaf.shape))
    return treedef.unflatten(out)


@pytest.fixture(scope="module")
def meta_params():
  """Untrained weights with a larger output bias than init's 0, so that every part of the
  output is exercised."""
  params = init_meta_params(jax.random.key(3))
  params["b_out"] = jnp.float32(0.05)
  return params


# --- the transform -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_trajectory_matches_numpy_oracle(meta_params, dtype):
  steps = 50
  with jax.enable_x64(dtype == jnp.float64):
    tx = lstm_optimizer(jax.tree.map(lambda w: w.astype(dtype), meta_params))
    params = make_params(dtype)
    state = tx.init(params)
    update = jax.jit(tx.update)
    grad_fn = jax.jit(jax.grad(loss))
    oracle = NumpyLSTMOptimizer(meta_params)
    expected_params = jax.tree.map(lambda p: np.asarray(p, np.float64), params)
    rtol = 1e-10 if dtype == jnp.float64 else 2e-4
    for t in range(steps):
      # Both sides see the same gradient, so rounding cannot build up across steps.
      grads = grad_fn(params)
      updates, state = update(grads, state, params)
      expected = oracle.update(grads)
      for u, e in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
        assert u.dtype == dtype
        np.testing.assert_allclose(u, e, rtol=rtol, atol=rtol * 1e-2, err_msg=f"step {t}")
      params = apply_updates(params, updates)
      expected_params = jax.tree.map(np.add, expected_params, expected)
    # The trajectories themselves, the oracle on its own (float64) iterates' updates.
    for p, e in zip(jax.tree.leaves(params), jax.tree.leaves(expected_params)):
      np.testing.assert_allclose(p, e, rtol=10 * rtol, atol=1e-5)


def test_preprocessing_matches_the_paper():
  g = jnp.asarray([0.0, 1e-30, -1e-6, np.exp(-P) * 0.999, np.exp(-P) * 1.001, -0.3, 2.0,
                   1e30, -3e38], jnp.float32)
  np.testing.assert_allclose(preprocess(g, P), np_preprocess(g), rtol=1e-5, atol=1e-7)


def test_state_is_per_coordinate_and_any_pytree_works(meta_params):
  tx = lstm_optimizer(meta_params)
  params = {"w": jnp.zeros((3, 4)), "nested": [jnp.zeros(()), jnp.zeros((2, 0))]}
  state = tx.init(params)
  assert isinstance(state, LSTMOptimizerState)
  assert jax.tree.map(jnp.shape, state.hidden) == {"w": (3, 4, 2, 20),
                                                   "nested": [(2, 20), (2, 0, 2, 20)]}
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
  assert jax.tree.map(jnp.shape, updates) == jax.tree.map(jnp.shape, params)


def test_coordinates_are_independent_and_shared(meta_params):
  """The same gradient history gives the same update in every coordinate and leaf."""
  tx = lstm_optimizer(meta_params)
  grads = {"a": jnp.full((2, 3), 0.7), "b": jnp.asarray(0.7)}
  state = tx.init(grads)
  for _ in range(3):
    updates, state = tx.update(grads, state)
  np.testing.assert_array_equal(updates["a"], jnp.full((2, 3), updates["b"]))


def test_jit_vmap_and_scan_match_eager(meta_params):
  tx = lstm_optimizer(meta_params)
  members = [make_params(seed=s) for s in range(2)]

  def looped(params, steps=3):
    state = tx.init(params)
    for _ in range(steps):
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      params = apply_updates(params, updates)
    return params

  def scanned(params):
    def step(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      return (apply_updates(params, updates), state), None
    return jax.lax.scan(step, (params, tx.init(params)), length=3)[0][0]

  batch = jax.tree.map(lambda *xs: jnp.stack(xs), *members)
  batched = jax.jit(jax.vmap(scanned))(batch)
  jitted = jax.jit(looped)
  for i, member in enumerate(members):
    # Eagerly (op by op, slow) for one member only.
    expected = looped(member) if i == 0 else jitted(member)
    for a, b, c in zip(jax.tree.leaves(expected), jax.tree.leaves(jax.jit(scanned)(member)),
                       jax.tree.leaves(batched)):
      np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(c[i], a, rtol=1e-5, atol=1e-6)


def test_composes_with_clipping(meta_params):
  tx = chain(clip_by_global_norm(1.0), lstm_optimizer(meta_params))
  grads = jax.tree.map(lambda p: 10 * p, make_params())
  updates, state = jax.jit(tx.update)(grads, tx.init(grads))
  norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
  clipped = jax.tree.map(lambda g: g / norm, grads)
  alone = lstm_optimizer(meta_params)
  expected, _ = alone.update(clipped, alone.init(grads))
  for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert isinstance(tx, GradientTransformation)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32, jnp.float64])
def test_never_nan_on_zero_tiny_huge_or_infinite_gradients(meta_params, dtype):
  values = [0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, np.inf, -np.inf]
  with jax.enable_x64(dtype == jnp.float64):
    tx = lstm_optimizer(meta_params)
    grads = {"g": jnp.asarray(values, dtype)}
    state = tx.init(grads)
    bound = 0.1 * (np.abs(meta_params["w_out"]).sum() + abs(float(meta_params["b_out"])))
    for _ in range(20):  # the state too must stay finite
      updates, state = tx.update(grads, state)
      assert updates["g"].dtype == dtype
      assert np.isfinite(np.asarray(updates["g"], np.float64)).all(), updates
      assert (np.abs(np.asarray(updates["g"], np.float64)) <= bound * 1.01).all()
      assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))


def test_nan_gradient_is_not_hidden(meta_params):
  tx = lstm_optimizer(meta_params)
  grads = jnp.asarray([1.0, np.nan])
  updates, state = tx.update(grads, tx.init(grads))
  assert np.isfinite(updates[0]) and np.isnan(updates[1])


def test_bfloat16_params_get_bfloat16_updates_and_a_float32_state(meta_params):
  tx = lstm_optimizer(meta_params)
  params = make_params(jnp.bfloat16)
  state = tx.init(params)
  updates, state = tx.update(params, state)
  assert {u.dtype for u in jax.tree.leaves(updates)} == {jnp.dtype(jnp.bfloat16)}
  assert {s.dtype for s in jax.tree.leaves(state)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("kwargs,message", [
    (dict(p=0.0), r"^lstm_optimizer: p must be in \(0, inf\), got 0.0"),
    (dict(output_scale=-1.0), r"^lstm_optimizer: output_scale must be in \(0, inf\), got -1.0"),
    (dict(p=float("nan")), r"^lstm_optimizer: p must be in \(0, inf\), got nan"),
])
def test_invalid_hyperparameters_raise(meta_params, kwargs, message):
  with pytest.raises(ValueError, match=message):
    lstm_optimizer(meta_params, **kwargs)


def test_malformed_meta_params_raise(meta_params):
  with pytest.raises(ValueError, match="lstm_optimizer: meta_params must be the dict"):
    lstm_optimizer({"w": jnp.zeros(3)})
  bad = {**meta_params, "w_h_1": jnp.zeros((20, 79))}
  with pytest.raises(ValueError, match=r"meta_params\['w_h_1'\] must have shape \(20, 80\)"):
    lstm_optimizer(bad)


def test_tree_mismatch_is_reported(meta_params):
  tx = lstm_optimizer(meta_params)
  state = tx.init({"a": jnp.zeros(2)})
  with pytest.raises(ValueError, match="tree structure"):
    tx.update({"b": jnp.zeros(2)}, state)


# --- meta-training -------------------------------------------------------------------------

TINY = dict(steps=4, unroll=3, horizon=5, batch_size=2, hidden_size=4, seed=1)


def test_meta_gradient_matches_finite_differences():
  """The exact meta-gradient of an unroll's summed losses, along a random direction,
  against a central difference in float64 on a tiny problem (3-D quadratics, 4 units)."""
  with jax.enable_x64(True):
    family = quadratic(num_dims=3, init_scale=1.0)
    meta = init_meta_params(jax.random.key(0), hidden_size=4, dtype=jnp.float64)
    direction = init_meta_params(jax.random.key(1), hidden_size=4, dtype=jnp.float64)
    key = jax.random.key(2)
    fn = lambda m: meta_loss(m, family, key, batch_size=2, unroll=4)  # noqa: E731
    h = 1e-5

    first_order = lambda m: meta_loss(m, family, key, batch_size=2, unroll=4,  # noqa: E731
                                      first_order=True)

    @jax.jit
    def all_three(m):
      shifted = lambda s: jax.tree.map(lambda a, d: a + s * d, m, direction)  # noqa: E731
      along = lambda grad: sum(jnp.vdot(grad[k], direction[k]) for k in m)  # noqa: E731
      return (along(jax.grad(fn)(m)), (fn(shifted(h)) - fn(shifted(-h))) / (2 * h),
              along(jax.grad(first_order)(m)))

    along, central, along_first_order = all_three(meta)
    assert abs(float(along)) > 1e-3  # not vacuous
    np.testing.assert_allclose(float(along), float(central), rtol=1e-6)
    # The paper's first-order approximation is another (biased) gradient of the same value.
    assert float(first_order(meta)) == float(fn(meta))
    assert abs(float(along_first_order) - float(along)) > 1e-6 * abs(float(along))


def test_meta_train_is_deterministic_given_a_seed(capsys):
  calls = []
  first = meta_train("quadratic", **TINY, log_every=2, callback=lambda *a: calls.append(a))
  second = meta_train("quadratic", **TINY)
  for name in first.meta_params:
    np.testing.assert_array_equal(first.meta_params[name], second.meta_params[name])
  np.testing.assert_array_equal(first.history["meta_loss"], second.history["meta_loss"])
  assert first.history["meta_loss"].shape == first.history["loss"].shape == (4,)
  assert np.isfinite(first.history["meta_loss"]).all()
  assert [step for step, _ in calls] == [1, 2, 3, 4]
  out = capsys.readouterr().out
  assert "step 2/4" in out and "step 4/4" in out, out
  # Another seed gives other meta-parameters; the meta-parameters changed from their init.
  third = meta_train("quadratic", **{**TINY, "seed": 2})
  assert not np.array_equal(first.meta_params["w_out"], third.meta_params["w_out"])
  init = init_meta_params(jax.random.fold_in(jax.random.key(1), 2), hidden_size=4)
  assert not np.array_equal(first.meta_params["w_out"], init["w_out"])


def test_meta_train_runs_on_an_mlp_family():
  family = digits_mlp(hidden_size=3, batch_size=4)
  meta, history = meta_train(family, steps=2, unroll=2, horizon=2, batch_size=2,
                             hidden_size=4)
  assert np.isfinite(history["meta_loss"]).all()
  curves = evaluate(lstm_optimizer(meta), family, num_problems=2, steps=3)
  assert curves.shape == (2, 4) and np.isfinite(curves).all()


@pytest.mark.parametrize("kwargs,message", [
    (dict(unroll=0), r"^meta_train: unroll must be an integer >= 1, got 0"),
    (dict(horizon=2.5), r"^meta_train: horizon must be an integer >= 1, got 2.5"),
    (dict(meta_learning_rate=0.0), r"^meta_train: meta_learning_rate must be in \(0, inf\)"),
    (dict(problem_family="cubic"), r"unknown problem family 'cubic'"),
])
def test_meta_train_rejects_invalid_settings(kwargs, message):
  with pytest.raises(ValueError, match=message):
    meta_train(**{"steps": 1, **kwargs})


def test_short_meta_training_beats_the_untrained_optimizer_on_held_out_quadratics():
  untrained = init_meta_params(jax.random.fold_in(jax.random.key(0), 2))
  trained, _ = meta_train("quadratic", steps=100, batch_size=16, meta_learning_rate=3e-3,
                          seed=0)
  before = evaluate(lstm_optimizer(untrained), "quadratic", num_problems=32, seed=5)
  after = evaluate(lstm_optimizer(trained), "quadratic", num_problems=32, seed=5)
  assert after[:, -1].mean() < 0.5 * before[:, -1].mean(), (after[:, -1].mean(),
                                                              before[:, -1].mean())
  assert after[:, -1].mean() < 0.25 * after[:, 0].mean()


# --- shipped meta-parameters ---------------------------------------------------------------


def test_pretrained_quadratic_beats_tuned_adam_on_held_out_quadratics():
  learned = evaluate(lstm_optimizer(pretrained("quadratic")), "quadratic", num_problems=32,
                     seed=123)
  best_lr, adam_final, means = tune_learning_rate(
      adam, [0.03, 0.1, 0.2, 0.3, 0.5, 1.0], "quadratic", num_problems=32, seed=123)
  assert 0.03 < best_lr < 1.0, means  # the best is inside the grid
  assert learned[:, -1].mean() < adam_final.mean(), (learned[:, -1].mean(), means)


def test_pretrained_mlp_trains_the_digits_mlp():
  curves = evaluate(lstm_optimizer(pretrained("mlp")), "mlp", num_problems=2, steps=50)
  assert np.isfinite(curves).all()
  assert curves[:, -1].mean() < 0.5 * curves[:, 0].mean(), curves[:, ::10]


@pytest.mark.parametrize("name", ["quadratic", "mlp"])
def test_pretrained_files_are_small_and_record_how_they_were_made(name):
  from gradtx.learned.serialization import pretrained_path
  assert pretrained_path(name).stat().st_size < 32_000
  config = pretrained_config(name)
  assert config["problem_family"] == name and "steps" in config and "seed" in config


def test_pretrained_unknown_name_raises():
  with pytest.raises(ValueError, match=r"pretrained: unknown name 'cifar'"):
    pretrained("cifar")


def test_save_and_load_round_trip(tmp_path, meta_params):
  path = tmp_path / "meta.npz"
  save_meta_params(path, meta_params, problem_family="quadratic", steps=3)
  loaded, config = load_meta_params(path)
  assert config == {"problem_family": "quadratic", "steps": 3}
  for name in meta_params:
    np.testing.assert_array_equal(loaded[name], meta_params[name])
