"""Reusing a line search's last evaluation: :func:`value_and_grad_from_state`.

The zoom and More-Thuente searches, and the backtracking search with
``store_grad=True``, keep the loss and gradient at the step they accepted, which are the
loss and gradient at the params the caller has just moved to; a full-batch loop need not
evaluate them again.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from gradtx._src.linesearch.common import ValueFn


def _fields_named(tree: Any, name: str) -> list[Any]:
  """The values of every NamedTuple field or dict key called ``name`` in ``tree``."""
  found = []

  def visit(node):
    if isinstance(node, tuple) and hasattr(node, "_fields"):
      items = zip(node._fields, node)
    elif isinstance(node, dict):
      items = node.items()
    elif isinstance(node, (tuple, list)):
      items = ((None, x) for x in node)
    else:
      return
    for key, child in items:
      if key == name:
        found.append(child)
      else:
        visit(child)

  visit(tree)
  return found


def value_and_grad_from_state(value_fn: ValueFn) -> Callable[..., tuple[jax.Array, Any]]:
  """Like ``jax.value_and_grad(value_fn)``, but reuses the line search's last evaluation.

  Returns ``value_and_grad(params, *args, state, **kwargs)``. A line search in ``state``
  (anywhere in a chain) keeps the loss and gradient at the step it accepted, which are
  the loss and gradient at the params the caller has just moved to; they are returned
  when the stored value is finite, and computed with ``jax.value_and_grad`` otherwise
  (before the first step, whose state holds ``inf``). For full-batch losses only: a
  stochastic loss changes between steps. (Optax's ``value_and_grad_from_state``.)

  Example::

    value_and_grad = gtx.value_and_grad_from_state(loss)
    for _ in range(steps):
      value, grad = value_and_grad(params, state=state)
      updates, state = tx.update(grad, state, params, value=value, grad=grad,
                                 value_fn=loss)
      params = gtx.apply_updates(params, updates)

  Raises:
    ValueError: the state holds no ``value`` and ``grad`` (chain a zoom line search, or a
      backtracking one with ``store_grad=True``), or holds more than one of them.
  """
  owner = "value_and_grad_from_state"

  def value_and_grad(params, *fn_args, state, **fn_kwargs_):
    values, grads = _fields_named(state, "value"), _fields_named(state, "grad")
    if len(values) > 1 or len(grads) > 1:
      raise ValueError(f"{owner}: the state holds {len(values)} fields named 'value' and "
                       f"{len(grads)} named 'grad'; it must hold one line search only.")
    if not values or not grads or grads[0] is None:
      raise ValueError(
          f"{owner}: the state holds no stored value and gradient; chain a line search "
          "that keeps them: scale_by_zoom_linesearch, or "
          "scale_by_backtracking_linesearch(..., store_grad=True).")
    value, grad = values[0], grads[0]

    def compute(params, fn_args, fn_kwargs_):
      v, g = jax.value_and_grad(value_fn)(params, *fn_args, **fn_kwargs_)
      return (jnp.asarray(v).astype(value.dtype),
              jax.tree.map(lambda a, b: a.astype(b.dtype), g, grad))

    return jax.lax.cond(jnp.isfinite(value), lambda *_: (value, grad), compute,
                        params, fn_args, fn_kwargs_)

  return value_and_grad
