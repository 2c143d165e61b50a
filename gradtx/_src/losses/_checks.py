"""Input checks shared by the losses (the same errors Optax raises)."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _shape(x: Any) -> tuple[int, ...]:
  return x.shape if hasattr(x, "shape") else np.asarray(x).shape


def check_floating(x: Any) -> None:
  """A ``TypeError`` unless ``x`` has a floating-point dtype."""
  dtype = jax.dtypes.result_type(x)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError("Expected the input to have a dtype that is a subdtype of "
                    f"{jnp.floating}, got {dtype} instead")


def check_integer(x: Any) -> None:
  """A ``TypeError`` unless ``x`` has an integer dtype."""
  dtype = jax.dtypes.result_type(x)
  if not jnp.issubdtype(dtype, jnp.integer):
    raise TypeError("Expected the input to have a dtype that is a subdtype of "
                    f"{jnp.integer}, got {dtype} instead")


def check_same_shape(a: Any, b: Any) -> None:
  """A ``ValueError`` unless ``a`` and ``b`` have the same shape (no broadcasting)."""
  if _shape(a) != _shape(b):
    raise ValueError(f"Shape mismatch: got {_shape(a)} and {_shape(b)}.")


def check_rank(x: Any, rank: int) -> None:
  """A ``ValueError`` unless ``x`` has ``rank`` dimensions."""
  if len(_shape(x)) != rank:
    raise ValueError(f"Expected the input to have rank {rank}, got {len(_shape(x))} "
                     "instead")
