"""MADGRAD (Defazio & Jelassi 2021, "Adaptivity without Compromise: A Momentumized,
Adaptive, Dual Averaged Gradient Method for Stochastic Optimization", Algorithm 1): dual
averaging with AdaGrad-like cube-root scaling and momentum by averaging iterates.

With ``k`` the number of earlier steps, ``g`` the gradient, ``x_0`` the initial params,
``c = 1 - momentum`` and ``lr`` the learning rate (a schedule of ``k``)::

  lambda = (lr + eps) sqrt(k + 1)
  s = s + lambda g;      G = G + lambda g**2
  z = x_0 - s / (G**(1/3) + eps)
  x <- (1 - c) x + c z                      (the update emitted is the difference)

``eps`` is added to the learning rate as in the authors' PyTorch code
(github.com/facebookresearch/madgrad). Numerics, defaults and state follow Optax 0.2.8's
``optax.contrib.madgrad``, except that ``sqrt(k + 1)`` is computed in the params' dtype:
Optax takes the root of the int32 count in float32 also for float64 params, which
rounds ``lambda`` to float32 (``tests/test_madgrad.py`` shows it).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import add_decayed_weights
from gradtx._src.tree.casting import tree_zeros_like


class MadgradState(NamedTuple):
  """State of :func:`scale_by_madgrad` (Optax's fields, in Optax's order).

  Attributes:
    count: the number of updates so far.
    grad_sum_sq: ``G``, the weighted sum of the squared gradients, per param.
    s: the weighted sum of the gradients, per param.
    x0: the initial params ``x_0``.
  """

  count: jax.Array
  grad_sum_sq: base.Updates
  s: base.Updates
  x0: base.Params


def _madgrad_rule(u, grad_sum_sq, s, x0, p, *, weight, momentum, eps):
  grad_sum_sq = grad_sum_sq + weight * u**2
  s = s + weight * u
  z = x0 - s / (jnp.cbrt(grad_sum_sq) + eps)
  return ((1 - momentum) * z + momentum * p) - p, grad_sum_sq, s, x0


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", momentum="[0, 1)",
                 eps="[0, inf)")
def scale_by_madgrad(learning_rate: base.ScalarOrSchedule, momentum: float = 0.9,
                     eps: float = 1e-6) -> base.GradientTransformation:
  """MADGRAD's step (Defazio & Jelassi 2021, Algorithm 1), as Optax's
  ``optax.contrib.scale_by_madgrad``.

  Emits the difference between the next iterate and the params (see the module
  docstring): the learning rate and the sign are included. ``update`` needs the params.
  Defaults are the paper's and Optax's.

  Args:
    learning_rate: the step size, a number or a schedule of the step count.
    momentum: the momentum ``1 - c`` (the weight of the params in the iterate average).
    eps: added to the cube root of ``G`` and to the learning rate.
  """

  def step_weight(count):
    k = count.astype(jnp.result_type(float)) + 1
    return dict(weight=(base.resolve(learning_rate, count) + eps) * jnp.sqrt(k))

  return leafwise("scale_by_madgrad", _madgrad_rule, state=MadgradState,
                  init=lambda p: (tree_zeros_like(p), tree_zeros_like(p), jnp.array(p)),
                  hyperparams=dict(momentum=momentum, eps=eps), scalars=step_weight,
                  uses_params=True)


@hyperparameters(native=("learning_rate", "weight_decay"), learning_rate="[0, inf)",
                 momentum="[0, 1)", weight_decay="[0, inf)", eps="[0, inf)")
def madgrad(learning_rate: base.ScalarOrSchedule, momentum: float = 0.9,
            weight_decay: base.ScalarOrSchedule = 0.0,
            eps: float = 1e-6) -> base.GradientTransformation:
  """MADGRAD (Defazio & Jelassi 2021), as Optax's ``optax.contrib.madgrad``:
  ``chain(add_decayed_weights(weight_decay), scale_by_madgrad(learning_rate, momentum,
  eps))``, the weight decay added to the gradient (L2, as in the paper's code without
  ``decouple_decay``).

  Args:
    learning_rate: the step size, a number or a schedule of the step count.
    momentum: the momentum ``1 - c``.
    weight_decay: the L2 regularisation strength.
    eps: added to the cube root of ``G`` and to the learning rate.
  """
  return chain(add_decayed_weights(weight_decay),
               scale_by_madgrad(learning_rate=learning_rate, momentum=momentum, eps=eps))
