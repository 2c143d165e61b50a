"""Trust ratios and per-block scalings (LARS, LAMB, Fromage) against Optax 0.2.8.

Oracle: Optax's transforms of the same names, step by step over 60 jitted steps on the
mixed-shape tree (scalar, vector, matrix, 3-D), float32 and float64, defaults and a
non-default configuration each; the final states' fields and leaves. Primitives are
followed by ``scale(-LR)`` so that they descend.
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
sched = lambda count: 0.05 * 0.97**count  # noqa: E731
no_bias = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731
no_scalar = lambda p: jax.tree.map(lambda x: x.ndim > 0, p)  # noqa: E731


def descending(make):
  return lambda m: m.chain(make(m), m.scale(-LR))


CASES = {
    "scale_by_trust_ratio": descending(lambda m: m.scale_by_trust_ratio()),
    "scale_by_trust_ratio/clipped": descending(lambda m: m.scale_by_trust_ratio(
        min_norm=0.5, trust_coefficient=0.1, eps=1e-3)),
    "scale_by_param_block_norm": descending(lambda m: m.scale_by_param_block_norm()),
    "scale_by_param_block_norm/min_scale": descending(
        lambda m: m.scale_by_param_block_norm(min_scale=1.5)),
    "scale_by_param_block_rms": descending(lambda m: m.scale_by_param_block_rms()),
    "scale_by_param_block_rms/min_scale": descending(
        lambda m: m.scale_by_param_block_rms(min_scale=0.9)),
    "normalize_by_update_norm": descending(lambda m: m.normalize_by_update_norm()),
    "normalize_by_update_norm/scaled": descending(
        lambda m: m.normalize_by_update_norm(scale_factor=0.5, eps=1e-2)),
    "lamb": lambda m: m.lamb(LR),
    "lamb/decay_mask": lambda m: m.lamb(sched, b1=0.8, b2=0.99, eps=1e-8, eps_root=1e-10,
                                        weight_decay=0.1, mask=no_bias),
    "lars": lambda m: m.lars(LR),
    "lars/nesterov_masks": lambda m: m.lars(
        sched, weight_decay=0.1, weight_decay_mask=no_bias, trust_coefficient=0.02,
        eps=1e-6, trust_ratio_mask=no_scalar, momentum=0.8, nesterov=True),
    "fromage": lambda m: m.fromage(LR),
    "fromage/schedule": lambda m: m.fromage(sched, min_norm=0.5),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  with jax.enable_x64(dtype == "float64"):
    compare(CASES[name], make_params(jnp.dtype(dtype)), dtype)


def test_state_class_is_optax_alias():
  assert gtx.ScaleByTrustRatioState is gtx.EmptyState
  assert gtx.ScaleByTrustRatioState._fields == optax.ScaleByTrustRatioState._fields


@pytest.mark.parametrize("make", [gtx.scale_by_trust_ratio, gtx.scale_by_param_block_norm,
                                  gtx.scale_by_param_block_rms])
def test_needs_params(make):
  tx = make()
  params = make_params()
  with pytest.raises(ValueError, match="needs the params"):
    tx.update(params, tx.init(params))


def test_zero_norms_leave_the_update_and_have_finite_gradients():
  """A zero param block (or update) keeps its update (trust ratio 1); the gradient of
  the step through the clipped norms is finite, not NaN (Optax's safe_norm)."""
  tx = gtx.scale_by_trust_ratio(min_norm=0.0)
  params = {"zero": jnp.zeros(3), "w": jnp.asarray([1.0, -2.0, 2.0])}
  grads = {"zero": jnp.asarray([0.5, 0.0, -1.0]), "w": jnp.asarray([0.0, 3.0, 4.0])}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["zero"], grads["zero"])
  np.testing.assert_allclose(updates["w"], grads["w"] * 3.0 / 5.0, rtol=1e-6)

  def step_norm(p):
    u, _ = tx.update(grads, tx.init(p), p)
    return sum(jnp.sum(x**2) for x in jax.tree.leaves(u))

  for leaf in jax.tree.leaves(jax.grad(step_norm)(params)):
    assert jnp.isfinite(leaf).all()


def test_fromage_keeps_the_weights_norm_from_growing():
  """Bernstein et al. 2020, §5: the update divides by sqrt(1 + lr**2), so that
  ||p - lr*||p||/||g||*g|| / sqrt(1 + lr**2) == ||p|| when g is orthogonal to p."""
  lr = 0.3
  p = jnp.asarray([3.0, 4.0])
  g = jnp.asarray([-4.0, 3.0])  # orthogonal to p
  tx = gtx.fromage(lr)
  updates, _ = tx.update(g, tx.init(p), p)
  np.testing.assert_allclose(jnp.linalg.norm(p + updates), jnp.linalg.norm(p), rtol=1e-6)
