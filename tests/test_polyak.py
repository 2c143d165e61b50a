"""Polyak's step size (SPS) against Optax 0.2.8.

Oracle: Optax's ``scale_by_polyak`` and ``polyak_sgd``, step by step over 60 jitted steps
on the mixed-shape tree (scalar, vector, matrix, 3-D), float32 and float64, the loss
given as ``value=``; defaults and a non-default configuration each (``sps+``, a schedule).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
from conftest import make_params
from optax_state_oracle import compare

sched = lambda count: 0.5 * 0.97**count  # noqa: E731

CASES = {
    "scale_by_polyak": lambda m: m.chain(m.scale_by_polyak(), m.scale(-0.1)),
    "scale_by_polyak/sps+": lambda m: m.chain(m.scale_by_polyak(
        f_min=1.0, max_learning_rate=0.05, eps=1e-3, variant="sps+"), m.scale(-1.0)),
    "polyak_sgd": lambda m: m.polyak_sgd(max_learning_rate=0.1),
    "polyak_sgd/sps+_schedule": lambda m: m.polyak_sgd(
        max_learning_rate=0.2, scaling=sched, f_min=-2.0, eps=1e-4, variant="sps+"),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  with jax.enable_x64(dtype == "float64"):
    compare(CASES[name], make_params(jnp.dtype(dtype)), dtype, extra_args=True)


def test_step_is_the_papers_formula():
  """Loizou et al. 2021, SPS_max: p -= min((f - f*) / ||g||**2, gamma_max) * g."""
  p = {"a": jnp.asarray([1.0, 2.0]), "b": jnp.asarray(-1.0)}
  g = {"a": jnp.asarray([0.5, -1.0]), "b": jnp.asarray(2.0)}  # ||g||**2 = 5.25
  tx = gtx.polyak_sgd(max_learning_rate=10.0, f_min=0.5)
  updates, _ = tx.update(g, tx.init(p), p, value=3.125)
  step = (3.125 - 0.5) / 5.25
  for u, x in zip(jax.tree.leaves(updates), jax.tree.leaves(g)):
    np.testing.assert_allclose(u, -step * x, rtol=1e-6)
  tx = gtx.polyak_sgd(max_learning_rate=0.25)
  capped, _ = tx.update(g, tx.init(p), p, value=3.125)
  np.testing.assert_allclose(capped["a"], -0.25 * g["a"], rtol=1e-6)


def test_sps_plus_does_not_ascend_below_f_min():
  g = jnp.asarray([1.0, -2.0])
  tx = gtx.scale_by_polyak(f_min=1.0, variant="sps+")
  updates, _ = tx.update(g, tx.init(g), value=0.5)
  np.testing.assert_array_equal(updates, jnp.zeros(2))
  plain, _ = gtx.scale_by_polyak(f_min=1.0).update(g, (), value=0.5)
  assert float(plain[0]) < 0  # plain SPS takes the negative step


def test_zero_gradient_gives_a_zero_step():
  g = jnp.zeros(3)
  updates, _ = gtx.scale_by_polyak().update(g, (), value=1.0)
  np.testing.assert_array_equal(updates, g)


def test_value_is_required_and_variant_checked():
  tx = gtx.scale_by_polyak()
  with pytest.raises(ValueError, match="scale_by_polyak: needs the loss"):
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
  with pytest.raises(ValueError, match="variant"):
    gtx.polyak_sgd(variant="sps++")
