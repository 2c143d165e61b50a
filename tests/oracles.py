"""Trajectory comparison against independent oracles (Optax, torch.optim, NumPy).

``trajectory(tx, params, steps)`` runs a gradtx or Optax transform on the shared loss from
``conftest.loss`` and returns the params after every step, so two optimizers can be
compared step by step rather than only at the end.
"""

import jax
import jax.numpy as jnp
import numpy as np

from conftest import loss

STEPS = 60


def trajectory(tx, params, steps=STEPS, loss_fn=loss, extra_args=False):
  """Params after each of ``steps`` jitted steps of ``tx`` on ``loss_fn``."""

  @jax.jit
  def step(params, state):
    value, grads = jax.value_and_grad(loss_fn)(params)
    if extra_args:
      updates, state = tx.update(grads, state, params, value=value, grad=grads,
                                 value_fn=loss_fn)
    else:
      updates, state = tx.update(grads, state, params)
    params = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates)
    return params, state

  state = tx.init(params)
  path = []
  for _ in range(steps):
    params, state = step(params, state)
    path.append(params)
  return path


def tolerance(dtype):
  return {"float32": dict(rtol=2e-5, atol=2e-6),
          "float64": dict(rtol=1e-12, atol=1e-13)}[np.dtype(dtype).name]


def assert_trajectories_close(ours, theirs, dtype=jnp.float32):
  """Asserts step by step that two trajectories agree; reports the first step that differs."""
  tol = tolerance(dtype)
  assert len(ours) == len(theirs)
  for t, (a, b) in enumerate(zip(ours, theirs)):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
      assert x.dtype == y.dtype, f"step {t + 1}, {jax.tree_util.keystr(path)}: dtype"
      np.testing.assert_allclose(
          np.asarray(x), np.asarray(y), **tol,
          err_msg=f"step {t + 1}, leaf {jax.tree_util.keystr(path)}")
