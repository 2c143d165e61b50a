"""Complex params optimised as pairs of real ones (Optax 0.2.8's
``optax.contrib.split_real_and_imaginary``).

For a complex param ``z = x + i y`` the wrapped transform sees the two real arrays
``(x, y)`` (a :class:`SplitRealAndImaginaryArrays`), as if the model had two real params,
and its real updates ``(u_x, u_y)`` are merged back into ``u_x + i u_y``. Real params
pass through to it unchanged. So an optimizer whose rule is not complex-aware (Adam's
``g**2``, a norm of real entries) behaves on ``C^n`` exactly as on ``R^2n``.

JAX's gradient of a real loss with respect to ``z`` is ``dL/dx - i dL/dy``, the conjugate
of the direction of steepest ascent: conjugate it before ``update`` (see
https://github.com/deepmind/optax/issues/196).

The state, :class:`SplitRealAndImaginaryState`, holds the wrapped transform's state,
built on the split params (its per-param leaves have ``.real`` / ``.imaginary`` paths, as
Optax's).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.hyperparams import hyperparameters


class SplitRealAndImaginaryArrays(NamedTuple):
  """The real and imaginary parts of a complex array, as two real arrays."""

  real: jax.Array
  imaginary: jax.Array


def _is_pair(x: Any) -> bool:
  return isinstance(x, SplitRealAndImaginaryArrays)


def _split(x: Any) -> Any:
  """A complex array as its pair of real parts; anything else unchanged."""
  return SplitRealAndImaginaryArrays(x.real, x.imag) if jnp.iscomplexobj(x) else x


def _merge(x: Any) -> Any:
  """A pair of real parts as the complex array ``real + i imaginary``; anything else
  unchanged. ``lax.complex`` places the parts exactly (Optax writes
  ``real + imaginary * 1j``: the same numbers for finite parts)."""
  return jax.lax.complex(x.real, x.imaginary) if _is_pair(x) else x


class SplitRealAndImaginaryState(NamedTuple):
  """State of :func:`split_real_and_imaginary` (Optax's field).

  Attributes:
    inner_state: the wrapped transform's state, for the split params.
  """

  inner_state: base.OptState


@hyperparameters(inner="transform")
def split_real_and_imaginary(inner: base.GradientTransformation
                             ) -> base.GradientTransformation:
  """Runs ``inner`` on the real and imaginary parts of complex params and updates as
  separate real arrays, and merges its updates back into complex ones (see the module
  docstring). Real params and updates pass through to ``inner`` unchanged.

  Args:
    inner: the transform to run on real arrays.
  """

  def init(params):
    return SplitRealAndImaginaryState(inner.init(jax.tree.map(_split, params)))

  def update(updates, state, params=None, **extra_args):
    split_updates = jax.tree.map(_split, updates)
    split_params = jax.tree.map(_split, params)
    new_updates, inner_state = base.call_update(inner, split_updates, state.inner_state,
                                                split_params, extra_args)
    return (jax.tree.map(_merge, new_updates, is_leaf=_is_pair),
            SplitRealAndImaginaryState(inner_state))

  return base.GradientTransformation(init, update)
