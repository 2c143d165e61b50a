"""Normalised gradients (Optax 0.2.8's ``optax.contrib.normalize``), the direction of
SAM's adversarial step (Foret et al. 2021, "Sharpness-Aware Minimization for Efficiently
Improving Generalization", eq. 2: ``eps = rho * g / ||g||_2``).

``u / ||u||``, ``||u||`` the 2-norm of the whole tree. One departure: an all-zero update
stays zero, where Optax's ``0 / 0`` makes it NaN (and SAM's params NaN for good). The
authors' code divides by ``||g|| + 1e-12``, giving zero there too; gradtx divides by
``||u||`` exactly otherwise, so every other update is Optax's
(``tests/test_normalize.py`` shows both).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.leafwise import check_float_leaves
from gradtx._src.tree.casting import compute_dtype
from gradtx._src.tree.math import global_norm

NormalizeState = base.EmptyState  # Optax's name: normalize keeps no state


def normalize() -> base.GradientTransformation:
  """``u / ||u||_2`` over the whole tree (zero for an all-zero update; see the module
  docstring). The norm is accumulated in at least float32."""

  def init(params):
    del params
    return NormalizeState()

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    check_float_leaves("normalize", updates, "update")
    norm = global_norm(updates)
    divisor = jnp.where(norm == 0, jnp.ones_like(norm), norm)

    def scaled(u):
      u = jnp.asarray(u)
      wide = u.astype(compute_dtype(u.dtype, divisor.dtype))
      return (wide / divisor.astype(jnp.finfo(wide.dtype).dtype)).astype(u.dtype)

    return jax.tree.map(scaled, updates), state

  return base.GradientTransformation(init, update)
