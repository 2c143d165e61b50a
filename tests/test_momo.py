"""MoMo and MoMo-Adam (``contrib.momo``, ``contrib.momo_adam``) against Optax 0.2.8, and
Optax's weight decay against the authors' (which this module keeps as Optax's).

Oracle: Optax, step by step over 60 jitted steps on the mixed-shape tree, given the loss
with ``value=`` at every step, float32 and float64 (float64 to 1e-12 relative), defaults
and a configuration changing every argument (a schedule for the learning rate, weight
decay, the lower bound estimated on the fly) (``tests/contrib_pairs.py``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from contrib_pairs import DTYPES, assert_same_state_class, compare

CASES = {
    "momo": lambda m: m.contrib.momo(),
    "momo/options": lambda m: m.contrib.momo(
        lambda count: 0.5 / (1.0 + 0.05 * count), beta=0.8, lower_bound=0.1,
        weight_decay=0.05, adapt_lower_bound=True),
    "momo_adam": lambda m: m.contrib.momo_adam(),
    "momo_adam/options": lambda m: m.contrib.momo_adam(
        lambda count: 0.05 / (1.0 + 0.05 * count), b1=0.8, b2=0.99, eps=1e-6,
        lower_bound=0.1, weight_decay=0.05, adapt_lower_bound=True),
}
STATES = {"momo": "MomoState", "momo_adam": "MomoAdamState"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  ours, theirs, moved = compare(CASES[name], dtype, extra_args=True)
  assert moved > 0.1
  assert_same_state_class(ours, theirs, STATES[name.split("/")[0]])
  assert int(ours.count) == 60
  if name.endswith("options"):  # the lower bound was estimated, away from its start
    assert float(ours.lb) > 0.1 + 1e-3


def test_state_fields_are_optax():
  assert gtx.contrib.MomoState._fields == optax.contrib.MomoState._fields
  assert gtx.contrib.MomoAdamState._fields == optax.contrib.MomoAdamState._fields


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_update_needs_the_loss_and_the_params(name):
  tx = getattr(gtx.contrib, name)()
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  with pytest.raises(ValueError, match=f"^{name}: needs the latest \\(batch\\) loss"):
    tx.update(params, state, params)
  with pytest.raises(ValueError, match=name):
    tx.update(params, state, value=1.0)


def test_no_step_without_a_gradient():
  """<d, d> = 0 (all-zero gradients from the start): tau = 0, only the weight decay acts,
  in Optax as here."""
  params = {"w": jnp.asarray([1.0, -2.0])}
  zeros = {"w": jnp.zeros(2)}
  for m in (gtx, optax):
    tx = m.contrib.momo(weight_decay=0.5)
    updates, _ = tx.update(zeros, tx.init(params), params, value=jnp.asarray(3.0))
    np.testing.assert_allclose(updates["w"], -0.5 / 1.5 * params["w"], rtol=1e-6)


def test_weight_decay_is_optax_not_the_authors_proximal_step():
  """First step, step size capped at the learning rate (a large loss): Optax's update is
  ``-a l / (1 + a l) x - a g``; the authors' PyTorch Momo divides the whole step,
  ``(x - a g) / (1 + a l) - x``. gradtx keeps Optax's."""
  alpha, lam = 0.1, 0.5
  x = jnp.asarray([1.0, -2.0, 0.5])
  g = jnp.asarray([0.3, 0.1, -0.2])
  ours, theirs = [
      (lambda tx: tx.update(g, tx.init(x), x, value=jnp.asarray(100.0))[0])(
          m.contrib.momo(alpha, weight_decay=lam))
      for m in (gtx, optax)]
  optax_rule = -alpha * lam / (1 + alpha * lam) * x - alpha * g
  authors_rule = (x - alpha * g) / (1 + alpha * lam) - x
  np.testing.assert_allclose(theirs, optax_rule, rtol=1e-6)
  np.testing.assert_allclose(ours, theirs, rtol=1e-6)
  assert not np.allclose(ours, authors_rule, rtol=1e-3)


def test_first_step_starts_the_averages_at_the_first_values():
  """MoMo's averages start at the first gradient and loss (rate 0 at the first step)."""
  x = jnp.asarray([1.0, -2.0])
  g = jnp.asarray([0.5, 0.25])
  tx = gtx.contrib.momo(beta=0.9)
  _, state = tx.update(g, tx.init(x), x, value=jnp.asarray(2.0))
  np.testing.assert_allclose(state.exp_avg, g)
  np.testing.assert_allclose(state.barf, 2.0)
  np.testing.assert_allclose(state.gamma, float(jnp.vdot(g, x)))


def test_the_loss_reaches_momo_through_chain():
  """``value=`` given to a chain reaches MoMo inside it, as in Optax (Optax's docstring
  example, behind a clip that does not clip)."""
  fn = lambda x: jnp.sum(x**2)  # noqa: E731
  values = {}
  for m in (gtx, optax):
    tx = m.chain(m.clip_by_global_norm(10.0), m.contrib.momo())
    x = jnp.asarray([1.0, 2.0, 3.0])
    state = tx.init(x)
    values[m.__name__] = []
    for _ in range(3):
      value, grad = jax.value_and_grad(fn)(x)
      updates, state = tx.update(grad, state, x, value=value)
      x = m.apply_updates(x, updates)
      values[m.__name__].append(float(fn(x)))
  np.testing.assert_allclose(values["gradtx"], values["optax"], rtol=1e-6)
  assert values["gradtx"][0] == 3.5 and values["gradtx"][2] < values["gradtx"][1] < 3.5
