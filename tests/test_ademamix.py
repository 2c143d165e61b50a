"""AdEMAMix and Simplified AdEMAMix (``contrib.ademamix``, ``scale_by_ademamix``,
``simplified_ademamix``, ``scale_by_simplified_ademamix``) against Optax 0.2.8, with
the paper's warm-up schedules for ``alpha`` and ``b3``, and the one departure (moments
kept in ``mu_dtype``).

Oracle: Optax, step by step over 60 jitted steps on the mixed-shape tree, float32 and
float64, defaults and configurations changing every argument (``tests/contrib_pairs.py``:
initial state, params after every step, final state leaf by leaf).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import loss, make_params
from contrib_pairs import DTYPES, assert_same_state_class, compare

not_scalar = lambda tree: jax.tree_util.tree_map_with_path(  # noqa: E731
    lambda path, _: "scalar" not in jax.tree_util.keystr(path), tree)


def alpha_warmup(alpha, horizon):
  """The paper's scheduler for alpha (Pagliardini et al. 2024): linear from 0 to
  ``alpha`` over ``horizon`` steps."""
  return lambda count: jnp.minimum(count * alpha / horizon, alpha)


def b3_warmup(b_start, b_end, horizon):
  """The paper's scheduler for b3 (Pagliardini et al. 2024): the half-life
  ln(0.5)/ln(b3) grows linearly from ``b_start``'s to ``b_end``'s over ``horizon``
  steps."""
  def schedule(count):
    s = count / horizon
    log_start, log_end = np.log(b_start), np.log(b_end)
    return jnp.minimum(jnp.exp(log_start * log_end
                               / ((1 - s) * log_end + s * log_start)), b_end)
  return schedule


CASES = {
    "ademamix": lambda m: m.contrib.ademamix(1e-2),
    "ademamix/options": lambda m: m.contrib.ademamix(
        lambda count: 2e-2 / (1.0 + 0.05 * count), b1=0.8, b2=0.99,
        b3=b3_warmup(0.8, 0.999, 40), alpha=alpha_warmup(8.0, 40), eps=1e-6,
        eps_root=1e-9, weight_decay=0.1, mask=not_scalar),
    "scale_by_ademamix": lambda m: m.chain(m.contrib.scale_by_ademamix(), m.scale(-1e-2)),
    "scale_by_ademamix/numbers": lambda m: m.chain(
        m.contrib.scale_by_ademamix(b3=0.99, alpha=3.0), m.scale(-1e-2)),
    "simplified_ademamix": lambda m: m.contrib.simplified_ademamix(1e-3),
    "simplified_ademamix/options": lambda m: m.contrib.simplified_ademamix(
        lambda count: 2e-3 / (1.0 + 0.05 * count), b1=0.9, b2=0.99,
        alpha=alpha_warmup(4.0, 30), eps=1e-6, eps_root=1e-9, weight_decay=0.1,
        mask=not_scalar),
    "scale_by_simplified_ademamix": lambda m: m.chain(
        m.contrib.scale_by_simplified_ademamix(alpha=2.0), m.scale(-1e-3)),
}
STATE = {"ademamix": "ScaleByAdemamixState",
         "simplified_ademamix": "ScaleBySimplifiedAdEMAMixState"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  ours, theirs, moved = compare(CASES[name], dtype)
  assert moved > 0.1
  family = "simplified_ademamix" if "simplified" in name else "ademamix"
  assert_same_state_class(ours, theirs, STATE[family])


def test_state_fields_are_optax():
  assert (gtx.contrib.ScaleByAdemamixState._fields
          == optax.contrib.ScaleByAdemamixState._fields
          == ("count", "count_m2", "m1", "m2", "nu"))
  assert (gtx.contrib.ScaleBySimplifiedAdEMAMixState._fields
          == optax.contrib.ScaleBySimplifiedAdEMAMixState._fields == ("t", "m", "n"))


def test_schedules_are_evaluated_at_count_m2():
  """b3 and alpha read count_m2, not count: a state whose counters differ (a slow EMA
  restarted, say) gives Optax's update."""
  params = make_params()
  grads = jax.grad(loss)(params)
  emitted = []
  for m in (gtx, optax):
    tx = m.contrib.scale_by_ademamix(b3=b3_warmup(0.9, 0.999, 100),
                                     alpha=alpha_warmup(5.0, 100))
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    updates, state = tx.update(grads, state._replace(count_m2=jnp.int32(50)), params)
    assert int(state.count) == 2 and int(state.count_m2) == 51
    emitted.append(updates)
  for x, y in zip(*map(jax.tree.leaves, emitted)):
    np.testing.assert_allclose(x, y, rtol=1e-6)


def test_first_step():
  """t = 1: m1_hat = g, m2 = (1 - b3) g, nu_hat = g**2, so u = (1 + alpha (1 - b3))
  g / (|g| + eps); Simplified: m = g, n_hat = g**2, u = (1 + alpha) g / (|g| + eps)."""
  g = {"w": jnp.asarray([0.5, -2.0, 3.0])}
  u, _ = gtx.contrib.scale_by_ademamix(b3=0.99, alpha=5.0).update(
      g, gtx.contrib.scale_by_ademamix().init(g))
  # rtol: 1 - b2 = 1 - 0.999 in float32 is off by 1.3e-5 relative.
  np.testing.assert_allclose(u["w"], (1 + 5.0 * 0.01) * np.sign(g["w"]), rtol=2e-5)
  tx = gtx.contrib.scale_by_simplified_ademamix(alpha=2.0)
  u, _ = tx.update(g, tx.init(g))
  np.testing.assert_allclose(u["w"], 3.0 * np.sign(g["w"]), rtol=2e-5)


def _scanned(m, steps=3):
  params = make_params(jnp.float32)
  tx = m.contrib.ademamix(1e-2, mu_dtype=jnp.bfloat16)

  def step(carry, _):
    params, state = carry
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return (m.apply_updates(params, updates), state), None

  (params, state), _ = jax.lax.scan(step, (params, tx.init(params)), length=steps)
  return state


def test_mu_dtype_state_keeps_its_dtype_where_optax_changes_it():
  """The departure: Optax's update returns m1, m2 and nu in the gradients' dtype, so a
  bfloat16 mu_dtype state becomes float32 after one step (a jitted step compiles again,
  and the state cannot be a lax.scan carry); gradtx stores them in mu_dtype."""
  params = make_params(jnp.float32)
  grads = jax.grad(loss)(params)
  tx = optax.contrib.ademamix(1e-2, mu_dtype=jnp.bfloat16)
  state = tx.init(params)
  assert {x.dtype for x in jax.tree.leaves(state[0].m1)} == {jnp.dtype(jnp.bfloat16)}
  _, state = tx.update(grads, state, params)
  assert {x.dtype for x in jax.tree.leaves(state[0].m1)} == {jnp.dtype(jnp.float32)}
  with pytest.raises(TypeError, match="scan"):
    _scanned(optax)
  ours = _scanned(gtx)[0]
  for field in ("m1", "m2", "nu"):
    assert {x.dtype for x in jax.tree.leaves(getattr(ours, field))} == {
        jnp.dtype(jnp.bfloat16)}
  assert int(ours.count) == int(ours.count_m2) == 3


def test_hyperparameters_are_checked():
  with pytest.raises(ValueError, match=r"^ademamix: b3 must be in \[0, 1\], got 1.5"):
    gtx.contrib.ademamix(1e-3, b3=1.5)
  message = r"^simplified_ademamix: alpha must be in \[0, inf\), got -1.0"
  with pytest.raises(ValueError, match=message):
    gtx.contrib.simplified_ademamix(1e-3, alpha=-1.0)
