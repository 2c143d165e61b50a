"""Distance over Gradients (DoG, Ivgi, Hinder & Carmon 2023): a step size from the
distance travelled so far, ``max_t ||x_t - x_0||``, over the root of the sum of squared
gradient norms; no learning rate to tune.

:func:`scale_by_distance_over_gradients` is the layer-wise form (LDoG, §4): one step
size per array of the params. ``contrib.dog`` is the global form (Algorithm 1, norms of
the whole params tree) and ``contrib.dowg`` its variant DoWG (Khaled, Mishchenko & Jin
2023, "DoWG Unleashed", Algorithm 1), with squared distances weighting the gradients::

  DoG:   r_t = max(r_{t-1}, ||x_t - x_0||)  (from r_eps);    G_t = G_{t-1} + ||g_t||**2
         x_{t+1} = x_t - r_t / sqrt(G_t + eps) g_t
  DoWG:  d_t = max(d_{t-1}, ||x_t - x_0||**2)  (from init_estim_sq_dist, else eps)
         v_t = v_{t-1} + d_t ||g_t||**2;       x_{t+1} = x_t - d_t / (sqrt(v_t) + eps) g_t

Numerics, defaults and states follow Optax 0.2.8 (the tree-wide scalars in at least
float32, see :mod:`gradtx._src.tree_scalars`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp

from gradtx._src import base, validation
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise, map_leaves
from gradtx._src.scaling import add_decayed_weights, scale_by_learning_rate
from gradtx._src.tree.casting import compute_dtype
from gradtx._src.tree.math import tree_norm
from gradtx._src.tree_scalars import safe_sqrt, scalar_dtype, wide


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
                  hyperparams=dict(eps=eps, global_scale=global_scale), shape_aware=True)


# --- DoG and DoWG over the whole tree (optax.contrib.dog, optax.contrib.dowg) ---

INIT_STEPS = ("distance", "learning_rate", "heuristic")


def _distance(state_params: base.Params, params: base.Params, owner: str) -> jax.Array:
  """``||x_0 - x||**2`` over the tree, in at least float32."""
  difference = map_leaves(owner, lambda x0, x: x0 - x, state_params, params)
  return tree_norm(wide(difference), squared=True)


def _scaled(owner: str, step: jax.Array, updates: base.Updates) -> base.Updates:
  return map_leaves(owner, lambda u, *, step: step * u, updates, step=step)


class DoGState(NamedTuple):
  """State of ``dog``'s step (Optax's fields).

  Attributes:
    is_init_step: whether no update has been made yet.
    init_params: ``x_0``.
    max_dist: ``r_t``, the largest distance from ``x_0`` so far (from ``r_eps``).
    sum_sq_norm_grads: ``G_t``, the sum of squared gradient norms.
  """

  is_init_step: jax.Array
  init_params: base.Params
  max_dist: jax.Array
  sum_sq_norm_grads: jax.Array


def scale_by_dog(init_step: tuple[str, Any], eps: Any = 1e-8) -> base.GradientTransformation:
  """DoG's step, ``r_t / sqrt(G_t + eps) * g`` (not negated; see :func:`dog`).

  ``init_step = (tag, value)``: ``("distance", r)`` starts from ``r_eps = r``;
  ``("heuristic", a)`` from ``r_eps = a (1 + ||x_0||)`` (the paper's, with ``a = 1e-6``,
  or ``1e-4`` with batch normalisation); ``("learning_rate", lr)`` takes a first step of
  ``lr * g`` and starts from ``r_eps = 0``.
  """
  if not (isinstance(init_step, tuple) and len(init_step) == 2):
    raise TypeError(f"dog: init_step must be a pair (tag, value), got {init_step!r}")
  tag, value = init_step
  if tag not in INIT_STEPS:
    raise ValueError(f"dog: init_step's tag must be one of {INIT_STEPS}, got {tag!r}")
  validation.real("dog", "init_step's value", value, "(0, inf)")

  def init(params):
    dtype = scalar_dtype(params)
    if tag == "distance":
      r_eps = value
    elif tag == "heuristic":
      r_eps = value * (1 + jnp.sqrt(tree_norm(wide(params), squared=True)))
    else:
      r_eps = 0.0
    return DoGState(is_init_step=jnp.asarray(True), init_params=jax.tree.map(jnp.array, params),
                    max_dist=jnp.asarray(r_eps, dtype),
                    sum_sq_norm_grads=jnp.asarray(0.0, dtype))

  def update(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format("dog"))
    base.check_same_structure("dog", updates, params)
    dist = safe_sqrt(_distance(state.init_params, params, "dog"))
    max_dist = jnp.maximum(state.max_dist, dist).astype(state.max_dist.dtype)
    sum_sq = (state.sum_sq_norm_grads + tree_norm(wide(updates), squared=True)
              ).astype(state.sum_sq_norm_grads.dtype)
    step = max_dist / jnp.sqrt(sum_sq + eps)
    if tag == "learning_rate":
      step = jnp.where(state.is_init_step, value, step)
    return _scaled("dog", step, updates), DoGState(
        is_init_step=jnp.asarray(False), init_params=state.init_params,
        max_dist=max_dist, sum_sq_norm_grads=sum_sq)

  return base.GradientTransformation(init, update)


LR = dict(native=("learning_rate", "weight_decay"), learning_rate="[0, inf)",
          weight_decay="[0, inf) | None")


@hyperparameters(**LR, eps="[0, inf)")
def dog(learning_rate: base.ScalarOrSchedule = 1.0,
        init_step: tuple[str, Any] = ("heuristic", 1e-6), eps: float = 1e-8,
        weight_decay: Optional[base.ScalarOrSchedule] = None,
        mask: Optional[Union[Any, Callable[[base.Params], Any]]] = None
        ) -> base.GradientTransformation:
  """Distance over Gradients (Ivgi et al. 2023), as Optax's ``optax.contrib.dog``.

  ``x <- x - lr * r_t / sqrt(G_t + eps) * (g + wd x)`` (see the module docstring):
  ``chain(add_decayed_weights(weight_decay, mask) if weight_decay is not None,
  scale_by_dog(init_step, eps), scale_by_learning_rate(learning_rate))``.
  ``learning_rate`` (default 1) is for a schedule on top. The paper recommends averaging
  the iterates for evaluation. ``init`` must see the real params with the
  ``"heuristic"`` initial step.
  """
  return chain(add_decayed_weights(weight_decay, mask) if weight_decay is not None
               else base.identity(),
               scale_by_dog(init_step, eps), scale_by_learning_rate(learning_rate))


class DoWGState(NamedTuple):
  """State of ``dowg``'s step (Optax's fields).

  Attributes:
    init_params: ``x_0``.
    weighted_sq_norm_grads: ``v_t``.
    estim_sq_dist: ``d_t``, the largest squared distance from ``x_0`` so far.
  """

  init_params: base.Params
  weighted_sq_norm_grads: jax.Array
  estim_sq_dist: jax.Array


def scale_by_dowg(init_estim_sq_dist: Any = None, eps: Any = 1e-4
                  ) -> base.GradientTransformation:
  """DoWG's step, ``d_t / (sqrt(v_t) + eps) * g`` (not negated; see :func:`dowg`)."""

  def init(params):
    dtype = scalar_dtype(params)
    first = eps if init_estim_sq_dist is None else init_estim_sq_dist
    return DoWGState(init_params=jax.tree.map(jnp.array, params),
                     weighted_sq_norm_grads=jnp.asarray(0.0, dtype),
                     estim_sq_dist=jnp.asarray(first, dtype))

  def update(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format("dowg"))
    base.check_same_structure("dowg", updates, params)
    dtype = state.estim_sq_dist.dtype
    estim_sq_dist = jnp.maximum(state.estim_sq_dist,
                                _distance(state.init_params, params, "dowg")).astype(dtype)
    weighted = (estim_sq_dist * tree_norm(wide(updates), squared=True)
                + state.weighted_sq_norm_grads).astype(dtype)
    step = estim_sq_dist / (safe_sqrt(weighted) + eps)
    return _scaled("dowg", step, updates), state._replace(
        estim_sq_dist=estim_sq_dist, weighted_sq_norm_grads=weighted)

  return base.GradientTransformation(init, update)


@hyperparameters(**LR, init_estim_sq_dist="(0, inf) | None", eps="(0, inf)")
def dowg(learning_rate: base.ScalarOrSchedule = 1.0,
         init_estim_sq_dist: Optional[float] = None, eps: float = 1e-4,
         weight_decay: Optional[base.ScalarOrSchedule] = None,
         mask: Optional[Union[Any, Callable[[base.Params], Any]]] = None
         ) -> base.GradientTransformation:
  """Distance over Weighted Gradients (Khaled et al. 2023), as Optax's
  ``optax.contrib.dowg``.

  ``x <- x - lr * d_t / (sqrt(v_t) + eps) * (g + wd x)`` (see the module docstring):
  ``chain(add_decayed_weights(weight_decay, mask) if weight_decay is not None,
  scale_by_dowg(init_estim_sq_dist, eps), scale_by_learning_rate(learning_rate))``.
  ``eps`` is also the first estimate of the squared distance when
  ``init_estim_sq_dist`` is None.
  """
  return chain(add_decayed_weights(weight_decay, mask) if weight_decay is not None
               else base.identity(),
               scale_by_dowg(init_estim_sq_dist, eps), scale_by_learning_rate(learning_rate))
