"""Wrappers that decide, step by step, whether the inner transform runs.

``apply_if_finite`` skips steps whose updates hold a NaN or an Inf; ``accumulate_gradients``
averages the updates of ``every_k`` micro-steps and runs the inner transform once on the
mean. Both run the inner transform under ``lax.cond``, so it costs nothing on the steps
where it does not run (under ``vmap`` with a batched decision both branches run, as JAX
requires). Their numerics are Optax's ``apply_if_finite`` and ``MultiSteps``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
from jax import lax

from gradtx._src import base, validation
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import map_leaves
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import all_finite, safe_increment, zero_count


def _zero_updates_like(step: Callable[[], tuple[base.Updates, base.OptState]]
                       ) -> base.Updates:
  """Zeros shaped like the updates ``step()`` would emit, without running it.

  The inner transform may emit another dtype than it is given (updates come out in the
  params' dtype), so the skipping branch of a ``lax.cond`` takes its zeros from there.
  """
  shapes, _ = jax.eval_shape(step)
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


class ApplyIfFiniteState(NamedTuple):
  """State of :func:`apply_if_finite`.

  Attributes:
    notfinite_count: non-finite steps in a row, reset to 0 by a finite step.
    last_finite: whether the last step's updates were all finite.
    total_notfinite: non-finite steps since ``init``, never reset.
    inner_state: the inner transform's state, untouched by skipped steps.
  """

  notfinite_count: jax.Array
  last_finite: jax.Array
  total_notfinite: jax.Array
  inner_state: base.OptState


@hyperparameters(inner="transform", max_consecutive_errors="int >= 0")
def apply_if_finite(inner: base.GradientTransformation,
                    max_consecutive_errors: int) -> base.GradientTransformation:
  """Skips the steps whose updates hold a NaN or an Inf, up to a limit.

  A step is non-finite when the updates it is given, or the updates ``inner`` makes of
  them, hold a NaN or an Inf (the second catches what the inner transform itself
  produces: a schedule that returns NaN, an overflow). A non-finite step is skipped: it
  emits zeros, leaves the inner state as it was, and is counted. After
  ``max_consecutive_errors`` skipped steps in a row the next non-finite step is given up
  on and its result passed on (as are the following ones, until a finite step resets
  the count)::

    n_t = 0 if finite(u_t) and finite(inner(u_t)) else n_{t-1} + 1
    emit inner(u_t)  iff  n_t == 0 or n_t > max_consecutive_errors, else 0

  Reference: Optax's ``apply_if_finite`` (same state fields and numerics), which tests
  the incoming updates only.

  Args:
    inner: the transform to protect; a gradtx or a plain Optax transform.
    max_consecutive_errors: how many non-finite steps in a row are skipped, >= 0.
  """

  def init(params):
    return ApplyIfFiniteState(notfinite_count=zero_count(),
                              last_finite=jnp.array(True),
                              total_notfinite=zero_count(),
                              inner_state=inner.init(params))

  def update(updates, state, params=None, **extra_args):
    given_up = safe_increment(state.notfinite_count) > max_consecutive_errors

    def step():
      return base.call_update(inner, updates, state.inner_state, params, extra_args)

    def skip():
      return _zero_updates_like(step), state.inner_state

    def checked_step():
      new_updates, inner_state = step()
      finite = all_finite(new_updates)
      new_updates, inner_state = lax.cond(finite | given_up,
                                          lambda: (new_updates, inner_state), skip)
      return new_updates, inner_state, finite

    finite_in = all_finite(updates)
    updates, inner_state, finite_out = lax.cond(
        finite_in | given_up, checked_step, lambda: (*skip(), jnp.array(True)))
    finite = finite_in & finite_out
    return updates, ApplyIfFiniteState(
        notfinite_count=jnp.where(finite, zero_count(),
                                  safe_increment(state.notfinite_count)),
        last_finite=finite,
        total_notfinite=jnp.where(finite, state.total_notfinite,
                                  safe_increment(state.total_notfinite)),
        inner_state=inner_state)

  return base.GradientTransformation(init, update)


class AccumulateGradientsState(NamedTuple):
  """State of :func:`accumulate_gradients` (the fields of Optax's ``MultiStepsState``).

  Attributes:
    mini_step: micro-steps accumulated since the last inner step.
    gradient_step: inner steps taken so far (the count an ``every_k`` schedule reads).
    inner_opt_state: the inner transform's state.
    acc_grads: the running mean (or sum) of this cycle's updates, in
      ``accumulator_dtype`` (by default the params' dtype or float32, whichever is
      wider).
  """

  mini_step: jax.Array
  gradient_step: jax.Array
  inner_opt_state: base.OptState
  acc_grads: base.Updates


def _running_mean(u, acc, *, n):
  """Welford's update of the mean of ``n`` values by one more: returns it for the inner
  transform (cast to the update's dtype) and for the state (cast to the accumulator's)."""
  mean = acc + (u - acc) / (n + 1)
  return mean, mean


def _running_sum(u, acc, *, n):
  """The sum of ``n`` values plus one more, for the inner transform and the state."""
  del n
  total = u + acc
  return total, total


@hyperparameters(inner="transform", use_grad_mean="bool", accumulator_dtype="dtype | None")
def accumulate_gradients(inner: base.GradientTransformation,
                         every_k: Union[int, Callable[[jax.Array], Any]], *,
                         use_grad_mean: bool = True, accumulator_dtype: Any = None
                         ) -> base.GradientTransformation:
  """Gradient accumulation: one inner step on the mean of ``every_k`` micro-steps.

  On micro-steps ``1 .. k-1`` of a cycle the updates are added to a running mean and
  zeros are emitted; on the ``k``-th the mean is passed to ``inner`` and its update is
  emitted, and the mean restarts from zero:

    acc <- acc + (u - acc) / (mini_step + 1)
    emit inner(acc) if mini_step == k - 1 else 0

  With ``use_grad_mean=False`` the updates are summed instead (``acc <- acc + u``).

  Reference: Optax's ``MultiSteps`` (:class:`~gradtx.MultiSteps` is this transform under
  Optax's class interface). One deliberate departure by default: the mean is kept in the
  params' dtype when that is wider than float32 (Optax keeps float32), so float64
  training stays float64; ``accumulator_dtype`` chooses another.

  Args:
    inner: the transform to run on the accumulated mean; a gradtx or a plain Optax one.
    every_k: micro-steps per inner step, an int >= 1, or a schedule ``k(gradient_step)``
      (as Optax's ``every_k_schedule``) to vary the effective batch size over training.
    use_grad_mean: average the micro-steps' updates (else sum them).
    accumulator_dtype: the dtype of ``acc_grads``; ``None``: the params' dtype or
      float32, whichever is wider.
  """
  # every_k is an int >= 1 or a schedule of its own (no spec says "either"); not injected.
  if not callable(every_k):
    validation.integer("accumulate_gradients", "every_k", every_k)
  k_at = every_k if callable(every_k) else (lambda gradient_step: every_k)
  accumulate = _running_mean if use_grad_mean else _running_sum

  def acc_dtype(p):
    if accumulator_dtype is None:
      return jnp.result_type(p, jnp.float32)
    return jax.dtypes.canonicalize_dtype(accumulator_dtype)

  def init(params):
    return AccumulateGradientsState(
        mini_step=zero_count(),
        gradient_step=zero_count(),
        inner_opt_state=inner.init(params),
        acc_grads=jax.tree.map(lambda p: tree_zeros_like(p, acc_dtype(p)), params))

  def update(updates, state, params=None, **extra_args):
    # In the counters' dtype, so that an int64 k under x64 cannot change the state's type.
    k = jnp.asarray(k_at(state.gradient_step), state.mini_step.dtype)
    mean, acc_grads = map_leaves("accumulate_gradients", accumulate, updates,
                                 state.acc_grads, n=state.mini_step)
    emit = state.mini_step == k - 1

    def step():
      return base.call_update(inner, mean, state.inner_opt_state, params, extra_args)

    updates, inner_state = lax.cond(
        emit, step, lambda: (_zero_updates_like(step), state.inner_opt_state))
    return updates, AccumulateGradientsState(
        mini_step=safe_increment(state.mini_step) % k,
        gradient_step=jnp.where(emit, safe_increment(state.gradient_step),
                                state.gradient_step),
        inner_opt_state=inner_state,
        acc_grads=jax.tree.map(lambda a: jnp.where(emit, jnp.zeros_like(a), a), acc_grads))

  return base.GradientTransformation(init, update)
