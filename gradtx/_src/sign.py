"""Sign methods (Bernstein et al. 2018, "signSGD: Compressed Optimisation for Non-Convex
Problems"): steps of the same size in every coordinate, in the direction of the sign of
the gradient (signSGD) or of its momentum (Signum).

Signatures, defaults, states and numerics are Optax 0.2.8's ``scale_by_sign``,
``sign_sgd`` and ``signum`` (Signum's momentum is ``ema(beta, debias=False)``, an EMA
that is not debiased: the sign does not change under a positive factor).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import scale_by_learning_rate
from gradtx._src.traces import ema


def scale_by_sign() -> base.GradientTransformation:
  """``sign(u)``, elementwise (``0`` where ``u`` is ``0``)."""
  return leafwise("scale_by_sign", jnp.sign)


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)")
def sign_sgd(learning_rate: base.ScalarOrSchedule) -> base.GradientTransformation:
  """signSGD (Bernstein et al. 2018, Algorithm 1): ``p -= lr * sign(g)``."""
  return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", beta="[0, 1)",
                 accumulator_dtype="dtype | None")
def signum(learning_rate: base.ScalarOrSchedule, beta: float = 0.9,
           accumulator_dtype: Any = None) -> base.GradientTransformation:
  """Signum (Bernstein et al. 2018, Algorithm 3): ``m = beta*m + (1-beta)*g``,
  ``p -= lr * sign(m)``.

  Args:
    learning_rate: the step in every coordinate, a number or a schedule.
    beta: decay rate of the momentum (the paper's default 0.9; 1 would keep ``m`` at 0).
    accumulator_dtype: dtype to store the momentum in (default: the params').
  """
  return chain(ema(beta, debias=False, accumulator_dtype=accumulator_dtype),
               scale_by_sign(), scale_by_learning_rate(learning_rate))
