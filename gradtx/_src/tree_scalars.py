"""Helpers of the transforms whose state holds tree-wide scalars next to per-param
arrays (a step-size estimate, a distance travelled, a learned scale): DoG, DoWG,
Prodigy, D-Adaptation, Mechanic, Schedule-Free.

Their per-param arithmetic runs in at least float32, as :func:`gradtx.leafwise`'s does,
and so do their scalars: Optax keeps those in the params' lowest dtype, which for
bfloat16 params would round a step size of 1e-6 to 3 significant digits.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradtx._src import base, validation
from gradtx._src.tree.casting import compute_dtype, tree_dtype


def wide(tree: base.PyTree) -> base.PyTree:
  """Every leaf in at least float32 (a no-op for float32 and float64 leaves)."""
  return jax.tree.map(lambda x: jnp.asarray(x).astype(compute_dtype(jnp.asarray(x).dtype)),
                      tree)


def scalar_dtype(params: base.Params) -> Any:
  """The dtype of tree-wide scalar state: Optax's (the params' lowest dtype), and at
  least float32."""
  return compute_dtype(tree_dtype(params, "lowest"))


def safe_sqrt(x: jax.Array) -> jax.Array:
  """``sqrt(x)`` for ``x >= 0`` whose derivative at 0 is 0, not NaN (same values)."""
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1)), 0)


def safe_ratio(numerator: jax.Array, denominator: jax.Array, otherwise: Any) -> jax.Array:
  """``numerator / denominator``, or ``otherwise`` where ``denominator`` is 0 (with a zero
  derivative there, not NaN)."""
  zero = denominator == 0
  return jnp.where(zero, otherwise, numerator / jnp.where(zero, 1, denominator))


def check_betas(owner: str, betas: Any) -> None:
  """Raises unless ``betas`` is a pair of decay rates in ``[0, 1)`` (Adam's ``(b1, b2)``)."""
  if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
    raise validation.HyperparameterTypeError(
        f"{owner}: betas must be a pair (b1, b2), got {betas!r}")
  for i, beta in enumerate(betas):
    validation.real(owner, f"betas[{i}]", beta, "[0, 1)")
