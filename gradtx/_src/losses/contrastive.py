"""Self-supervised (contrastive and metric-learning) losses: NT-Xent and the triplet
margin loss."""

import jax
import jax.numpy as jnp

from gradtx._src.losses._checks import check_floating
from gradtx._src.losses.regression import cosine_similarity


def ntxent(
    embeddings: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    temperature: jax.typing.ArrayLike = 0.07,
) -> jax.Array:
  r"""The normalised temperature-scaled cross-entropy (NT-Xent), a scalar.

  With ``s_ij`` the cosine similarity of embeddings i and j over ``temperature`` (the
  squared norms floored at the dtype's machine epsilon), every positive pair ``(i, j)``
  (same label, ``i != j``) contributes

  .. math::
    -\log \frac{\exp s_{ij}}{\exp s_{ij} + \sum_{k: y_k \ne y_i} \exp s_{ik}},

  and the loss is their mean. Each row is shifted by its largest similarity (held
  constant for the gradient) before exponentiating.

  Args:
    embeddings: ``[batch, features]``.
    labels: ``[batch]``; equal labels mark positive pairs (``[0, 0, 1, 1]``: the
      first two and the last two).
    temperature: the temperature; 0.07 is MoCo's and SupCon's.

  Reference: Chen et al., *A Simple Framework for Contrastive Learning of Visual
  Representations* (SimCLR), ICML 2020.
  """
  check_floating(embeddings)
  if labels.shape[0] != embeddings.shape[0]:
    raise ValueError("Labels and embeddings must have the same leading dimension, found"
                     f" {labels.shape[0]} for labels and {embeddings.shape[0]} for"
                     " embeddings.")
  similarities = cosine_similarity(
      embeddings[None, :, :], embeddings[:, None, :],
      epsilon=jnp.finfo(embeddings.dtype).eps) / temperature

  same = labels[:, None] == labels[None, :]
  negatives = ~same
  positives = same & ~jnp.eye(same.shape[0], dtype=bool)  # no self-similarity

  negative_sims = jnp.where(negatives, similarities, -jnp.inf)
  positive_sims = jnp.where(positives, similarities, -jnp.inf)
  row_max = jax.lax.stop_gradient(jnp.max(
      jnp.concatenate((negative_sims, positive_sims), axis=-1), axis=1, keepdims=True))
  negative_sims = negative_sims - row_max
  positive_sims = positive_sims - row_max

  denominator = (jnp.sum(jnp.exp(negative_sims), axis=1, keepdims=True)
                 + jnp.exp(positive_sims))
  log_probs = positive_sims - jnp.log(denominator)
  return -jnp.where(positives, log_probs, 0.0).sum() / positives.sum()


def triplet_margin_loss(
    anchors: jax.typing.ArrayLike,
    positives: jax.typing.ArrayLike,
    negatives: jax.typing.ArrayLike,
    axis: int = -1,
    norm_degree: jax.typing.ArrayLike = 2,
    margin: jax.typing.ArrayLike = 1.0,
    eps: jax.typing.ArrayLike = 1e-6,
) -> jax.Array:
  r"""``max(d(a, p) - d(a, n) + margin, 0)`` per triplet, with
  ``d(x, y) = (sum (x - y)^q + eps)^(1/q)`` along ``axis``, ``q = norm_degree``.

  The power is taken of the signed differences, as in Optax: an even ``q`` gives the
  ``q``-norm, an odd or fractional one does not (NaN for fractional ``q`` and negative
  differences).

  Reference: Balntas et al., *Learning local feature descriptors with triplets and
  shallow convolutional neural networks*, BMVC 2016.
  """
  check_floating(anchors)
  check_floating(positives)
  check_floating(negatives)

  def distance(x, y):
    return jnp.power(jnp.power(x - y, norm_degree).sum(axis) + eps, 1 / norm_degree)

  return jnp.maximum(distance(anchors, positives) - distance(anchors, negatives) + margin,
                     0)
