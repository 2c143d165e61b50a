"""Optax's gradient accumulation API: the ``MultiSteps`` class, and ``apply_every``.

``MultiSteps(opt, k)`` is :func:`~gradtx.accumulate_gradients` (one inner step on the
mean, or the sum, of ``k`` micro-steps' updates) behind Optax's class interface, with
Optax's state class and one addition: ``should_skip_update_fn`` drops a micro-step as
if it had not happened (:func:`~gradtx.skip_not_finite`,
:func:`~gradtx.skip_large_updates`). ``apply_every(k)`` is the older form, without an
inner transform: it sums ``k`` updates and emits the sum every ``k``-th step.

Reference: Optax's ``MultiSteps`` and ``apply_every`` (same signatures, defaults, state
fields and numerics).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
from jax import lax

from gradtx._src import base, validation
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import map_leaves
from gradtx._src.skip import ShouldSkipUpdateFunction
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import safe_increment, zero_count
from gradtx._src.wrappers import (AccumulateGradientsState, _zero_updates_like,
                                  accumulate_gradients)


class MultiStepsState(NamedTuple):
  """State of :class:`MultiSteps`.

  Attributes:
    mini_step: micro-steps accumulated since the last inner step.
    gradient_step: inner steps taken so far (the count ``every_k_schedule`` reads).
    inner_opt_state: the inner transform's state.
    acc_grads: the running mean (or sum) of this cycle's updates, in
      ``accumulator_dtype``.
    skip_state: what ``should_skip_update_fn`` returned last (``()`` without one).
  """

  mini_step: jax.Array
  gradient_step: jax.Array
  inner_opt_state: Any
  acc_grads: Any
  skip_state: base.PyTree = ()


def _never_skip(updates, gradient_step, params):
  del updates, gradient_step, params
  return jnp.array(False), ()


class MultiSteps:
  """Gradient accumulation: one step of ``opt`` on the mean (or sum) of the updates of
  ``k`` micro-steps, zeros emitted in between::

    acc <- acc + (u - acc) / (mini_step + 1)     (use_grad_mean; else acc <- acc + u)
    emit opt(acc) if mini_step == k - 1 else 0,  acc restarts from zero after emitting

  ``k = every_k_schedule(gradient_step)`` may vary with the number of inner steps taken
  (a growing batch size). A micro-step that ``should_skip_update_fn`` rejects emits
  zeros and leaves the state as it was, apart from ``skip_state``.

  Use ``MultiSteps(opt, k).gradient_transformation()`` (or the ``init``/``update``
  methods) as a transform; ``has_updated(state)`` tells whether the last update was an
  inner step. The inner transform runs (under ``lax.cond``) on the emitting micro-steps
  only; Optax runs it on every micro-step and discards the result.

  Args:
    opt: the inner transform.
    every_k_schedule: micro-steps per inner step: an int >= 1, or a function of the
      inner step count.
    use_grad_mean: average the micro-steps' updates (else sum them).
    should_skip_update_fn: ``fn(updates, gradient_step, params) -> (skip, skip_state)``
      (see :class:`~gradtx.ShouldSkipUpdateFunction`).
    accumulator_dtype: dtype of ``acc_grads``: Optax's default float32, also for
      float64 params (pass ``jnp.float64`` to accumulate in double precision); ``None``:
      the params' dtype or float32, whichever is wider (Optax: the params' dtype; the
      same but for bfloat16 and float16 params, whose sums gradtx keeps in float32).
  """

  def __init__(self, opt: base.GradientTransformation,
               every_k_schedule: Union[int, Callable[[jax.Array], Any]],
               use_grad_mean: bool = True,
               should_skip_update_fn: Optional[ShouldSkipUpdateFunction] = None,
               accumulator_dtype: Any = jnp.float32):
    validation.transform("MultiSteps", "opt", opt)
    if not callable(every_k_schedule):
      validation.integer("MultiSteps", "every_k_schedule", every_k_schedule)
    if should_skip_update_fn is not None and not callable(should_skip_update_fn):
      raise TypeError("MultiSteps: should_skip_update_fn must be callable, got "
                      f"{should_skip_update_fn!r}")
    self._opt = opt
    self._accumulate = accumulate_gradients(opt, every_k_schedule,
                                            use_grad_mean=use_grad_mean,
                                            accumulator_dtype=accumulator_dtype)
    self._should_skip_update_fn = should_skip_update_fn or _never_skip

  @property
  def inner_opt(self) -> base.GradientTransformation:
    return self._opt

  def init(self, params: base.Params) -> MultiStepsState:
    state = self._accumulate.init(params)
    _, skip_state = self._should_skip_update_fn(tree_zeros_like(params),
                                                state.gradient_step, params)
    return MultiStepsState(*state, skip_state=skip_state)

  def update(self, updates: base.Updates, state: MultiStepsState,
             params: Optional[base.Params] = None,
             **extra_args: Any) -> tuple[base.Updates, MultiStepsState]:
    should_skip, skip_state = self._should_skip_update_fn(updates, state.gradient_step,
                                                          params)
    should_skip = jnp.asarray(should_skip)
    if (should_skip.dtype, should_skip.shape) != (jnp.bool_, ()):
      raise ValueError(
          "MultiSteps: should_skip_update_fn must return a boolean scalar array, but it "
          f"returned an array of dtype {should_skip.dtype} and shape {should_skip.shape}")

    def accumulate():
      new_updates, accumulated = self._accumulate.update(
          updates, AccumulateGradientsState(*state[:4]), params, **extra_args)
      return new_updates, MultiStepsState(*accumulated, skip_state=skip_state)

    def skip():
      return _zero_updates_like(accumulate), state._replace(skip_state=skip_state)

    return lax.cond(should_skip, skip, accumulate)

  def has_updated(self, state: Union[MultiStepsState, base.PyTree]) -> jax.Array:
    """Whether the last update was an inner step (``mini_step`` back at 0, after at
    least one inner step)."""
    return jnp.logical_and(getattr(state, "mini_step") == 0,
                           getattr(state, "gradient_step") > 0)

  def gradient_transformation(self) -> base.GradientTransformation:
    return base.GradientTransformation(self.init, self.update)


class ApplyEvery(NamedTuple):
  """State of :func:`apply_every`: the step count modulo ``k``, and the running sum."""

  count: jax.Array
  grad_acc: base.Updates


def _sum_and_emit(u, acc, *, restart, emit):
  acc = jnp.where(restart, u, acc + u)
  return jnp.where(emit, acc, jnp.zeros_like(acc)), acc


@hyperparameters(k="int >= 1")
def apply_every(k: int = 1) -> base.GradientTransformation:
  """Sums the updates of ``k`` steps and emits the sum every ``k``-th step (zeros in
  between)::

    acc <- u if step % k == 0 else acc + u,   emit acc if step % k == k - 1 else 0

  Transforms earlier in a chain still update their state every step, so a batch of N
  with ``k=2`` is not a batch of 2N; :class:`MultiSteps` accumulates before its inner
  transform instead.

  Args:
    k: steps per emitted update, an int >= 1.
  """

  def init(params):
    return ApplyEvery(count=zero_count(), grad_acc=tree_zeros_like(params))

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    c = state.count % k
    emitted, grad_acc = map_leaves("apply_every", _sum_and_emit, updates, state.grad_acc,
                                   restart=c == 0, emit=c == k - 1)
    return emitted, ApplyEvery(count=safe_increment(state.count) % k, grad_acc=grad_acc)

  return base.GradientTransformation(init, update)
