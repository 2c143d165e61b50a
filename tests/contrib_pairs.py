"""A gradtx ``contrib`` optimizer and Optax 0.2.8's side by side.

A case is a function ``make(m)`` of the module (``gradtx`` or ``optax``) that builds the
optimizer with that module's names (``m.contrib.prodigy(...)``), so one line states both
sides. :func:`compare` is ``transform_pairs.compare`` (``STEPS`` jitted steps on
``conftest.make_params``'s tree: a scalar, a vector, a 4x3 matrix and a 2x3x4 cube; the
initial state, the params after every step and the final state: every state leaf's path,
Optax's field names, shape, dtype and value), and also says how far the params moved.
"""

import jax
import jax.numpy as jnp

import transform_pairs
from transform_pairs import STEPS, assert_states_close, layout, precision  # noqa: F401

DTYPES = ["float32", "float64"]


def compare(make, dtype, steps=STEPS, extra_args=False, params=None):
  """Runs ``make(gtx)`` and ``make(optax)`` from the same params and checks the initial
  states, the trajectories step by step and the final states. Returns both final states
  and how far the params moved (the largest change of a coordinate), so that a case can
  show it is not vacuous."""
  result = transform_pairs.compare(make, jnp.dtype(dtype), steps, params=params,
                                   extra_args=extra_args)
  moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree.leaves(result.path[-1]), jax.tree.leaves(result.params)))
  return result.state, result.oracle_state, moved


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
