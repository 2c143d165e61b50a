"""Binary and margin classification losses: the sigmoid cross-entropy and its focal
reweighting, the hinge and perceptron losses (binary and multiclass).

Binary targets are ``{0, 1}`` labels for the sigmoid losses and ``{-1, 1}`` targets for
the margin losses, as in Optax; multiclass labels are integer class indices.
"""

from typing import Optional

import jax
import jax.numpy as jnp
import jax.scipy.special

from gradtx._src.losses._checks import check_floating, check_same_shape


def sigmoid_binary_cross_entropy(logits, labels):
  r"""``-y log sigmoid(x) - (1 - y) log sigmoid(-x)`` elementwise (``x`` the logits,
  ``y`` the labels).

  For independent binary predictions: binary labels with the logit of class 1, or
  per-class probabilities (multi-label) with per-class logits; take care that
  broadcasting pairs the intended elements. ``log(1 - sigmoid(x))`` is computed as
  ``log_sigmoid(-x)``, which does not underflow.

  Reference: Goodfellow et al., *Deep Learning*, 2016, section 3.13.
  """
  check_floating(logits)
  labels = jnp.astype(labels, logits.dtype)
  log_p = jax.nn.log_sigmoid(logits)
  log_not_p = jax.nn.log_sigmoid(-logits)
  return -labels * log_p - (1.0 - labels) * log_not_p


def sigmoid_focal_loss(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    alpha: Optional[jax.typing.ArrayLike] = None,
    gamma: jax.typing.ArrayLike = 2.0,
) -> jax.Array:
  r"""The focal loss: the sigmoid cross-entropy scaled down on easy examples,

  .. math:: FL = -\alpha_t (1 - p_t)^\gamma \log p_t,

  ``p_t = p`` for a positive label and ``1 - p`` for a negative one (``p = sigmoid``),
  ``alpha_t = alpha`` and ``1 - alpha`` likewise (no weighting when ``alpha`` is None).
  Labels may be soft, in ``[0, 1]``: then ``1 - p_t = (1 - y) p + y (1 - p)``.

  ``(1 - p_t)^gamma`` is computed as ``exp(gamma log(1 - p_t))`` with ``log(1 - p_t)``
  a weighted logsumexp of ``log p`` and ``log(1 - p)``, so it stays finite (and so do
  its gradients) for extreme logits and for ``gamma < 1``.

  Reference: Lin et al., *Focal Loss for Dense Object Detection*, ICCV 2017 (defaults:
  ``gamma = 2``; the paper pairs it with ``alpha = 0.25``).
  """
  check_floating(logits)
  labels = jnp.astype(labels, logits.dtype)
  cross_entropy = sigmoid_binary_cross_entropy(logits, labels)
  log_p = jax.nn.log_sigmoid(logits)
  log_not_p = jax.nn.log_sigmoid(-logits)
  log_one_minus_pt = jax.scipy.special.logsumexp(
      jnp.stack([log_p, log_not_p], axis=-1), axis=-1,
      b=jnp.stack([1 - labels, labels], axis=-1))
  loss = cross_entropy * jnp.exp(gamma * log_one_minus_pt)
  if alpha is None:
    return loss
  return (alpha * labels + (1.0 - alpha) * (1.0 - labels)) * loss


def hinge_loss(
    predictor_outputs: jax.typing.ArrayLike, targets: jax.typing.ArrayLike
) -> jax.Array:
  """``max(0, 1 - s t)`` elementwise: the binary hinge loss, ``s`` the decision
  function's output and ``t`` in ``{-1, 1}``."""
  return jnp.maximum(0, 1 - predictor_outputs * targets)


def perceptron_loss(
    predictor_outputs: jax.typing.ArrayLike, targets: jax.typing.ArrayLike
) -> jax.Array:
  """``max(0, -s t)`` elementwise: the binary perceptron loss, ``t`` in ``{-1, 1}`` of
  the shape of ``s``.

  Reference: Rosenblatt, *The Perceptron*, 1958.
  """
  check_same_shape(predictor_outputs, targets)
  return jnp.maximum(0, -predictor_outputs * targets)


# <a, b> over the last axis, batched over the leading ones.
_dot_last_axis = jnp.vectorize(jnp.dot, signature="(n),(n)->()")


def multiclass_hinge_loss(
    scores: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
) -> jax.Array:
  """``max_j (s_j + [j != y]) - s_y`` over the last axis: the multiclass (Crammer and
  Singer) hinge loss, 0 when the label's score beats every other by at least 1.

  Reference: Crammer and Singer, *On the Algorithmic Implementation of Multiclass
  Kernel-based Vector Machines*, JMLR 2001.
  """
  one_hot = jax.nn.one_hot(labels, scores.shape[-1])
  return jnp.max(scores + 1.0 - one_hot, axis=-1) - _dot_last_axis(scores, one_hot)


def multiclass_perceptron_loss(
    scores: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
) -> jax.Array:
  """``max_j s_j - s_y`` over the last axis: the multiclass perceptron loss.

  Reference: Collins, *Discriminative Training Methods for Hidden Markov Models*, EMNLP
  2002.
  """
  one_hot = jax.nn.one_hot(labels, scores.shape[-1])
  return jnp.max(scores, axis=-1) - _dot_last_axis(scores, one_hot)
