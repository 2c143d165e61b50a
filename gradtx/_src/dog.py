"""Distance over Gradients (DoG, Ivgi, Hinder & Carmon 2023): a step size from the
distance travelled so far, ``max_t ||x_t - x_0||``, over the root of the sum of squared
gradient norms; no learning rate to tune.

:func:`scale_by_distance_over_gradients` is the layer-wise form (LDoG, §4): one step
size per array of the params. Numerics follow Optax 0.2.8.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.tree.casting import compute_dtype


class ScaleByDistanceOverGradientsState(NamedTuple):
  """State of :func:`scale_by_distance_over_gradients` (Optax's fields).

  Attributes:
    max_dist: per param, ``max_t ||x_t - x_0||`` (from ``r_eps``), a scalar.
    grad_sum_of_squares: per param, the sum of the squared norms of its gradients, shape
      ``(1,)`` (in the default float dtype, as Optax).
    init_params: the initial params, in ``param_dtype``.
  """

  max_dist: base.PyTree
  grad_sum_of_squares: base.PyTree
  init_params: base.PyTree


def _l2(x: jax.Array) -> jax.Array:
  """``||x||``, with gradient 0 (not NaN) at ``x = 0``: the value of Optax's norm."""
  squares = jnp.square(x).sum()
  positive = squares > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1.0)), 0.0)


@hyperparameters(reps_rel="(0, inf)", eps="[0, inf)", param_dtype="dtype | None",
                 global_scale="(-inf, inf)")
def scale_by_distance_over_gradients(reps_rel: float = 1e-6, eps: float = 1e-8,
                                     param_dtype: Any = jnp.float32,
                                     global_scale: float = 1.0
                                     ) -> base.GradientTransformation:
  """Layer-wise DoG's step size (Ivgi et al. 2023, Algorithm 1 per array, LDoG).

  Per param array: ``r = max(r, ||x - x_0||)`` (from ``r_eps = reps_rel * (1 + ||x_0||)``),
  ``G += ||g||**2``; emits ``global_scale * r / sqrt(G + eps) * g``. It does not descend
  by itself: give ``global_scale=-1.0`` or follow it with ``scale(-1.0)``.

  Optax 0.2.8 returns an update of shape ``(1,)`` for a scalar param (its ``G`` has
  shape ``(1,)``), which turns the param into a vector; here every update keeps its
  param's shape (``tests/test_dog.py`` shows both), the state is Optax's. The
  distances have gradient 0 at 0, where Optax's have NaN (differentiating through the
  first step, ``x = x_0``, gives NaN in Optax, a finite gradient here).

  Args:
    reps_rel: relative initial distance; the paper recommends 1e-4 with batch
      normalisation, 1e-6 otherwise.
    eps: added to ``G`` under the square root.
    param_dtype: dtype to store the initial params in (None: their own).
    global_scale: multiplies the step, typically 1.0 or -1.0.
  """
  param_dtype = None if param_dtype is None else jnp.dtype(param_dtype)

  def init(p):
    p = jnp.asarray(p)
    wide = p.astype(compute_dtype(p.dtype))
    max_dist = (reps_rel * (1 + _l2(wide))).astype(p.dtype)
    grad_sum_of_squares = jnp.zeros(1)
    init_params = p if param_dtype is None else p.astype(param_dtype)
    return max_dist, grad_sum_of_squares, init_params

  def rule(u, max_dist, grad_sum_of_squares, init_params, p, *, eps, global_scale):
    max_dist = jnp.maximum(max_dist, _l2(p - init_params))
    grad_sum_of_squares = grad_sum_of_squares + jnp.square(u).sum()
    step = global_scale * (max_dist / jnp.sqrt(grad_sum_of_squares + eps))
    return (step * u).reshape(u.shape), max_dist, grad_sum_of_squares, init_params

  return leafwise("scale_by_distance_over_gradients", rule,
                  state=ScaleByDistanceOverGradientsState, init=init, uses_params=True,
                  hyperparams=dict(eps=eps, global_scale=global_scale))
