"""Ranking losses: the cost of the ranking the item scores induce against the one the
relevance labels induce, over the last axis (the list); leading axes are batch axes.

>>> import jax.numpy as jnp, gradtx as gtx
>>> scores, labels = jnp.array([2., 1., 3.]), jnp.array([1., 0., 0.])
>>> print(f"{gtx.losses.ranking_softmax_loss(scores, labels):.3f}")
1.408
"""

from collections.abc import Callable
from typing import Optional

import jax
import jax.numpy as jnp

from gradtx._src.losses._checks import check_floating


def _safe_reduce(losses, where=None, reduce_fn=None):
  """``reduce_fn(losses, where=where)``, except that a mean over nothing is 0 rather
  than NaN (unless some loss is itself NaN); without ``reduce_fn``, the losses with the
  masked-out ones set to 0, so that summing them gives the ``jnp.sum`` reduction."""
  output = reduce_fn(losses, where=where) if reduce_fn is not None else losses
  if reduce_fn is jnp.mean:
    no_nan_in_input = jnp.logical_not(jnp.any(jnp.isnan(losses)))
    output = jnp.where(jnp.isnan(output) & no_nan_in_input, 0.0, output)
  if reduce_fn is None and where is not None:
    output = jnp.where(where, output, 0.0)
  return output


def ranking_softmax_loss(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    where: Optional[jax.typing.ArrayLike] = None,
    weights: Optional[jax.typing.ArrayLike] = None,
    reduce_fn: Optional[Callable[..., jax.typing.ArrayLike]] = jnp.mean
) -> jax.Array:
  r"""The listwise softmax loss,

  .. math:: \ell(s, y) = -\sum_i y_i \log \frac{\exp s_i}{\sum_j \exp s_j},

  per list, reduced over the lists by ``reduce_fn`` (``jnp.mean``, ``jnp.sum``, or
  ``None`` for one loss per list).

  Items where ``where`` is false are left out (their label taken as 0 and their score
  as ``-inf``); lists with no valid item are left out of the reduction (loss 0
  unreduced, and a mean over no list is 0). ``weights`` multiply the labels.

  Reference: Cao et al., *Learning to Rank: From Pairwise Approach to Listwise
  Approach* (ListNet), ICML 2007; as in TF-Ranking's ``SoftmaxLoss``.
  """
  check_floating(logits)
  labels = labels.astype(logits.dtype)
  if where is not None:
    labels = jnp.where(where, labels, jnp.zeros_like(labels))
    logits = jnp.where(where, logits, -jnp.ones_like(logits) * jnp.inf)
  if weights is not None:
    labels *= weights
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  losses = -jnp.sum(labels * log_probs, axis=-1, where=where)
  if where is not None:
    where = jnp.any(where, axis=-1)
  return _safe_reduce(losses, where=where, reduce_fn=reduce_fn)
