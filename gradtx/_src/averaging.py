"""Averages of the iterates: stochastic weight averaging and an EMA of the params.

``average_params(inner, ...)`` runs any transform and keeps, beside its state, an average
of the params it produces, ``params + inner_update``; ``averaged_params(state)`` reads
that average back out of a state (also from inside a ``chain`` or another wrapper).
The equal-weight average is SWA (Izmailov, Podoprikhin, Garipov, Vetrov & Wilson 2018,
"Averaging Weights Leads to Wider Optima and Better Generalization"); with a ``decay``
it is the exponential moving average of the weights (Polyak averaging with exponential
weights). Both follow ``torch.optim.swa_utils.AveragedModel`` (torch 2.13): the first
contribution is copied, later ones are mixed in::

  SWA:  avg <- avg + (p - avg) / (n + 1)        n = contributions so far
  EMA:  avg <- lerp(avg, p, 1 - decay)          torch.lerp's two-sided formula

Example::

  tx = gtx.average_params(gtx.sgd(0.1, momentum=0.9), start_step=100, every=10)
  state = tx.init(params)
  for batch in batches:
    updates, state = tx.update(jax.grad(loss)(params, batch), state, params)
    params = gtx.apply_updates(params, updates)
  swa_params = gtx.averaged_params(state)     # evaluate at the average

  ema = gtx.chain(gtx.clip_by_global_norm(1.0),
                  gtx.average_params(gtx.adam(1e-3), decay=0.999))
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import map_leaves
from gradtx._src.tree.math import safe_increment, zero_count


class AverageParamsState(NamedTuple):
  """State of :func:`average_params`.

  Attributes:
    count: the updates seen so far: the 0-based index ``k`` of the next one.
    n_averaged: the params averaged so far (``AveragedModel.n_averaged``).
    average: the average, in the params' dtypes; the params given to ``init`` until the
      first contribution (``AveragedModel`` starts as a copy of the model).
    inner_state: the state of the inner transform.
  """

  count: jax.Array
  n_averaged: jax.Array
  average: base.Params
  inner_state: base.OptState


# The states that hold an average of the params, and the field that holds it. Other
# modules add theirs (ASGD's ``ax``), so that :func:`averaged_params` finds them too.
AVERAGE_FIELDS: dict[type, str] = {AverageParamsState: "average"}


def lerp(start: jax.Array, end: jax.Array, weight: Any) -> jax.Array:
  """``torch.lerp``: ``start + weight*(end - start)`` for ``|weight| < 0.5``, else
  ``end - (end - start)*(1 - weight)`` (exact at ``weight = 1``)."""
  return jnp.where(jnp.abs(weight) < 0.5, start + weight * (end - start),
                   end - (end - start) * (1 - weight))


def mix_in(average: jax.Array, new: jax.Array, first: jax.Array, mixed: jax.Array
           ) -> jax.Array:
  """``new`` where this is the first contribution (copied exactly, not mixed), else the
  ``mixed`` average."""
  return jnp.where(first, new, mixed)


@hyperparameters(inner="transform", decay="[0, 1] | None", start_step="int >= 0",
                 every="int >= 1")
def average_params(inner: base.GradientTransformation, decay: float | None = None,
                   start_step: int = 0, every: int = 1) -> base.GradientTransformation:
  """Runs ``inner`` and keeps an average of the params it produces.

  The update with 0-based index ``k`` contributes ``p_k = params + inner_update`` (the
  params after the step, rounded to their dtype as :func:`gradtx.apply_updates` does)
  when ``k >= start_step`` and ``(k - start_step) % every == 0``. The first contribution
  is copied; with ``n`` contributions so far, each later one is mixed in as

    decay=None (SWA):  avg <- avg + (p_k - avg) / (n + 1)     (equal weights)
    decay=d (EMA):     avg <- lerp(avg, p_k, 1 - d)           (= d*avg + (1-d)*p_k)

  which is ``torch.optim.swa_utils.AveragedModel`` with its default ``avg_fn``
  (respectively ``multi_avg_fn=get_ema_multi_avg_fn(d)``) and ``update_parameters``
  called after exactly those optimizer steps; SWA's defaults (Izmailov et al. 2018)
  average once per epoch after a warm start, i.e. ``every`` = steps per epoch. The
  updates pass through unchanged: the params being trained are ``inner``'s; read the
  average with :func:`averaged_params`.

  Args:
    inner: the transform that trains the params (extra keyword arguments given to
      ``update`` reach it).
    decay: ``None`` for the equal-weight (SWA) average, or the EMA's decay in ``[0, 1]``
      (``1`` keeps the first contribution, ``0`` the latest), or a schedule.
    start_step: the index of the first update whose params are averaged, ``>= 0``.
    every: average the params of every ``every``-th update from ``start_step``, ``>= 1``.

  Raises (in ``update``):
    ValueError: ``params`` were not given: the average needs them.
  """
  owner = "average_params"

  def rule(average, new, *, first, counts, n, weight):
    if weight is None:
      mixed = average + (new - average) / (n + 1)
    else:
      mixed = lerp(average, new, weight)
    return jnp.where(counts, mix_in(average, new, first, mixed), average)

  def init(params):
    # A copy, not the params' own buffers: a step that donates params and state must not
    # be handed one buffer twice.
    return AverageParamsState(count=zero_count(), n_averaged=zero_count(),
                              average=jax.tree.map(jnp.array, params),
                              inner_state=inner.init(params))

  def update(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format(owner))
    base.check_same_structure(owner, updates, params, state.average)
    updates, inner_state = base.call_update(inner, updates, state.inner_state, params,
                                            extra_args)
    k, n = state.count, state.n_averaged
    counts = (k >= start_step) & ((k - start_step) % every == 0)
    new_params = base.apply_updates(params, updates)
    average = map_leaves(owner, rule, state.average, new_params, first=n == 0,
                         counts=counts, n=n, weight=None if decay is None else 1 - decay)
    return updates, AverageParamsState(
        count=safe_increment(k), n_averaged=jnp.where(counts, safe_increment(n), n),
        average=average, inner_state=inner_state)

  return base.GradientTransformationExtraArgs(init, update)


def averaged_params(state: base.OptState) -> base.Params:
  """The average of the params kept in ``state``.

  ``state`` is the state of :func:`average_params` or :func:`gradtx.asgd` (its averaged
  iterate ``ax``), or any state that holds one of them: a ``chain``'s, ``masked``'s,
  ``inject_hyperparams``'s, ... The tree is searched from the root; the outermost
  average found is returned.

  Raises:
    ValueError: ``state`` holds no average, or several side by side (as a
      ``partition`` with an average per group would; pass each group's state).
  """
  classes = tuple(AVERAGE_FIELDS)
  found = [node for node in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, classes))
           if isinstance(node, classes)]
  names = ", ".join(cls.__name__ for cls in classes)
  if not found:
    raise ValueError(f"averaged_params: the state holds no average of the params (none of "
                     f"{names}); is it the state of average_params or asgd?")
  if len(found) > 1:
    raise ValueError(f"averaged_params: the state holds {len(found)} averages side by "
                     "side; pass the part of the state that holds the one you want")
  return getattr(found[0], AVERAGE_FIELDS[type(found[0])])
