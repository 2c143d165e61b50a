"""Mechanic (``contrib.mechanize``) against Optax 0.2.8.

Oracle: Optax, step by step over 60 jitted steps on the mixed-shape tree, float32 and
float64, around Adam with the defaults and around SGD with momentum with every
hyperparameter changed (``tests/contrib_pairs.py``). Extra arguments reach the base
optimizer.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from contrib_pairs import DTYPES, assert_same_state_class, compare

CASES = {
    "mechanize": lambda m: m.contrib.mechanize(m.adam(1e-2)),
    "mechanize/options": lambda m: m.contrib.mechanize(
        m.sgd(0.1, momentum=0.9), weight_decay=0.0, eps=1e-6, s_init=1e-4, num_betas=3),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  ours, theirs, moved = compare(CASES[name], dtype)
  assert moved > 1e-2
  assert_same_state_class(ours, theirs, "MechanicState")
  assert np.sum(np.asarray(ours.s)) > 1e-3  # the scale was learned (from 6e-6 or 3e-4)


def test_state_fields_are_optax():
  assert gtx.contrib.MechanicState._fields == optax.contrib.MechanicState._fields


def test_extra_arguments_reach_the_base_optimizer():
  seen = []

  def update(updates, state, params=None, *, value=None):
    seen.append(value)
    return jax.tree.map(lambda u: -0.1 * u, updates), state

  tx = gtx.contrib.mechanize(gtx.GradientTransformation(lambda p: (), update))
  params = {"w": jnp.asarray([1.0, -2.0])}
  tx.update(params, tx.init(params), params, value=jnp.asarray(3.0), other=1)
  assert len(seen) == 1 and float(seen[0]) == 3.0


def test_first_update_starts_from_the_params_it_is_given():
  """x_0 is the params at the first update, not at init (a checkpoint restored in
  between)."""
  tx = gtx.contrib.mechanize(gtx.sgd(0.1))
  state = tx.init({"w": jnp.zeros(2)})
  params = {"w": jnp.asarray([1.0, -2.0])}
  _, state = tx.update(params, state, params)
  np.testing.assert_array_equal(state.x0["w"], params["w"])
