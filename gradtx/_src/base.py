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
import sys
from typing import Any, Callable, NamedTuple, Optional, Protocol, Union

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

  def __call__(self, updates: Updates, state: OptState, params: Params | None = None
               ) -> tuple[Updates, OptState]:
    ...


class TransformUpdateExtraArgsFn(Protocol):

  def __call__(self, updates: Updates, state: OptState, params: Params | None = None,
               **extra_args: Any) -> tuple[Updates, OptState]:
    ...


def accepts_extra_args(fn: Any) -> bool:
  """Whether ``fn``'s signature takes arbitrary keyword arguments (``**extra_args``)."""
  code = getattr(fn, "__code__", None)
  if code is not None and not hasattr(fn, "__wrapped__"):  # a plain function: no inspect
    return bool(code.co_flags & inspect.CO_VARKEYWORDS)
  try:
    parameters = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):
    return False
  return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _optax_extra_args_class() -> Optional[type]:
  """``optax.GradientTransformationExtraArgs`` if Optax is already imported, else None.

  Looked up in ``sys.modules``: gradtx never imports Optax itself.
  """
  optax = sys.modules.get("optax")
  cls = getattr(optax, "GradientTransformationExtraArgs", None)
  if isinstance(cls, type) and not issubclass(cls, GradientTransformation):
    return cls
  return None


class _InitUpdate(NamedTuple):
  init: TransformInitFn
  update: TransformUpdateExtraArgsFn


class GradientTransformation(_InitUpdate):
  """A pure ``(init, update)`` pair; see the module docstring for the contract.

  Inside ``optax.chain`` (and Optax's other combinators) a transform must be an
  ``optax.GradientTransformationExtraArgs`` to be given the extra arguments (``value=``,
  ...); Optax checks with ``isinstance``. So that a gradtx transform mixed into Optax's
  combinators still receives them, an instance whose ``update`` accepts
  ``**extra_args`` (every gradtx transform's does) reports Optax's class as its
  ``__class__`` once Optax has been imported, which ``isinstance`` consults when the
  real type does not match. ``type(tx)`` is always the gradtx class.
  """

  __slots__ = ()

  @property
  def __class__(self):  # pylint: disable=invalid-overridden-method
    optax_class = _optax_extra_args_class()
    if optax_class is not None and accepts_extra_args(self.update):
      return optax_class
    return type(self)

  def __reduce__(self):
    # Pickle by the real type (pickle checks the class a __newobj__ reduction names
    # against __class__).
    return type(self), tuple(self)

  def __repr__(self):
    return f"{type(self).__name__}(init={self.init!r}, update={self.update!r})"


class _SupportsExtraArgs(type):
  """``isinstance(tx, GradientTransformationExtraArgs)`` holds for any transform whose
  ``update`` accepts ``**extra_args``, as every gradtx transform's does."""

  def __instancecheck__(cls, instance):
    if type.__instancecheck__(cls, instance):
      return True
    update = getattr(instance, "update", None)
    return (cls is GradientTransformationExtraArgs
            and callable(getattr(instance, "init", None)) and callable(update)
            and accepts_extra_args(update))


class GradientTransformationExtraArgs(GradientTransformation, metaclass=_SupportsExtraArgs):
  """A transform whose ``update`` takes extra keyword arguments, Optax's name for it.

  Every gradtx transform is one (``isinstance`` says so); the class exists so that
  ``GradientTransformationExtraArgs(init, update)`` and ``isinstance`` checks written
  for Optax work unchanged.
  """

  __slots__ = ()


def with_extra_args_support(tx: GradientTransformation) -> GradientTransformationExtraArgs:
  """``tx`` if its ``update`` accepts extra keyword arguments, else ``tx`` with an
  ``update`` that takes and ignores them (Optax's ``with_extra_args_support``)."""
  if isinstance(tx, GradientTransformationExtraArgs):
    return tx

  def update(updates, state, params=None, **extra_args):
    del extra_args
    return tx.update(updates, state, params)

  return GradientTransformationExtraArgs(tx.init, update)


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


def stateless(f: Callable[[Updates, Params | None], Updates]) -> GradientTransformation:
  """A transform from a function ``f(updates, params) -> updates`` that keeps no state
  (``params`` may be None)."""

  def update(updates, state, params=None, **extra_args):
    del state, extra_args
    return f(updates, params), EmptyState()

  return GradientTransformation(init_empty_state, update)


def stateless_with_tree_map(f: Callable[[jax.Array, jax.Array | None], jax.Array]
                            ) -> GradientTransformation:
  """Like :func:`stateless`, with ``f(update, param) -> update`` for one array, mapped
  over the tree (``param`` is None when ``update`` is called without params)."""

  def update(updates, state, params=None, **extra_args):
    del state, extra_args
    if params is None:
      return jax.tree.map(lambda u: f(u, None), updates), EmptyState()
    return jax.tree.map(f, updates, params), EmptyState()

  return GradientTransformation(init_empty_state, update)


def apply_updates(params: Params, updates: Updates) -> Params:
  """``params + updates`` leaf by leaf, each result in its param's own dtype (a
  :class:`~gradtx.Packed` buffer by buffer, updates of the same layout; the padding of
  ``pack(..., multiple_of=)`` stays zero)."""
  from gradtx._src import packing  # imported here: packing builds on this module
  if isinstance(params, packing.Packed):
    packing.check_layouts("apply_updates", params, updates)
  return packing.zero_padding(jax.tree.map(
      lambda p, u: None if p is None else jnp.asarray(p + u).astype(jnp.asarray(p).dtype),
      params, updates, is_leaf=lambda x: x is None))


def incremental_update(new_tensors: Params, old_tensors: Params,
                       step_size: jax.typing.ArrayLike) -> Params:
  """Polyak averaging: ``step_size * new + (1 - step_size) * old`` leaf by leaf (an
  exponential moving average of the params for evaluation; Polyak & Juditsky 1992)."""
  return jax.tree.map(
      lambda new, old: None if new is None else step_size * new + (1.0 - step_size) * old,
      new_tensors, old_tensors, is_leaf=lambda x: x is None)


def periodic_update(new_tensors: Params, old_tensors: Params, steps: jax.typing.ArrayLike,
                    update_period: jax.typing.ArrayLike) -> Params:
  """``new_tensors`` on steps that are multiples of ``update_period``, else
  ``old_tensors`` (a target network's periodic copy, Mnih et al. 2015)."""
  return jax.lax.cond(jnp.mod(steps, update_period) == 0, lambda _: new_tensors,
                      lambda _: old_tensors, None)


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
  updates, state = tx.update(updates, state, params, **extra_args)
  from gradtx._src import packing  # imported here: packing builds on this module
  if isinstance(updates, packing.Packed) and updates.layout.multiple_of > 1:
    # A rule that moves coordinates whose gradient is zero (Yogi's first moment starts
    # at 1e-6) would write into pack(..., multiple_of=)'s padding; the next member of a
    # chain (a global norm, say) must not see it.
    updates = packing.zero_padding(updates)
  return updates, state


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
