"""``contrib.normalize`` (SAM's normalised gradient) against Optax 0.2.8, and the one
departure: an all-zero update stays zero where Optax's is NaN.

Oracle: Optax, step by step over 60 jitted steps on the mixed-shape tree, float32 and
float64, as SAM's adversarial optimizer ``chain(normalize(), sgd(rho))`` and before Adam
(``tests/contrib_pairs.py``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from contrib_pairs import DTYPES, compare

CASES = {
    "normalize": lambda m: m.chain(m.contrib.normalize(), m.sgd(0.05)),
    "normalize/adam": lambda m: m.chain(m.contrib.normalize(), m.adam(0.05)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  _, _, moved = compare(CASES[name], dtype)
  assert moved > 1e-2


def test_unit_norm_and_direction():
  u = {"a": jnp.asarray([3.0, 0.0]), "b": jnp.asarray([[4.0]])}
  out, _ = gtx.contrib.normalize().update(u, gtx.contrib.normalize().init(u))
  np.testing.assert_allclose(out["a"], [0.6, 0.0], rtol=1e-7)
  np.testing.assert_allclose(out["b"], [[0.8]], rtol=1e-7)


def test_zero_update_stays_zero_where_optax_gives_nan():
  """``0 / ||0||``: Optax's update is NaN (and SAM's params with it); gradtx's is 0, as
  the SAM authors' ``g / (||g|| + 1e-12)``."""
  zeros = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
  theirs, _ = optax.contrib.normalize().update(zeros, optax.contrib.normalize().init(zeros))
  assert all(np.isnan(x).all() for x in jax.tree.leaves(theirs))
  ours, _ = gtx.contrib.normalize().update(zeros, gtx.contrib.normalize().init(zeros))
  assert all((x == 0).all() for x in jax.tree.leaves(ours))


def test_dtypes_are_kept():
  u = {"h": jnp.asarray([1.0, 2.0], jnp.bfloat16), "c": jnp.asarray([1j, 1.0], jnp.complex64)}
  out, _ = gtx.contrib.normalize().update(u, gtx.contrib.normalize().init(u))
  assert out["h"].dtype == jnp.bfloat16 and out["c"].dtype == jnp.complex64
  # ||u||**2 = 1 + 4 + |1j|**2 + 1 = 7, the bfloat16 leaf counted in float32.
  np.testing.assert_allclose(np.abs(out["c"]), [7**-0.5] * 2, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(out["h"], np.float32), [7**-0.5, 2 * 7**-0.5],
                             rtol=2**-8)


def test_state_is_optax_empty_state():
  assert gtx.contrib.NormalizeState is gtx.EmptyState
  assert gtx.contrib.NormalizeState._fields == optax.contrib.NormalizeState._fields
