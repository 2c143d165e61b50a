"""Layer-wise DoG's step size (``scale_by_distance_over_gradients``) against Optax 0.2.8.

Oracle: Optax's transform of the same name, step by step over 60 jitted steps on the
mixed-shape tree (scalar, vector, matrix, 3-D), float32 and float64, defaults and a
non-default configuration; the final states' fields and leaves. Optax turns a scalar
param into a vector of length 1 (its update has shape ``(1,)``); gradtx keeps the
param's shape, so Optax's params are compared after reshaping to ours (the values agree)
and ``test_a_scalar_param_keeps_its_shape`` shows the difference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx as gtx
from conftest import make_params
from optax_state_oracle import compare

CASES = {
    "scale_by_distance_over_gradients": lambda m: m.chain(
        m.scale_by_distance_over_gradients(), m.scale(-1.0)),
    "scale_by_distance_over_gradients/options": lambda m: (
        m.scale_by_distance_over_gradients(reps_rel=1e-3, eps=1e-6, param_dtype=None,
                                           global_scale=-0.5)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  with jax.enable_x64(dtype == "float64"):
    state = compare(CASES[name], make_params(jnp.dtype(dtype)), dtype, reshape_theirs=True)
  dog = state[0] if isinstance(state, tuple) and not hasattr(state, "_fields") else state
  assert type(dog)._fields == ("max_dist", "grad_sum_of_squares", "init_params")


def test_a_scalar_param_keeps_its_shape():
  params = {"s": jnp.asarray(0.5), "v": jnp.asarray([1.0, -2.0])}
  grads = {"s": jnp.asarray(0.25), "v": jnp.asarray([0.5, 0.5])}
  ours, theirs = (m.scale_by_distance_over_gradients() for m in (gtx, optax))
  u_ours, _ = ours.update(grads, ours.init(params), params)
  u_theirs, _ = theirs.update(grads, theirs.init(params), params)
  assert u_theirs["s"].shape == (1,)  # Optax 0.2.8: the scalar param would become (1,)
  assert u_ours["s"].shape == ()
  np.testing.assert_allclose(u_ours["s"], u_theirs["s"][0], rtol=1e-6)


def test_first_steps_follow_the_paper():
  """Ivgi et al. 2023, Algorithm 1 per array: r_0 = reps_rel * (1 + ||x_0||), then
  eta_t = max_{i<=t} ||x_i - x_0|| (at least r_0) / sqrt(sum_{i<=t} ||g_i||**2)."""
  x0 = jnp.asarray([3.0, 4.0])
  tx = gtx.scale_by_distance_over_gradients(reps_rel=0.1, eps=0.0, global_scale=-1.0)
  state = tx.init(x0)
  g1 = jnp.asarray([1.0, 2.0])
  u1, state = tx.update(g1, state, x0)
  r0 = 0.1 * (1 + 5.0)
  np.testing.assert_allclose(u1, -r0 / np.sqrt(5.0) * g1, rtol=1e-6)
  x1 = x0 + u1
  g2 = jnp.asarray([-2.0, 0.5])
  u2, state = tx.update(g2, state, x1)
  r1 = max(r0, float(jnp.linalg.norm(x1 - x0)))
  np.testing.assert_allclose(u2, -r1 / np.sqrt(5.0 + 4.25) * g2, rtol=1e-6)


def test_differentiable_through_the_first_step():
  """On the first step x = x_0, where ||x - x_0|| has no derivative: Optax's gradient of
  the step with respect to the params is NaN; gradtx's distance has gradient 0 there,
  and its gradient matches a central difference (float64)."""

  def value(m, x):
    tx = m.scale_by_distance_over_gradients(reps_rel=0.1, param_dtype=None)
    return jnp.sum(x + tx.update(jnp.sin(x), tx.init(x), x)[0])

  with jax.enable_x64(True):
    x0 = jnp.asarray([3.0, 4.0])
    assert jnp.isnan(jax.grad(lambda x: value(optax, x))(x0)).all()
    ours = jax.grad(lambda x: value(gtx, x))(x0)
    h = 1e-6
    for i in range(2):
      e = jnp.zeros(2).at[i].set(h)
      central = (value(gtx, x0 + e) - value(gtx, x0 - e)) / (2 * h)
      np.testing.assert_allclose(ours[i], central, rtol=1e-7)
