"""``contrib.split_real_and_imaginary`` against Optax 0.2.8, on complex params.

Oracle: Optax, step by step over 60 jitted steps on a tree of complex64/complex128
params of mixed shapes (a scalar, a vector, a matrix, a cube) and one real vector, for
complex and float precisions 32 and 64, wrapping Adam, AdamW (which reads the split
params) and SGD with momentum: the params after every step and the final
state leaf by leaf (its ``.real``/``.imaginary`` paths, shapes, dtypes). And the
purpose: a complex param behaves as the pair of real params it is made of.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from contrib_pairs import DTYPES, assert_states_close, precision
from oracles import assert_trajectories_close, lockstep

STEPS = 60
COMPLEX = {"float32": jnp.complex64, "float64": jnp.complex128}


def complex_params(dtype):
  rng = np.random.default_rng(2)
  shapes = {"scalar": (), "vector": (5,), "nested": {"matrix": (4, 3), "cube": (2, 3, 4)}}
  params = jax.tree.map(
      lambda s: jnp.asarray(rng.normal(size=s) + 1j * rng.normal(size=s), COMPLEX[dtype]),
      shapes, is_leaf=lambda x: isinstance(x, tuple))
  params["real"] = jnp.asarray(rng.normal(size=3), dtype)
  return params


def complex_loss(params):
  """Real-valued and non-holomorphic: ``|z - c|**2`` and a coupling of ``Re z`` and
  ``Im z``, per leaf."""
  total = 0.0
  for i, z in enumerate(jax.tree.leaves(params)):
    total += jnp.sum((i + 1) * jnp.abs(z - 0.5 * i) ** 2
                     + 0.3 * jnp.sin(3.0 * z.real) * jnp.cos(2.0 * z.imag))
  return total


def complex_trajectories(txs, params, steps=STEPS):
  """``[(path, state), ...]`` of each of ``txs``, compiled together (``oracles.lockstep``)."""

  def one_step(tx, params, state):
    # JAX's gradient of a real loss in z is conj(dL/dx + i dL/dy): conjugated back.
    grads = jax.tree.map(jnp.conj, jax.grad(complex_loss)(params))
    updates, state = tx.update(grads, state, params)
    return gtx.apply_updates(params, updates), state

  return lockstep(one_step, txs, params, steps)


CASES = {
    "split_real_and_imaginary": lambda m: m.contrib.split_real_and_imaginary(m.adam(0.05)),
    "split_real_and_imaginary/adamw": lambda m: m.contrib.split_real_and_imaginary(
        m.adamw(0.05, weight_decay=0.1)),
    "split_real_and_imaginary/momentum": lambda m: m.contrib.split_real_and_imaginary(
        m.sgd(0.01, momentum=0.9)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  with precision(dtype):
    params = complex_params(dtype)
    ours, theirs = CASES[name](gtx), CASES[name](optax)
    assert_states_close(ours.init(params), theirs.init(params), dtype, "init")
    (path, state), (oracle, oracle_state) = complex_trajectories((ours, theirs), params)
    assert_trajectories_close(path, oracle, dtype)
    assert_states_close(state, oracle_state, dtype)
    assert path[-1]["vector"].dtype == COMPLEX[dtype]
    moved = max(float(jnp.max(jnp.abs(a - b)))
                for a, b in zip(jax.tree.leaves(path[-1]), jax.tree.leaves(params)))
    assert moved > 1e-2


def test_a_complex_param_is_its_pair_of_real_params():
  """Adam on z = x + iy steps as Adam on (x, y) (Optax's own test, over 10 steps)."""
  z = complex_params("float32")["nested"]["matrix"]
  pair = (z.real, z.imag)
  tx_c = gtx.contrib.split_real_and_imaginary(gtx.adam(0.05))
  tx_r = gtx.adam(0.05)
  pair_loss = lambda xy: complex_loss(xy[0] + 1j * xy[1])  # noqa: E731
  state_c, state_r = tx_c.init(z), tx_r.init(pair)
  for _ in range(10):
    gz = jnp.conj(jax.grad(complex_loss)(z))
    gr = jax.grad(pair_loss)(pair)
    np.testing.assert_allclose(gz, gr[0] + 1j * gr[1], rtol=1e-6)
    uz, state_c = tx_c.update(gz, state_c, z)
    ur, state_r = tx_r.update(gr, state_r, pair)
    z, pair = gtx.apply_updates(z, uz), gtx.apply_updates(pair, ur)
    np.testing.assert_allclose(z, pair[0] + 1j * pair[1], rtol=1e-6)


def test_state_fields_are_optax():
  assert (gtx.contrib.SplitRealAndImaginaryState._fields
          == optax.contrib.SplitRealAndImaginaryState._fields)


def test_inner_must_be_a_transform():
  with pytest.raises(TypeError, match="^split_real_and_imaginary: inner must be a gradient"):
    gtx.contrib.split_real_and_imaginary(gtx.adam)
