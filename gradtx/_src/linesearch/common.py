"""What the line searches share: the extra-argument checks, the Wolfe searches' state
before their first update, their first trial, the packing of a loop's scalars, the
masked final scaling, and the loop whose first iteration is taken before it.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.tree.casting import tree_zeros_like, widest_float_dtype
from gradtx._src.tree.math import zero_count

ValueFn = Callable[..., jax.Array]


def pack_scalars(scalars: Any, dtype: Any) -> jax.Array:
  """``scalars`` (a sequence) as one vector of ``dtype``, ``vector[i] = scalars[i]``.

  A search loop carries a score of scalars. As separate loop outputs each is a kernel of
  its own, and XLA:CPU hands independent kernels to other threads, which for scalars
  costs more than their arithmetic; built by selects over the positions, the vector is
  one kernel. Booleans and counts are held as 0/1 and as exact integers of ``dtype``.
  """
  index = jnp.arange(len(scalars))
  vector = jnp.zeros([len(scalars)], dtype)
  for i, x in enumerate(scalars):
    vector = jnp.where(index == i, jnp.asarray(x).astype(dtype), vector)
  return vector


def masked_scale(step: jax.Array, updates: base.Updates) -> base.Updates:
  """``step * u``, exactly zero where ``step == 0`` even if ``u`` is not finite."""
  return jax.tree.map(
      lambda u: jnp.where(step == 0, 0, step * u).astype(jnp.asarray(u).dtype), updates)


def peeled_while_loop(cond_fun: Callable[[Any], jax.Array], body_fun: Callable[[Any], Any],
                      init_val: Any, *, take_first: Any = None,
                      first_body: Callable[[Any], Any] | None = None) -> Any:
  """``jax.lax.while_loop(cond_fun, body_fun, init_val)`` with its first iteration taken
  before the loop, in a ``jax.lax.cond``.

  Most quasi-Newton steps accept the search's first trial; the loop then costs one test
  of its condition instead of an iteration (benchmarks/README.md, "Two speeds of
  XLA:CPU"). The peeled trial sits in a cond, not inline, so that XLA compiles it as it
  compiles the loop body (and as Optax's loop), not fused with the code around it, which
  would round differently.

  ``take_first`` (default ``cond_fun(init_val)``) says whether to take the peeled
  iteration; where it is false, the loop takes the first iteration itself.
  ``first_body`` (default ``body_fun``) is the peeled iteration, for a body whose first
  iteration is known to take one of its branches.
  """
  take = cond_fun(init_val) if take_first is None else take_first
  carry = jax.lax.cond(take, body_fun if first_body is None else first_body,
                       lambda carry: carry, init_val)
  return jax.lax.while_loop(cond_fun, body_fun, carry)


def cond_print(condition: jax.Array, message: str, **values: Any) -> None:
  """``jax.debug.print(message, **values)`` where ``condition`` holds (ordered)."""
  jax.lax.cond(condition, lambda: jax.debug.print(message, **values, ordered=True),
               lambda: None)


# --- extra arguments ---------------------------------------------------------------------


def missing_extra_args_error(owner: str, missing: list[str]) -> TypeError:
  return TypeError(
      f"{owner}: update needs the extra arguments {', '.join(m + '=' for m in missing)}: "
      "value= the loss at params, grad= its gradient there, value_fn= the loss as a "
      "function of the params; call tx.update(grads, state, params, value=value, "
      "grad=grad, value_fn=loss_fn).")


def check_extra_args(owner: str, value: Any, grad: Any, value_fn: Any) -> None:
  missing = [name for name, x in (("value", value), ("grad", grad), ("value_fn", value_fn))
             if x is None]
  if missing:
    raise missing_extra_args_error(owner, missing)
  if not callable(value_fn):
    raise TypeError(f"{owner}: value_fn must be the loss as a function of the params, "
                    f"got {value_fn!r}")


def fn_kwargs(value_fn: ValueFn, extra_args: dict[str, Any]) -> dict[str, Any]:
  """The extras that ``value_fn`` names in its signature (a batch, say)."""
  try:
    names = inspect.signature(value_fn).parameters
  except (TypeError, ValueError):
    return {}
  return {k: v for k, v in extra_args.items() if k in names}


# --- the Wolfe searches (zoom, More-Thuente) ---------------------------------------------


def check_initial_guess_strategy(owner: str, strategy: str) -> None:
  if strategy not in ("one", "keep"):
    raise ValueError(f"{owner}: initial_guess_strategy must be 'one' or 'keep', got "
                     f"{strategy!r}")


def initial_guess(strategy: str, state: Any) -> jax.Array:
  """A Wolfe search's first trial: 1 (``'one'``), or the last accepted step (``'keep'``),
  1 again after a failed search (step 0)."""
  dtype = state.learning_rate.dtype
  if strategy == "one":
    return jnp.ones([], dtype)
  return jnp.where(state.learning_rate > 0, state.learning_rate, 1.0).astype(dtype)


def initial_wolfe_state(state_type: Any, info_type: Any, params: base.Params) -> Any:
  """A Wolfe search's state before its first update: step 1, value ``inf``, a zero
  gradient (computed from the params, so that it takes their sharding under ``jit``),
  ``inf`` errors, no evaluations."""
  dtype = widest_float_dtype(params)
  inf = jnp.full([], jnp.inf, dtype)
  return state_type(
      learning_rate=jnp.ones([], dtype), value=inf,
      grad=tree_zeros_like(params),
      info=info_type(num_linesearch_steps=zero_count(), decrease_error=inf,
                     curvature_error=inf),
      num_fun_evals=zero_count())


def wolfe_inputs(owner: str, updates: base.Updates, state: Any, params: base.Params,
                 value: Any, grad: Any, value_fn: Any, extra_args: dict[str, Any]
                 ) -> tuple[Callable[..., Any], Any, base.Updates]:
  """A Wolfe search's checked inputs: ``value_and_grad`` of the loss (with the extras it
  names), the dtype of the state's scalars, and ``grad`` in the dtypes of the state's."""
  if params is None:
    raise ValueError(base.NO_PARAMS_MSG.format(owner))
  check_extra_args(owner, value, grad, value_fn)
  base.check_same_structure(owner, updates, params, grad)
  value_and_grad = jax.value_and_grad(
      functools.partial(value_fn, **fn_kwargs(value_fn, extra_args)))
  grad = jax.tree.map(lambda g, p: jnp.asarray(g).astype(p.dtype), grad, state.grad)
  return value_and_grad, state.learning_rate.dtype, grad
