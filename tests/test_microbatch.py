"""``microbatch`` (and ``gtx.microbatching``'s ``micro_vmap``, ``micro_grad``) against
Optax 0.2.8's ``optax.microbatching``.

Oracle: Optax's functions of the same names on the same inputs, exactly (the same
operations in the same order): every accumulation type, a tree of them, keyword batch
arguments, another batch axis, fewer real microbatches; and a training loop of 50
jitted steps whose gradients are accumulated over microbatches, float32 and float64,
against the full-batch gradient's loop (to rounding) and Optax's microbatched loop. The
errors Optax raises are raised too.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params
from transform_pairs import DTYPES, precision

KINDS = ["SUM", "MEAN", "RUNNING_MEAN", "CONCAT"]


def batch(dtype=jnp.float32, size=12):
  rng = np.random.default_rng(1)
  return (jnp.asarray(rng.normal(size=(size, 3)), dtype),
          jnp.asarray(rng.normal(size=(size,)), dtype))


def fun(x, y, scale=1.0):
  return {"sum": jnp.sum(x * scale, 0), "rows": x * y[:, None], "mean": jnp.mean(y)}


def assert_same(ours, theirs):
  ours, theirs = jax.tree.leaves(ours), jax.tree.leaves(theirs)
  assert len(ours) == len(theirs)
  for a, b in zip(ours, theirs):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def both(build):
  """``build(microbatching_module)`` for gradtx's and Optax's."""
  return build(gtx.microbatching), build(optax.microbatching)


@pytest.mark.parametrize("kind", KINDS)
def test_each_accumulation_type_matches_optax(kind):
  x, y = batch()
  ours, theirs = both(lambda mb: jax.jit(mb.microbatch(
      fun, (0, 1), 3, getattr(mb.AccumulationType, kind)))(x, y))
  assert_same(ours, theirs)
  if kind == "CONCAT":  # the rows back in the batch's order
    assert_same(ours["rows"], fun(x, y)["rows"])


def test_a_tree_of_accumulators_keywords_and_fewer_real_microbatches():
  x, y = batch()

  def build(mb):
    kinds = mb.AccumulationType
    accumulator = {"sum": kinds.SUM, "rows": kinds.CONCAT, "mean": kinds.RUNNING_MEAN}
    return mb.microbatch(fun, 0, 4, accumulator, argnames="y",
                         num_real_microbatches=2)(x, y=y, scale=2.0)

  assert_same(*both(build))


def test_another_batch_axis_and_a_custom_accumulator():
  x, y = batch()
  xt = x.T  # batch axis 1

  def build(mb):
    lowest = lambda s: jnp.full(s.shape, -jnp.inf, s.dtype)  # noqa: E731
    maximum = mb.Accumulator(init=lambda v: jax.tree.map(lowest, v),
                             update=lambda c, v, i: jax.tree.map(jnp.maximum, c, v),
                             finalize=lambda c: c, aggregate=lambda v: v)
    return mb.microbatch(lambda a: jnp.max(a, axis=1), 0, 2, maximum, in_axes=1)(xt)

  ours, theirs = both(build)
  assert_same(ours, theirs)
  np.testing.assert_array_equal(ours, jnp.max(xt, axis=1))


def test_micro_vmap_and_micro_grad_match_optax():
  x, y = batch()
  assert_same(*both(lambda mb: mb.micro_vmap(lambda a: a**2, microbatch_size=4)(x)))
  assert_same(*both(lambda mb: mb.micro_vmap(
      jnp.sum, microbatch_size=3, accumulator=mb.AccumulationType.MEAN)(x)))

  def squared_error(w, features, targets):
    return 0.5 * jnp.mean((features @ w - targets)**2)

  def build(mb):
    return mb.micro_grad(squared_error, batch_argnums=(1, 2), microbatch_size=4,
                         accumulator=mb.AccumulationType.MEAN,
                         transform_fn=lambda g: (g, g**2),
                         metrics_fn=jnp.linalg.norm)(jnp.ones(3), x, y)

  assert_same(*both(build))


def test_none_is_no_microbatching_and_the_errors_are_optaxs():
  assert gtx.microbatch(fun, 0, None) is fun
  x, y = batch()
  with pytest.raises(ValueError, match="must be divisible by microbatch_size=5"):
    gtx.microbatch(fun, (0, 1), 5)(x, y)
  with pytest.raises(ValueError, match="equal-size batch axes"):
    gtx.microbatch(fun, (0, 1), 2)(x, y[:6])
  with pytest.raises(ValueError, match="require floating-point values"):
    gtx.microbatch(lambda a: a, 0, 2, gtx.microbatching.AccumulationType.MEAN)(
        jnp.arange(4))


def _training(m, dtype, microbatch_size, steps=50):
  """Params after each of ``steps`` jitted Adam steps on a least-squares loss over the
  mixed-shape tree, its gradient averaged over microbatches."""
  with precision(dtype):
    params = make_params(dtype)
    rng = np.random.default_rng(2)
    inputs = jnp.asarray(rng.normal(size=(8, 3)), dtype)

    def loss(p, xb):
      total = sum(jnp.sum(leaf) for leaf in jax.tree.leaves(p))
      return jnp.mean((jnp.sin(xb) @ jnp.ones(3) * total - 1.0)**2) + sum(
          jnp.sum(leaf**2) for leaf in jax.tree.leaves(p)) * 0.01

    grad = jax.grad(loss)
    if microbatch_size is not None:
      grad = m.microbatch(grad, 1, microbatch_size, m.microbatching.AccumulationType.MEAN)
    tx = m.adam(0.05)

    @jax.jit
    def step(params, state):
      updates, state = tx.update(grad(params, inputs), state, params)
      return m.apply_updates(params, updates), state

    state, path = tx.init(params), []
    for _ in range(steps):
      params, state = step(params, state)
      path.append(params)
    return path


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_a_microbatched_training_loop_matches_optax_and_the_full_batch(dtype):
  ours = _training(gtx, dtype, 2)
  for a, b in zip(ours, _training(optax, dtype, 2)):
    assert_same(a, b)
  rtol = 1e-12 if dtype == jnp.float64 else 1e-4
  full_batch = _training(gtx, dtype, None)[-1]
  for a, b in zip(jax.tree.leaves(ours[-1]), jax.tree.leaves(full_batch)):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
