"""A gradtx ``contrib`` optimizer and Optax 0.2.8's side by side.

A case is a function ``make(m)`` of the module (``gradtx`` or ``optax``) that builds the
optimizer with that module's names (``m.contrib.prodigy(...)``), so one line states both
sides. :func:`compare` runs both for ``STEPS`` jitted steps on ``conftest.make_params``'s
tree (a scalar, a vector, a 4x3 matrix and a 2x3x4 cube) and checks the initial state,
the params after every step and the final state: every state leaf's path (Optax's field
names), shape, dtype and value.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradtx as gtx
from conftest import make_params
from oracles import assert_trajectories_close, paired_trajectories, tolerance

STEPS = 60
DTYPES = ["float32", "float64"]


def precision(dtype):
  """``jax.enable_x64`` for float64, nothing for float32."""
  return jax.enable_x64(True) if jnp.dtype(dtype) == jnp.float64 else contextlib.nullcontext()


def layout(tree):
  """Every leaf's path, shape and dtype."""
  return [(jax.tree_util.keystr(path), jnp.shape(x), jnp.asarray(x).dtype)
          for path, x in jax.tree_util.tree_leaves_with_path(tree)]


def assert_states_close(ours, theirs, dtype, what="state"):
  assert layout(ours) == layout(theirs), f"{what}: {layout(ours)} != {layout(theirs)}"
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(ours),
                          jax.tree.leaves(theirs)):
    np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                               **tolerance(dtype),
                               err_msg=f"{what}{jax.tree_util.keystr(path)}")


def compare(make, dtype, steps=STEPS, extra_args=False, params=None):
  """Runs ``make(gtx)`` and ``make(optax)`` from the same params and checks the initial
  states, the trajectories step by step and the final states. Returns both final states
  and how far the params moved (the largest change of a coordinate), so that a case can
  show it is not vacuous."""
  with precision(dtype):
    params = make_params(jnp.dtype(dtype)) if params is None else params(jnp.dtype(dtype))
    ours, theirs = make(gtx), make(optax)
    assert_states_close(ours.init(params), theirs.init(params), dtype, "init")
    (path, oracle), (state, oracle_state) = paired_trajectories(
        ours, theirs, params, steps, extra_args=extra_args, return_state=True)
    assert_trajectories_close(path, oracle, dtype)
    assert_states_close(state, oracle_state, dtype)
    moved = max(float(jnp.max(jnp.abs(a - b)))
                for a, b in zip(jax.tree.leaves(path[-1]), jax.tree.leaves(params)))
    return state, oracle_state, moved


def find(state, name):
  """The first NamedTuple named ``name`` in ``state`` (depth first), or None."""
  if type(state).__name__ == name:
    return state
  children = (state.values() if isinstance(state, dict) else
              state if isinstance(state, (tuple, list)) else ())
  for child in children:
    found = find(child, name)
    if found is not None:
      return found
  return None


def assert_same_state_class(ours, theirs, name):
  """Both states hold a NamedTuple called ``name`` with the same fields in order."""
  mine, optax_s = find(ours, name), find(theirs, name)
  assert mine is not None and optax_s is not None, name
  assert type(mine)._fields == type(optax_s)._fields
