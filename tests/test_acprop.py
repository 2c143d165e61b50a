"""ACProp (``contrib.acprop``, ``contrib.scale_by_acprop``) against Optax 0.2.8, and its
first steps by hand.

Oracle: Optax, step by step over 60 jitted steps on the mixed-shape tree, float32 and
float64, defaults and a configuration changing every argument
(``tests/contrib_pairs.py``: initial state, params after every step, final state leaf by
leaf).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from contrib_pairs import DTYPES, assert_same_state_class, compare

not_scalar = lambda tree: jax.tree_util.tree_map_with_path(  # noqa: E731
    lambda path, _: "scalar" not in jax.tree_util.keystr(path), tree)

CASES = {
    "acprop": lambda m: m.contrib.acprop(1e-2),
    "acprop/options": lambda m: m.contrib.acprop(
        lambda count: 2e-2 / (1.0 + 0.05 * count), b1=0.8, b2=0.99, eps=1e-8,
        eps_root=1e-12, weight_decay=0.1, mask=not_scalar),
    "scale_by_acprop": lambda m: m.chain(m.contrib.scale_by_acprop(), m.scale(-1e-2)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  ours, theirs, moved = compare(CASES[name], dtype)
  assert moved > 0.1
  assert_same_state_class(ours, theirs, "ScaleByBeliefState")


def test_state_fields_are_optax():
  params = {"w": jnp.ones(3)}
  ours = gtx.contrib.scale_by_acprop().init(params)
  theirs = optax.contrib.scale_by_acprop().init(params)
  assert type(ours)._fields == type(theirs)._fields == ("count", "mu", "nu")


def test_first_two_steps():
  """Step 1 has no earlier second moment: u = g / (1 + eps). Step 2 divides by the
  bias-corrected s_1 = (1 - b2) (g_1 - 0)**2 + eps_root, from before g_2."""
  b1, b2, eps, eps_root = 0.9, 0.999, 1e-16, 1e-16
  g1 = {"w": jnp.asarray([0.5, -2.0, 3.0], jnp.float32)}
  g2 = {"w": jnp.asarray([1.0, 1.0, -1.0], jnp.float32)}
  tx = gtx.contrib.scale_by_acprop()
  u1, state = tx.update(g1, tx.init(g1))
  np.testing.assert_array_equal(u1["w"], g1["w"])
  s1 = (1 - b2) * np.asarray(g1["w"], np.float64) ** 2 + eps_root
  np.testing.assert_allclose(state.nu["w"], s1, rtol=1e-6)
  np.testing.assert_allclose(state.mu["w"], (1 - b1) * g1["w"], rtol=1e-6)
  u2, state = tx.update(g2, state)
  expected = g2["w"] / (np.sqrt(s1 / (1 - b2)) + eps)
  # rtol: 1 - b2 = 1 - 0.999 in float32 is off by 1.3e-5 relative.
  np.testing.assert_allclose(u2["w"], expected, rtol=2e-5)
  # s_2 uses the prediction error against m_1, the momentum before g_2.
  s2 = b2 * s1 + (1 - b2) * (np.asarray(g2["w"]) - (1 - b1) * np.asarray(g1["w"]))**2
  np.testing.assert_allclose(state.nu["w"], s2 + eps_root, rtol=1e-5)
