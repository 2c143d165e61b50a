"""gradtx inside Flax training code: ``nnx.Optimizer`` and ``train_state.TrainState``.

The recipes users copy: parameter groups with :func:`gradtx.partition` (no weight decay on
biases and norm parameters, a smaller learning rate for the head) and the current
learning rate read from the state of :func:`gradtx.inject_hyperparams` and logged.

Oracles, for 50 steps, step by step:
* the same gradtx transform in a hand-written ``jax.jit`` loop on the params pytree (what
  Flax does must be exactly that), and
* a NumPy transcription of Adam/AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019) with
  each group's learning rate and weight decay, fed the gradients Flax computed: a param
  labelled 'no_decay' must follow Adam without the decay term.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.training import train_state

import gradtx as gtx

STEPS = 50
SAME = dict(rtol=1e-6, atol=1e-7)  # one transform, two jitted drivers
# float32 run vs float64 NumPy oracle: Adam moves every coordinate by ~lr per step, and 50
# float32 steps drift up to ~3e-6 from the float64 path (gradtx's own float64 run agrees
# with the oracle to 1e-11). A decay wrongly applied to a 'no_decay' param would be off
# by lr*wd*t*|p| ~ 5e-2*|p|, four orders of magnitude more.
ORACLE = dict(rtol=2e-5, atol=1e-5)

X = jax.random.normal(jax.random.key(1), (32, 3))
Y = jnp.stack([jnp.sin(X.sum(axis=1)), jnp.cos(X[:, 0])], axis=1)


def names(path):
  return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def path_labels(rule):
  """A ``param_labels`` function: ``rule(names along the path) -> label`` for every leaf."""
  return lambda params: jax.tree_util.tree_map_with_path(lambda p, _: rule(names(p)), params)


def numpy_adam_step(p, g, m, v, t, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
  """Adam (Kingma & Ba 2015, Algorithm 1) with decoupled weight decay ``wd`` (AdamW)."""
  m = b1 * m + (1 - b1) * g
  v = b2 * v + (1 - b2) * g * g
  direction = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
  return p - lr * (direction + wd * p), m, v


def numpy_oracle(initial, grads_per_step, hyper):
  """Params after each step; ``hyper(names, t) -> (lr, wd)`` per leaf, ``t`` from 1."""
  paths = [names(p) for p, _ in jax.tree_util.tree_leaves_with_path(initial)]
  params = [np.asarray(x, np.float64) for x in jax.tree.leaves(initial)]
  m = [np.zeros_like(x) for x in params]
  v = [np.zeros_like(x) for x in params]
  path = []
  for t, grads in enumerate(grads_per_step, start=1):
    grads = [np.asarray(g, np.float64) for g in jax.tree.leaves(grads)]
    for i, leaf_names in enumerate(paths):
      lr, wd = hyper(leaf_names, t)
      params[i], m[i], v[i] = numpy_adam_step(params[i], grads[i], m[i], v[i], t, lr, wd)
    path.append([x.copy() for x in params])
  return path


def assert_leaves_close(actual, expected, tol, step):
  actual = jax.tree_util.tree_leaves_with_path(actual)
  for (path, x), y in zip(actual, expected, strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol,
                               err_msg=f"step {step}, {jax.tree_util.keystr(path)}")


# ----------------------------------------------------------------- flax.nnx.Optimizer


class NnxModel(nnx.Module):

  def __init__(self, rngs):
    self.body = nnx.Linear(3, 16, rngs=rngs)
    self.norm = nnx.LayerNorm(16, rngs=rngs)
    self.head = nnx.Linear(16, 2, rngs=rngs)

  def __call__(self, x):
    return self.head(jnp.tanh(self.norm(self.body(x))))


def nnx_param_groups():
  """AdamW on kernels; Adam (no decay) on biases and the LayerNorm's scale and bias; the
  head's kernel with a 10x smaller learning rate."""

  def rule(leaf_names):
    if "kernel" in leaf_names:
      return "head" if "head" in leaf_names else "decay"
    return "no_decay"

  tx = gtx.partition({"decay": gtx.adamw(1e-2, weight_decay=0.1),
                      "no_decay": gtx.adam(1e-2),
                      "head": gtx.adamw(1e-3, weight_decay=0.1)}, path_labels(rule))

  def hyper(leaf_names, t):
    del t
    return {"decay": (1e-2, 0.1), "no_decay": (1e-2, 0.0), "head": (1e-3, 0.1)}[rule(leaf_names)]

  return tx, hyper


def mse(model, x, y):
  return jnp.mean((model(x) - y) ** 2)


def test_nnx_optimizer_with_param_groups_matches_a_plain_loop_and_the_oracle():
  tx, hyper = nnx_param_groups()
  model = NnxModel(nnx.Rngs(0))
  graphdef, initial = nnx.split(model, nnx.Param)
  initial = jax.tree.map(jnp.copy, initial)  # split's State shares the model's Variables
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def nnx_step(model, optimizer):
    grads = nnx.grad(mse)(model, X, Y)
    optimizer.update(model, grads)
    return grads

  @jax.jit
  def plain_step(params, opt_state):
    grads = jax.grad(lambda p: mse(nnx.merge(graphdef, p), X, Y))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return gtx.apply_updates(params, updates), opt_state

  params, opt_state = initial, tx.init(initial)
  grads_per_step = []
  for t in range(1, STEPS + 1):
    grads_per_step.append(nnx_step(model, optimizer))
    params, opt_state = plain_step(params, opt_state)
    assert_leaves_close(nnx.state(model, nnx.Param), jax.tree.leaves(params), SAME, t)
  assert int(optimizer.step[...]) == STEPS

  oracle = numpy_oracle(initial, grads_per_step, hyper)
  # Flax's params after step t against the oracle, from the same gradients.
  model_again = NnxModel(nnx.Rngs(0))
  optimizer_again = nnx.Optimizer(model_again, tx, wrt=nnx.Param)
  for t, grads in enumerate(grads_per_step, start=1):
    optimizer_again.update(model_again, grads)
    assert_leaves_close(nnx.state(model_again, nnx.Param), oracle[t - 1], ORACLE, t)


def test_no_decay_params_do_not_decay_and_the_head_has_its_own_rate():
  # With zero gradients Adam's direction is 0/(0 + eps) = 0, so only weight decay moves
  # params: p <- p - lr*wd*p on 'decay', not at all on 'no_decay'.
  tx, hyper = nnx_param_groups()
  model = NnxModel(nnx.Rngs(0))
  before = nnx.state(model, nnx.Param)
  before = jax.tree.map(np.asarray, before)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  optimizer.update(model, jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param)))
  after = nnx.state(model, nnx.Param)
  for (path, b), a in zip(jax.tree_util.tree_leaves_with_path(before),
                          jax.tree.leaves(after), strict=True):
    lr, wd = hyper(names(path), 1)
    expected = b - np.float32(lr * wd) * b
    if wd == 0:
      np.testing.assert_array_equal(np.asarray(a), b, err_msg=jax.tree_util.keystr(path))
    else:
      assert not np.array_equal(np.asarray(a), b)
      np.testing.assert_allclose(np.asarray(a), expected, rtol=1e-7, atol=0,
                                 err_msg=jax.tree_util.keystr(path))
  # The LayerNorm's scale starts at 1: exactly 1 still.
  np.testing.assert_array_equal(np.asarray(model.norm.scale[...]), 1.0)


def test_nnx_optimizer_exposes_the_injected_learning_rate():
  schedule = gtx.cosine_decay_schedule(1e-2, decay_steps=STEPS, alpha=0.1)
  tx = gtx.inject_hyperparams(gtx.adam)(learning_rate=schedule)
  model = NnxModel(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(mse)(model, X, Y)
    optimizer.update(model, grads)
    return loss, optimizer.opt_state.hyperparams["learning_rate"][...]

  logged = [float(step(model, optimizer)[1]) for _ in range(10)]
  expected = [float(jax.jit(schedule)(t)) for t in range(10)]
  np.testing.assert_allclose(logged, expected, rtol=3e-6)


# ----------------------------------------------------- flax.training.train_state (linen)


class LinenModel(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = jnp.tanh(nn.LayerNorm(name="norm")(nn.Dense(16, name="body")(x)))
    return nn.Dense(2, name="head")(x)


SCHEDULE = gtx.warmup_cosine_decay_schedule(0.0, 1e-2, warmup_steps=5, decay_steps=STEPS,
                                            end_value=1e-4)
HEAD_LR = 1e-3


def linen_tx():
  """Body: AdamW with a warmup-cosine schedule, decay on kernels only (a mask), its
  learning rate injected so it can be logged; head: Adam at a constant 1e-3."""
  kernels_only = path_labels(lambda leaf_names: "kernel" in leaf_names)
  body = gtx.inject_hyperparams(gtx.adamw, static_args="mask")(
      learning_rate=SCHEDULE, weight_decay=0.1, mask=kernels_only)
  head = gtx.inject_hyperparams(gtx.adam)(learning_rate=HEAD_LR)
  return gtx.partition({"body": body, "head": head},
                       path_labels(lambda leaf_names: "head" if "head" in leaf_names else "body"))


def linen_hyper(leaf_names, t):
  if "head" in leaf_names:
    return HEAD_LR, 0.0
  return float(SCHEDULE(jnp.asarray(t - 1))), (0.1 if "kernel" in leaf_names else 0.0)


def body_learning_rate(opt_state):
  return opt_state.inner_states["body"].inner_state.hyperparams["learning_rate"]


def test_train_state_with_groups_and_logged_learning_rate():
  model = LinenModel()
  initial = model.init(jax.random.key(0), X)
  tx = linen_tx()

  def loss_fn(params):
    return jnp.mean((model.apply(params, X) - Y) ** 2)

  @jax.jit
  def train_step(state):
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    state = state.apply_gradients(grads=grads)
    # What a training loop logs: the learning rate this step used, read from the state.
    return state, {"loss": loss, "learning_rate": body_learning_rate(state.opt_state)}, grads

  @jax.jit
  def plain_step(params, opt_state):
    updates, opt_state = tx.update(jax.grad(loss_fn)(params), opt_state, params)
    return gtx.apply_updates(params, updates), opt_state

  state = train_state.TrainState.create(apply_fn=model.apply, params=initial, tx=tx)
  params, opt_state = initial, tx.init(initial)
  logged, grads_per_step = [], []
  for t in range(1, STEPS + 1):
    state, metrics, grads = train_step(state)
    logged.append(float(metrics["learning_rate"]))
    grads_per_step.append(grads)
    params, opt_state = plain_step(params, opt_state)
    assert_leaves_close(state.params, jax.tree.leaves(params), SAME, t)
  assert int(state.step) == STEPS

  # The logged learning rate is the schedule's at each step's count (0, 1, ...), up to
  # float32 roundoff of the cosine evaluated inside and outside the jitted step.
  schedule = jax.jit(SCHEDULE)
  np.testing.assert_allclose(logged, [float(schedule(t)) for t in range(STEPS)], rtol=3e-6)
  assert logged[0] == 0.0 and max(logged) == pytest.approx(1e-2)

  oracle = numpy_oracle(initial, grads_per_step, linen_hyper)
  replay = train_state.TrainState.create(apply_fn=model.apply, params=initial, tx=tx)
  apply = jax.jit(lambda s, g: s.apply_gradients(grads=g))
  for t, grads in enumerate(grads_per_step, start=1):
    replay = apply(replay, grads)
    assert_leaves_close(replay.params, oracle[t - 1], ORACLE, t)


def test_overwriting_the_learning_rate_between_steps_takes_effect_without_recompiling():
  model = LinenModel()
  params = model.init(jax.random.key(0), X)
  tx = gtx.inject_hyperparams(gtx.adam)(learning_rate=1e-2)
  traces = []

  @jax.jit
  def train_step(state):
    traces.append(1)
    grads = jax.grad(lambda p: jnp.mean((model.apply(p, X) - Y) ** 2))(state.params)
    return state.apply_gradients(grads=grads)

  state = train_step(train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx))
  frozen = state.replace(opt_state=state.opt_state.with_hyperparams(learning_rate=0.0))
  after = train_step(frozen)
  for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert float(after.opt_state.hyperparams["learning_rate"]) == 0.0
  assert len(traces) == 1
