"""Filling, casting and the dtype rules of trees."""

from __future__ import annotations

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
  """Every floating-point leaf cast to ``dtype`` (``None``: unchanged); integer and
  boolean leaves are left as they are, as in Optax."""
  if dtype is None:
    return tree

  def cast(x):
    x = jnp.asarray(x)
    return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

  return jax.tree.map(cast, tree)


def tree_cast_like(tree: PyTree, other_tree: PyTree) -> PyTree:
  """Each leaf of ``tree`` cast to the dtype of the matching leaf of ``other_tree``."""
  return jax.tree.map(lambda x, y: jnp.asarray(x).astype(jnp.asarray(y).dtype),
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
