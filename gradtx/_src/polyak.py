"""Polyak's step size (Polyak 1987; stochastic form SPS, Loizou et al. 2021): the step
that would reach the optimal value ``f_min`` if the loss were linear,
``(f(x) - f_min) / ||g||**2``, capped at ``max_learning_rate``.

The update needs the loss: ``update(grads, state, params, value=loss)``. Numerics follow
Optax 0.2.8.
"""

from __future__ import annotations

import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.alias import sgd
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import map_leaves
from gradtx._src.tree.math import tree_norm

POLYAK_SPECS = dict(f_min="(-inf, inf)", max_learning_rate="[0, inf]", eps="[0, inf)",
                    variant="{'sps', 'sps+'}")


@hyperparameters(**POLYAK_SPECS)
def scale_by_polyak(f_min: float = 0.0, max_learning_rate: float = 1.0, eps: float = 0.0,
                    variant: str = "sps") -> base.GradientTransformation:
  """Scales the updates by Polyak's step size (Loizou et al. 2021, SPS_max).

  ``u * min((value - f_min) / (||u||**2 + eps), max_learning_rate)``, ``||u||`` the
  2-norm of the whole update tree and ``value`` the loss given to ``update``; 0 where
  ``||u||**2 + eps`` is at most float64's machine epsilon. ``variant='sps+'`` uses
  ``max(value - f_min, 0)`` (Garrigos et al. 2023).

  Raises (in ``update``):
    ValueError: ``value=`` was not given.
  """

  def update(updates, state, params=None, *, value=None, **extra_args):
    del params, extra_args
    if value is None:
      raise ValueError("scale_by_polyak: needs the loss at the params: call "
                       "update(updates, state, params, value=loss)")
    grad_sq_norm = tree_norm(updates, squared=True)
    gap = jnp.asarray(value - f_min).astype(grad_sq_norm.dtype)
    if variant == "sps+":
      gap = jnp.maximum(gap, 0)
    step = jnp.where(grad_sq_norm + eps <= jnp.finfo(float).eps, jnp.array(0.0),
                     jnp.minimum(gap / (grad_sq_norm + eps), max_learning_rate))
    return map_leaves("scale_by_polyak", lambda u, *, step: step * u, updates,
                      step=step), state

  return base.GradientTransformation(base.init_empty_state, update)


@hyperparameters(native=("scaling",), scaling="[0, inf)", **POLYAK_SPECS)
def polyak_sgd(max_learning_rate: float = 1.0, scaling: base.ScalarOrSchedule = 1.0,
               f_min: float = 0.0, eps: float = 0.0,
               variant: str = "sps") -> base.GradientTransformation:
  """SGD with Polyak's step size (Loizou et al. 2021):
  ``p -= scaling * min((f(p) - f_min) / (||g||**2 + eps), max_learning_rate) * g``.

  Give the loss to each update: ``update(grads, state, params, value=loss)``. ``f_min``
  is a lower bound of the loss (0 for models that interpolate the data); a wrong one
  can make it diverge.
  """
  return chain(sgd(learning_rate=scaling),
               scale_by_polyak(f_min=f_min, max_learning_rate=max_learning_rate, eps=eps,
                               variant=variant))
