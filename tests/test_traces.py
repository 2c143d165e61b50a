"""``trace`` and ``ema`` (Optax's names for add_momentum, and add_momentum followed by
bias_correction) against Optax 0.2.8.

Oracle: Optax's ``trace`` and ``ema``, followed by ``scale(-lr)`` on both sides, step by
step over 60 jitted steps on the mixed-shape tree, float32 and float64, the defaults and
a non-default configuration (Nesterov; no debiasing); the states' layout (``TraceState
(trace)``, ``EmaState(count, ema)``) and values.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params
from transform_pairs import DTYPES, compare

LR = 0.02


def descending(make):
  return lambda m: m.chain(make(m), m.scale(-LR))


CASES = {
    "trace": descending(lambda m: m.trace(0.9)),
    "trace/nesterov": descending(lambda m: m.trace(0.8, nesterov=True)),
    "ema": descending(lambda m: m.ema(0.9)),
    "ema/no_debias": descending(lambda m: m.ema(0.8, debias=False)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  state = compare(CASES[name], dtype).state
  assert type(state[0]).__name__ in ("TraceState", "EmaState")


def test_state_classes_are_optaxs():
  assert gtx.TraceState._fields == optax.TraceState._fields == ("trace",)
  assert gtx.EmaState._fields == optax.EmaState._fields == ("count", "ema")
  assert isinstance(gtx.trace(0.9).init(make_params()), gtx.TraceState)
  assert isinstance(gtx.ema(0.9).init(make_params()), gtx.EmaState)


@pytest.mark.parametrize("make", [lambda: gtx.trace(0.9, accumulator_dtype=jnp.bfloat16),
                                  lambda: gtx.ema(0.9, accumulator_dtype=jnp.bfloat16)],
                         ids=["trace", "ema"])
def test_accumulator_dtype_stores_the_state_and_keeps_the_updates_dtype(make):
  tx = make()
  params = make_params()
  state = tx.init(params)
  updates, state = jax.jit(tx.update)(params, state)
  (accumulator,) = [getattr(state, f) for f in ("trace", "ema") if hasattr(state, f)]
  assert {x.dtype for x in jax.tree.leaves(accumulator)} == {jnp.dtype(jnp.bfloat16)}
  assert {x.dtype for x in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}


def test_ema_is_debiased_by_the_count_of_updates():
  """One update of a constant: m = (1 - b) g, emitted m / (1 - b) = g exactly; the count
  is 1. Without debiasing, (1 - b) g."""
  g = jnp.asarray([2.0, -4.0])
  for debias, expected in [(True, g), (False, 0.25 * g)]:
    tx = gtx.ema(0.75, debias=debias)
    u, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u, expected, rtol=1e-7)
    assert int(state.count) == 1


def test_ema_decay_one_is_refused():
  with pytest.raises(ValueError, match=r"^ema: decay must be in \[0, 1\), got 1.0"):
    gtx.ema(1.0)
