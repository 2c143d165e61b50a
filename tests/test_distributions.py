"""multi_normal: the diagonal Gaussian from a mean and a log standard deviation.

Oracle: Optax 0.2.8's ``multi_normal`` (same draws from the same key, same densities), and
the moments of many draws.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradtx as gtx


def test_multi_normal_matches_optax():
  loc = jnp.asarray([[0.5, -1.0, 2.0]])
  log_scale = jnp.asarray([0.1, -0.3, 0.0])
  ours, theirs = gtx.multi_normal(loc, log_scale), optax.multi_normal(loc, log_scale)
  key = jax.random.PRNGKey(7)
  np.testing.assert_array_equal(ours.sample((4,), key), theirs.sample((4,), key))
  x = ours.sample((5, 2), key)
  assert x.shape == (5, 2, 1, 3)
  np.testing.assert_allclose(ours.log_prob(x), theirs.log_prob(x), rtol=1e-6)
  assert ours.log_prob(x).shape == (5, 2)
  for a, b in zip(ours.params, theirs.params):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(ours.log_scale, log_scale)


def test_multi_normal_draws_have_its_moments():
  dist = gtx.multi_normal(jnp.asarray([1.0, -2.0]), jnp.log(jnp.asarray([0.5, 2.0])))
  draws = np.asarray(dist.sample((20000,), jax.random.PRNGKey(0)))
  np.testing.assert_allclose(draws.mean(0), [1.0, -2.0], atol=0.05)
  np.testing.assert_allclose(draws.std(0), [0.5, 2.0], rtol=0.03)
