r"""Fenchel-Young losses: ``L(s, y) = Omega*(s) - <y, s>`` (plus a term constant in
``s``) for a regulariser ``Omega`` with conjugate ``Omega*``, the "max function":
``logsumexp`` gives the softmax cross-entropy, the Gini negentropy gives sparsemax.

Reference: Blondel, Martins and Niculae, *Learning with Fenchel-Young Losses*, JMLR 2020.
"""

from typing import Any, Protocol

import jax
import jax.numpy as jnp


class MaxFun(Protocol):

  def __call__(self, scores, *args, **kwargs: Any) -> jax.typing.ArrayLike:
    ...


def make_fenchel_young_loss(max_fun: MaxFun):
  """The Fenchel-Young loss ``fy(scores, targets, *args, **kwargs) =
  max_fun(scores, *args, **kwargs) - <targets, scores>`` over the last axis (leading
  axes are batch axes; jaxopt's version flattened the input instead).

  >>> from jax.scipy.special import logsumexp
  >>> fy_loss = make_fenchel_young_loss(max_fun=logsumexp)  # the cross-entropy
  """
  vdot_last_axis = jnp.vectorize(jnp.vdot, signature="(n),(n)->()")
  max_fun_last_axis = jnp.vectorize(max_fun, signature="(n)->()")

  def fenchel_young_loss(scores, targets, *args, **kwargs):
    return max_fun_last_axis(scores, *args, **kwargs) - vdot_last_axis(targets, scores)

  return fenchel_young_loss


def sparsemax_loss(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
) -> jax.Array:
  """The binary sparsemax loss, ``sparse_plus(-x)`` for label 1 and ``sparse_plus(x)``
  for label 0 (``sparse_plus(x)`` is 0 below -1, ``(x + 1)^2 / 4`` up to 1, ``x``
  beyond); 0 exactly when ``jax.nn.sparse_sigmoid(logits) == labels``.

  Reference: Blondel et al., *Learning with Fenchel-Young Losses*, JMLR 2020,
  section 4.4.
  """
  return jax.nn.sparse_plus(jnp.where(labels, -logits, logits))


@jax.custom_jvp
def _project_onto_simplex(values):
  """The Euclidean projection of a vector onto the probability simplex, by sorting
  (Held et al. 1974; Michelot 1986): ``relu(v - tau)`` with ``tau`` from the largest
  ``k`` such that ``u_k > (sum_{j <= k} u_j - 1) / k``, ``u`` the sorted values."""
  n = values.shape[0]
  sorted_desc = jnp.sort(values)[::-1]
  cumsum = jnp.cumsum(sorted_desc)
  k = jnp.arange(n) + 1
  support_size = jnp.count_nonzero(1 / k + (sorted_desc - cumsum / k) > 0)
  return jax.nn.relu(1 / support_size + (values - cumsum[support_size - 1] / support_size))


@_project_onto_simplex.defjvp
def _project_onto_simplex_jvp(primals, tangents):
  # On the support S the projection is v - tau, so its Jacobian is I - 1 1^T / |S|
  # restricted to S, and 0 off it.
  (values,), (values_dot,) = primals, tangents
  projected = _project_onto_simplex(values)
  support = projected > 0
  size = jnp.count_nonzero(support)
  return projected, support * values_dot - (jnp.dot(support, values_dot) / size) * support


def _sparsemax_loss_one(scores, label):
  scores = jnp.asarray(scores)
  probs = _project_onto_simplex(scores)
  # Omega*(s) - s_y with Omega the Gini negentropy:
  # <p, s> + <p, 1 - p>/2 - s_y, written with s - s_y (and 0 at y) for precision.
  shifted = (scores - scores[label]).at[label].set(0.0)
  return jnp.dot(probs, jnp.where(probs, shifted, 0.0)) + 0.5 * (1.0 - jnp.dot(probs, probs))


def multiclass_sparsemax_loss(
    scores: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
) -> jax.Array:
  """The multiclass sparsemax loss of ``[batch, classes]`` scores and ``[batch]``
  integer labels: the Fenchel-Young loss of the Gini negentropy, whose prediction is
  the Euclidean projection of the scores onto the simplex (sparsemax).

  Reference: Martins and Astudillo, *From Softmax to Sparsemax: A Sparse Model of
  Attention and Multi-Label Classification*, ICML 2016.
  """
  return jax.vmap(_sparsemax_loss_one)(scores, labels)
