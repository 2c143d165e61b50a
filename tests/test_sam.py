"""SAM (``contrib.sam``) against Optax 0.2.8 in its transparent and opaque modes, against
the paper's update, and the one departure: a non-finite adversarial update on an outer
step.

Oracles: Optax, step by step over 60 jitted steps on the mixed-shape tree, float32 and
float64: the paper's configuration, a longer cycle with an Adam outer optimizer and a
momentum adversary with and without ``reset_state``, and the opaque mode with a
``grad_fn`` that depends on the adversarial step's index and with ``batch_axis_name``
(under ``vmap``); initial and final states leaf by leaf. The paper's two-step update
``w <- w - lr grad L(w + rho g / ||g||)`` written out (Foret et al. 2021, Algorithm 1).
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


def normalize(m):
  """``g / ||g||`` over the whole tree: Optax's ``contrib.normalize``; for gradtx written
  here from its public tree math (so that this file tests ``sam`` alone)."""
  if m is optax:
    return optax.contrib.normalize()
  return gtx.stateless(lambda u, p: jax.tree.map(lambda g: g / gtx.global_norm(u), u))


def index_dependent_grad(params, i):
  """``grad_fn(params, i)``: a different loss per adversarial step (as a batch per step)."""
  return jax.grad(lambda p: (1.0 + 0.5 * i) * loss(p))(params)


TRANSPARENT = {
    # The paper's SAM.
    "sam": lambda m: m.contrib.sam(m.sgd(0.05), m.chain(normalize(m), m.sgd(0.05))),
    "sam/adam_cycle3_keep_state": lambda m: m.contrib.sam(
        m.adam(0.02), m.chain(normalize(m), m.sgd(0.03, momentum=0.9)), sync_period=3,
        reset_state=False),
    "sam/cycle3_reset_state": lambda m: m.contrib.sam(
        m.sgd(0.05, momentum=0.5), m.adam(0.01), sync_period=3, reset_state=True),
}
OPAQUE = {
    "sam/opaque": lambda m: m.contrib.sam(m.sgd(0.05), m.chain(normalize(m), m.sgd(0.05)),
                                          opaque_mode=True),
    "sam/opaque_adam_cycle4_keep_state": lambda m: m.contrib.sam(
        m.adam(0.02), m.chain(normalize(m), m.sgd(0.03, momentum=0.9)), sync_period=4,
        reset_state=False, opaque_mode=True),
}


def run(tx, params, steps=STEPS, opaque=False):
  """Params after each of ``steps`` jitted updates on ``conftest.loss`` (opaque mode:
  ``grad_fn=index_dependent_grad``), and the last state."""
  kwargs = {"grad_fn": index_dependent_grad} if opaque else {}

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params), state, params, **kwargs)
    return jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates), state

  state = tx.init(params)
  path = []
  for _ in range(steps):
    params, state = step(params, state)
    path.append(params)
  return path, state


def compare(make, dtype, opaque):
  with precision(dtype):
    params = make_params(jnp.dtype(dtype))
    ours, theirs = make(gtx), make(optax)
    assert_states_close(ours.init(params), theirs.init(params), dtype, "init")
    path, state = run(ours, params, opaque=opaque)
    oracle, oracle_state = run(theirs, params, opaque=opaque)
    assert_trajectories_close(path, oracle, dtype)
    assert_states_close(state, oracle_state, dtype)
    assert_same_state_class(state, oracle_state, "SAMState")
    moved = max(float(np.max(np.abs(a - b)))
                for a, b in zip(jax.tree.leaves(path[-1]), jax.tree.leaves(params)))
    assert moved > 1e-2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", TRANSPARENT)
def test_transparent_mode_matches_optax(name, dtype):
  compare(TRANSPARENT[name], dtype, opaque=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPAQUE)
def test_opaque_mode_matches_optax(name, dtype):
  compare(OPAQUE[name], dtype, opaque=True)


def test_batch_axis_name_averages_the_adversarial_gradients_as_optax():
  """Two replicas under ``vmap(axis_name="batch")`` with their own gradients: the
  adversarial gradients are averaged over the axis (``pmean``), then the outer step."""
  params = make_params()
  replicas = jax.tree.map(lambda x: jnp.stack([x, 0.5 * x]), params)

  def steps(m, batch_axis_name="batch"):
    tx = m.contrib.sam(m.sgd(0.05), m.chain(normalize(m), m.sgd(0.05)), sync_period=3,
                       opaque_mode=True, batch_axis_name=batch_axis_name)

    def one(p, k):
      grad_fn = lambda q, i: jax.grad(lambda r: (1.0 + k) * loss(r))(q)  # noqa: E731
      state = tx.init(p)
      path = []
      for _ in range(3):
        updates, state = tx.update(grad_fn(p, -1), state, p, grad_fn=grad_fn)
        p = m.apply_updates(p, updates)
        path.append(p)
      return path

    return jax.jit(jax.vmap(one, axis_name="batch"))(replicas, jnp.asarray([0.0, 1.0]))

  ours, theirs = steps(gtx), steps(optax)
  assert_trajectories_close(ours, theirs, jnp.float32)
  # Not vacuous: without the average the replicas take other steps.
  alone = steps(gtx, batch_axis_name=None)
  assert max(float(jnp.max(jnp.abs(a - b))) for a, b in
             zip(jax.tree.leaves(alone[0]), jax.tree.leaves(ours[0]))) > 1e-3


def test_the_papers_update():
  """sam(sgd(lr), chain(normalize(), sgd(rho))): every second step lands on
  ``w - lr grad L(w + rho g(w) / ||g(w)||)``, written out with JAX (float64)."""
  lr, rho = 0.05, 0.1
  with jax.enable_x64(True):
    params = make_params(jnp.float64)
    path, _ = run(gtx.contrib.sam(gtx.sgd(lr), gtx.chain(normalize(gtx), gtx.sgd(rho))),
                  params, steps=20)

    @jax.jit
    def cycle(w):
      g = jax.grad(loss)(w)
      norm = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(g)))
      adversarial = jax.tree.map(lambda x, d: x + rho * d / norm, w, g)
      g_sam = jax.grad(loss)(adversarial)
      return adversarial, jax.tree.map(lambda x, d: x - lr * d, w, g_sam)

    w = params
    for t in range(10):
      adversarial, w = cycle(w)
      for x, y in zip(jax.tree.leaves(path[2 * t]), jax.tree.leaves(adversarial)):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-13)
      for x, y in zip(jax.tree.leaves(path[2 * t + 1]), jax.tree.leaves(w)):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-13)


def test_a_zero_gradient_at_the_adversarial_point_where_optax_gets_nan():
  """The outer step's gradient vanishes (at the adversarial point, a stationary point):
  the paper's step is ``w - lr * 0 = w``. The adversarial branch, computed but not taken,
  normalises the zero gradient to NaN; Optax selects with ``c*a + (1-c)*b``, which
  carries the NaN into the update. gradtx's ``jnp.where`` returns to ``w``."""
  params = {"w": jnp.asarray([1.0, -2.0]), "b": jnp.asarray(0.5)}
  zeros = jax.tree.map(jnp.zeros_like, params)
  results = {}
  for m in (gtx, optax):
    tx = m.contrib.sam(m.sgd(0.1), m.chain(normalize(m), m.sgd(0.1)))
    state = tx.init(params)
    updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    adversarial = m.apply_updates(params, updates)
    updates, state = tx.update(zeros, state, adversarial)
    results[m.__name__] = m.apply_updates(adversarial, updates)
  assert all(np.isnan(x).all() for x in jax.tree.leaves(results["optax"]))
  for x, y in zip(jax.tree.leaves(results["gradtx"]), jax.tree.leaves(params)):
    np.testing.assert_allclose(x, y, rtol=1e-7)


def test_state_fields_are_optax_and_opaque_keeps_no_cache():
  assert gtx.contrib.SAMState._fields == optax.contrib.SAMState._fields
  params = make_params()
  tx = gtx.contrib.sam(gtx.sgd(0.1), gtx.sgd(0.1), opaque_mode=True)
  assert tx.init(params).cache is None


def test_errors():
  params = make_params()
  opaque = gtx.contrib.sam(gtx.sgd(0.1), gtx.sgd(0.1), opaque_mode=True)
  with pytest.raises(ValueError, match="^sam: with opaque_mode=True, update needs grad_fn"):
    opaque.update(params, opaque.init(params), params)
  transparent = gtx.contrib.sam(gtx.sgd(0.1), gtx.sgd(0.1))
  with pytest.raises(ValueError, match="^sam: this transform needs the params"):
    transparent.update(params, transparent.init(params))
  with pytest.raises(ValueError, match=r"^sam: sync_period must be an integer >= 1, got 0"):
    gtx.contrib.sam(gtx.sgd(0.1), gtx.sgd(0.1), sync_period=0)
  with pytest.raises(TypeError, match="^sam: adv_optimizer must be a gradient "
                     "transformation"):
    gtx.contrib.sam(gtx.sgd(0.1), gtx.sgd)
