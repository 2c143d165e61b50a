"""Linear algebra for optimizers, under Optax's top-level names.

* ``power_iteration``: the dominant eigenvalue and its eigenvector, of a matrix or of a
  matrix-vector product on pytrees.
* ``matrix_inverse_pth_root``: ``A^(-1/p)`` of a symmetric positive semi-definite matrix
  by coupled Newton iterations (Shampoo's preconditioner roots).
* ``nnls``: non-negative least squares, ``min ||A x - b|| s.t. x >= 0``, by Polyak's fast
  projected gradient.

Numerics are Optax 0.2.8's (``optax._src.linear_algebra``) except where a docstring says
otherwise.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import jax
from jax import lax
import jax.numpy as jnp

from gradtx._src.tree import math as tree_math

PyTree = Any


def _normalized(tree: PyTree) -> PyTree:
  return tree_math.tree_scale(1.0 / tree_math.tree_norm(tree), tree)


def power_iteration(matrix: Union[jax.typing.ArrayLike, Callable[[PyTree], PyTree]], *,
                    v0: Optional[PyTree] = None, num_iters: jax.typing.ArrayLike = 100,
                    error_tolerance: jax.typing.ArrayLike = 1e-6,
                    precision: lax.Precision = lax.Precision.HIGHEST,
                    key: Optional[jax.Array] = None) -> tuple[jax.Array, PyTree]:
  """The dominant eigenvalue of ``matrix`` and its unit eigenvector, ``(lambda, v)``.

  ``v <- A v / ||A v||`` from ``v0``, and ``lambda = <v, A v>``, until the residual
  ``||A v - lambda v|| / |lambda|`` is below ``error_tolerance`` or after ``num_iters``
  products.

  Args:
    matrix: a square matrix, or a function computing ``A v`` for a pytree ``v``.
    v0: the first vector (required when ``matrix`` is a function, with the structure
      of its input); by default uniform in ``[-1, 1]`` from ``key``.
    num_iters: the most matrix-vector products.
    error_tolerance: the relative residual at which to stop.
    precision: the matmul precision for a matrix.
    key: the random key for the default ``v0`` (``jax.random.PRNGKey(0)`` if None).
  """
  if callable(matrix):
    product = matrix
    if v0 is None:
      raise ValueError("power_iteration: v0 must be given when matrix is a function "
                       "(its input's structure is unknown)")
  else:
    product = lambda v: jnp.matmul(matrix, v, precision=precision)  # noqa: E731
    if v0 is None:
      v0 = jax.random.uniform(jax.random.PRNGKey(0) if key is None else key,
                              shape=matrix.shape[-1:], dtype=matrix.dtype,
                              minval=-1.0, maxval=1.0)
  v0 = _normalized(v0)

  def unconverged(carry):
    v, av, eigenvalue, i = carry
    residual = tree_math.tree_norm(tree_math.tree_sub(av, tree_math.tree_scale(eigenvalue,
                                                                               v)))
    return ~(jnp.abs(residual / eigenvalue) < error_tolerance) & (i < num_iters)

  def step(carry):
    _, av, _, i = carry
    v = _normalized(av)
    av = product(v)
    return v, av, tree_math.tree_vdot(v, av), i + 1

  av0 = product(v0)
  # The first eigenvalue is 0, so the residual test fails and one product always runs.
  first = (v0, av0, jnp.zeros_like(tree_math.tree_vdot(v0, av0)), jnp.asarray(0))
  _, av, eigenvalue, _ = lax.while_loop(unconverged, step, first)
  return eigenvalue, _normalized(av)


def _matrix_power(m: jax.Array, p: int, precision: lax.Precision) -> jax.Array:
  """``m**p`` for an integer ``p >= 1`` by repeated squaring (for ``p`` a power of two,
  the products Optax's unrolled ``1, 2, 4, 8`` powers take)."""
  result, square = None, m
  while True:
    if p & 1:
      result = square if result is None else jnp.matmul(result, square, precision=precision)
    p >>= 1
    if not p:
      return result
    square = jnp.matmul(square, square, precision=precision)


def _optax_matrix_power(m: jax.Array, p: jax.Array, precision: lax.Precision) -> jax.Array:
  """``m**(2**round(log2 p))`` for a traced ``p``: exact for ``p`` in 1, 2, 4, 8 only."""
  return lax.switch(jnp.asarray(jnp.round(jnp.log2(p)), jnp.int32),
                    [lambda x, k=k: _matrix_power(x, k, precision) for k in (1, 2, 4, 8)], m)


def _positive_integer(p: Any) -> Optional[int]:
  """``p`` as a Python int if it is a concrete positive integer, else None."""
  try:
    value = float(p)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return None
  return int(value) if value.is_integer() and value >= 1 else None


def matrix_inverse_pth_root(matrix: jax.typing.ArrayLike, p: jax.typing.ArrayLike,
                            num_iters: jax.typing.ArrayLike = 100,
                            ridge_epsilon: jax.typing.ArrayLike = 1e-6,
                            error_tolerance: jax.typing.ArrayLike = 1e-6,
                            precision: lax.Precision = lax.Precision.HIGHEST):
  """``(A + eps I)^(-1/p)`` for a symmetric PSD ``A`` and a positive integer ``p``, and
  the final error ``max|M - I|``.

  Coupled Newton iterations (Higham, *Functions of Matrices*, 2008, eq. 7.18), in float32
  arithmetic for the iteration's constants as in Optax: with ``alpha = -1/p``,
  ``z = (1 + p) / (2 ||A_eps||_F)``, ``M_0 = z A_eps``, ``H_0 = z^(1/p) I``::

    M_i = (1 - alpha) I + alpha M;   M <- M_i^p M;   H <- H M_i

  until ``max|M - I| <= error_tolerance``, ``num_iters`` steps, or an error more than
  1.2 times the last (the previous ``H`` is then returned). The ridge is
  ``eps = ridge_epsilon * max(lambda_max(A), 1e-16)``, ``lambda_max`` by
  :func:`power_iteration`.

  Unlike Optax 0.2.8, which raises ``M_i`` to the power ``2**round(log2 p)`` (so ``p=3``
  computes a wrong root, 13% off on a 5x5 example), a concrete ``p`` is any positive
  integer; a traced ``p`` takes Optax's powers, exact for ``p`` in 1, 2, 4, 8.
  """
  matrix = jnp.asarray(matrix)
  size = matrix.shape[0]
  alpha = jnp.asarray(-1.0 / p, jnp.float32)
  identity = jnp.eye(size, dtype=jnp.float32)
  max_eigenvalue, _ = power_iteration(matrix, num_iters=100, error_tolerance=1e-6,
                                      precision=precision)
  ridge_epsilon = ridge_epsilon * jnp.maximum(max_eigenvalue, 1e-16)
  if size == 1:
    return (matrix + ridge_epsilon)**alpha, 0

  static_p = _positive_integer(p)
  if static_p is not None:
    power = lambda m: _matrix_power(m, static_p, precision)  # noqa: E731
  else:
    power = lambda m: _optax_matrix_power(m, p, precision)  # noqa: E731

  def iterating(carry):
    i, _, _, _, error, improving = carry
    return (i < num_iters) & (error > error_tolerance) & improving

  def step(carry):
    i, m, h, _, error, _ = carry
    m_i = (1 - alpha) * identity + alpha * m
    new_m = jnp.matmul(power(m_i), m, precision=precision)
    new_error = jnp.max(jnp.abs(new_m - identity))
    # The error may rise for an iteration before it falls; more than 1.2x stops.
    return (i + 1, new_m, jnp.matmul(h, m_i, precision=precision), h, new_error,
            new_error < error * 1.2)

  damped = matrix + ridge_epsilon * identity
  z = (1 + p) / (2 * jnp.linalg.norm(damped))
  m0 = damped * z
  h0 = identity * jnp.power(z, 1.0 / p)
  _, m, h, previous_h, _, improving = lax.while_loop(
      iterating, step, (0, m0, h0, h0, jnp.max(jnp.abs(m0 - identity)), True))
  error = jnp.max(jnp.abs(m - identity))
  kept = jnp.asarray(improving, previous_h.dtype)
  return jnp.asarray(kept * h + (1 - kept) * previous_h, matrix.dtype), error


def _spectral_radius_bound(matrix: jax.Array) -> jax.Array:
  """``min(||Q||_F, ||Q||_1)``, an upper bound on the spectral radius."""
  frobenius = jnp.linalg.matrix_norm(matrix, ord="fro")
  one_norm = jnp.linalg.matrix_norm(matrix, ord=1) if matrix.size != 0 else 0
  return jnp.minimum(frobenius, one_norm)


def nnls(A: jax.Array, b: jax.Array, iters: int, unroll: Union[int, bool] = 1,  # noqa: N803
         L: Union[jax.typing.ArrayLike, None] = None) -> jax.Array:  # noqa: N803
  r"""Non-negative least squares: ``argmin ||A x - b||_2`` subject to ``x >= 0``.

  Polyak's fast projected gradient (R. A. Polyak, "Projected gradient method for
  non-negative least square", Contemporary Mathematics 636, 2015), ``iters`` steps on
  ``Q = A^T A``, ``q = A^T b``, from ``x = p = 0``, ``c = 0``::

    c' = (1 + sqrt(1 + 4 c^2)) / 2;   s = (c - 1) / c'
    x' = max(p - (Q p - q) / L, 0);   p' = x' + s (x' - x)

  Args:
    A: the ``(M, N)`` matrix.
    b: an ``(M,)`` vector or an ``(M, K)`` matrix of right-hand sides.
    iters: the number of steps.
    unroll: :func:`jax.lax.scan`'s ``unroll``.
    L: an upper bound on the spectral radius of ``Q``; by default
      ``min(||Q||_F, ||Q||_1)`` (1 where that is 0).

  Returns:
    ``x``, of shape ``(N,)`` or ``(N, K)``.
  """
  if A.ndim != 2 or b.ndim not in (1, 2) or b.shape[0] != A.shape[0]:
    raise ValueError(f"nnls: A must be (M, N) and b (M,) or (M, K); got A {A.shape}, "
                     f"b {b.shape}")
  Q = A.mT @ A  # noqa: N806
  q = A.mT @ b
  if L is None:
    L = _spectral_radius_bound(Q)  # noqa: N806
  L = jnp.where(L == 0, 1, L)  # noqa: N806

  def step(carry, _):
    x, p, c = carry
    c_next = (1 + jnp.sqrt(1 + 4 * c**2)) / 2
    s = (c - 1) / c_next
    x_next = (p - (Q @ p - q) / L).clip(0)
    return (x_next, x_next + s * (x_next - x), c_next), None

  x = jnp.zeros_like(b, shape=A.shape[-1:] + b.shape[1:])
  (x, _, _), _ = lax.scan(step, (x, x, 0.), length=iters, unroll=unroll)
  return x
