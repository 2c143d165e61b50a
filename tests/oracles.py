"""Trajectory comparison against independent oracles (Optax, torch.optim, NumPy).

``trajectory(tx, params, steps)`` runs a gradtx or Optax transform on the shared loss from
``conftest.loss`` and returns the params after every step, so two optimizers can be
compared step by step rather than only at the end; ``reference_trajectory`` runs a NumPy
transcription of a paper's update rule the same way.
"""

import jax
import jax.numpy as jnp
import numpy as np

from conftest import loss

STEPS = 60


def jitted_step(tx, loss_fn=loss, extra_args=False):
  """A jitted ``(params, state) -> (params, state)`` step of ``tx`` on ``loss_fn``, and the
  list its Python traces are appended to (one entry per compilation of the step).

  With ``extra_args``, ``update`` also gets ``value=``, ``grad=`` and ``value_fn=``.
  """
  traces = []
  one = _step(tx, loss_fn, extra_args)

  @jax.jit
  def step(params, state):
    traces.append(1)
    return one(params, state)

  return step, traces


def _step(tx, loss_fn, extra_args):
  """One training step of ``tx`` on ``loss_fn``, ``(params, state) -> (params, state)``."""

  def step(params, state):
    value, grads = jax.value_and_grad(loss_fn)(params)
    if extra_args:
      updates, state = tx.update(grads, state, params, value=value, grad=grads,
                                 value_fn=loss_fn)
    else:
      updates, state = tx.update(grads, state, params)
    return jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates), state

  return step


def trajectory(tx, params, steps=STEPS, loss_fn=loss, extra_args=False,
               return_state=False):
  """Params after each of ``steps`` jitted steps of ``tx`` on ``loss_fn`` (and the last
  state, with ``return_state``)."""
  step, _ = jitted_step(tx, loss_fn, extra_args)
  state = tx.init(params)
  path = []
  for _ in range(steps):
    params, state = step(params, state)
    path.append(params)
  return (path, state) if return_state else path


def paired_trajectories(ours, theirs, params, steps=STEPS, loss_fn=loss, extra_args=False,
                        return_state=False):
  """:func:`trajectory` of two transforms, ``(ours_path, theirs_path)`` (and their last
  states, with ``return_state``): both steps are compiled into one jitted program and
  advanced together, each on its own params and state. The two halves share no
  operands, so each computes what :func:`trajectory` computes; one compilation instead
  of two, which is what most oracle tests spend their time on."""

  ours_step, theirs_step = (_step(tx, loss_fn, extra_args) for tx in (ours, theirs))
  step = jax.jit(lambda a, b: (ours_step(*a), theirs_step(*b)))
  a, b = (params, ours.init(params)), (params, theirs.init(params))
  paths = [], []
  for _ in range(steps):
    a, b = step(a, b)
    paths[0].append(a[0])
    paths[1].append(b[0])
  return (paths, (a[1], b[1])) if return_state else paths


def tolerance(dtype):
  return {"float32": dict(rtol=2e-5, atol=2e-6),
          "float64": dict(rtol=1e-12, atol=1e-13)}[np.dtype(dtype).name]


def assert_trajectories_close(ours, theirs, dtype=jnp.float32, tol=None):
  """Asserts step by step that two trajectories agree; reports the first step that differs.

  ``tol`` (``rtol``/``atol``) overrides the default tolerance of ``dtype``.
  """
  tol = tolerance(dtype) if tol is None else tol
  assert len(ours) == len(theirs)
  for t, (a, b) in enumerate(zip(ours, theirs)):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
      assert x.dtype == y.dtype, f"step {t + 1}, {jax.tree_util.keystr(path)}: dtype"
      np.testing.assert_allclose(
          np.asarray(x), np.asarray(y), **tol,
          err_msg=f"step {t + 1}, leaf {jax.tree_util.keystr(path)}")


def reference_trajectory(rule, init, params, steps=STEPS, loss_fn=loss):
  """Params after each of ``steps`` steps of a NumPy reference optimizer on ``loss_fn``.

  ``init(p) -> state`` builds one leaf's state (a tuple of NumPy arrays) and
  ``rule(t, g, p, *state) -> (update, *state)`` is one leaf's update at step ``t`` (from
  1): a transcription of the paper's algorithm box, applied leaf by leaf. Gradients come
  from JAX at the reference's own params; each update is added in the param's dtype.
  """
  leaves, treedef = jax.tree.flatten(params)
  xs = [np.array(x) for x in leaves]
  states = [tuple(init(x)) for x in xs]
  grad_fn = jax.jit(jax.grad(loss_fn))
  path = []
  for t in range(1, steps + 1):
    grads = [np.array(g) for g in jax.tree.leaves(grad_fn(treedef.unflatten(xs)))]
    outputs = [rule(t, g, x, *s) for g, x, s in zip(grads, xs, states)]
    xs = [(x + np.asarray(u, x.dtype)).astype(x.dtype) for x, (u, *_) in zip(xs, outputs)]
    states = [tuple(s) for _, *s in outputs]
    path.append(treedef.unflatten([jnp.asarray(x) for x in xs]))
  return path


def fresh_value_and_grad(fn):
  """A ``value_and_grad_from_state``-shaped factory that always evaluates ``fn``."""
  return lambda params, state: jax.value_and_grad(fn)(params)


def solver_path(tx, fn, params, vag, steps):
  """Params after each jitted full-batch step of ``tx`` on ``fn`` (``value=``, ``grad=``
  and ``value_fn=`` passed), value and gradient from ``vag(fn)(params, state=state)``;
  and the final state."""
  value_and_grad = vag(fn)

  @jax.jit
  def step(params, state):
    value, grad = value_and_grad(params, state=state)
    updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=fn)
    return jax.tree.map(lambda p, u: p + u, params, updates), state

  state = tx.init(params)
  path = []
  for _ in range(steps):
    params, state = step(params, state)
    path.append(params)
  return path, state


def paired_solver_paths(ours, theirs, fn, params, vags, steps):
  """:func:`solver_path` of two transforms, ``((path, state), (oracle_path,
  oracle_state))``, with ``vags = (vag, oracle_vag)``: both steps compiled into one
  jitted program (one compilation) and advanced together, each on its own params and
  state, sharing no operands."""
  value_and_grads = [vag(fn) for vag in vags]

  def one(tx, value_and_grad, params, state):
    value, grad = value_and_grad(params, state=state)
    updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=fn)
    return jax.tree.map(lambda p, u: p + u, params, updates), state

  step = jax.jit(lambda a, b: (one(ours, value_and_grads[0], *a),
                               one(theirs, value_and_grads[1], *b)))
  a, b = (params, ours.init(params)), (params, theirs.init(params))
  paths = [], []
  for _ in range(steps):
    a, b = step(a, b)
    paths[0].append(a[0])
    paths[1].append(b[0])
  return (paths[0], a[1]), (paths[1], b[1])


def lockstep(one_step, txs, params, steps=STEPS):
  """Per transform of ``txs``, the params after each of ``steps`` steps and the last
  state: ``[(path, state), ...]``. ``one_step(tx, params, state) -> (params, state)`` is
  one step; the transforms' steps are compiled into one jitted program (one compilation)
  and advanced together, each on its own params and state, sharing no operands."""
  step = jax.jit(lambda carry: [one_step(tx, *c) for tx, c in zip(txs, carry)])
  carry = [(params, tx.init(params)) for tx in txs]
  paths = [[] for _ in txs]
  for _ in range(steps):
    carry = step(carry)
    for path, (p, _) in zip(paths, carry):
      path.append(p)
  return [(path, state) for path, (_, state) in zip(paths, carry)]
