"""Microbatching: a function evaluated on slices of its batch, one after another.

``microbatch(fun, argnums, microbatch_size)`` returns a function that splits the batch
arguments into ``n = batch / microbatch_size`` microbatches, evaluates ``fun`` on each
in a ``lax.fori_loop`` (so only one microbatch's intermediates are alive at a time) and
combines the results as an :class:`Accumulator` says: summed, averaged, or concatenated
back into the batch's order. ``micro_vmap`` is ``jax.vmap`` with that memory bound;
``micro_grad`` computes per-example gradients, transformed (clipped, say) before they
are combined.

Microbatch ``i`` takes the examples ``i, i + n, i + 2n, ...`` (a column-major reshape of
the batch axis), so a batch sharded over devices stays sharded within each microbatch.

Reference: Optax's ``optax.microbatching`` (same names, signatures and numerics).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

Function = Callable[..., Any]
IndividualOutputs = collections.namedtuple("Aux", ["values", "metrics", "aux"])


@dataclasses.dataclass(frozen=True)
class Accumulator:
  """How microbatch results are combined: the loop
  ``carry = init(shape of one result); carry = update(carry, result_i, i) for each i;
  return finalize(carry)``, and ``aggregate(results)`` combining results stacked on a
  leading axis (what ``micro_vmap`` does within a microbatch)."""

  init: Callable[[Any], Any]
  update: Callable[[Any, Any, Any], Any]
  finalize: Callable[[Any], Any]
  aggregate: Callable[[Any], Any]


class AccumulationType(enum.Enum):
  """The built-in accumulators."""

  MEAN = enum.auto()
  """The mean of the microbatch results."""
  SUM = enum.auto()
  """Their sum."""
  RUNNING_MEAN = enum.auto()
  """Their mean over the microbatches evaluated (``num_real_microbatches``)."""
  CONCAT = enum.auto()
  """Concatenated along axis 0, in the batch's order."""


def _floating_only(init: Callable[[Any], Any]) -> Callable[[Any], Any]:
  def checked(value):
    if not jnp.issubdtype(value.dtype, jnp.floating):
      raise ValueError("MEAN and RUNNING_MEAN Accumulators require floating-point values.")
    return init(value)

  return checked


def _leafwise(init, update, finalize, aggregate) -> Accumulator:
  """An accumulator applying per-array functions to every leaf of the results."""
  return Accumulator(
      init=lambda value: jax.tree.map(init, value),
      update=lambda carry, value, i: jax.tree.map(lambda c, v: update(c, v, i), carry,
                                                  value),
      finalize=lambda carry: jax.tree.map(finalize, carry),
      aggregate=lambda values: jax.tree.map(aggregate, values))


def _running_mean_update(carry, value, index):
  p = index / (index + 1)
  return carry * p + value * (1 - p)


def _concat_finalize(carry):
  """``(n, m, ...) -> (n*m, ...)`` column-major: back to the batch's order."""
  sharding = jax.typeof(carry).sharding
  if sharding.mesh.are_all_axes_explicit:
    spec = jax.sharding.PartitionSpec(*sharding.spec[1:])
    out = jax.sharding.NamedSharding(sharding.mesh, spec)
    return carry.reshape(-1, *carry.shape[2:], order="F", out_sharding=out)
  return carry.reshape(-1, *carry.shape[2:], order="F")


def _builtin(kind: AccumulationType, num_microbatches: int | None) -> Accumulator:
  if kind in (AccumulationType.MEAN, AccumulationType.CONCAT) and num_microbatches <= 0:
    raise ValueError(f"num_microbatches={num_microbatches} must be positive.")
  add = lambda carry, value, _: carry + value  # noqa: E731
  if kind is AccumulationType.SUM:
    return _leafwise(jnp.zeros_like, add, lambda x: x, functools.partial(jnp.sum, axis=0))
  if kind is AccumulationType.MEAN:
    return _leafwise(_floating_only(jnp.zeros_like), add,
                     lambda carry: carry / num_microbatches,
                     functools.partial(jnp.mean, axis=0))
  if kind is AccumulationType.RUNNING_MEAN:
    return _leafwise(_floating_only(jnp.zeros_like), _running_mean_update, lambda x: x,
                     functools.partial(jnp.mean, axis=0))
  return _leafwise(
      lambda value: jnp.broadcast_to(jnp.zeros_like(value),
                                     (num_microbatches,) + value.shape),
      lambda carry, value, i: carry.at[i].set(value), _concat_finalize, lambda x: x)


def _resolve(accumulator: Any, num_microbatches: int | None) -> Accumulator:
  """One accumulator for the whole result from a tree (a prefix of the result's) of
  accumulators and accumulation types."""
  is_leaf = lambda x: isinstance(x, (Accumulator, AccumulationType))  # noqa: E731

  def one(acc):
    if isinstance(acc, Accumulator):
      return acc
    if isinstance(acc, AccumulationType):
      return _builtin(acc, num_microbatches)
    raise ValueError(f"Unknown accumulator: {acc}")

  tree = jax.tree.map(one, accumulator, is_leaf=is_leaf)
  each = lambda fn, *trees: jax.tree.map(fn, tree, *trees, is_leaf=is_leaf)  # noqa: E731
  return Accumulator(
      init=lambda values: each(lambda acc, v: acc.init(v), values),
      update=lambda carry, values, i: each(lambda acc, c, v: acc.update(c, v, i), carry,
                                           values),
      finalize=lambda carry: each(lambda acc, c: acc.finalize(c), carry),
      aggregate=lambda values: each(lambda acc, v: acc.aggregate(v), values))


def reshape_batch_axis(tree: Any, microbatch_size: int, axis: int = 0) -> Any:
  """Each leaf's batch axis ``axis`` reshaped to ``(num_microbatches, microbatch_size)``,
  column-major, so that a sharding of the batch axis carries over to the
  ``microbatch_size`` axis (the new ``num_microbatches`` axis is replicated).

  Raises:
    ValueError: with explicit sharding, the shards do not divide ``microbatch_size``.
  """

  def reshape(x):
    shape = x.shape[:axis] + (-1, microbatch_size) + x.shape[axis + 1:]
    sharding = jax.typeof(x).sharding
    if not sharding.mesh.are_all_axes_explicit:
      return x.reshape(shape, order="F")
    spec = sharding.spec
    if len(spec) > axis:
      spec = jax.sharding.PartitionSpec(*spec[:axis], None, spec[axis], *spec[axis + 1:])
    shards = x.shape[axis] // sharding.shard_shape(x.shape)[axis]
    if microbatch_size % shards != 0:
      raise ValueError(f"nshards={shards} must evenly divide "
                       f"microbatch_size={microbatch_size}.")
    return x.reshape(shape, order="F",
                     out_sharding=jax.sharding.NamedSharding(sharding.mesh, spec))

  return jax.tree.map(reshape, tree)


def _as_tuple(x: Any) -> tuple[Any, ...]:
  return (x,) if isinstance(x, (int, str)) else tuple(x)


def microbatch(fun: Function, argnums: int | Sequence[int], microbatch_size: int | None,
               accumulator: Any = AccumulationType.SUM, *,
               argnames: str | Sequence[str] = (), in_axes: int | Sequence[int] = 0,
               num_real_microbatches: int | jax.Array | None = None) -> Function:
  """``fun`` evaluated microbatch by microbatch, the results combined by ``accumulator``.

  Args:
    fun: any function.
    argnums: the positions of the arguments with a batch axis.
    microbatch_size: examples per microbatch; must divide the batch size. ``None``:
      ``fun`` itself is returned.
    accumulator: how results are combined (:class:`AccumulationType` or
      :class:`Accumulator`), or a tree of them, a prefix of ``fun``'s output's.
    argnames: the names of keyword arguments with a batch axis.
    in_axes: the batch axis of each of ``argnums + argnames`` (one int for all).
    num_real_microbatches: evaluate only the first this many microbatches (it may be
      traced, so a smaller batch padded to the size compiles once).

  Raises:
    ValueError: the batch arguments' batch sizes differ, or ``microbatch_size`` does not
      divide them.
  """
  if microbatch_size is None:
    return fun
  argnums, argnames = _as_tuple(argnums), _as_tuple(argnames)
  in_axes = (in_axes,) * (len(argnums) + len(argnames)) if isinstance(in_axes, int) \
      else tuple(in_axes)
  positions = list(zip(argnums, in_axes)) + list(zip(argnames, in_axes[len(argnums):]))

  def get(args, kwargs, key):
    return args[key] if isinstance(key, int) else kwargs[key]

  def microbatched(*args, **kwargs):
    sizes = [leaf.shape[ax] for key, ax in positions
             for leaf in jax.tree.leaves(get(args, kwargs, key))]
    if len(set(sizes)) > 1:
      raise ValueError(f"Batch Arguments must have equal-size batch axes, found {sizes}.")
    batch_size = sizes[0]
    if batch_size % microbatch_size != 0:
      raise ValueError(f"batch_size={batch_size} must be divisible by "
                       f"microbatch_size={microbatch_size}.")
    num_microbatches = batch_size // microbatch_size
    acc = _resolve(accumulator, num_microbatches)
    args, kwargs = list(args), dict(kwargs)
    for key, ax in positions:
      split = reshape_batch_axis(get(args, kwargs, key), microbatch_size, ax)
      if isinstance(key, int):
        args[key] = split
      else:
        kwargs[key] = split

    def one(index):
      sliced_args, sliced_kwargs = list(args), dict(kwargs)
      for key, ax in positions:
        take = functools.partial(jnp.take, indices=index, axis=ax)
        if isinstance(key, int):
          sliced_args[key] = jax.tree.map(take, args[key])
        else:
          sliced_kwargs[key] = jax.tree.map(take, kwargs[key])
      return fun(*sliced_args, **sliced_kwargs)

    steps = num_microbatches if num_real_microbatches is None else num_real_microbatches
    carry = jax.lax.fori_loop(0, steps, lambda i, c: acc.update(c, one(i), i),
                              acc.init(jax.eval_shape(one, 0)))
    return acc.finalize(carry)

  return microbatched


def micro_vmap(fun: Function, in_axes: int | Sequence[int] = 0, out_axes: Any = 0, *,
               microbatch_size: int | None = None,
               vmap_fn: Callable[..., Function] = jax.vmap,
               accumulator: Any = AccumulationType.CONCAT,
               num_real_microbatches: int | jax.Array | None = None) -> Function:
  """``jax.vmap(fun, in_axes)`` evaluated ``microbatch_size`` examples at a time.

  With the default ``CONCAT`` the result is ``vmap``'s; ``MEAN`` or ``SUM`` reduce over
  the batch without holding every example's output. Keyword arguments are mapped over
  their leading axis, as ``vmap`` does. ``out_axes`` must be 0.
  """
  if out_axes != 0:
    raise NotImplementedError("out_axis != 0 is not currently supported")
  in_axes = (in_axes,) if isinstance(in_axes, int) else tuple(in_axes)

  def mapped_and_reduced(*args, kwargs):
    output = vmap_fn(fun, in_axes, out_axes)(*args, **kwargs)
    within = jax.tree.leaves(output)[0].shape[0]
    return _resolve(accumulator, within).aggregate(output)

  batched = microbatch(
      mapped_and_reduced,
      argnums=tuple(i for i, ax in enumerate(in_axes) if ax is not None), argnames="kwargs",
      microbatch_size=microbatch_size, accumulator=accumulator,
      in_axes=tuple(ax for ax in in_axes if ax is not None) + (0,),
      num_real_microbatches=num_real_microbatches)
  return lambda *args, **kwargs: batched(*args, kwargs=kwargs)


def micro_grad(fun: Function, has_aux: bool = False, argnums: int | Sequence[int] = 0, *,
               batch_argnums: int | Sequence[int] = 1, keep_batch_dim: bool = True,
               microbatch_size: int | None = None, accumulator: Any = AccumulationType.SUM,
               transform_fn: Callable[[Any], Any] = lambda x: x,
               metrics_fn: Callable[[Any], Any] = lambda x: None,
               num_real_microbatches: int | jax.Array | None = None
               ) -> Callable[..., tuple[Any, IndividualOutputs]]:
  """Per-example gradients of ``fun``, transformed and then combined.

  For each example ``e`` of the batch arguments: ``g_e = grad fun(params, e)``; the
  result is ``accumulator`` over ``transform_fn(g_e)`` (e.g. clipped gradients summed,
  as in DP-SGD), and the auxiliary output holds, per example, the value of ``fun``,
  ``metrics_fn(g_e)`` and ``fun``'s own auxiliary output (``has_aux``). With
  ``keep_batch_dim`` each example is passed with a batch axis of size 1.

  Returns:
    ``(combined, IndividualOutputs(values, metrics, aux))``.
  """
  batch_argnums = _as_tuple(batch_argnums)
  with_aux = fun if has_aux else (lambda *a, **k: (fun(*a, **k), None))
  value_and_grad = jax.value_and_grad(with_aux, argnums, has_aux=True)

  def per_example(*args, **kwargs):
    (value, aux), grad = value_and_grad(*args, **kwargs)
    return transform_fn(grad), IndividualOutputs(value, metrics_fn(grad), aux)

  in_axes = [None] * (max(batch_argnums) + 1)
  for i in batch_argnums:
    in_axes[i] = 0
  mapped = micro_vmap(per_example, in_axes=in_axes,
                      accumulator=(accumulator, AccumulationType.CONCAT),
                      microbatch_size=microbatch_size,
                      num_real_microbatches=num_real_microbatches)
  if not keep_batch_dim:
    return mapped

  def with_batch_axis(*args, **kwargs):
    args = [jax.tree.map(lambda x: jnp.expand_dims(x, 1), a) if i in batch_argnums else a
            for i, a in enumerate(args)]
    return mapped(*args, **kwargs)

  return with_batch_axis
