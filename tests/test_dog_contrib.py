"""DoG and DoWG with one step size for the whole tree (``contrib.dog``, ``contrib.dowg``)
against Optax 0.2.8, and their first steps against the papers' algorithms.

Oracles: Optax, step by step over 60 jitted steps on the mixed-shape tree, float32 and
float64, defaults and non-default configurations (``tests/contrib_pairs.py``);
transcriptions of Ivgi et al. 2023, Algorithm 1, and Khaled et al. 2023, Algorithm 1,
for two steps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
from contrib_pairs import DTYPES, assert_same_state_class, compare

not_scalar = lambda tree: jax.tree_util.tree_map_with_path(  # noqa: E731
    lambda path, _: "scalar" not in jax.tree_util.keystr(path), tree)

CASES = {
    "dog": (lambda m: m.contrib.dog(), "DoGState", 1e-6),
    "dog/learning_rate": (lambda m: m.contrib.dog(
        lambda count: 1.0 / (1.0 + 0.01 * count), init_step=("learning_rate", 1e-2),
        weight_decay=0.01, mask=not_scalar), "DoGState", 1e-1),
    "dog/distance": (lambda m: m.contrib.dog(init_step=("distance", 1e-2), eps=1e-6),
                     "DoGState", 1e-1),
    "dowg": (lambda m: m.contrib.dowg(), "DoWGState", 1e-1),
    "dowg/options": (lambda m: m.contrib.dowg(0.5, init_estim_sq_dist=1e-3, eps=1e-6,
                                              weight_decay=0.01), "DoWGState", 1e-2),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_matches_optax(name, dtype):
  make, state_class, min_move = CASES[name]
  ours, theirs, moved = compare(make, dtype)
  # DoG's default r_eps = 1e-6 (1 + ||x_0||) grows geometrically; 60 steps are its start.
  assert moved > min_move
  assert_same_state_class(ours, theirs, state_class)


PARAMS = {"a": jnp.asarray([3.0, 4.0]), "b": jnp.asarray(12.0)}
GRADS = [{"a": jnp.asarray([1.0, 2.0]), "b": jnp.asarray(-2.0)},
         {"a": jnp.asarray([-2.0, 0.5]), "b": jnp.asarray(1.0)}]


def _norm(tree):
  return float(np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(tree))))


def _two_steps(tx):
  params, state, updates = PARAMS, tx.init(PARAMS), []
  for g in GRADS:
    u, state = tx.update(g, state, params)
    updates.append(u)
    params = gtx.apply_updates(params, u)
  return updates


def test_dog_first_steps_follow_the_paper():
  """r_0 = 0.1 (1 + ||x_0||) = 1.4; eta_t = max(r_0, ||x_t - x_0||) / sqrt(sum ||g||**2)."""
  u1, u2 = _two_steps(gtx.contrib.dog(init_step=("heuristic", 0.1), eps=0.0))
  r0 = 0.1 * (1 + 13.0)
  g1, g2 = (_norm(g) ** 2 for g in GRADS)
  for got, g in zip(jax.tree.leaves(u1), jax.tree.leaves(GRADS[0])):
    np.testing.assert_allclose(got, -r0 / np.sqrt(g1) * g, rtol=1e-6)
  r1 = max(r0, _norm(u1))
  for got, g in zip(jax.tree.leaves(u2), jax.tree.leaves(GRADS[1])):
    np.testing.assert_allclose(got, -r1 / np.sqrt(g1 + g2) * g, rtol=1e-6)


def test_dog_learning_rate_tag_takes_that_first_step():
  u1, _ = _two_steps(gtx.contrib.dog(init_step=("learning_rate", 0.25)))
  for got, g in zip(jax.tree.leaves(u1), jax.tree.leaves(GRADS[0])):
    np.testing.assert_allclose(got, -0.25 * g, rtol=1e-6)
    assert got.shape == g.shape


def test_dowg_first_steps_follow_the_paper():
  """d_t = max(d_{t-1}, ||x_t - x_0||**2) (d_0 = 0.5), v_t = v_{t-1} + d_t ||g_t||**2,
  eta_t = d_t / sqrt(v_t)."""
  u1, u2 = _two_steps(gtx.contrib.dowg(init_estim_sq_dist=0.5, eps=1e-30))
  g1, g2 = (_norm(g) ** 2 for g in GRADS)
  for got, g in zip(jax.tree.leaves(u1), jax.tree.leaves(GRADS[0])):
    np.testing.assert_allclose(got, -0.5 / np.sqrt(0.5 * g1) * g, rtol=1e-6)
  d1 = max(0.5, _norm(u1) ** 2)
  for got, g in zip(jax.tree.leaves(u2), jax.tree.leaves(GRADS[1])):
    np.testing.assert_allclose(got, -d1 / np.sqrt(0.5 * g1 + d1 * g2) * g, rtol=1e-6)


@pytest.mark.parametrize("init_step", [("diameter", 1.0), ("distance", 0.0), "heuristic"])
def test_bad_init_step_is_refused(init_step):
  with pytest.raises((TypeError, ValueError), match="^dog: init_step"):
    gtx.contrib.dog(init_step=init_step)


def test_state_fields_are_optax():
  assert gtx.contrib.DoGState._fields == ("is_init_step", "init_params", "max_dist",
                                          "sum_sq_norm_grads")
  assert gtx.contrib.DoWGState._fields == ("init_params", "weighted_sq_norm_grads",
                                           "estim_sq_dist")
