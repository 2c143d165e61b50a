"""Numerically safe building blocks, under Optax's top-level names.

* ``safe_norm(x, min_norm)``: ``max(||x||, min_norm)`` whose gradient is 0, not NaN, where
  the norm is below ``min_norm`` (``jnp.maximum`` would differentiate the norm at 0).
* ``safe_root_mean_squares(x, min_rms)``: the same for ``sqrt(mean(|x|**2))``.
* ``safe_increment(count)``: ``count + 1`` that stays at the dtype's maximum instead of
  wrapping around (integer or floating counts).
* ``scale_gradient(inputs, scale)``: the identity whose gradient is multiplied by
  ``scale`` (0 stops it; 1 is the plain identity).

Numerics are Optax 0.2.8's (``optax._src.numerics``, ``optax._src.utils``).
"""

from __future__ import annotations

from typing import Any, Optional, Union

import jax
import jax.numpy as jnp

from gradtx._src.tree import math as tree_math


def safe_norm(x: jax.typing.ArrayLike, min_norm: jax.typing.ArrayLike,
              ord: Optional[Union[int, float, str]] = None,  # noqa: A002 (NumPy's name)
              axis: Union[None, tuple[int, ...], int] = None,
              keepdims: bool = False) -> jax.Array:
  """``max(jnp.linalg.norm(x, ord, axis), min_norm)`` with a zero gradient (not NaN)
  where the norm is at most ``min_norm``.

  Where the norm is that small, the norm is taken of ones instead of ``x`` and then
  discarded, so the differentiated branch never sees a zero vector. ``ord``, ``axis``
  and ``keepdims`` are :func:`jnp.linalg.norm`'s.
  """
  norm = jnp.linalg.norm(x, ord=ord, axis=axis, keepdims=True)
  small = norm <= min_norm
  x = jnp.where(small, jnp.ones_like(x), x)
  if not keepdims:
    norm = jnp.squeeze(norm, axis=axis)
  return jnp.where(norm <= min_norm, min_norm,
                   jnp.linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims))


def safe_root_mean_squares(x: jax.typing.ArrayLike,
                           min_rms: jax.typing.ArrayLike) -> jax.Array:
  """``max(sqrt(mean(|x|**2)), min_rms)`` with a zero gradient (not NaN) where the root
  mean square is at most ``min_rms``."""
  x = jnp.asarray(x)
  rms = jnp.sqrt(jnp.mean(tree_math.abs_sq(x)))
  small = rms <= min_rms
  x = jnp.where(small, jnp.ones_like(x), x)
  return jnp.where(small, min_rms, jnp.sqrt(jnp.mean(tree_math.abs_sq(x))))


def safe_increment(count: jax.typing.ArrayLike) -> jax.typing.ArrayLike:
  """``count + 1``, or the largest value of ``count``'s dtype once it is reached (an
  int32 counter saturates at 2**31 - 1 instead of wrapping to -2**31).

  Raises:
    ValueError: ``count`` is neither an integer nor a floating-point number.
  """
  dtype = jnp.asarray(count).dtype
  if jnp.issubdtype(dtype, jnp.integer):
    return tree_math.safe_increment(count)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"safe_increment: cannot increment a count of dtype {dtype}; it must "
                     "be an integer or floating-point number")
  top = jnp.array(jnp.finfo(dtype).max, dtype)
  return jnp.where(count < top, count + jnp.array(1, dtype), top)


safe_int32_increment = safe_increment  # Optax's older name


@jax.custom_vjp
def _identity_scaling_gradient(inputs: Any, scale: jax.typing.ArrayLike) -> Any:
  del scale
  return inputs


def _forward(inputs, scale):
  return inputs, scale


def _backward(scale, cotangents):
  return jax.tree.map(lambda g: g * scale, cotangents), None


_identity_scaling_gradient.defvjp(_forward, _backward)


def scale_gradient(inputs: Any, scale: jax.typing.ArrayLike) -> Any:
  """``inputs`` unchanged, but the gradient flowing back through them is multiplied by
  ``scale`` (a tree of arrays; ``scale`` a number or a scalar array).

  ``scale == 1`` returns ``inputs`` as they are and ``scale == 0`` stops the gradient
  (:func:`jax.lax.stop_gradient`), so ``scale`` must then be concrete.
  """
  if scale == 1.0:
    return inputs
  if scale == 0.0:
    return jax.lax.stop_gradient(inputs)
  return _identity_scaling_gradient(inputs, scale)
