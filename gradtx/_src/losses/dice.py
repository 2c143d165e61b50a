"""Segmentation losses: the soft Dice (Tversky) loss per class, its generalised form
weighted by inverse squared class frequencies, and the binary convenience form.

Predictions and targets are ``[batch, *spatial, classes]``; sums run over the spatial
axes by default.
"""

from typing import Optional

import jax
import jax.numpy as jnp

from gradtx._src.losses._checks import check_rank, check_same_shape


def _reduce(loss, reduction: str, axis=None):
  if reduction == "mean":
    return jnp.mean(loss, axis=axis)
  if reduction == "sum":
    return jnp.sum(loss, axis=axis)
  if reduction == "none":
    return loss
  raise ValueError(f"Unsupported reduction: {reduction}")


def dice_loss(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    *,
    class_weights: Optional[jax.typing.ArrayLike] = None,
    smooth: jax.typing.ArrayLike = 1.,
    alpha: jax.typing.ArrayLike = 0.5,
    beta: jax.typing.ArrayLike = 0.5,
    apply_softmax: bool = True,
    reduction: str = "mean",
    ignore_background: bool = False,
    axis: Optional[jax.typing.ArrayLike] = None,
) -> jax.Array:
  r"""The soft Dice loss per class, with false positives and negatives weighted
  (Tversky):

  .. math::
    \mathrm{dice}_c = 1 - \frac{I_c + s}{I_c + \alpha (P_c - I_c) + \beta (T_c - I_c)
    + s},

  ``I_c = sum_i p_ic t_ic`` (the soft intersection), ``P_c = sum_i p_ic``,
  ``T_c = sum_i t_ic``, sums over ``axis`` (default: every axis but the first and the
  last), ``s = smooth``. ``alpha = beta = 0.5`` is the Dice coefficient; ``alpha >
  beta`` penalises false positives more.

  ``p`` is ``softmax(predictions)`` over the classes (``sigmoid`` for a single
  channel) when ``apply_softmax``, else ``predictions`` themselves, which must then sum
  to 1 over the classes when there are several (checked: a ``ValueError`` otherwise, so
  not under ``jit``). A missing channel axis (``[...]`` binary inputs) is added to
  either side.

  Departure from Optax 0.2.8: Optax applies the sum-to-1 check to a single channel
  too, where the channel is the probability of the positive class (what its sigmoid
  branch computes), so ``dice_loss(..., apply_softmax=False)`` and
  ``binary_dice_loss(..., apply_sigmoid=False)`` raise on every binary input but
  all-ones predictions. gtx checks only several channels
  (``tests/test_losses.py::test_binary_probabilities_are_accepted``).

  The per-class losses are multiplied by ``class_weights``, the first class dropped if
  ``ignore_background`` (with more than one class), and reduced over the classes by
  ``reduction``: ``'mean'``, ``'sum'`` or ``'none'``.

  References: Milletari et al., *V-Net*, 3DV 2016; Tversky, *Features of
  Similarity*, 1977; Salehi et al., *Tversky loss function for image segmentation*,
  2017.
  """
  if predictions.ndim == targets.ndim - 1:
    predictions = predictions[..., None]
  if targets.ndim == predictions.ndim - 1:
    targets = targets[..., None]
  check_same_shape(predictions, targets)

  if not apply_softmax and predictions.shape[-1] > 1:
    sums = jnp.sum(predictions, axis=-1)
    if not jnp.allclose(sums, 1.0, rtol=1e-5):
      raise ValueError(
          "When apply_softmax=False, predictions must be valid probability "
          "distributions that sum to 1 along the class axis. Found sum range: "
          f"[{jnp.min(sums):.6f}, {jnp.max(sums):.6f}]")

  probs = predictions
  if apply_softmax:
    probs = (jax.nn.sigmoid(predictions) if predictions.shape[-1] == 1
             else jax.nn.softmax(predictions, axis=-1))

  axis = tuple(range(1, probs.ndim - 1)) if axis is None else axis
  intersection = jnp.sum(probs * targets, axis=axis)
  pred_sum = jnp.sum(probs, axis=axis)
  target_sum = jnp.sum(targets, axis=axis)
  numerator = intersection + smooth
  denominator = (intersection + alpha * (pred_sum - intersection)
                 + beta * (target_sum - intersection) + smooth)
  loss = 1.0 - numerator / denominator  # [..., classes]

  if class_weights is not None:
    check_rank(class_weights, 1)
    loss = loss * class_weights
  if ignore_background and probs.shape[-1] > 1:
    loss = loss[..., 1:]
  return _reduce(loss, reduction, axis=-1)


def multiclass_generalized_dice_loss(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    *,
    smooth: jax.typing.ArrayLike = 1.,
    apply_softmax: bool = True,
    ignore_background: bool = False,
) -> jax.Array:
  r"""The generalised Dice loss: :func:`dice_loss` per class and example, weighted by
  ``w_c = 1 / (F_c^2 + 1e-7)`` rescaled to sum to the number of classes (``F_c`` the
  class's total target mass over the whole batch), averaged to a scalar.

  Reference: Sudre et al., *Generalised Dice overlap as a deep learning loss function
  for highly unbalanced segmentations*, 2017.
  """
  check_same_shape(predictions, targets)
  class_frequencies = jnp.sum(targets, axis=tuple(range(targets.ndim - 1)))
  class_weights = 1.0 / (class_frequencies**2 + 1e-7)
  class_weights = class_weights / jnp.sum(class_weights) * len(class_weights)
  return jnp.mean(dice_loss(predictions, targets, class_weights=class_weights,
                            smooth=smooth, apply_softmax=apply_softmax, reduction="none",
                            ignore_background=ignore_background))


def binary_dice_loss(
    predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    *,
    smooth: jax.typing.ArrayLike = 1.,
    apply_sigmoid: bool = True,
) -> jax.Array:
  """:func:`dice_loss` of one channel: logits (``sigmoid`` applied when
  ``apply_sigmoid``) and binary targets of shape ``[...]`` or ``[..., 1]``, one loss
  per example.

  Inputs of equal rank whose last axis is not 1 get a channel axis. With
  ``apply_sigmoid=False`` the predictions are probabilities of the positive class
  (Optax 0.2.8 rejects those; see :func:`dice_loss`).
  """
  if predictions.ndim == targets.ndim and predictions.shape[-1] != 1:
    predictions = predictions[..., None]
    targets = targets[..., None]
  return dice_loss(predictions, targets, smooth=smooth, apply_softmax=apply_sigmoid,
                   reduction="mean")
