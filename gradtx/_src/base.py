"""The protocol: a gradient transformation is a pair of pure functions.

``init(params) -> state`` builds the state, a pytree of arrays; ``update(updates, state,
params=None, **extra_args) -> (updates, state)`` transforms one step's updates. Extra
keyword arguments (``value=``, ``grad=``, ``value_fn=``, ...) are accepted and ignored by
every transform that does not use them, so a chain can carry them to the members that do.

Per-array rules are lifted to pytrees by :mod:`gradtx._src.leafwise`; tree math lives in
:mod:`gradtx._src.tree`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple, Protocol, Union

import jax
import jax.numpy as jnp

PyTree = Any
Params = PyTree
Updates = PyTree
OptState = PyTree
Schedule = Callable[[jax.Array], jax.Array]
ScalarOrSchedule = Union[float, jax.Array, Schedule]

NO_PARAMS_MSG = "{}: this transform needs the params; call update(updates, state, params)."


class TransformInitFn(Protocol):

  def __call__(self, params: Params) -> OptState:
    ...


class TransformUpdateFn(Protocol):

  def __call__(self, updates: Updates, state: OptState, params: Params | None = None,
               **extra_args: Any) -> tuple[Updates, OptState]:
    ...


class GradientTransformation(NamedTuple):
  """A pure ``(init, update)`` pair; see the module docstring for the contract."""

  init: TransformInitFn
  update: TransformUpdateFn


class EmptyState(NamedTuple):
  """The state of a transform that keeps nothing."""


def init_empty_state(params: Params) -> EmptyState:
  del params
  return EmptyState()


def identity() -> GradientTransformation:
  """Passes updates through unchanged: ``u``."""

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    return updates, state

  return GradientTransformation(init_empty_state, update)


def set_to_zero() -> GradientTransformation:
  """Replaces every update by zeros (freezes the params it is applied to)."""

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    return jax.tree.map(jnp.zeros_like, updates), state

  return GradientTransformation(init_empty_state, update)


def stateless(fn: Callable[[Updates, Params | None], Updates]) -> GradientTransformation:
  """A transform from a function ``fn(updates, params) -> updates`` that keeps no state."""

  def update(updates, state, params=None, **extra_args):
    del extra_args
    return fn(updates, params), state

  return GradientTransformation(init_empty_state, update)


def apply_updates(params: Params, updates: Updates) -> Params:
  """``params + updates`` leaf by leaf, each result in its param's own dtype."""
  return jax.tree.map(
      lambda p, u: None if p is None else jnp.asarray(p + u).astype(jnp.asarray(p).dtype),
      params, updates, is_leaf=lambda x: x is None)


def resolve(value: ScalarOrSchedule, count: jax.Array) -> Any:
  """A hyperparameter's value at ``count``: schedules are called, numbers pass through.

  The count reaches a schedule as a JAX array even when the state holds a NumPy one (as
  after restoring a checkpoint), so schedules written with ``jnp`` behave the same.
  """
  return value(jnp.asarray(count)) if callable(value) else value


def call_update(tx: Any, updates: Updates, state: OptState, params: Params | None,
                extra_args: dict[str, Any]) -> tuple[Updates, OptState]:
  """Calls ``tx.update`` with the extra arguments its signature accepts.

  gradtx transforms take every extra; a foreign transform (a plain Optax one, say) gets
  only the keywords it names, so mixing libraries in one chain just works.
  """
  if extra_args:
    extra_args = accepted_extra_args(tx.update, extra_args)
  return tx.update(updates, state, params, **extra_args)


def accepted_extra_args(fn: Callable[..., Any], extra_args: dict[str, Any]) -> dict[str, Any]:
  try:
    parameters = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return extra_args
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
    return extra_args
  return {k: v for k, v in extra_args.items() if k in parameters}


def structure_error(owner: str, updates_def: Any, other_def: Any) -> ValueError:
  return ValueError(
      f"{owner}: the tree structure of the updates differs from the tree structure of "
      "the optimizer state (or params) it is combined with; was the state initialised "
      f"with other params?\n  updates: {updates_def}\n  state:   {other_def}")


def check_same_structure(owner: str, updates: Updates, *trees: PyTree) -> None:
  """Raises a readable error if any tree's structure differs from that of ``updates``."""
  updates_def = jax.tree.structure(updates)
  for tree in trees:
    other_def = jax.tree.structure(tree)
    if other_def != updates_def:
      raise structure_error(owner, updates_def, other_def)


# Transitional names for modules not yet moved to the tree package.
from gradtx._src.tree.casting import tree_full_like as full_like  # noqa: E402
from gradtx._src.tree.casting import widest_float_dtype as scalar_dtype  # noqa: E402
from gradtx._src.tree.math import (bias_correction_factor, safe_increment,  # noqa: E402
                                   stacked_leaves, zero_count)
from gradtx._src.tree.math import tree_where as tree_select  # noqa: E402


def map_leaves(*args, **kwargs):
  from gradtx._src.leafwise import map_leaves as lift  # pylint: disable=import-outside-toplevel
  return lift(*args, **kwargs)
