"""Filling, casting and the dtype rules of trees."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def _fill(p: Any, value: Any, dtype: Any) -> jax.Array:
  """An array shaped like ``p`` holding ``value``, computed from ``p``.

  Computed from the array (``min(|p|, 0)``, NaN mapped to 0, plus ``value``) rather than
  broadcast from a constant: under ``jax.jit`` with automatic sharding XLA gives a
  constant no sharding (it lands on one device), while a value computed from ``p`` takes
  ``p``'s. That is what lets a bare ``jax.jit(tx.init)`` shard every per-param state
  leaf like its param.
  """
  p = jnp.asarray(p)
  dtype = p.dtype if dtype is None else jnp.dtype(dtype)
  if jnp.issubdtype(p.dtype, jnp.inexact):
    magnitude = jnp.abs(p)
    zero = jnp.where(jnp.isnan(magnitude), 0, jnp.minimum(magnitude, 0))
  else:
    zero = p & False if p.dtype == jnp.bool_ else p * 0
  zero = zero.astype(dtype)
  return zero + jnp.asarray(value, dtype)


def tree_full_like(tree: PyTree, fill_value: Any, dtype: Any = None) -> PyTree:
  """A tree like ``tree``, every array filled with ``fill_value`` (in ``dtype``, default
  each leaf's own).

  Each array takes the sharding of the leaf it is built from, also under ``jax.jit``
  (see ``_fill``), so state built with it follows its params' sharding.
  """
  return jax.tree.map(lambda x: _fill(x, fill_value, dtype), tree)


def tree_zeros_like(tree: PyTree, dtype: Any = None) -> PyTree:
  """``tree_full_like(tree, 0, dtype)``."""
  return tree_full_like(tree, 0, dtype)


def tree_ones_like(tree: PyTree, dtype: Any = None) -> PyTree:
  """``tree_full_like(tree, 1, dtype)``."""
  return tree_full_like(tree, 1, dtype)


def tree_cast(tree: PyTree, dtype: Any) -> PyTree:
  """Every leaf cast to ``dtype`` (``None``: the tree unchanged), as Optax's: integer,
  boolean and complex leaves too (see :func:`tree_cast_floats` for a cast that leaves
  them alone)."""
  if dtype is None:
    return tree
  return jax.tree.map(lambda x: jnp.asarray(x).astype(dtype), tree)


def tree_cast_floats(tree: PyTree, dtype: Any) -> PyTree:
  """Every real floating-point leaf cast to ``dtype`` (``None``: unchanged); integer,
  boolean and complex leaves are left as they are."""
  if dtype is None:
    return tree

  def cast(x):
    x = jnp.asarray(x)
    return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

  return jax.tree.map(cast, tree)


def tree_cast_like(tree: PyTree, other_tree: PyTree) -> PyTree:
  """Each leaf of ``tree`` cast to the dtype of the matching leaf of ``other_tree``;
  left as it is where that leaf has no dtype (a Python number), as in Optax."""
  return jax.tree.map(
      lambda x, y: jnp.asarray(x).astype(y.dtype) if hasattr(y, "dtype") else x,
      tree, other_tree)


def widest_float_dtype(tree: PyTree) -> Any:
  """The dtype of tree-wide scalars and solver arithmetic.

  The widest real dtype of the tree's floating (or complex) leaves, and at least
  float32; the default float dtype (float64 under ``jax_enable_x64``) when the tree
  has none. A complex64 leaf counts as float32.
  """
  dtypes = [jnp.finfo(x.dtype).dtype for x in jax.tree.leaves(tree)
            if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)]
  if not dtypes:
    return jnp.result_type(float)
  return jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)


def compute_dtype(*dtypes: Any) -> Any:
  """The dtype per-array rules compute in: the arguments' promoted dtype, and at least
  float32, so that hyperparameters are never rounded to a low-precision dtype.

  From dtypes, not arrays: a weakly typed float64 leaf must not lose to float32.
  """
  return jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)


def is_float_array(x: Any) -> bool:
  return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)


def tree_dtype(tree: PyTree, mixed_dtype_handler: str | None = None) -> Any:
  """The dtype of the tree's leaves (the default dtype of an empty array for a tree
  without leaves), as Optax's.

  ``mixed_dtype_handler``: ``None``: the leaves must share one dtype (``ValueError``
  otherwise); ``'promote'``: their :func:`jax.numpy.promote_types`; ``'highest'`` /
  ``'lowest'``: the highest / lowest dtype in the order "``a <= b`` if ``a`` promotes
  to ``b``" (``ValueError`` if two dtypes are not ordered, e.g. int32 and uint32).
  """
  leaves_with_path = jax.tree_util.tree_leaves_with_path(tree)
  if not leaves_with_path:
    return jnp.asarray([]).dtype
  dtypes = [jnp.asarray(x).dtype for _, x in leaves_with_path]
  if mixed_dtype_handler is None:
    dtype = dtypes[0]
    errors = [f"Expected {dtype=} for {path} but got {x_dtype}."
              for (path, _), x_dtype in zip(leaves_with_path, dtypes) if x_dtype != dtype]
    if errors:
      raise ValueError("\n".join(errors))
    return dtype
  if mixed_dtype_handler == "promote":
    return functools.reduce(jnp.promote_types, dtypes)
  if mixed_dtype_handler == "highest":
    return functools.reduce(_higher_dtype, dtypes)
  if mixed_dtype_handler == "lowest":
    return functools.reduce(_lower_dtype, dtypes)
  raise ValueError(f"Invalid value for {mixed_dtype_handler=}, possible values are: "
                   'None, "promote", "highest", "lowest".')


def _lower_dtype(dtype1: Any, dtype2: Any) -> Any:
  """The one of two dtypes that promotes to the other."""
  promoted = jnp.promote_types(dtype1, dtype2)
  if promoted == dtype1:
    return dtype2
  if promoted == dtype2:
    return dtype1
  raise ValueError(f"Cannot compare dtype of {dtype1=} and {dtype2=}. Neither {dtype1} "
                   f"nor {dtype2} can be promoted to the other.")


def _higher_dtype(dtype1: Any, dtype2: Any) -> Any:
  """The one of two dtypes that the other promotes to."""
  return dtype2 if _lower_dtype(dtype1, dtype2) == dtype1 else dtype1
