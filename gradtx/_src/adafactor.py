"""Adafactor (Shazeer & Stern 2018): RMSProp-like step sizes from a factored second
moment, plus the update clipping, relative step size and optional momentum of the
paper's Algorithm 4, each a visible member of the chain.

For an array with two dimensions of at least ``min_dim_size_to_factor``, the second
moment is kept as a row vector and a column vector (over its two largest dimensions),
memory ``n + m`` instead of ``n * m``; other arrays keep the full second moment.
Numerics follow Optax 0.2.8's ``scale_by_factored_rms`` and ``adafactor``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._src import base
from gradtx._src.adaptive_clipping import clip_by_block_rms
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import add_decayed_weights, scale, scale_by_learning_rate
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.traces import ema
from gradtx._src.tree.math import abs_sq
from gradtx._src.trust_ratio import scale_by_param_block_rms


class FactoredState(NamedTuple):
  """State of :func:`scale_by_factored_rms` (Optax's fields and placeholders).

  Attributes:
    count: the number of earlier updates.
    v_row: per factored param, the second moment averaged over its largest dimension
      (the param's shape without that axis); ``zeros((1,))`` for the others.
    v_col: per factored param, averaged over its second largest dimension;
      ``zeros((1,))`` for the others.
    v: per unfactored param, the full second moment; ``zeros((1,))`` for factored ones.
  """

  count: jax.Array
  v_row: base.PyTree
  v_col: base.PyTree
  v: base.PyTree


def decay_rate_pow(i: Any, exponent: Any = 0.8) -> jax.Array:
  """Adafactor's second-moment decay at step ``i`` (from 0): ``1 - (i + 1)**-exponent``
  (Shazeer & Stern 2018, §7.2), in float32 as Optax's."""
  t = jnp.array(i + 1, jnp.float32)
  return 1.0 - t**(-exponent)


def factored_dims(shape: tuple[int, ...], factored: bool,
                  min_dim_size_to_factor: int) -> tuple[int, int] | None:
  """The (second largest, largest) axes to factor over, or None: not factored, fewer
  than two axes, or the second largest smaller than ``min_dim_size_to_factor``. Ties
  are broken as ``np.argsort`` breaks them (as Optax)."""
  if not factored or len(shape) < 2:
    return None
  order = np.argsort(shape)
  if shape[order[-2]] < min_dim_size_to_factor:
    return None
  return int(order[-2]), int(order[-1])


@hyperparameters(factored="bool", decay_rate="[0, inf)", step_offset="int >= 0",
                 min_dim_size_to_factor="int >= 0", epsilon="[0, inf)",
                 decay_rate_fn="callable")
def scale_by_factored_rms(factored: bool = True, decay_rate: float = 0.8,
                          step_offset: int = 0, min_dim_size_to_factor: int = 128,
                          epsilon: float = 1e-30,
                          decay_rate_fn: Callable[[Any, Any], Any] = decay_rate_pow
                          ) -> base.GradientTransformation:
  """Adafactor's normaliser (Shazeer & Stern 2018, Algorithms 4-5): ``g / sqrt(v_hat)``.

  ``beta = decay_rate_fn(t - step_offset, decay_rate)`` (``t`` from 0; by default
  ``1 - (t + 1)**-decay_rate``) and ``s = |g|**2 + epsilon``. A factored array (axes
  ``r``, the largest, and ``c``, the second largest) keeps
  ``v_row = beta*v_row + (1-beta)*mean_r(s)`` and ``v_col = beta*v_col +
  (1-beta)*mean_c(s)`` and emits ``g / sqrt(v_row / mean(v_row)) / sqrt(v_col)``
  (broadcast along ``r`` and ``c``); any other array keeps ``v = beta*v + (1-beta)*s``
  and emits ``g / sqrt(v)``.

  Args:
    factored: factor arrays with two large enough dimensions.
    decay_rate: the exponent of the default decay schedule (the paper's 0.8).
    step_offset: subtracted from the step (to restart the schedule for fine-tuning).
    min_dim_size_to_factor: factor only if the second largest dimension is at least
      this.
    epsilon: added to the squared gradient (the paper's ``eps_1 = 1e-30``).
    decay_rate_fn: ``decay_rate_fn(step, decay_rate) -> beta``.
  """

  def init(p):
    dims = factored_dims(jnp.shape(p), factored, min_dim_size_to_factor)
    placeholder = jnp.zeros((1,), p.dtype)
    if dims is None:
      return placeholder, placeholder, tree_zeros_like(p)
    d1, d0 = dims
    return (tree_zeros_like(jnp.sum(p, axis=d0)), tree_zeros_like(jnp.sum(p, axis=d1)),
            placeholder)

  def rule(u, v_row, v_col, v, *, beta, one_minus_beta, epsilon):
    grad_sqr = abs_sq(u) + epsilon
    dims = factored_dims(u.shape, factored, min_dim_size_to_factor)
    if dims is None:
      v = beta * v + one_minus_beta * grad_sqr
      return u * v**-0.5, v_row, v_col, v
    d1, d0 = dims
    v_row = beta * v_row + one_minus_beta * jnp.mean(grad_sqr, axis=d0)
    v_col = beta * v_col + one_minus_beta * jnp.mean(grad_sqr, axis=d1)
    row_mean = jnp.mean(v_row, axis=d1 - 1 if d1 > d0 else d1, keepdims=True)
    row_factor = (v_row / row_mean)**-0.5
    col_factor = v_col**-0.5
    update = u * jnp.expand_dims(row_factor, axis=d0) * jnp.expand_dims(col_factor, axis=d1)
    return update, v_row, v_col, v

  def scalars(count):
    # beta and 1 - beta both in decay_rate_fn's dtype (float32 by default), as Optax.
    beta = jnp.asarray(decay_rate_fn(count - step_offset, decay_rate))
    return dict(beta=beta, one_minus_beta=1.0 - beta)

  return leafwise("scale_by_factored_rms", rule, state=FactoredState, init=init,
                  hyperparams=dict(epsilon=epsilon), scalars=scalars, shape_aware=True)


@hyperparameters(native=("learning_rate", "weight_decay_rate"),
                 learning_rate="[0, inf) | None", min_dim_size_to_factor="int >= 0",
                 decay_rate="[0, inf)", decay_offset="int >= 0",
                 multiply_by_parameter_scale="bool", clipping_threshold="(0, inf] | None",
                 momentum="[0, 1) | None", dtype_momentum="dtype | None",
                 weight_decay_rate="[0, inf) | None", eps="[0, inf)", factored="bool")
def adafactor(learning_rate: base.ScalarOrSchedule | None = None,
              min_dim_size_to_factor: int = 128, decay_rate: float = 0.8,
              decay_offset: int = 0, multiply_by_parameter_scale: bool = True,
              clipping_threshold: float | None = 1.0, momentum: float | None = None,
              dtype_momentum: Any = jnp.float32,
              weight_decay_rate: base.ScalarOrSchedule | None = None, eps: float = 1e-30,
              factored: bool = True, weight_decay_mask: Any = None
              ) -> base.GradientTransformation:
  """Adafactor (Shazeer & Stern 2018, Algorithm 4), as Optax's chain.

  ``d = scale_by_factored_rms(g)``; ``d /= max(1, rms(d) / clipping_threshold)`` per
  block (update clipping, §6); ``d *= lr``; ``d *= max(rms(p), 1e-3)`` per block with
  ``multiply_by_parameter_scale`` (relative step size, §8); with ``momentum``,
  ``m = momentum*m + (1-momentum)*d`` (kept in ``dtype_momentum``) and ``d = m``;
  ``d += weight_decay_rate * p`` (where ``weight_decay_mask``); ``p -= d``. Each step is
  left out when its argument is None (or False). Defaults are Optax's: no learning rate
  (the relative step size alone), ``clipping_threshold=1`` and ``decay_rate=0.8`` as
  the paper.
  """
  members = [scale_by_factored_rms(factored, decay_rate, decay_offset,
                                   min_dim_size_to_factor, eps)]
  if clipping_threshold is not None:
    members.append(clip_by_block_rms(clipping_threshold))
  if learning_rate is not None:
    members.append(scale_by_learning_rate(learning_rate, flip_sign=False))
  if multiply_by_parameter_scale:
    members.append(scale_by_param_block_rms())
  if momentum is not None:
    members.append(ema(momentum, debias=False, accumulator_dtype=dtype_momentum))
  if weight_decay_rate is not None:
    members.append(add_decayed_weights(weight_decay_rate, mask=weight_decay_mask))
  members.append(scale(-1.0))
  return chain(*members)
