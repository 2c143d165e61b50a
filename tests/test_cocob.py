"""COCOB-Backprop (``cocob``, ``scale_by_cocob``) against Optax 0.2.8's
``optax.contrib``, and its first step against the paper's Algorithm 2.

Oracles: Optax, step by step over 60 jitted steps on the mixed-shape tree, float32 and
float64, defaults and non-default configurations (``tests/contrib_pairs.py``); a
transcription of Orabona & Tommasi 2017, Algorithm 2, for one step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
from contrib_pairs import DTYPES, assert_same_state_class, compare

not_scalar = lambda tree: jax.tree_util.tree_map_with_path(  # noqa: E731
    lambda path, _: "scalar" not in jax.tree_util.keystr(path), tree)

CASES = {
    "cocob": lambda m: m.contrib.cocob(),
    "cocob/options": lambda m: m.contrib.cocob(0.5, alpha=10.0, eps=1e-6,
                                               weight_decay=0.01, mask=not_scalar),
    "scale_by_cocob/options": lambda m: m.contrib.scale_by_cocob(alpha=50.0, eps=1e-4),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  ours, theirs, moved = compare(CASES[name], dtype)
  assert moved > 1e-2
  assert_same_state_class(ours, theirs, "COCOBState")


def test_first_step_follows_the_paper():
  """Algorithm 2 with the negative gradient g = -grad: L = |g|, G = |g|, Reward = 0,
  theta = g, so w_2 = w_1 + g / (L max(2L, alpha L)) * L."""
  w1 = jnp.asarray([0.5, -1.0, 2.0])
  grad = jnp.asarray([0.25, -4.0, 1e-3])
  tx = gtx.contrib.scale_by_cocob(alpha=100.0, eps=1e-8)
  updates, state = tx.update(grad, tx.init(w1), w1)
  big_l = np.maximum(1e-8, np.abs(grad))
  expected = -grad / (big_l * np.maximum(np.abs(grad) + big_l, 100.0 * big_l)) * big_l
  # The step is emitted as w_2 - w_1: float32 cancellation of order ulp(|w_1|).
  np.testing.assert_allclose(updates, expected, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(state.cumulative_gradients, -grad)
