"""SM3 against Optax 0.2.8, and its scalar params, where Optax fails.

Oracle: Optax's ``scale_by_sm3`` and ``sm3``, step by step over 60 jitted steps on the
mixed-shape tree without its scalar (vector, matrix, 3-D: Optax cannot update a scalar
param), float32 and float64, defaults and a non-default configuration each; the final
states' fields and leaves (one accumulator vector per axis). For a scalar param, the
oracle is the same value as a vector of length 1, which Optax does update.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params
from optax_state_oracle import compare

LR = 0.02


def descending(make):
  return lambda m: m.chain(make(m), m.scale(-LR))


CASES = {
    "scale_by_sm3": descending(lambda m: m.scale_by_sm3()),
    "scale_by_sm3/decayed": descending(lambda m: m.scale_by_sm3(b1=0.5, b2=0.99, eps=1e-6)),
    "sm3": lambda m: m.sm3(LR),
    "sm3/no_momentum": lambda m: m.sm3(0.1, momentum=0.0),
}


def without_scalar(dtype):
  params = make_params(jnp.dtype(dtype))
  del params["scalar"]
  return params


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  with jax.enable_x64(dtype == "float64"):
    state = compare(CASES[name], without_scalar(dtype), dtype)
  sm3_state = state[0]
  assert [m.shape for m in sm3_state.mu["nested"]["cube"]] == [(2,), (3,), (4,)]


def test_optax_fails_on_a_scalar_param():
  tx = optax.scale_by_sm3()
  params = {"s": jnp.asarray(0.5)}
  with pytest.raises(IndexError):
    tx.update(params, tx.init(params))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_scalar_is_updated_as_a_vector_of_length_one(dtype):
  with jax.enable_x64(dtype == "float64"):
    params = make_params(jnp.dtype(dtype))
    as_vector = {**params, "scalar": params["scalar"].reshape(1)}
    ours = gtx.chain(gtx.scale_by_sm3(b1=0.5, b2=0.99), gtx.scale(-LR))
    theirs = optax.chain(optax.scale_by_sm3(b1=0.5, b2=0.99), optax.scale(-LR))
    s_ours, s_theirs = ours.init(params), theirs.init(as_vector)
    assert s_ours[0].mu["scalar"][0].shape == ()
    grads = jax.grad(lambda p: jnp.sum(jnp.sin(p["scalar"]) * 3 + p["vector"]**2))

    @jax.jit
    def steps(params, as_vector, s_ours, s_theirs):
      scalars = []
      for _ in range(5):
        u_ours, s_ours = ours.update(grads(params), s_ours, params)
        u_theirs, s_theirs = theirs.update(grads(as_vector), s_theirs, as_vector)
        scalars.append((u_ours["scalar"], u_theirs["scalar"]))
        params = gtx.apply_updates(params, u_ours)
        as_vector = optax.apply_updates(as_vector, u_theirs)
      return scalars

    for ours_scalar, theirs_vector in steps(params, as_vector, s_ours, s_theirs):
      assert ours_scalar.shape == ()
      np.testing.assert_allclose(ours_scalar, theirs_vector[0], rtol=1e-6)


def test_accumulators_are_the_papers_cover_maxima():
  """Anil et al. 2019, SM3-II with b2=1: for a matrix, the row accumulator after one step
  is the row-wise max of g**2, the column one the column-wise max, and the step divides
  by sqrt(min(row, col)) (here g**2 itself, the first step's minimum)."""
  g = jnp.asarray([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]])
  tx = gtx.scale_by_sm3(b1=0.0, eps=0.0)
  updates, state = tx.update(g, tx.init(g))
  np.testing.assert_allclose(state.mu[0], jnp.max(g**2, axis=1))
  np.testing.assert_allclose(state.mu[1], jnp.max(g**2, axis=0))
  np.testing.assert_allclose(updates, jnp.sign(g), rtol=1e-6)
