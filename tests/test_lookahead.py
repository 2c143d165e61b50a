"""lookahead and ranger against Zhang et al. 2019's Algorithm 1, torch_optimizer and the
Ranger authors' code.

Oracles, each compared step by step over 60 steps on the mixed-shape pytree of
``conftest`` (gradients always from JAX at the oracle's own params):

* ``lookahead``: a NumPy transcription of the paper's Algorithm 1 (below,
  ``lookahead_reference``) around NumPy SGD with momentum and Adam, float32 and float64;
  and ``torch_optimizer.Lookahead`` (torch-optimizer 0.3.0) around ``torch.optim.SGD`` and
  ``Adam``. torch_optimizer's counter starts at 0 and it synchronises *after* the inner
  step whenever the counter is 0: on step 1, where the slow weights do not exist yet and
  are set to the params after that step (the interpolation is then a no-op), and on
  steps ``k+1, 2k+1, ...``. It is therefore the paper's algorithm started one inner step
  late. The paper (and gradtx) take the slow weights from the initial params and
  synchronise on steps ``k, 2k, ...``. The comparison runs gradtx's inner transform alone
  for step 1 and then ``lookahead`` from a state whose slow weights are the params after
  that step and whose inner state is the inner state after it;
  ``test_torch_optimizer_lookahead_synchronises_one_step_later`` shows that without the
  shift the two differ. torch_optimizer interpolates as ``alpha*fast + (1-alpha)*slow``,
  gradtx as ``slow + alpha*(fast - slow)``: the same number up to rounding. And
  ``optax.lookahead`` with Optax's ``LookaheadParams`` (fast and slow weights as the
  params, with and without ``reset_state``) over 50 steps, float32 and float64: gradtx's
  fast and slow weights and state follow it at ``oracles``' tolerances, and with plain
  params gradtx's params follow Optax's fast weights.
* ``ranger``: a NumPy transcription of the authors' Ranger (lessw2020, version 20.4.11,
  ``ranger/ranger.py``, the first with gradient centralisation; below, ``ranger_inner``)
  with switches for the two conventions where gradtx departs from it: eps (theirs is
  added to ``sqrt(nu)`` before the bias correction, i.e. ``eps/sqrt(1 - b2**t)`` in
  Optax's placement) and the threshold (theirs rectifies where ``rho_t > threshold``,
  gradtx where ``rho_t >= threshold``).
  With the authors' switches the transcription follows two torch implementations
  (``test_transcription_follows_the_authors_code``); with gradtx's it is the oracle of
  ``gtx.ranger`` in float32 and float64. And ``gtx.ranger`` is compared with torch
  directly where the conventions coincide:

  - ``pytorch_optimizer.Ranger`` (pytorch-optimizer 4.1.0, kozistr) centralises in
    PyTorch's layout (mean over all axes but the first), gradtx in JAX's (all but the
    last): torch gets every leaf with ``ndim > 1`` with its last axis moved to the front
    (the transposed ``(in, out)`` kernel is torch's ``(out, in)`` weight), so both centre
    the same numbers. Its eps is the authors', so gradtx is given
    ``eps=lambda count: eps/sqrt(1 - b2**(count + 1))``, which is the same rule. It is
    run with ``degenerated_to_sgd=True``: with its default ``False`` its early, unrectified
    steps are ``p += lr*mu_hat`` (the step size is multiplied by ``rt = -1``), an ascent,
    where the authors and Optax step ``p -= lr*mu_hat``. It computes in the params' dtype,
    so this comparison is tight in float64.
  - ``torch_optimizer.Ranger`` (torch-optimizer 0.3.0, which re-exports pytorch-ranger
    0.1.1, the authors' 2019 code) does not centralise at all, requires ``eps > 0`` and
    computes in float32 whatever the params' dtype: it is given the gradients already
    centralised (version 20.4.11 centralises the gradient before anything else reads
    it and is otherwise this code, so this is 20.4.11), gradtx the eps schedule above,
    and they are compared in float32.

  Not compared: the authors' version 2020.9.4 (``ranger2020.py``) adds ``wd * p`` to the
  adapted direction before the RAdam step size multiplies it, a weight decay that follows
  ``r_t`` and the bias corrections; gradtx's (and 20.4.11's, 2019's, pytorch-optimizer's)
  is ``p -= lr * wd * p``. At ``weight_decay=0`` the versions agree.

Tolerances: ``oracles.tolerance`` against the NumPy Algorithm 1, except for Adam in
float32, whose bias corrections ``1 - b**t`` gradtx (as Optax) computes in float32 and the
oracle in Python doubles; there, and against torch, ``TIGHT`` (test_torch_oracle's):
float64 differences are rounding only (``slow + alpha*(fast - slow)`` against
``alpha*fast + (1-alpha)*slow`` or a ``lerp``, ``sqrt(nu/(1-b2**t))`` against
``sqrt(nu)/sqrt(1-b2**t)``), amplified by the non-convex loss to ~1e-13 over 60 steps;
``test_conventions_are_told_apart`` shows that this float64 tolerance separates gradtx's
eps from the authors'. In float32 gradtx computes RAdam's ``rho_t`` in float32 (as Optax
does): two cancellations that leave ``r_t`` ~1% off at the first rectified step where the
oracles use Python doubles, hence ``RECTIFIED`` for Ranger in float32.
"""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import pytorch_optimizer
import torch
import torch_optimizer

import gradtx as gtx
from conftest import loss, make_params
from gradtx._src.lookahead import LookaheadState, lookahead, ranger
from oracles import STEPS, assert_trajectories_close, tolerance, trajectory

LR = 0.02
TIGHT = {"float64": dict(rtol=1e-10, atol=1e-11), "float32": dict(rtol=1e-4, atol=1e-5)}
RECTIFIED = {"float64": TIGHT["float64"], "float32": dict(rtol=1e-3, atol=3e-4)}


@functools.lru_cache(maxsize=None)
def _grad_fn():
  return jax.jit(jax.grad(loss))


def _gradients(leaves, treedef):
  return [np.array(g) for g in jax.tree.leaves(_grad_fn()(treedef.unflatten(leaves)))]


# --- NumPy oracles -----------------------------------------------------------------------


def sgd_inner(lr, momentum):
  """Heavy-ball SGD for one array: ``m = momentum*m + g``, ``u = -lr*m``."""

  def init(p):
    return (np.zeros_like(p),)

  def rule(t, g, p, m):
    del t, p
    m = momentum * m + g
    return -lr * m, m

  return init, rule


def adam_inner(lr, b1=0.9, b2=0.999, eps=1e-8):
  """Adam (Kingma & Ba 2015, Algorithm 1) for one array; ``lr`` a number or ``lr(t)``."""

  def init(p):
    return np.zeros_like(p), np.zeros_like(p)

  def rule(t, g, p, m, v):
    del p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    rate = lr(t) if callable(lr) else lr
    return -rate * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps), m, v

  return init, rule


def centralise(g):
  """Gradient centralisation of each output unit's incoming weights: the output axis is
  the last one in the JAX layout these trees use."""
  return g - g.mean(axis=tuple(range(g.ndim - 1)), keepdims=True) if g.ndim > 1 else g


def ranger_inner(lr, b1, b2, eps, threshold, weight_decay, *, authors_eps=False,
                 strict_threshold=False):
  """The fast step of the authors' Ranger (lessw2020/Ranger-Deep-Learning-Optimizer,
  version 20.4.11, ``ranger/ranger.py``, ``step``) for one array: centralise the
  gradient, RAdam, decoupled weight decay. ``authors_eps``/``strict_threshold`` select
  their conventions; without them eps is Optax's and the threshold inclusive, as in
  gradtx."""
  rho_inf = 2 / (1 - b2) - 1

  def init(p):
    return np.zeros_like(p), np.zeros_like(p)

  def rule(t, g, p, m, v):
    g = centralise(g)
    v = b2 * v + (1 - b2) * g * g
    m = b1 * m + (1 - b1) * g
    b2t = b2**t
    rho = rho_inf - 2 * t * b2t / (1 - b2t)
    decay = -weight_decay * lr * p
    if (rho > threshold) if strict_threshold else (rho >= threshold):
      r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
      if authors_eps:
        step_size = r * math.sqrt(1 - b2t) / (1 - b1**t)
        return decay - lr * step_size * m / (np.sqrt(v) + eps), m, v
      return decay - lr * r * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2t)) + eps), m, v
    return decay - lr * m / (1 - b1**t), m, v

  return init, rule


def lookahead_reference(inner, k, alpha, params, steps=STEPS):
  """Zhang et al. 2019, Algorithm 1, in NumPy, around ``inner = (init, rule)`` (one
  array's optimizer ``A``, whose state is kept across cycles):

    for each cycle: theta_0 = phi
                    theta_i = theta_{i-1} + A(theta_{i-1}),  i = 1 .. k
                    phi = phi + alpha * (theta_k - phi)

  Returns the params the user holds after each inner step: ``theta_i``, and after the
  ``k``-th, the new ``phi`` (where the next cycle starts).
  """
  init, rule = inner
  leaves, treedef = jax.tree.flatten(params)
  phi = [np.array(x) for x in leaves]
  inner_state = [init(x) for x in phi]
  path, t = [], 0
  while t < steps:
    theta = [x.copy() for x in phi]
    for _ in range(k):
      if t == steps:
        break
      t += 1
      grads = _gradients(theta, treedef)
      outputs = [rule(t, g, x, *s) for g, x, s in zip(grads, theta, inner_state)]
      theta = [(x + np.asarray(u, x.dtype)).astype(x.dtype)
               for x, (u, *_) in zip(theta, outputs)]
      inner_state = [tuple(s) for _, *s in outputs]
      path.append(theta)
    else:
      phi = [(f + alpha * (x - f)).astype(f.dtype) for f, x in zip(phi, theta)]
      path[-1] = phi
  return [treedef.unflatten([jnp.asarray(x) for x in xs]) for xs in path]


# --- torch -------------------------------------------------------------------------------


def to_torch_layout(x):
  """JAX's ``(..., out)`` layout to PyTorch's ``(out, ...)``: the last axis first."""
  return np.ascontiguousarray(np.moveaxis(x, -1, 0)) if x.ndim > 1 else x


def from_torch_layout(x):
  return np.moveaxis(x, 0, -1) if x.ndim > 1 else x


def torch_trajectory(make_optimizer, params, steps=STEPS, *, torch_layout=False,
                     grad_hook=lambda g: g):
  """Params after each of ``steps`` steps of a torch optimizer on ``conftest.loss``.

  The gradient is JAX's at torch's current params, passed through ``grad_hook``; with
  ``torch_layout`` torch holds every leaf with ``ndim > 1`` with its last axis first.
  """
  to, back = (to_torch_layout, from_torch_layout) if torch_layout else (np.array,
                                                                        np.array)
  leaves, treedef = jax.tree.flatten(params)
  tensors = [torch.tensor(to(np.array(x)), requires_grad=True) for x in leaves]
  optimizer = make_optimizer(tensors)

  def snapshot():
    return [back(t.detach().numpy().copy()) for t in tensors]

  path = []
  for _ in range(steps):
    for t, g in zip(tensors, _gradients(snapshot(), treedef)):
      t.grad = torch.from_numpy(to(grad_hook(g)))
    optimizer.step()
    path.append(treedef.unflatten([jnp.asarray(x) for x in snapshot()]))
  return path


def jitted_step(tx):
  """One jitted step of ``tx`` on ``conftest.loss``: ``(params, state) -> (params, state)``."""

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return gtx.apply_updates(params, updates), state

  return step


def shifted_trajectory(inner, k, alpha, params, steps=STEPS):
  """``inner`` alone for step 1, then ``lookahead`` from there with its slow weights set
  to the params after step 1 and the inner state carried: torch_optimizer's counter."""
  first, inner_state = jitted_step(inner)(params, inner.init(params))
  step = jitted_step(lookahead(inner, k, alpha))
  state = LookaheadState(inner_state, jnp.zeros([], jnp.int32), first)
  path, params = [first], first
  for _ in range(steps - 1):
    params, state = step(params, state)
    path.append(params)
  return path


# --- lookahead ---------------------------------------------------------------------------

# name: (gradtx inner, NumPy inner, torch inner, sync_period, slow_step_size)
INNERS = {
    "sgd_momentum": (lambda: gtx.sgd(LR, momentum=0.9), lambda: sgd_inner(LR, 0.9),
                     lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9, foreach=False),
                     5, 0.5),
    "adam": (lambda: gtx.adam(0.05), lambda: adam_inner(0.05),
             lambda ps: torch.optim.Adam(ps, lr=0.05, foreach=False), 7, 0.8),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", INNERS)
def test_lookahead_matches_algorithm_1(name, dtype):
  ours, reference, _, k, alpha = INNERS[name]
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    assert_trajectories_close(trajectory(lookahead(ours(), k, alpha), params),
                              lookahead_reference(reference(), k, alpha, params), dtype,
                              TIGHT[dtype] if (name, dtype) == ("adam", "float32") else None)


@pytest.mark.parametrize("name, dtype", [("sgd_momentum", "float64"), ("adam", "float64"),
                                         ("adam", "float32")])
def test_lookahead_matches_torch_optimizer(name, dtype):
  ours, _, theirs, k, alpha = INNERS[name]
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    wrapped = lambda ps: torch_optimizer.Lookahead(theirs(ps), k=k, alpha=alpha)  # noqa: E731
    assert_trajectories_close(shifted_trajectory(ours(), k, alpha, params),
                              torch_trajectory(wrapped, params), dtype, TIGHT[dtype])


def test_torch_optimizer_lookahead_synchronises_one_step_later():
  """Without the one-step shift gradtx (the paper) and torch_optimizer differ."""
  ours, _, theirs, k, alpha = INNERS["sgd_momentum"]
  with jax.enable_x64(True):
    params = make_params(jnp.float64)
    wrapped = lambda ps: torch_optimizer.Lookahead(theirs(ps), k=k, alpha=alpha)  # noqa: E731
    with pytest.raises(AssertionError, match="step 5,"):
      assert_trajectories_close(trajectory(lookahead(ours(), k, alpha), params),
                                torch_trajectory(wrapped, params), "float64",
                                TIGHT["float64"])


def test_lookahead_around_injected_hyperparams_and_a_schedule_in_scan():
  """``inject_hyperparams(adam)`` with a learning-rate schedule inside ``lookahead``,
  the whole run one ``lax.scan`` under ``jit``; oracle: Algorithm 1 around Adam with
  ``lr(t)`` (the schedule sees the count from 0: ``lr(t) = sched(t - 1)``)."""
  sched = lambda count: 0.05 * 0.96**count  # noqa: E731
  tx = lookahead(gtx.inject_hyperparams(gtx.adam)(learning_rate=sched, b1=0.8), 6, 0.5)
  params = make_params()

  @jax.jit
  def run(params):
    def step(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      params = gtx.apply_updates(params, updates)
      return (params, state), params

    (_, state), path = jax.lax.scan(step, (params, tx.init(params)), length=STEPS)
    return state, path

  state, path = run(params)
  path = [jax.tree.map(lambda x: x[t], path) for t in range(STEPS)]
  reference = lookahead_reference(adam_inner(lambda t: sched(t - 1), b1=0.8), 6, 0.5,
                                  params)
  assert_trajectories_close(path, reference, jnp.float32, TIGHT["float32"])
  np.testing.assert_allclose(state.fast_state.hyperparams["learning_rate"],
                             sched(STEPS - 1), rtol=1e-5)
  assert int(state.steps_since_sync) == 0  # 60 steps: ten whole cycles


def test_overwritten_inner_hyperparameter_takes_effect_between_steps():
  """A zero learning rate written into the inner state between steps: the fast weights
  stay put until the sync step, which then moves the params half way back to the slow
  weights."""
  tx = lookahead(gtx.inject_hyperparams(gtx.sgd)(learning_rate=0.1), 3, 0.5)
  step = jitted_step(tx)
  params = make_params()
  moved, state = step(params, tx.init(params))
  state.fast_state.hyperparams["learning_rate"] = jnp.float32(0.0)
  still, state = step(moved, state)
  back, state = step(still, state)
  for m, s_, b, p in zip(*map(jax.tree.leaves, (moved, still, back, params))):
    np.testing.assert_array_equal(s_, m)
    np.testing.assert_allclose(b, 0.5 * (p + m), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("slow_step_size", [1.0, 0.25])
def test_sync_period_one(slow_step_size):
  """``k=1``: every step is a sync step, the update is ``alpha * u`` (``alpha=1``: the
  inner transform unchanged)."""
  tx, inner = lookahead(gtx.adam(0.1), 1, slow_step_size), gtx.adam(0.1)

  @jax.jit
  def both(params, state, inner_state):
    grads = jax.grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    expected, inner_state = inner.update(grads, inner_state, params)
    return updates, expected, state, inner_state

  params = make_params()
  state, inner_state = tx.init(params), inner.init(params)
  for _ in range(3):
    updates, expected, state, inner_state = both(params, state, inner_state)
    for u, e in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
      np.testing.assert_allclose(u, slow_step_size * e, rtol=1e-6, atol=1e-7)
    params = gtx.apply_updates(params, updates)


def test_slow_step_size_schedule():
  """A schedule is evaluated at the step count from 0: at the sync step of ``k=2``,
  ``alpha = sched(1)``."""
  params = make_params()
  runs = []
  for tx in (lookahead(gtx.sgd(0.1), 2, lambda count: 0.25 * (count + 1)),
             lookahead(gtx.sgd(0.1), 2, 0.5)):
    step = jitted_step(tx)
    p, state = step(*step(params, tx.init(params)))
    runs.append(p)
  for a, b in zip(*map(jax.tree.leaves, runs)):
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_extra_args_reach_the_inner_transform():
  """``value=`` reaches an inner transform that names it, and a plain Optax inner is
  given only what its ``update`` accepts (``base.call_update``)."""

  def update(updates, state, params=None, *, value):
    del params
    return jax.tree.map(lambda u: -value * u, updates), state

  needs_value = gtx.GradientTransformation(lambda params: gtx.EmptyState(), update)
  params = make_params()
  grads = _grad_fn()(params)
  for inner, scale in [(needs_value, -3.0), (optax.sgd(1.0), -1.0)]:
    tx = lookahead(inner, 2)
    updates, _ = tx.update(grads, tx.init(params), params, value=3.0, grad=grads)
    for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
      np.testing.assert_allclose(u, scale * g, rtol=1e-6)


def test_state_starts_at_the_params():
  params = make_params()
  state = lookahead(gtx.adam(0.1)).init(params)
  assert isinstance(state, LookaheadState)
  assert int(state.steps_since_sync) == 0
  for s, p in zip(jax.tree.leaves(state.slow_weights), jax.tree.leaves(params)):
    np.testing.assert_array_equal(s, p)


def test_a_step_may_donate_params_and_state():
  """The slow weights are a copy: XLA refuses to be donated one buffer twice."""
  tx = lookahead(gtx.sgd(0.1), 2)
  step = jax.jit(jitted_step(tx), donate_argnums=(0, 1))
  params = make_params()
  params, state = step(*step(params, tx.init(params)))
  assert int(state.steps_since_sync) == 0


def test_update_without_params_raises():
  tx = lookahead(gtx.sgd(0.1))
  params = make_params()
  with pytest.raises(ValueError, match="^lookahead: this transform needs the params"):
    tx.update(params, tx.init(params))


def test_tree_mismatch_is_reported_by_lookahead():
  tx = lookahead(gtx.sgd(0.1))
  params = make_params()
  grads = {**params, "extra": jnp.zeros(2)}
  with pytest.raises(ValueError, match="^lookahead: the tree structure"):
    tx.update(grads, tx.init(params), params)


@pytest.mark.parametrize("kwargs, message", [
    (dict(sync_period=0), "lookahead: sync_period must be an integer >= 1, got 0"),
    (dict(sync_period=2.0), "lookahead: sync_period must be an integer >= 1, got 2.0"),
    (dict(sync_period=True), "lookahead: sync_period must be an integer >= 1, got True"),
    (dict(slow_step_size=1.5), "lookahead: slow_step_size must be in [0, 1], got 1.5"),
    (dict(slow_step_size=-0.5), "lookahead: slow_step_size must be in [0, 1], got -0.5"),
    (dict(slow_step_size=math.nan), "lookahead: slow_step_size must be in [0, 1], got nan"),
])
def test_lookahead_validation(kwargs, message):
  with pytest.raises(ValueError, match="^" + re.escape(message)):
    lookahead(gtx.sgd(0.1), **kwargs)


@pytest.mark.parametrize("slow_step_size", [0.0, 1.0])
def test_lookahead_accepts_the_closed_ends(slow_step_size):
  assert isinstance(lookahead(gtx.sgd(0.1), 1, slow_step_size), gtx.GradientTransformation)


def test_traced_sync_period_inside_jit():
  """A constructor called inside ``jit`` with every hyperparameter traced (as
  ``inject_hyperparams`` does): no error, the same steps as with numbers."""
  params = make_params()

  def three_steps(k, alpha):
    tx = lookahead(gtx.sgd(0.1), k, alpha)
    state, p = tx.init(params), params
    for _ in range(3):
      updates, state = tx.update(jax.grad(loss)(p), state, p)
      p = gtx.apply_updates(p, updates)
    return p

  traced = jax.jit(three_steps)(2, 0.5)
  numbers = jax.jit(three_steps, static_argnums=(0, 1))(2, 0.5)
  for a, b in zip(jax.tree.leaves(traced), jax.tree.leaves(numbers)):
    np.testing.assert_allclose(a, b, rtol=1e-6)


# --- ranger ------------------------------------------------------------------------------

# name: (learning_rate, b1, b2, eps, threshold, sync_period, slow_step_size, weight_decay)
RANGER = {
    "defaults": (LR, 0.95, 0.999, 1e-5, 5.0, 6, 0.5, 0.0),
    "weight_decay": (LR, 0.9, 0.99, 1e-3, 4.0, 4, 0.8, 0.1),
}


def authors_eps(eps, b2):
  """The authors' eps in gradtx's placement: ``eps / sqrt(1 - b2**t)`` at step ``t``."""
  return lambda count: eps / jnp.sqrt(1 - b2**(count + 1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", RANGER)
def test_ranger_matches_the_transcription(name, dtype):
  lr, b1, b2, eps, threshold, k, alpha, wd = RANGER[name]
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    reference = lookahead_reference(ranger_inner(lr, b1, b2, eps, threshold, wd), k,
                                    alpha, params)
    assert_trajectories_close(trajectory(ranger(*RANGER[name]), params), reference, dtype,
                              RECTIFIED[dtype])


def pytorch_optimizer_ranger(lr, b1, b2, eps, threshold, k, alpha, wd):
  return lambda ps: pytorch_optimizer.Ranger(
      ps, lr=lr, betas=(b1, b2), alpha=alpha, k=k, n_sma_threshold=threshold,
      degenerated_to_sgd=True, weight_decay=wd, use_gc=True, eps=eps, foreach=False)


def torch_optimizer_ranger(lr, b1, b2, eps, threshold, k, alpha, wd):
  return lambda ps: torch_optimizer.Ranger(ps, lr=lr, betas=(b1, b2), alpha=alpha, k=k,
                                           N_sma_threshhold=threshold, eps=eps,
                                           weight_decay=wd)


@pytest.mark.filterwarnings("ignore:This overload of add")  # pytorch-ranger's old calls
@pytest.mark.parametrize("name", RANGER)
def test_transcription_follows_the_authors_code(name):
  """With the authors' eps and threshold the NumPy transcription is their algorithm."""
  hyper = RANGER[name]
  lr, b1, b2, eps, threshold, k, alpha, wd = hyper
  authors = ranger_inner(lr, b1, b2, eps, threshold, wd, authors_eps=True,
                         strict_threshold=True)
  with jax.enable_x64(True):
    params = make_params(jnp.float64)
    assert_trajectories_close(
        lookahead_reference(authors, k, alpha, params),
        torch_trajectory(pytorch_optimizer_ranger(*hyper), params, torch_layout=True),
        "float64", TIGHT["float64"])
  params = make_params(jnp.float32)
  assert_trajectories_close(
      lookahead_reference(authors, k, alpha, params),
      torch_trajectory(torch_optimizer_ranger(*hyper), params, grad_hook=centralise),
      "float32", TIGHT["float32"])


def test_ranger_matches_pytorch_optimizer():
  """torch's layout for centralisation via transposed leaves; the authors' eps via the
  equivalent schedule. float64 only: float32 is compared with torch_optimizer below."""
  lr, b1, b2, eps, threshold, k, alpha, wd = hyper = RANGER["weight_decay"]
  with jax.enable_x64(True):
    params = make_params(jnp.float64)
    ours = ranger(lr, b1, b2, authors_eps(eps, b2), threshold, k, alpha, wd)
    assert_trajectories_close(
        trajectory(ours, params),
        torch_trajectory(pytorch_optimizer_ranger(*hyper), params, torch_layout=True),
        "float64", TIGHT["float64"])


@pytest.mark.filterwarnings("ignore:This overload of add")
def test_ranger_matches_torch_optimizer_on_centralised_gradients():
  """torch_optimizer.Ranger (no centralisation, float32 arithmetic) given centralised
  gradients, at the defaults (a learning rate of 0.02 so that the params move)."""
  lr, b1, b2, eps, threshold, k, alpha, wd = hyper = RANGER["defaults"]
  params = make_params(jnp.float32)
  ours = ranger(lr, b1, b2, authors_eps(eps, b2), threshold, k, alpha, wd)
  assert_trajectories_close(
      trajectory(ours, params),
      torch_trajectory(torch_optimizer_ranger(*hyper), params, grad_hook=centralise),
      "float32", RECTIFIED["float32"])


def test_conventions_are_told_apart():
  """The float64 tolerance separates gradtx's eps placement from the authors'."""
  lr, b1, b2, eps, threshold, k, alpha, wd = RANGER["weight_decay"]
  with jax.enable_x64(True):
    params = make_params(jnp.float64)
    ours = lookahead_reference(ranger_inner(lr, b1, b2, eps, threshold, wd), k, alpha,
                               params)
    theirs = lookahead_reference(ranger_inner(lr, b1, b2, eps, threshold, wd,
                                              authors_eps=True), k, alpha, params)
  with pytest.raises(AssertionError):
    assert_trajectories_close(ours, theirs, "float64", TIGHT["float64"])


RANGER_RANGES = dict(learning_rate="[0, inf)", b1="[0, 1)", b2="[0, 1)", eps="[0, inf)",
                     threshold="[0, inf)", slow_step_size="[0, 1]", weight_decay="[0, inf)")


@pytest.mark.parametrize("param", RANGER_RANGES)
def test_ranger_validation(param):
  interval = RANGER_RANGES[param]
  bad = 1.5 if interval.endswith(("1)", "1]")) else -0.5
  message = f"ranger: {param} must be in {interval}, got {bad!r}"
  with pytest.raises(ValueError, match="^" + re.escape(message)):
    ranger(**{param: bad})


@pytest.mark.parametrize("bad", [0, 2.0, True])
def test_ranger_sync_period_must_be_a_positive_integer(bad):
  message = f"ranger: sync_period must be an integer >= 1, got {bad!r}"
  with pytest.raises(ValueError, match="^" + re.escape(message)):
    ranger(sync_period=bad)


# --- Optax's interface: LookaheadParams, reset_state, Optax's names ---------------------


def pair_trajectory(tx, params, steps=50):
  """``(fast, slow)`` params after each jitted step of ``tx``, gradients at the fast
  weights, as Optax's lookahead is used; and the last state."""

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params.fast), state, params)
    return optax.apply_updates(params, updates), state

  state, path = tx.init(params), []
  for _ in range(steps):
    params, state = step(params, state)
    path.append(params)
  return path, state


OPTAX_CONFIGS = {
    "sgd": lambda m: m.lookahead(m.sgd(LR, momentum=0.9), sync_period=5,
                                 slow_step_size=0.5),
    "adam_reset": lambda m: m.lookahead(fast_optimizer=m.adam(LR), sync_period=3,
                                        slow_step_size=0.25, reset_state=True),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", OPTAX_CONFIGS.values(), ids=OPTAX_CONFIGS.keys())
def test_lookahead_params_follow_optax(config, dtype):
  """With Optax's ``LookaheadParams`` (gradtx's or Optax's own class) the fast and slow
  weights follow ``optax.lookahead`` step by step, and the state has Optax's fields (the
  slow-weights field None); plain params follow the fast weights."""
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    theirs, their_state = pair_trajectory(config(optax),
                                          optax.LookaheadParams.init_synced(params))
    for pair in (gtx.LookaheadParams, optax.LookaheadParams):
      ours, state = pair_trajectory(config(gtx), pair.init_synced(params))
      assert type(ours[-1]) is pair
      assert_trajectories_close(ours, theirs, dtype)
    assert type(state)._fields[:2] == type(their_state)._fields
    assert state.slow_weights is None
    for a, b in zip(jax.tree.leaves(state[:2]), jax.tree.leaves(tuple(their_state)),
                    strict=True):
      np.testing.assert_allclose(a, b, **tolerance(dtype))
    plain = trajectory(config(gtx), params, 50)
    assert_trajectories_close(plain, [p.fast for p in theirs], dtype)


def test_reset_state_restarts_the_fast_optimizer_at_each_sync():
  tx = lookahead(gtx.adam(LR), 2, 0.5, reset_state=True)
  step, params = jitted_step(tx), make_params()
  state = tx.init(params)
  for _ in range(2):
    params, state = step(params, state)
    assert int(state.fast_state[0].count) == 1
    params, state = step(params, state)
    assert int(state.fast_state[0].count) == 0
    for leaf in jax.tree.leaves(state.fast_state[0].mu):
      np.testing.assert_array_equal(leaf, 0.0)


def test_plain_and_paired_params_are_not_mixed():
  tx = lookahead(gtx.sgd(0.1), 2)
  params = make_params()
  pair = gtx.LookaheadParams.init_synced(params)
  grads = jax.grad(loss)(params)
  with pytest.raises(ValueError, match="initialised with plain params but update is given "
                     "LookaheadParams"):
    tx.update(grads, tx.init(params), pair)
  with pytest.raises(ValueError, match="initialised with LookaheadParams but update is "
                     "given plain params"):
    tx.update(grads, tx.init(pair), params)
