"""Random trees, drawn with Optax's key usage: ``jax.random.split(key, num_leaves)``,
one key per leaf in leaf order, so a key gives the same stream as
``optax.tree_utils``."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import jax

PyTree = Any


def tree_split_key_like(rng_key: jax.Array, target_tree: PyTree) -> PyTree:
  """A tree of the structure of ``target_tree`` whose leaves are the keys
  ``jax.random.split(rng_key, num_leaves)``, in leaf order."""
  treedef = jax.tree.structure(target_tree)
  return jax.tree.unflatten(treedef, jax.random.split(rng_key, treedef.num_leaves))


def tree_random_like(rng_key: jax.Array, target_tree: PyTree,
                     sampler: Callable[..., Any] = jax.random.normal,
                     dtype: Optional[Any] = None) -> PyTree:
  """A tree like ``target_tree`` (whose leaves must be arrays), each leaf drawn by
  ``sampler(key, shape, dtype)`` with its own key from :func:`tree_split_key_like`, in
  ``dtype`` (default: the leaf's).

  A sampler that takes ``out_sharding`` is given each leaf's sharding.
  """
  keys = tree_split_key_like(rng_key, target_tree)
  takes_sharding = "out_sharding" in inspect.signature(sampler).parameters

  def draw(leaf, key):
    kwargs = {"out_sharding": jax.typeof(leaf).sharding} if takes_sharding else {}
    return sampler(key, leaf.shape, dtype or leaf.dtype, **kwargs)

  return jax.tree.map(draw, target_tree, keys)


def tree_unwrap_random_key_data(input_tree: PyTree) -> PyTree:
  """Every typed key (``jax.random.key``) of the tree replaced by its raw data
  (``jax.random.key_data``), e.g. to compare states numerically; other leaves kept."""

  def unwrap(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.key_data(x)
    return x

  return jax.tree.map(unwrap, input_tree)
