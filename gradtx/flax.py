"""Flax models trained on packed params (:func:`gradtx.pack`).

Flax is not a dependency of gradtx: it is imported inside these functions, never when
gradtx is imported.

Linen, with ``TrainState``: the params are packed once, and ``apply_fn`` unpacks them::

  state = TrainState.create(apply_fn=gtx.flax.unpack_args(model.apply),
                            params=gtx.pack(variables["params"]), tx=gtx.adamw(1e-3))
  grads = jax.grad(lambda p: loss(state.apply_fn({"params": p}, x), y))(state.params)
  state = state.apply_gradients(grads=grads)  # grads, params, moments: all Packed

NNX, functionally (``nnx.Optimizer`` cannot hold a ``Packed``: its ``update`` writes the
new optimizer state back through ``nnx.state``, which turns each ``Packed`` into an
``nnx.State``)::

  graphdef, packed, rest = gtx.flax.split_packed(model)     # nnx.split + gtx.pack
  opt_state = tx.init(packed)

  @jax.jit
  def train_step(packed, opt_state, rest, x, y):
    def loss_fn(packed):
      model = gtx.flax.merge_packed(graphdef, packed, rest)
      return loss(model(x), y), nnx.state(model, nnx.Not(nnx.Param))  # the new rest
    (value, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(packed)
    updates, opt_state = tx.update(grads, opt_state, packed)
    return gtx.apply_updates(packed, updates), opt_state, rest, value

  model = gtx.flax.merge_packed(graphdef, packed, rest)     # back to a stateful module
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

from gradtx._src.packing import Packed, pack, unpack

__all__ = ["merge_packed", "split_packed", "unpack_args"]


def _unpacked(tree: Any) -> Any:
  return jax.tree.map(lambda x: unpack(x) if isinstance(x, Packed) else x, tree,
                      is_leaf=lambda x: isinstance(x, Packed))


@dataclasses.dataclass(frozen=True)
class _UnpackArgs:
  """``fn`` called with every ``Packed`` in its arguments unpacked. Equal for equal
  ``fn``, so a ``TrainState`` holding one is the same static value to ``jax.jit``."""
  fn: Callable[..., Any]

  def __call__(self, *args: Any, **kwargs: Any) -> Any:
    return self.fn(*_unpacked(args), **_unpacked(kwargs))


def unpack_args(fn: Callable[..., Any]) -> Callable[..., Any]:
  """``fn``, taking packed params: every :class:`gradtx.Packed` found in its positional
  or keyword arguments (at any depth of their pytrees) is replaced by
  ``gradtx.unpack`` of it before ``fn`` is called; other arguments pass unchanged.

  Made for Flax's ``TrainState``, whose ``apply_fn`` then takes the packed params where
  ``model.apply`` took the plain tree::

    state = TrainState.create(apply_fn=gtx.flax.unpack_args(model.apply),
                              params=gtx.pack(variables["params"]), tx=tx)
    logits = state.apply_fn({"params": state.params}, x)

  Differentiating through it with respect to the ``Packed`` gives a ``Packed`` gradient,
  as for ``gtx.unpack``. Two wrappers of the same ``fn`` compare equal.
  """
  return _UnpackArgs(fn)


def split_packed(node: Any, *filters: Any, labels: Any = None,
                 max_buffer_size: int | None = None,
                 max_buffer_leaves: int | None = None) -> tuple[Any, ...]:
  """``nnx.split(node, *filters)`` with the first state packed.

  Args:
    node: an ``nnx.Module`` (any NNX graph node).
    *filters: ``nnx.split``'s filters; the first selects the params to pack. Default
      ``(nnx.Param, ...)``: the params, and everything else as one state.
    labels: optional, passed to :func:`gradtx.pack` (a tree with the params' ``nnx.State``
      structure, or a function of it).
    max_buffer_size, max_buffer_leaves: optional, passed to :func:`gradtx.pack`.

  Returns:
    ``(graphdef, packed, *states)``: ``packed`` is ``gradtx.pack`` of the first
    filter's state, a copy (the module keeps its own arrays); ``states`` are the other
    filters' states, as ``nnx.split`` gives them.
  """
  from flax import nnx  # pylint: disable=import-outside-toplevel

  graphdef, params, *states = nnx.split(node, *(filters or (nnx.Param, ...)))
  return (graphdef, pack(params, labels, max_buffer_size=max_buffer_size,
                         max_buffer_leaves=max_buffer_leaves), *states)


def merge_packed(graphdef: Any, packed: Packed, *states: Any) -> Any:
  """The module ``nnx.merge(graphdef, gradtx.unpack(packed), *states)`` builds, with new
  Variables (``copy=True``).

  Inside a loss differentiated with respect to ``packed``, its gradient is a ``Packed``.
  The Variables are new so that a module which updates its own state during the call
  (BatchNorm's running statistics) may do so under ``jax.grad`` even when
  ``states`` came in as arguments of an enclosing ``jax.jit`` (``nnx.merge`` without a
  copy raises Flax's ``TraceContextError`` there); those updates are not written back to
  ``states``: read them from the module (after ``split_packed(node)`` with the default
  filters, ``nnx.state(model, nnx.Not(nnx.Param))`` is the new ``rest``).

  Raises:
    TypeError: ``packed`` is not a :class:`gradtx.Packed`.
  """
  from flax import nnx  # pylint: disable=import-outside-toplevel

  return nnx.merge(graphdef, unpack(packed), *states, copy=True)
