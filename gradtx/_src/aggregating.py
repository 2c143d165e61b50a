"""Transforms of per-example gradients (Optax's ``optax.experimental.aggregating``).

An *aggregator* takes per-example updates, shaped ``[*batch, *param_shape]`` (as from
``jax.vmap(jax.grad(loss), (None, 0))``), and returns one update shaped like the params.
:func:`process` runs a preprocessor on the per-example updates, an aggregator, and an
ordinary optimizer on the aggregate; aggregators that accumulate over microbatches
report ``ready`` in their state, and the optimizer only steps (and its state only
advances) when it is set. The per-example mean and variance of the gradients can be
tracked along the way (:func:`add_mean_variance_to_opt`), with Chan, Golub & LeVeque's
(1979) pairwise update of the sum of squared deviations across microbatches.

Signatures, defaults, state classes and numerics are Optax 0.2.8's.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol, Sequence

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import map_leaves
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import safe_increment, tree_where
from gradtx._src.tree.state import tree_get

PerElementUpdates = base.PyTree
AggregatedUpdates = base.PyTree
MaybeAxis = int | Sequence[int] | None


class AggregatorUpdateFn(Protocol):
  """``update(per_elt_updates, state, params=None, **extra_args) -> (aggregated,
  state)``: per-example updates in, one update (shaped like the params) out."""

  def __call__(self, per_elt_updates: PerElementUpdates, state: base.OptState,
               params: base.Params | None = None,
               **extra_args: Any) -> tuple[AggregatedUpdates, base.OptState]:
    ...


class Aggregator(base.GradientTransformationExtraArgs):
  """An ``(init, update)`` pair whose ``update`` maps per-example updates
  ``[*batch_shape, *params_shape]`` to one update ``[*params_shape]``.

  Used as ``grads = jax.vmap(jax.grad(loss), (None, 0))(params, batch)`` then
  ``updates, state = aggregator.update(grads, state)``. Its type tells :func:`process`
  that the combined transform also takes per-example updates.
  """

  __slots__ = ()
  init: base.TransformInitFn
  update: AggregatorUpdateFn


def process(preprocessor: base.GradientTransformation,
            aggregator: base.GradientTransformation | Aggregator,
            postprocessor: base.GradientTransformation,
            aggregator_has_aux: bool = False) -> base.GradientTransformation | Aggregator:
  """``preprocessor`` on the per-example updates, then ``aggregator``, then
  ``postprocessor`` (an optimizer) on the aggregate; the state is the triple of theirs.

  The postprocessor runs only when the aggregator's state has ``ready`` set (an
  aggregator without that field is always ready); otherwise the update is zeros and
  the postprocessor's state is kept. With ``aggregator_has_aux`` the aggregator returns
  ``(aggregate, aux)`` and the dict ``aux`` joins the extra arguments given to the
  postprocessor. The result is an :class:`Aggregator` if ``aggregator`` is one.

  >>> clip_each = jax.vmap(gtx.projections.projection_l2_ball)
  >>> average = lambda gs: jax.tree.map(lambda g: jnp.mean(g, 0), gs)
  >>> opt = process(gtx.stateless(lambda gs, _: clip_each(gs)),
  ...               Aggregator(gtx.init_empty_state, lambda gs, s, _: (average(gs), s)),
  ...               gtx.adam(0.1))
  """

  def init(params):
    return preprocessor.init(params), aggregator.init(params), postprocessor.init(params)

  def update(per_elt_grads, state, params=None, **extra_args):
    pre_state, agg_state, post_state = state
    per_elt_updates, pre_state = base.call_update(preprocessor, per_elt_grads, pre_state,
                                                  params, extra_args)
    aggregated, agg_state = base.call_update(aggregator, per_elt_updates, agg_state, params,
                                             extra_args)
    if aggregator_has_aux:
      aggregated, aux = aggregated
      extra_args = extra_args | aux
    ready = tree_get(agg_state, "ready", True)
    updates, post_state = jax.lax.cond(
        ready,
        lambda: base.call_update(postprocessor, aggregated, post_state, params, extra_args),
        lambda: (tree_zeros_like(aggregated), post_state))
    return updates, (pre_state, agg_state, post_state)

  cls = Aggregator if isinstance(aggregator, Aggregator) else (
      base.GradientTransformationExtraArgs)
  return cls(init, update)


# --- averaging and accumulating ----------------------------------------------------------


def average_per_element_updates(per_elt_axis: int | Sequence[int] = 0) -> Aggregator:
  """The mean of the per-example updates over ``per_elt_axis`` (stateless)."""

  def update(per_elt_updates, state, params=None, **extra_args):
    del params, extra_args
    return jax.tree.map(lambda x: jnp.mean(x, axis=per_elt_axis), per_elt_updates), state

  return Aggregator(base.init_empty_state, update)


class AccumulateAvgUpdatesState(NamedTuple):
  """State of :func:`accumulate_avg_updates`.

  Attributes:
    micro_step: microbatches averaged so far in this round.
    ready: whether the last update completed a round (and returned the average).
    avg_grad: the running mean of this round's updates.
  """

  micro_step: jax.Array
  ready: jax.Array
  avg_grad: base.Updates


@hyperparameters(schedules=False, accumulation_steps="int >= 1")
def accumulate_avg_updates(accumulation_steps: int) -> base.GradientTransformation:
  """The mean of ``accumulation_steps`` successive updates, returned on every
  ``accumulation_steps``-th call (zeros on the others, with ``ready`` unset).

  The running mean is ``a_k = a_{k-1} + (u_k - a_{k-1}) / k``. With
  ``accumulation_steps=1`` this is :func:`gradtx.identity`. Combined with an optimizer by
  :func:`process`, it gives an effective batch of ``accumulation_steps`` microbatches.
  """
  if accumulation_steps == 1:
    return base.identity()
  owner = "accumulate_avg_updates"

  def init(params):
    return AccumulateAvgUpdatesState(micro_step=jnp.asarray(0), ready=jnp.asarray(False),
                                     avg_grad=tree_zeros_like(params))

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    micro_step = state.micro_step + 1
    avg = map_leaves(owner, lambda u, a: a + (u - a) / micro_step, updates, state.avg_grad)
    done = micro_step == accumulation_steps
    zeros = tree_zeros_like(avg)
    ready_state = AccumulateAvgUpdatesState(jnp.asarray(0), jnp.asarray(True), zeros)
    waiting_state = AccumulateAvgUpdatesState(micro_step, jnp.asarray(False), avg)
    return tree_where(done, (avg, ready_state), (zeros, waiting_state))

  return base.GradientTransformation(init, update)


def average_incrementally_updates(per_elt_axis: MaybeAxis, accumulation_steps: int
                                  ) -> Aggregator | base.GradientTransformation:
  """The mean over ``per_elt_axis`` (none if ``None``) and then over
  ``accumulation_steps`` microbatches: :func:`average_per_element_updates` chained with
  :func:`accumulate_avg_updates` (an :class:`Aggregator` unless ``per_elt_axis`` is
  ``None``)."""
  if per_elt_axis is None:
    return accumulate_avg_updates(accumulation_steps)
  both = chain(average_per_element_updates(per_elt_axis),
               accumulate_avg_updates(accumulation_steps))
  return Aggregator(both.init, both.update)


# --- per-example mean and variance -------------------------------------------------------


def get_batch_size_from_per_elt_updates(per_elt_updates: base.Updates,
                                        per_elt_axis: int | list[int]) -> int:
  """The number of examples: the size of ``per_elt_axis`` (the product of the sizes if
  several axes), which must agree across leaves.

  Raises:
    ValueError: the leaves disagree.
  """

  def size(u):
    if isinstance(per_elt_axis, int):
      return u.shape[per_elt_axis]
    return math.prod(u.shape[i] for i in per_elt_axis)

  sizes = [size(u) for u in jax.tree.leaves(per_elt_updates)]
  if any(s != sizes[0] for s in sizes):
    raise ValueError(f"Per-element updates must have the same batch size. Got: {sizes}")
  return sizes[0]


class PerElementMeanAndSumSqDiffGradsState(NamedTuple):
  """State of :func:`get_per_element_mean_and_sum_sq_diff_grads` with accumulation.

  Attributes:
    micro_step: microbatches seen so far in this round.
    ready: whether the last update completed a round.
    mean_grads: the mean of the per-example gradients so far.
    sum_sq_diff_grads: their sum of squared deviations from that mean.
  """

  micro_step: jax.Array
  ready: jax.Array
  mean_grads: base.Updates
  sum_sq_diff_grads: base.Updates


def _batch_moments(per_elt_updates, per_elt_axis):
  """The batch mean over ``per_elt_axis`` and the sum of squared deviations from it."""
  means = jax.tree.map(lambda x: jnp.mean(x, axis=per_elt_axis, keepdims=True),
                       per_elt_updates)
  sum_sq_diff = jax.tree.map(lambda x, m: jnp.sum(jnp.square(x - m), axis=per_elt_axis),
                             per_elt_updates, means)
  means = jax.tree.map(lambda m: m.squeeze(axis=per_elt_axis), means)
  return means, sum_sq_diff


@hyperparameters(schedules=False, accumulation_steps="int >= 1")
def get_per_element_mean_and_sum_sq_diff_grads(per_elt_axis: int | Sequence[int] = 0,
                                               accumulation_steps: int = 1) -> Aggregator:
  """An aggregator returning ``(mean, aux)``: the per-example mean of the gradients,
  and ``aux = {'sum_sq_diff_grads': S, 'sample_size': N}`` with ``S`` the sum of the
  squared deviations from the mean over the ``N`` examples (use it with
  ``process(..., aggregator_has_aux=True)``; see :func:`add_mean_variance_to_opt`).

  With ``accumulation_steps > 1`` the statistics cover that many microbatches of ``B``
  examples, merged pairwise (Chan et al. 1979): with ``delta`` the new batch mean minus
  the running one after ``k`` batches, ``mean += delta / (k + 1)`` and
  ``S += S_batch + delta**2 * k * B / (k + 1)``; they are returned (and reset) every
  ``accumulation_steps``-th call, zeros otherwise.

  Departure from Optax 0.2.8: Optax computes ``k B / (k + 1)`` from its int32 step
  counter, that is in float32 whatever the gradients' dtype, so float64 statistics carry
  a float32-rounded factor (relative errors near 1e-8); here it is computed in each
  leaf's dtype (at least float32), which gives Optax's numbers for float32 gradients
  (``tests/test_aggregating.py`` shows both against NumPy).
  """

  def moments(per_elt_updates, state, params=None, **extra_args):
    del params, extra_args
    batch_size = get_batch_size_from_per_elt_updates(per_elt_updates, per_elt_axis)
    means, sum_sq_diff = _batch_moments(per_elt_updates, per_elt_axis)
    return (means, {"sum_sq_diff_grads": sum_sq_diff, "sample_size": batch_size}), state

  if accumulation_steps == 1:
    return Aggregator(base.init_empty_state, moments)
  owner = "get_per_element_mean_and_sum_sq_diff_grads"

  def init(params):
    return PerElementMeanAndSumSqDiffGradsState(
        micro_step=jnp.asarray(0, jnp.int32), ready=jnp.asarray(False),
        mean_grads=tree_zeros_like(params), sum_sq_diff_grads=tree_zeros_like(params))

  def update(per_elt_updates, state, params=None, **extra_args):
    del params, extra_args
    batch_size = get_batch_size_from_per_elt_updates(per_elt_updates, per_elt_axis)
    micro_step = state.micro_step + 1
    batch_means, batch_sum_sq_diff = _batch_moments(per_elt_updates, per_elt_axis)
    delta = jax.tree.map(lambda b, m: b - m, batch_means, state.mean_grads)
    means = map_leaves(owner, lambda d, m: m + d / micro_step, delta, state.mean_grads)
    seen = state.micro_step * batch_size

    def merge(d, s, b):  # the factor k B / (k + 1) in the leaf's dtype (see the docstring)
      return s + b + d**2 * (seen.astype(d.dtype) / micro_step.astype(d.dtype))

    sum_sq_diff = map_leaves(owner, merge, delta, state.sum_sq_diff_grads,
                             batch_sum_sq_diff)
    outputs = (means, {"sum_sq_diff_grads": sum_sq_diff,
                       "sample_size": batch_size * micro_step})
    ready_state = PerElementMeanAndSumSqDiffGradsState(
        jnp.asarray(0, jnp.int32), jnp.asarray(True), tree_zeros_like(means),
        tree_zeros_like(sum_sq_diff))
    waiting_state = PerElementMeanAndSumSqDiffGradsState(micro_step, jnp.asarray(False),
                                                         means, sum_sq_diff)
    return tree_where(micro_step == accumulation_steps, (outputs, ready_state),
                      (tree_zeros_like(outputs), waiting_state))

  return Aggregator(init, update)


class PerElementMeanAndVarianceEMAState(NamedTuple):
  """State of :func:`track_per_element_mean_and_variance_with_ema`.

  Attributes:
    count: updates so far.
    ema_decay: the decay of the EMAs.
    mean_grads_ema: EMA of the mean gradient (not bias-corrected).
    variance_grads_ema: EMA of the per-example variance (not bias-corrected).
  """

  count: jax.Array
  ema_decay: jax.Array
  mean_grads_ema: base.Updates
  variance_grads_ema: base.Updates


@hyperparameters(schedules=False, ema_decay="[0, 1)")
def track_per_element_mean_and_variance_with_ema(ema_decay: jax.typing.ArrayLike = 0.9
                                                 ) -> base.GradientTransformation:
  """Tracks EMAs of the mean gradient and of the per-example gradient variance
  ``S / (N - 1)``, from the ``sum_sq_diff_grads=S`` and ``sample_size=N`` extra
  arguments that :func:`get_per_element_mean_and_sum_sq_diff_grads` provides through
  :func:`process`; the updates pass through unchanged.
  ``m <- (1 - ema_decay) * x + ema_decay * m``; read them bias-corrected with
  :func:`get_unbiased_mean_and_variance_ema`.

  Departure from Optax 0.2.8: ``1 / (N - 1)`` is computed in each leaf's dtype (at
  least float32); Optax computes it in float32 when ``N`` comes from an accumulating
  aggregator (an int32 array), which rounds float64 variances to ~1e-8.
  """
  owner = "track_per_element_mean_and_variance_with_ema"

  def init(params):
    return PerElementMeanAndVarianceEMAState(
        count=jnp.zeros([], jnp.int32), ema_decay=jnp.asarray(ema_decay),
        mean_grads_ema=tree_zeros_like(params), variance_grads_ema=tree_zeros_like(params))

  def update(updates, state, params=None, *, sum_sq_diff_grads, sample_size, **extra_args):
    del params, extra_args
    ema = lambda x, m: (1.0 - ema_decay) * x + ema_decay * m  # noqa: E731
    mean_ema = map_leaves(owner, ema, updates, state.mean_grads_ema)
    inverse = lambda s: 1 / (jnp.asarray(sample_size, s.dtype) - 1)  # noqa: E731
    variance = map_leaves(owner, lambda s: inverse(s) * s, sum_sq_diff_grads)
    variance_ema = map_leaves(owner, ema, variance, state.variance_grads_ema)
    return updates, state._replace(count=safe_increment(state.count),
                                   mean_grads_ema=mean_ema, variance_grads_ema=variance_ema)

  return base.GradientTransformationExtraArgs(init, update)


def get_unbiased_mean_and_variance_ema(state: base.OptState
                                       ) -> tuple[base.Updates, base.Updates]:
  """The bias-corrected EMAs ``m / (1 - ema_decay**count)`` of the mean gradient and
  of the per-example variance, read from the :class:`PerElementMeanAndVarianceEMAState`
  inside ``state`` (a whole optimizer's state).

  Raises:
    ValueError: ``state`` holds no such state.
  """
  tracked = tree_get(state, "PerElementMeanAndVarianceEMAState", None)
  if tracked is None:
    raise ValueError("State must have PerElementMeanAndVarianceEMAState to compute "
                     "unbiased mean and variance EMA.")
  correction = 1 - tracked.ema_decay**tracked.count
  unbias = lambda tree: jax.tree.map(lambda x: x / correction, tree)  # noqa: E731
  return unbias(tracked.mean_grads_ema), unbias(tracked.variance_grads_ema)


@hyperparameters(schedules=False, opt="transform", ema_decay="[0, 1)",
                 accumulation_steps="int >= 1")
def add_mean_variance_to_opt(opt: base.GradientTransformation,
                             ema_decay: jax.typing.ArrayLike = 0.9,
                             per_elt_axis: int | list[int] = 0,
                             accumulation_steps: int = 1):
  """``opt`` driven by per-example gradients, tracking the EMAs of their mean and
  variance: ``process(identity(), get_per_element_mean_and_sum_sq_diff_grads(...),
  chain(track_per_element_mean_and_variance_with_ema(ema_decay), opt),
  aggregator_has_aux=True)``. ``opt`` steps on the mean gradient (once per
  ``accumulation_steps`` calls); read the statistics with
  :func:`get_unbiased_mean_and_variance_ema`.
  """
  return process(preprocessor=base.identity(),
                 aggregator=get_per_element_mean_and_sum_sq_diff_grads(
                     per_elt_axis, accumulation_steps),
                 postprocessor=chain(
                     track_per_element_mean_and_variance_with_ema(ema_decay), opt),
                 aggregator_has_aux=True)
