"""gtx.perturbations against Optax 0.2.8's optax.perturbations (the oracle): the same
key gives the same numbers. ``make_perturbed_fun`` on a non-differentiable pytree ->
pytree function of mixed-shape trees (scalar, vector, matrix, 3-D), in float32 and
float64, with both noises, with and without the baseline: its values, first
derivatives (``jax.grad``) and a second derivative, jitted. And a check against
the smoothing it estimates: a Normal-perturbed ReLU has the closed form
``E max(x + s z, 0) = x Phi(x/s) + s phi(x/s)``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.stats import norm

import gradtx as gtx
from conftest import make_params

TOL = {"float32": dict(rtol=1e-6, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-13)}
DTYPES = [jnp.float32, jnp.float64]


def step_fn(tree):
  """Piecewise constant (zero derivative almost everywhere), pytree to pytree."""
  flat = jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])
  return {"argmax": jax.nn.one_hot(jnp.argmax(flat), flat.size, dtype=flat.dtype),
          "steps": jax.tree.map(lambda x: jnp.floor(2 * x), tree)}


def assert_close(ours, theirs, dtype):
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(ours),
                          jax.tree.leaves(theirs)):
    assert x.dtype == y.dtype, jax.tree_util.keystr(path)
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL[np.dtype(dtype).name],
                               err_msg=jax.tree_util.keystr(path))


def _build(module, noise, use_baseline, key, direction, order):
  """``x -> (f(key, x), grad, [second])`` for the module's perturbed ``step_fn``, with
  ``grad`` the gradient of a scalar summary and ``second`` its derivative along
  ``direction`` (with ``order=2``)."""
  fn = module.make_perturbed_fun(step_fn, num_samples=64, sigma=0.3,
                                 noise=getattr(module, noise)(), use_baseline=use_baseline)

  def scalar(x):
    out = fn(key, x)
    return gtx.tree.vdot(out["steps"], direction) + out["argmax"][2]

  def outputs(x):
    found = (fn(key, x), jax.grad(scalar)(x))
    if order == 2:
      found += (jax.jvp(jax.grad(scalar), (x,), (direction,))[1],)
    return found

  return outputs


def _compare(dtype, noise, use_baseline, order):
  with jax.enable_x64(dtype == jnp.float64):
    x = make_params(dtype)
    direction = make_params(dtype, seed=1)
    args = (noise, use_baseline, jax.random.key(3), direction, order)
    both = jax.jit(lambda x: (_build(gtx.perturbations, *args)(x),
                              _build(optax.perturbations, *args)(x)))
    ours, theirs = both(x)
    assert_close(ours, theirs, dtype)


# Each noise in each dtype, each with and without the baseline (compiling the random
# draws of the 64 samples dominates the run time, so not the full product).
@pytest.mark.parametrize("dtype,noise,use_baseline", [
    (jnp.float32, "Gumbel", True), (jnp.float32, "Normal", False),
    (jnp.float64, "Gumbel", False), (jnp.float64, "Normal", True)])
def test_same_key_same_values_and_gradients_as_optax(dtype, noise, use_baseline):
  _compare(dtype, noise, use_baseline, order=1)


def test_same_key_same_second_derivatives_as_optax():
  _compare(jnp.float64, "Gumbel", True, order=2)


def test_defaults_are_optaxs_gumbel_1000_samples_and_sigma_0_1():
  x = make_params(jnp.float32)
  key = jax.random.key(0)
  f = lambda x: jax.tree.map(lambda v: jnp.maximum(v, 0.0), x)  # noqa: E731
  ours, theirs = jax.jit(lambda x: (gtx.perturbations.make_perturbed_fun(f)(key, x),
                                    optax.perturbations.make_perturbed_fun(f)(key, x)))(x)
  assert_close(ours, theirs, jnp.float32)


@pytest.mark.parametrize("noise", ["Gumbel", "Normal"])
def test_noise_classes_sample_and_score_as_optaxs(noise):
  ours, theirs = getattr(gtx.perturbations, noise)(), getattr(optax.perturbations, noise)()
  key = jax.random.key(5)
  for dtype in [jnp.float32, jnp.bfloat16]:
    np.testing.assert_array_equal(ours.sample(key, (3, 4), dtype),
                                  theirs.sample(key, (3, 4), dtype))
  np.testing.assert_array_equal(ours.sample(key), theirs.sample(key))
  z = jnp.linspace(-3.0, 3.0, 13)
  np.testing.assert_array_equal(ours.log_prob(z), theirs.log_prob(z))


def test_normal_smoothing_of_relu_matches_its_closed_form():
  """``f_s(x) = E max(x + s z, 0)`` for ``z ~ N(0, 1)``: value ``x Phi(x/s) + s
  phi(x/s)`` and derivative ``Phi(x/s)``; Monte Carlo with 20000 samples."""
  with jax.enable_x64(True):
    sigma = 0.5
    x = jnp.array([-0.6, -0.1, 0.0, 0.3, 1.0])
    fn = gtx.perturbations.make_perturbed_fun(lambda v: jnp.maximum(v, 0.0), 20000, sigma,
                                              gtx.perturbations.Normal())
    key = jax.random.key(0)
    value = jax.jit(fn)(key, x)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(fn(key, x))))(x)
    t = x / sigma
    np.testing.assert_allclose(value, x * norm.cdf(t) + sigma * norm.pdf(t), atol=0.01)
    np.testing.assert_allclose(grad, norm.cdf(t), atol=0.05)


def test_noises_equal_optaxs_of_the_same_name():
  """Parameterless, so a gradtx Gumbel is Optax's Gumbel (make_perturbed_fun's default
  compares equal to Optax's)."""
  assert gtx.perturbations.Gumbel() == optax.perturbations.Gumbel()
  assert optax.perturbations.Normal() == gtx.perturbations.Normal()
  assert gtx.perturbations.Gumbel() != gtx.perturbations.Normal()
  assert len({gtx.perturbations.Gumbel(), gtx.perturbations.Gumbel()}) == 1


def test_names_are_optaxs():
  assert sorted(gtx.perturbations.__all__) == sorted(
      n for n in dir(optax.perturbations) if not n.startswith("_"))
