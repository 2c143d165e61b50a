"""Regression losses: elementwise penalties on ``e = predictions - targets`` and the
cosine similarity/distance between vectors.

Each takes ``targets=None`` to mean zeros (except the cosine pair) and returns one value
per element (per vector for the cosine pair); reduce with ``.mean()`` or ``.sum()``.
"""

from typing import Optional, Union

import jax
import jax.numpy as jnp

from gradtx._src.losses._checks import check_floating, check_same_shape

Axis = Union[int, tuple[int, ...], None]


def _errors(predictions, targets):
  return predictions - targets if targets is not None else predictions


def squared_error(
    predictions: jax.typing.ArrayLike,
    targets: Optional[jax.typing.ArrayLike] = None,
) -> jax.Array:
  """``e**2`` elementwise, ``e = predictions - targets``; the mean squared error is
  ``squared_error(a, b).mean()``.

  ``targets`` must have ``predictions``' shape (no broadcasting); ``None`` means zeros.
  """
  check_floating(predictions)
  if targets is not None:
    check_same_shape(predictions, targets)
  return _errors(predictions, targets)**2


def l2_loss(
    predictions: jax.typing.ArrayLike,
    targets: Optional[jax.typing.ArrayLike] = None,
) -> jax.Array:
  """``0.5 * e**2`` elementwise: half the squared error (the ``1/2`` of Bishop's
  *Pattern Recognition and Machine Learning*, so that the gradient is ``e``)."""
  return 0.5 * squared_error(jnp.asarray(predictions), targets)


def huber_loss(
    predictions: jax.typing.ArrayLike,
    targets: Optional[jax.typing.ArrayLike] = None,
    *,
    delta: jax.typing.ArrayLike = 1.0,
) -> jax.Array:
  """Huber's loss, quadratic near zero and linear beyond ``delta``:

  ``0.5 e**2`` where ``|e| <= delta``, ``0.5 delta**2 + delta (|e| - delta)`` beyond;
  its gradient is the L2 loss's clipped to ``[-delta, delta]``.

  Written as ``q = min(|e|, delta)``, ``0.5 q**2 + delta (|e| - q)`` so that at
  ``|e| = delta`` the gradient is not counted twice.

  Reference: Huber, *Robust Estimation of a Location Parameter*, 1964.
  """
  check_floating(predictions)
  abs_errors = jnp.abs(_errors(predictions, targets))
  quadratic = jnp.minimum(abs_errors, delta)
  linear = abs_errors - quadratic
  return 0.5 * quadratic**2 + delta * linear


def log_cosh(
    predictions: jax.typing.ArrayLike,
    targets: Optional[jax.typing.ArrayLike] = None,
) -> jax.Array:
  """``log(cosh(e))`` elementwise, computed stably as ``logaddexp(e, -e) - log 2``:
  about ``e**2 / 2`` near zero and ``|e| - log 2`` far from it, a twice-differentiable
  Huber loss.

  Reference: Chen et al., *Log Hyperbolic Cosine Loss Improves Variational
  Auto-Encoder*, 2019.
  """
  check_floating(predictions)
  errors = _errors(predictions, targets)
  return jnp.logaddexp(errors, -errors) - jnp.log(2.0).astype(errors.dtype)


def cosine_similarity(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    *,
    epsilon: jax.typing.ArrayLike = 0.0,
    axis: Axis = -1,
    where: Union[jax.typing.ArrayLike, None] = None,
) -> jax.Array:
  """``<a, b> / (|a| |b|)`` along ``axis``, counting only the elements ``where`` is
  true; each squared norm is first raised to at least ``epsilon`` (with the default 0,
  a zero vector gives NaN).

  Each vector is normalised before the inner product (``sum(a/|a| * b/|b|)``).
  """
  check_floating(predictions)
  check_floating(targets)

  def norm(x):
    return jnp.sqrt(jnp.square(x).sum(axis=axis, where=where, keepdims=True).clip(epsilon))

  unit_predictions = predictions / norm(predictions)
  unit_targets = targets / norm(targets)
  return (unit_predictions * unit_targets).sum(axis=axis, where=where)


def cosine_distance(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    *,
    epsilon: jax.typing.ArrayLike = 0.0,
    axis: Axis = -1,
    where: Union[jax.typing.ArrayLike, None] = None,
) -> jax.Array:
  """``1 - cosine_similarity(predictions, targets)``: 0 for vectors pointing the same
  way, 2 for opposite ones."""
  check_floating(predictions)
  check_floating(targets)
  return 1.0 - cosine_similarity(predictions, targets, epsilon=epsilon, axis=axis,
                                 where=where)
