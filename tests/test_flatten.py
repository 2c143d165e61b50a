"""flatten(inner) computes what inner computes leaf by leaf.

The per-leaf path is the oracle: both run the same jitted step for 30 steps on the
mixed-shape tree (float32 leaves plus bfloat16 ones, so there are two buffers), and the
params must agree step by step to float32 rounding: XLA compiles a 24-element leaf and a
200-element buffer into differently vectorised loops, and whether a multiply-add becomes
one fused instruction depends on that, so the same rule may differ in the last bit. A
whole-tree reduction (a global norm) also sums in another order. bfloat16 leaves are
allowed one bfloat16 rounding step. A wrong offset, shape or dtype in the flattening is
off by far more than that.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
from conftest import loss, make_params
from oracles import trajectory

STEPS = 30
LR = 0.05
mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # noqa: E731

TRANSFORMS = {
    "sgd_momentum": lambda: gtx.sgd(LR, momentum=0.9, nesterov=True),
    "adam": lambda: gtx.adam(LR),
    "adamw": lambda: gtx.adamw(LR, weight_decay=0.1),
    "rmsprop": lambda: gtx.rmsprop(LR, centered=True, momentum=0.5),
    "adagrad": lambda: gtx.adagrad(LR),
    "radam": lambda: gtx.radam(LR, b2=0.9),
    "amsgrad": lambda: gtx.amsgrad(LR),
    "rprop": lambda: gtx.rprop(LR),
    "adam_mu_bf16": lambda: gtx.adam(LR, mu_dtype=jnp.bfloat16),
    "schedule": lambda: gtx.adam(gtx.cosine_decay_schedule(LR, STEPS)),
    "inject_hyperparams": lambda: gtx.inject_hyperparams(gtx.adam)(
        learning_rate=gtx.linear_schedule(LR, 0.0, STEPS), b1=0.8),
    "accumulate_gradients": lambda: gtx.accumulate_gradients(gtx.adam(LR), 3),
    "apply_if_finite": lambda: gtx.apply_if_finite(gtx.adam(LR), 2),
    "clip_by_global_norm_adamw": lambda: gtx.chain(gtx.clip_by_global_norm(0.5),
                                                   gtx.adamw(LR, weight_decay=0.1)),
}


def mixed_params():
  params = make_params()
  params["half"] = {"w": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.bfloat16).reshape(2, 3),
                    "b": jnp.asarray([0.5, -0.25], jnp.bfloat16)}
  return params


def assert_close(expected, actual, msg=""):
  for x, y in zip(jax.tree.leaves(expected), jax.tree.leaves(actual), strict=True):
    assert x.dtype == y.dtype and x.shape == y.shape
    rtol = 1e-2 if x.dtype == jnp.bfloat16 else 1e-5
    np.testing.assert_allclose(np.asarray(y, np.float64), np.asarray(x, np.float64),
                               rtol=rtol, atol=1e-6, err_msg=msg)


def run(tx, params, steps=STEPS):
  """Params after each jitted step, the bfloat16 leaves' loss computed in float32."""
  as_f32 = lambda p: jax.tree.map(lambda x: x.astype(jnp.float32), p)  # noqa: E731
  return trajectory(tx, params, steps, loss_fn=lambda p: loss(as_f32(p)))


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_flatten_matches_the_per_leaf_path(name):
  per_leaf = run(TRANSFORMS[name](), mixed_params())
  flat = run(gtx.flatten(TRANSFORMS[name]()), mixed_params())
  for t, (a, b) in enumerate(zip(per_leaf, flat)):
    assert_close(a, b, f"step {t + 1}")
  # The trajectory moved: the comparison is not between two frozen trees.
  start = jax.tree.leaves(mixed_params())
  assert any(not np.allclose(np.asarray(s, np.float64), np.asarray(x, np.float64))
             for s, x in zip(start, jax.tree.leaves(per_leaf[-1])))


def test_state_is_one_buffer_per_dtype():
  params = {f"w{i}": jnp.ones((i + 1, 3)) for i in range(20)}
  params["h"] = jnp.ones(7, jnp.bfloat16)
  state = gtx.flatten(gtx.adam(LR)).init(params)
  adam_state = state.inner_state[0]
  assert set(adam_state.mu) == {"float32", "bfloat16"}
  assert adam_state.mu["float32"].shape == (sum(3 * (i + 1) for i in range(20)),)
  assert adam_state.nu["bfloat16"].shape == (7,)
  # Two param-sized arrays and a count: what Adam needs, however many leaves.
  assert len(jax.tree.leaves(state)) == 5


def test_masked_and_partition_wrap_flatten():
  params = mixed_params()
  per_leaf = run(gtx.masked(gtx.adam(LR), mask), params, 10)
  flat = run(gtx.masked(gtx.flatten(gtx.adam(LR)), mask), params, 10)
  assert_close(per_leaf[-1], flat[-1])

  label = lambda p: jax.tree.map(lambda x: "adam" if x.ndim > 1 else "sgd", p)  # noqa: E731
  per_leaf = run(gtx.partition({"adam": gtx.adam(LR), "sgd": gtx.sgd(LR, 0.9)}, label),
                    params, 10)
  flat = run(gtx.partition({"adam": gtx.flatten(gtx.adam(LR)),
                               "sgd": gtx.flatten(gtx.sgd(LR, 0.9))}, label), params, 10)
  assert_close(per_leaf[-1], flat[-1])


def test_none_leaves_and_extra_args_pass_through():
  params = {"a": jnp.ones(3), "frozen": None, "b": jnp.ones((2, 2))}
  tx = gtx.flatten(gtx.chain(gtx.adam(LR), gtx.stateless(lambda u, p: u)))
  state = tx.init(params)
  grads = {"a": jnp.full(3, 0.5), "frozen": None, "b": jnp.full((2, 2), -0.5)}
  updates, _ = tx.update(grads, state, params, value=jnp.float32(1.0))
  assert updates["frozen"] is None
  # Adam's first step is lr*sign(g), up to the float32 bias correction of b2.
  np.testing.assert_allclose(updates["a"], -LR, rtol=1e-5)
  np.testing.assert_allclose(updates["b"], LR, rtol=1e-5)


def test_vmap_and_scan():
  params = make_params()
  tx = gtx.flatten(gtx.adamw(LR, weight_decay=0.1))

  def trajectory(params):
    def body(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      return (gtx.apply_updates(params, updates), state), None
    (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), length=5)
    return params

  batch = jax.tree.map(lambda x: jnp.stack([x, 2 * x]), params)
  batched = jax.jit(jax.vmap(trajectory))(batch)
  for i in range(2):
    one = trajectory(jax.tree.map(lambda x: x[i], batch))
    for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(batched)):
      np.testing.assert_allclose(y[i], x, rtol=1e-6, atol=1e-7)


def test_mismatched_trees_are_refused_in_words():
  params = make_params()
  tx = gtx.flatten(gtx.adam(LR))
  state = tx.init(params)
  grads = jax.tree.map(jnp.zeros_like, params)
  with pytest.raises(ValueError, match="flatten: the tree structure of the updates"):
    tx.update({"other": jnp.zeros(3)}, state, params)
  half = jax.tree.map(lambda g: g.astype(jnp.bfloat16), grads)
  with pytest.raises(ValueError, match="flatten: an update of dtype bfloat16 belongs to a "
                                       "param of dtype float32"):
    tx.update(half, state, params)
