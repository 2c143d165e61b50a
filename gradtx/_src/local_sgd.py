"""Local SGD and DiLoCo: replicas that train apart and average their progress now and then.

Each of ``k`` replicas (the members of a named mesh axis, or the entries of a leading
axis of every params leaf) runs an inner optimizer on its own data and communicates only
every ``H`` steps. DiLoCo (Douillard et al. 2023, "DiLoCo: Distributed Low-Communication
Training of Language Models", Algorithm 1)::

  for outer step t = 1 .. T:
    for every replica i:                       (no communication)
      theta_i <- theta^(t-1)
      H times: theta_i <- InnerOpt(theta_i, grad L(theta_i; x ~ D_i))
      delta_i = theta^(t-1) - theta_i
    Delta^(t) = mean_i delta_i                  (one all-reduce)
    theta^(t) = OuterOpt(theta^(t-1), Delta^(t))

Local SGD (Stich 2019, "Local SGD converges fast and communicates little") is the same
with plain averaging, ``theta^(t) = mean_i theta_i``: the outer optimizer is SGD with
learning rate 1 and no momentum, ``theta^(t) = theta^(t-1) - Delta^(t)``.

As a gradient transformation, the user's params are each replica's ``theta_i`` and the
state keeps ``theta^(t-1)``, ``global_params``. Every call runs the inner step; on calls
``H, 2H, ...`` the emitted update is ``theta^(t) - params`` instead of the inner update,
which moves every replica onto the new global params (to within the rounding of
``params + (theta^(t) - params)``). The inner state stays with its replica, never reset
or averaged. The averaging and the outer step sit in the true branch of a ``lax.cond``,
so under ``shard_map``/``pmap`` the other steps execute no collective at all.
"""

from __future__ import annotations

from typing import Any, Hashable, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, validation
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leaf_paths
from gradtx._src.scaling import scale
from gradtx._src.tree.casting import compute_dtype
from gradtx._src.tree.math import safe_increment, zero_count


class DiLoCoState(NamedTuple):
  """State of :func:`diloco` and :func:`local_sgd`.

  Attributes:
    count: inner steps taken (calls to ``update``); the replicas synchronise on the
      calls that make it a multiple of ``sync_period``.
    global_params: ``theta^(t-1)``, the params of the last synchronisation (the params
      given to ``init`` before the first), in the params' dtypes. With
      ``axis_name=None`` it has no replica axis: one copy for all replicas.
    inner_state: the inner optimizer's state, per replica (with ``axis_name=None``,
      every leaf has the leading replica axis).
    outer_state: the outer optimizer's state, updated on synchronisation steps only
      (:func:`local_sgd`: an empty state).
  """

  count: jax.Array
  global_params: base.Params
  inner_state: base.OptState
  outer_state: base.OptState


def _check_axis_name(owner: str, axis_name: Any) -> None:
  names = axis_name if isinstance(axis_name, tuple) else (axis_name,)
  if axis_name is not None and not (names and all(isinstance(n, str) for n in names)):
    raise validation.HyperparameterTypeError(
        f"{owner}: axis_name must be the name of a mapped axis (a str), a tuple of names, "
        f"or None for a leading replica axis of every params leaf, got {axis_name!r}")


def _replica_count(owner: str, params: base.Params) -> int:
  """The common size of the leading axis of every leaf of ``params``, or an error naming
  the first leaf that has none or another."""
  leaves, paths = jax.tree.leaves(params), leaf_paths(params)
  count = None
  for path, leaf in zip(paths, leaves):
    shape = jnp.shape(leaf)
    if not shape or (count is not None and shape[0] != count):
      expected = "a leading axis" if count is None else f"a leading axis of size {count}"
      raise ValueError(
          f"{owner}: with axis_name=None every params leaf has a leading replica axis, "
          f"but the leaf at {path or '(the root)'} has shape {shape}, expected {expected} "
          f"(as {paths[0] or 'the first leaf'} has). Stack the replicas' params on axis "
          "0, or run under shard_map/pmap and name the axis.")
    count = shape[0]
  return count


def _per_replica(value: Any, replicas: int) -> bool:
  """Whether an extra argument is one per replica: arrays with the leading replica axis."""
  leaves = jax.tree.leaves(value)
  return bool(leaves) and all(isinstance(x, jax.Array) and x.ndim and x.shape[0] == replicas
                              for x in leaves)


def _cast_op(op):
  """``op`` on arrays promoted to at least float32, cast back to the last one's dtype."""

  def apply(*arrays):
    dtype = compute_dtype(*(x.dtype for x in arrays))
    return op(*(x.astype(dtype) for x in arrays)).astype(arrays[-1].dtype)

  return apply


# delta_i = theta^(t-1) - (theta_i + u_i), written so that a replica still at
# theta^(t-1) (sync_period=1) contributes -u_i exactly.
_delta = _cast_op(lambda global_, param, update: (global_ - param) - update)
_land = _cast_op(lambda new_global, param: new_global - param)
_add = _cast_op(lambda step, param: param + step)


def _periodic_outer(owner: str, inner: base.GradientTransformation,
                    outer: base.GradientTransformation, sync_period: Any,
                    axis_name: Hashable | None) -> base.GradientTransformation:
  """The shared body of :func:`diloco` and :func:`local_sgd`."""
  leading = axis_name is None

  def replica_mean(x):
    return jnp.mean(x, axis=0) if leading else jax.lax.pmean(x, axis_name)

  def init(params):
    if leading:
      _replica_count(owner, params)
      # One copy for all replicas: they start from the same params (Algorithm 1).
      global_params = jax.tree.map(lambda p: p[0], params)
      inner_state = jax.vmap(inner.init)(params)
    else:
      # A copy, not the params' own buffers (a step that donates params and state
      # must not be handed one buffer twice).
      global_params = jax.tree.map(jnp.array, params)
      inner_state = inner.init(params)
    return DiLoCoState(zero_count(), global_params, inner_state, outer.init(global_params))

  def inner_update(updates, inner_state, params, extra_args):
    if not leading:
      return base.call_update(inner, updates, inner_state, params, extra_args)
    replicas = _replica_count(owner, params)
    per_replica = {k: v for k, v in extra_args.items() if _per_replica(v, replicas)}
    shared = {k: v for k, v in extra_args.items() if k not in per_replica}

    def one(u, s, p, arrays):
      return base.call_update(inner, u, s, p, {**arrays, **shared})

    return jax.vmap(one)(updates, inner_state, params, per_replica)

  def update(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format(owner))
    base.check_same_structure(owner, updates, params, state.global_params)
    inner_updates, inner_state = inner_update(updates, state.inner_state, params,
                                              extra_args)
    count = safe_increment(state.count)
    # Traced sync_period (inject_hyperparams) works too; every replica has the same
    # count, so all of them take the same branch.
    sync = jnp.mod(count, jnp.asarray(sync_period, count.dtype)) == 0

    def synchronise(_):
      deltas = jax.tree.map(_delta, state.global_params, params, inner_updates)
      outer_grad = jax.tree.map(replica_mean, deltas)
      step, outer_state = base.call_update(outer, outer_grad, state.outer_state,
                                           state.global_params, {})
      global_params = jax.tree.map(_add, step, state.global_params)
      return jax.tree.map(_land, global_params, params), global_params, outer_state

    def local(_):
      return inner_updates, state.global_params, state.outer_state

    new_updates, global_params, outer_state = jax.lax.cond(sync, synchronise, local, None)
    return new_updates, DiLoCoState(count, global_params, inner_state, outer_state)

  return base.GradientTransformation(init, update)


@hyperparameters(inner="transform", outer="transform", sync_period="int >= 1",
                 axis_name="any")
def diloco(inner: base.GradientTransformation, outer: base.GradientTransformation,
           sync_period: int, axis_name: Hashable | None) -> base.GradientTransformation:
  """DiLoCo (Douillard et al. 2023, Algorithm 1): ``inner`` on every replica, ``outer``
  on the replicas' averaged progress every ``sync_period`` steps.

  On every call each replica takes its own inner step (``u_i = inner(g_i)``, no
  communication). On calls ``H, 2H, ...`` (``H = sync_period``, after the inner step):

    Delta   = mean_i (theta^(t-1) - (theta_i + u_i))      one all-reduce (lax.pmean)
    theta^(t) = theta^(t-1) + outer(Delta)                 Delta is outer's gradient
    emit theta^(t) - theta_i                               every replica lands there

  The paper's recipe: inner AdamW, outer ``sgd(0.7, momentum=0.9, nesterov=True)``
  (Nesterov momentum as PyTorch's, Optax's and gradtx's ``sgd``), ``H = 500`` for its
  language models; ``outer=sgd(1.0)`` is :func:`local_sgd`. There are no defaults:
  ``axis_name=None`` is a real choice (a leading replica axis), so a default would, when
  forgotten under ``shard_map``, silently take each param's first dimension for
  replicas; and the outer optimizer and the period, which come before it, decide what
  is communicated. The paper's recipe, written out::

    tx = gtx.diloco(gtx.adamw(1e-3, weight_decay=0.1),
                    gtx.sgd(0.7, momentum=0.9, nesterov=True), sync_period=500,
                    axis_name="data")

  Replicas: under ``jax.shard_map`` or ``jax.pmap`` (or ``jax.vmap`` with an
  ``axis_name``), ``axis_name`` names the axis the replicas are mapped over, and each
  replica calls ``init`` and ``update`` on its own params; the state is per replica,
  with ``count``, ``global_params`` and ``outer_state`` equal on all of them. With
  ``axis_name=None``, every leaf of the params (and of the gradients) has a leading axis
  of replicas; ``inner`` runs on each replica's slice (under ``vmap``; extra arguments
  whose arrays all have that leading axis, such as per-replica losses ``value=``, are
  sliced per replica too, others are passed to every replica as they are),
  and ``global_params``/``outer_state`` are kept once, without that axis. Replicas must
  start from the same params: ``init`` takes the first replica's (``axis_name=None``) or
  each replica's own as ``theta^(0)``.

  The averaged delta is communicated in the params' dtypes; the arithmetic is done in
  at least float32 and rounded to them. Works with :func:`~gradtx.pack`'ed params (per
  replica: ``jax.vmap(gtx.pack)`` for a leading axis).

  Args:
    inner: the replicas' optimizer, a gradtx or plain Optax transform; extra keyword
      arguments given to ``update`` are passed on to it.
    outer: the optimizer of the global params, given ``Delta`` as its gradient.
    sync_period: ``H``, inner steps between synchronisations, an integer >= 1.
    axis_name: the mapped axis of the replicas (a name or a tuple of names), or None for
      a leading replica axis of every params leaf.
  """
  _check_axis_name("diloco", axis_name)
  return _periodic_outer("diloco", inner, outer, sync_period, axis_name)


@hyperparameters(inner="transform", sync_period="int >= 1", axis_name="any")
def local_sgd(inner: base.GradientTransformation, sync_period: int,
              axis_name: Hashable | None) -> base.GradientTransformation:
  """Local SGD (Stich 2019; federated averaging, McMahan et al. 2017): ``inner`` on every
  replica, the replicas' params averaged every ``sync_period`` steps.

  Each call takes every replica's own inner step without communication; on calls
  ``H, 2H, ...`` the replicas move to the average of where they arrived::

    theta^(t) = theta^(t-1) - mean_i (theta^(t-1) - (theta_i + u_i))   one lax.pmean

  which is :func:`diloco` with outer SGD of learning rate 1 (no momentum), with the same
  state (an empty ``outer_state``), replicas and ``axis_name`` as there. Averaging the
  deltas rather than the params makes ``sync_period=1`` with ``inner=sgd(lr)`` equal
  synchronous data-parallel SGD on the averaged gradient, to the rounding of
  ``mean(lr * g_i)`` against ``lr * mean(g_i)`` (none when ``lr`` is a power of two).

  Args:
    inner: the replicas' optimizer (Stich: ``sgd``); extra keyword arguments given to
      ``update`` are passed on to it.
    sync_period: ``H``, inner steps between averagings, an integer >= 1.
    axis_name: the mapped axis of the replicas (a name or a tuple of names), or None for
      a leading replica axis of every params leaf.
  """
  _check_axis_name("local_sgd", axis_name)
  return _periodic_outer("local_sgd", inner, scale(-1.0), sync_period, axis_name)
