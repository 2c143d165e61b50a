"""A gradtx transform and the Optax transform of the same name, run side by side, with
their states compared class by class.

``compare(make, params, dtype)`` builds ``make(gtx)`` and ``make(optax)``, runs both for
``oracles.STEPS`` jitted steps on ``conftest.loss`` and asserts that the trajectories
agree step by step and that the final states have the same layout: the same NamedTuple
fields wherever Optax's state has a NamedTuple (member by member through a chain's
tuple, also for classes without leaves), and the same leaves at the same paths with the
same shapes, dtypes and values.
"""

import jax
import numpy as np
import optax

import gradtx as gtx
from oracles import STEPS, assert_trajectories_close, paired_trajectories, tolerance


def is_namedtuple(x):
  return isinstance(x, tuple) and hasattr(x, "_fields")


def assert_same_fields(ours, theirs, where="state"):
  """Same NamedTuple fields at every level where Optax's state has a NamedTuple."""
  if is_namedtuple(theirs):
    assert is_namedtuple(ours), f"{where}: {type(ours).__name__} is no NamedTuple"
    assert type(ours)._fields == type(theirs)._fields, (
        f"{where}: {type(ours).__name__}{type(ours)._fields} vs Optax's "
        f"{type(theirs).__name__}{type(theirs)._fields}")
    for field in type(theirs)._fields:
      if isinstance(getattr(theirs, field), tuple):
        assert_same_fields(getattr(ours, field), getattr(theirs, field), f"{where}.{field}")
  elif isinstance(theirs, tuple):
    assert isinstance(ours, tuple) and len(ours) == len(theirs), where
    for i, (a, b) in enumerate(zip(ours, theirs)):
      assert_same_fields(a, b, f"{where}[{i}]")


def assert_same_state(ours, theirs, dtype, tol=None):
  """Same fields, the same leaves at the same paths, with the same shapes, dtypes and
  values (each library has its own classes, so the treedefs themselves differ); ``tol``
  (``rtol``/``atol``) overrides the default tolerance of ``dtype``."""
  assert_same_fields(ours, theirs)
  ours_leaves = jax.tree_util.tree_leaves_with_path(ours)
  theirs_leaves = jax.tree_util.tree_leaves_with_path(theirs)
  assert ([jax.tree_util.keystr(p) for p, _ in ours_leaves]
          == [jax.tree_util.keystr(p) for p, _ in theirs_leaves])
  for (path, a), (_, b) in zip(ours_leaves, theirs_leaves):
    where = jax.tree_util.keystr(path)
    assert a.dtype == b.dtype, f"{where}: {a.dtype} vs Optax's {b.dtype}"
    assert a.shape == b.shape, f"{where}: {a.shape} vs Optax's {b.shape}"
    np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                               **(tolerance(dtype) if tol is None else tol), err_msg=where)


def compare(make, params, dtype, extra_args=False, reshape_theirs=False, tol=None,
            steps=STEPS):
  """Trajectories and final states of ``make(gtx)`` and ``make(optax)`` agree; returns
  gradtx's final state.

  ``reshape_theirs``: Optax's params are reshaped to ours' before comparing (for a
  transform where Optax changes a leaf's shape; sizes must still agree). ``tol``
  overrides the default tolerance of ``dtype``; ``steps`` the number of steps.
  """
  (ours, theirs), (state_ours, state_theirs) = paired_trajectories(
      make(gtx), make(optax), params, steps, extra_args=extra_args, return_state=True)
  if reshape_theirs:
    theirs = [jax.tree.map(lambda a, b: b.reshape(a.shape), o, t)
              for o, t in zip(ours, theirs)]
  assert_trajectories_close(ours, theirs, dtype, tol)
  assert_same_state(state_ours, state_theirs, dtype, tol)
  return state_ours
