"""Softmax cross-entropies (one-hot or integer labels, the ``0 log 0 = 0`` variant,
PolyLoss) and label smoothing.

Throughout, ``log p = log_softmax(logits)`` along the class axis, and ``where`` masks
classes out of the softmax and out of the sum.
"""

import operator
from typing import Union

import jax
import jax.numpy as jnp

from gradtx._src.losses._checks import check_floating, check_integer


def _normalize_axis(axis, ndim: int) -> int:
  """``axis`` as an index in ``[0, ndim)``, as NumPy's ``normalize_axis_index``."""
  axis = operator.index(axis)
  if not -ndim <= axis < ndim:
    raise ValueError(f"axis {axis} is out of bounds for array of dimension {ndim}")
  return axis % ndim


def _where_like_logits(where, logits, axis):
  """A per-example mask (the logits' shape without the class axis) broadcast over it."""
  if where is not None and where.ndim != logits.ndim:
    where = jnp.expand_dims(where, axis)
  return where


def softmax_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    axis: Union[int, tuple[int, ...], None] = -1,
    where: Union[jax.typing.ArrayLike, None] = None,
) -> jax.Array:
  r"""``-sum_j labels_j log softmax(logits)_j`` along ``axis``, per example.

  ``labels`` are distributions over the classes (one-hot, or smoothed). ``where`` (of
  the logits' shape, or per example) leaves classes out of the softmax and the sum.
  A ``-inf`` logit with a zero label gives ``0 * -inf = NaN``, as in Optax; see
  :func:`safe_softmax_cross_entropy` for the ``0 log 0 = 0`` convention.

  Reference: the categorical cross-entropy of multinomial logistic regression.
  """
  check_floating(logits)
  where = _where_like_logits(where, logits, axis)
  log_probs = jax.nn.log_softmax(logits, axis, where)
  return -(labels * log_probs).sum(axis, where=where)


def _flatten_class_axes(x, axes: tuple[int, ...]):
  """``x`` with the class ``axes`` moved last (in order) and merged into one."""
  batch_axes = tuple(a for a in range(x.ndim) if a not in axes)
  x = x.transpose(batch_axes + axes)
  return x.reshape(x.shape[:len(batch_axes)] + (-1,))


def softmax_cross_entropy_with_integer_labels(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    axis: Union[int, tuple[int, ...]] = -1,
    where: Union[jax.typing.ArrayLike, None] = None,
) -> jax.Array:
  r"""``logsumexp(logits) - logits[label]`` along ``axis``, per example: the softmax
  cross-entropy with the label given as a class index.

  With a tuple of axes the classes are those axes' elements in C order, and a label is
  a flat index into them (``jnp.ravel_multi_index``). ``where`` (of the logits' shape,
  or per example) leaves classes out of the normaliser; an example with no class left
  has loss 0. The normaliser is subtracted from the label's logit only, not from every
  logit.
  """
  check_floating(logits)
  check_integer(labels)
  where = _where_like_logits(where, logits, axis)
  if isinstance(axis, int):
    axis = _normalize_axis(axis, logits.ndim)
  elif isinstance(axis, tuple):
    class_axes = tuple(_normalize_axis(a, logits.ndim) for a in axis)
    logits = _flatten_class_axes(logits, class_axes)
    if where is not None:
      where = _flatten_class_axes(where, class_axes)
    axis = logits.ndim - 1
  else:
    raise ValueError("Keyword argument 'axis' must be of type 'int' or "
                     f"'tuple[int, ...]' but actual type is {type(axis)}.")
  label_logits = jnp.take_along_axis(logits, jnp.expand_dims(labels, axis),
                                     axis=axis).take(0, axis=axis)
  loss = jax.nn.logsumexp(logits, axis=axis, where=where) - label_logits
  if where is not None:
    loss = jnp.where(jnp.any(where, axis), loss, 0.0)
  return loss


@jax.custom_jvp
def _weighted_log_softmax(x, weights):
  """``weights * log_softmax(x)`` along the last axis, 0 where the weight is 0 (even
  for a ``-inf`` logit: ``0 log 0 = 0``)."""
  log_probs = jax.nn.log_softmax(x, axis=-1)
  return jnp.where(weights != 0.0, weights * log_probs, jnp.zeros_like(log_probs))


@_weighted_log_softmax.defjvp
def _weighted_log_softmax_jvp(primals, tangents):
  # d/dx [w log softmax(x)] . dx = w (dx - <softmax(x), dx>): no 0 * inf from the -inf.
  x, weights = primals
  x_dot, weights_dot = tangents
  log_probs = jax.nn.log_softmax(x, axis=-1)
  out = jnp.where(weights != 0.0, weights * log_probs, jnp.zeros_like(log_probs))
  out_dot = (weights * x_dot
             - weights * jnp.sum(x_dot * jax.nn.softmax(x, axis=-1), axis=-1,
                                 keepdims=True)
             + weights_dot * log_probs)
  return out, out_dot


def safe_softmax_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
) -> jax.Array:
  """:func:`softmax_cross_entropy` over the last axis with ``0 log 0 = 0``: a
  ``-inf`` logit whose label is 0 adds nothing (instead of NaN), and its gradient is
  finite too."""
  check_floating(logits)
  return -jnp.sum(_weighted_log_softmax(logits, labels), axis=-1)


def poly_loss_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    epsilon: jax.typing.ArrayLike = 2.0,
    axis: Union[int, tuple[int, ...], None] = -1,
    where: Union[jax.typing.ArrayLike, None] = None,
) -> jax.Array:
  r"""Poly-1: the cross-entropy plus ``epsilon (1 - P_t)``,
  ``P_t = sum_j labels_j softmax(logits)_j``:

  .. math:: L = -\log P_t + \epsilon (1 - P_t)

  the first term of the expansion ``-log P_t = sum_j (1 - P_t)^j / j`` reweighted.
  ``epsilon = 2`` is the paper's choice for ImageNet, ``-1`` its choice for detection.

  Reference: Leng et al., *PolyLoss: A Polynomial Expansion Perspective of
  Classification Loss Functions*, ICLR 2022.
  """
  check_floating(logits)
  check_floating(labels)
  probs = jax.nn.softmax(logits, axis=axis, where=where)
  one_minus_pt = jnp.sum(labels * (1 - probs), axis=axis, where=where)
  cross_entropy = softmax_cross_entropy(logits=logits, labels=labels, axis=axis,
                                        where=where)
  return cross_entropy + epsilon * one_minus_pt


def smooth_labels(
    labels: jax.typing.ArrayLike,
    alpha: jax.typing.ArrayLike,
    *,
    axis: Union[int, tuple[int, ...], None] = -1,
    where: Union[jax.typing.ArrayLike, None] = None,
) -> jax.Array:
  """``(1 - alpha) labels + alpha / K``: one-hot labels mixed with the uniform
  distribution over the ``K`` classes along ``axis`` (those ``where`` is true).

  Reference: Szegedy et al., *Rethinking the Inception Architecture*, 2016; Muller et
  al., *When does label smoothing help?*, 2019.
  """
  check_floating(labels)
  if where is None:
    num_classes = jnp.size(labels, axis)
  else:
    num_classes = jnp.sum(where, axis, keepdims=True)
  return (1.0 - alpha) * labels + alpha / num_classes
