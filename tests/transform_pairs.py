"""A gradtx transform (or wrapper) and its Optax counterpart, side by side.

A case is a function ``make(m)`` of the module (``gradtx`` or ``optax``) that builds the
transform with that module's names, so that one line states both sides. ``compare``
runs both for ``STEPS`` jitted steps on the mixed-shape tree of ``conftest.make_params``
and checks the trajectories step by step, the state's layout (every leaf's path, as
``jax.tree_util.keystr`` writes it, shape and dtype: Optax's class and field names) and
the final state's values.
"""

import contextlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradtx as gtx
from conftest import make_params
from oracles import assert_trajectories_close, paired_trajectories, tolerance

STEPS = 60
DTYPES = [jnp.float32, jnp.float64]


def precision(dtype):
  """``jax.enable_x64`` for float64, nothing for float32 (a dtype or its name)."""
  return (jax.enable_x64(True) if jnp.dtype(dtype) == jnp.float64
          else contextlib.nullcontext())


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


class Result(NamedTuple):
  state: Any  # gradtx's final state
  oracle_state: Any  # Optax's
  path: list  # gradtx's params after each step
  params: Any  # the params both started from


def compare(make, dtype, steps=STEPS, params=None, extra_args=False, init_state=True):
  """Runs ``make(gtx)`` and ``make(optax)`` and checks trajectories and states (the
  initial state too unless ``init_state=False``). ``params(dtype)`` builds the initial
  params (default ``make_params``)."""
  with precision(dtype):
    params = make_params(dtype) if params is None else params(dtype)
    ours, theirs = make(gtx), make(optax)
    if init_state:
      assert_states_close(ours.init(params), theirs.init(params), dtype, "init")
    (path, oracle), (state, oracle_state) = paired_trajectories(
        ours, theirs, params, steps, extra_args=extra_args, return_state=True)
    assert_trajectories_close(path, oracle, dtype)
    assert_states_close(state, oracle_state, dtype)
    return Result(state, oracle_state, path, params)
