"""Sharpness-aware minimisation (Foret, Kleiner, Mobahi & Neyshabur 2021, "Sharpness-Aware
Minimization for Efficiently Improving Generalization", Algorithm 1) as Optax 0.2.8's
``optax.contrib.sam``: an outer optimizer and an adversarial (inner) one.

SAM minimises ``max_{||e|| <= rho} L(w + e)``. A step first climbs to the adversarial
point ``w + e``, ``e = rho g / ||g||``, and then moves ``w`` with the gradient taken there::

  e   = rho grad L(w) / ||grad L(w)||
  w  <- w - lr grad L(w + e)

Generalised as in Optax: ``sync_period - 1`` steps of ``adv_optimizer`` *up* the loss
from ``w`` (its updates are negated), then one step of ``optimizer`` from ``w`` (the
cached params) with the gradient at the last adversarial point. The paper's SAM is
``sam(sgd(lr), chain(normalize(), sgd(rho)), sync_period=2)``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.tree.math import tree_where


class SAMState(NamedTuple):
  """State of :func:`sam` (Optax's fields).

  Attributes:
    steps_since_sync: adversarial steps taken since the last outer step, int32 in
      ``[0, sync_period)``.
    opt_state: the outer optimizer's state.
    adv_state: the adversarial optimizer's state.
    cache: the params ``w`` the adversarial steps started from (None in opaque mode,
      where they do not outlive a call).
  """

  steps_since_sync: jax.Array
  opt_state: base.OptState
  adv_state: base.OptState
  cache: Optional[base.Params]


def _negated(tree: base.Updates) -> base.Updates:
  return jax.tree.map(lambda x: -x, tree)


@hyperparameters(optimizer="transform", adv_optimizer="transform", sync_period="int >= 1",
                 reset_state="bool", opaque_mode="bool")
def sam(optimizer: base.GradientTransformation,
        adv_optimizer: base.GradientTransformation, sync_period: int = 2,
        reset_state: bool = True, opaque_mode: bool = False,
        batch_axis_name: Optional[str] = None) -> base.GradientTransformationExtraArgs:
  """SAM around an outer and an adversarial optimizer (Foret et al. 2021).

  Transparent mode (the default): each call is one step. Step ``i`` of a cycle of
  ``sync_period`` (``i = steps_since_sync``) with the gradient ``g`` at the current
  params ``p``:

    i < sync_period - 1:  emit -adv_optimizer(g, p), an ascent step
                          (on i = 0 the params are first cached: w = p)
    i = sync_period - 1:  emit w - p + optimizer(g, w), which lands on w + optimizer's
                          step; with reset_state the adversarial state restarts

  The outer optimizer's state advances on the last step only, the adversarial one on
  the others (with ``reset_state=False`` it is carried across cycles). Opaque mode
  (``opaque_mode=True``): each call is a whole cycle, the adversarial steps taken inside
  with ``grad_fn``, so only outer steps are visible (needed when every call has side
  effects, e.g. batch-norm statistics)::

    updates, state = tx.update(grads, state, params,
                               grad_fn=lambda params, i: jax.grad(loss)(params, batch))

  ``grad_fn(params, i)`` gives the gradient at the ``i``-th adversarial point
  (``i = 0 .. sync_period - 2``, a Python int, e.g. to pick a batch); with
  ``batch_axis_name`` it is averaged over that ``pmap``/``shard_map`` axis.

  Args:
    optimizer: the outer optimizer (``sgd(lr)`` in the paper).
    adv_optimizer: the adversarial optimizer; its update is negated, so a descent
      transform climbs (``chain(normalize(), sgd(rho))`` in the paper).
    sync_period: steps per cycle, adversarial ones plus one outer step (2 in the paper).
    reset_state: re-initialise the adversarial state after each outer step.
    opaque_mode: take the adversarial steps inside ``update`` (see above).
    batch_axis_name: opaque mode: the axis to average ``grad_fn``'s gradients over.

  Extra keyword arguments of ``update`` other than ``grad_fn`` are passed on to both
  optimizers. Where Optax selects between the adversarial and the outer step as
  ``c * a + (1 - c) * b``, gradtx uses ``jnp.where``: the same numbers, except that a
  non-finite value of the branch not taken (a normalised zero gradient) does not make
  the update NaN (``tests/test_sam.py``).
  """
  if opaque_mode and isinstance(sync_period, jax.core.Tracer):
    raise TypeError("sam: with opaque_mode=True, sync_period sets the number of "
                    "adversarial steps per call and must be a Python int, not traced")
  owner = "sam"

  def init_fn(params):
    return SAMState(
        steps_since_sync=jnp.zeros([], jnp.int32), opt_state=optimizer.init(params),
        adv_state=adv_optimizer.init(params),
        # A copy, not the params' own buffers: a step that donates params and state must
        # not be handed one buffer twice.
        cache=None if opaque_mode else jax.tree.map(jnp.array, params))

  def transparent_update(updates, state, params, extra_args):
    base.check_same_structure(owner, updates, params, state.cache)
    first = state.steps_since_sync == 0
    last = state.steps_since_sync == sync_period - 1
    adv_updates, adv_state = base.call_update(adv_optimizer, updates, state.adv_state,
                                              params, extra_args)
    outer, opt_state = base.call_update(optimizer, updates, state.opt_state, state.cache,
                                        extra_args)
    outer = jax.tree.map(lambda w, p, u: w - p + u, state.cache, params, outer)
    new_updates = tree_where(last, outer, _negated(adv_updates))
    if reset_state:
      adv_state = tree_where(last, adv_optimizer.init(params), adv_state)
    else:
      adv_state = tree_where(last, state.adv_state, adv_state)
    return new_updates, SAMState(
        steps_since_sync=(state.steps_since_sync + 1) % sync_period,
        opt_state=tree_where(last, opt_state, state.opt_state), adv_state=adv_state,
        cache=tree_where(first, params, state.cache))

  def opaque_update(updates, state, params, extra_args, grad_fn):
    if grad_fn is None:
      raise ValueError("sam: with opaque_mode=True, update needs grad_fn: "
                       "update(updates, state, params, grad_fn=lambda params, i: grads)")
    base.check_same_structure(owner, updates, params)
    adv_params, adv_grads, adv_state = params, updates, state.adv_state
    for i in range(sync_period - 1):
      step, adv_state = base.call_update(adv_optimizer, adv_grads, adv_state, adv_params,
                                         extra_args)
      adv_params = base.apply_updates(adv_params, _negated(step))
      adv_grads = grad_fn(adv_params, i)
      if batch_axis_name is not None:
        adv_grads = jax.lax.pmean(adv_grads, axis_name=batch_axis_name)
    if reset_state:
      adv_state = adv_optimizer.init(params)
    new_updates, opt_state = base.call_update(optimizer, adv_grads, state.opt_state,
                                              params, extra_args)
    return new_updates, SAMState(steps_since_sync=jnp.zeros([], jnp.int32),
                                 opt_state=opt_state, adv_state=adv_state, cache=None)

  def update_fn(updates, state, params=None, *,
                grad_fn: Optional[Callable[[base.Params, int], base.Updates]] = None,
                **extra_args: Any):
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format(owner))
    if opaque_mode:
      return opaque_update(updates, state, params, extra_args, grad_fn)
    return transparent_update(updates, state, params, extra_args)

  return base.GradientTransformationExtraArgs(init_fn, update_fn)
