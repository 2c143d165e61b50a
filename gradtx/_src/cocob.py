"""COCOB-Backprop (Orabona & Tommasi 2017, "Training Deep Networks without Learning Rates
Through Coin Betting", Algorithm 2): each coordinate bets a fraction of the wealth it has
won so far on the sign of the negative gradient; no learning rate to tune.

Per coordinate, with ``g`` the gradient and ``w_1`` the initial params::

  L = max(L, |g|)                 largest gradient seen (from ``eps``, not 0)
  G = G + |g|                     sum of absolute gradients
  R = max(R - g (w - w_1), 0)     reward (wealth won)
  theta = theta - g               sum of negative gradients
  w_next = w_1 + theta / (L max(G + L, alpha L)) (L + R)

The update emitted is ``w_next - w``. Numerics, defaults and state follow Optax 0.2.8's
``optax.contrib.cocob``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import add_decayed_weights, scale_by_learning_rate
from gradtx._src.tree.casting import tree_full_like, tree_zeros_like


class COCOBState(NamedTuple):
  """State of :func:`scale_by_cocob` (Optax's fields), every field per param.

  Attributes:
    init_particles: the initial params ``w_1``.
    cumulative_gradients: ``theta``, the sum of the negative gradients.
    scale: ``L``, the largest absolute gradient so far (from ``eps``).
    subgradients: ``G``, the sum of the absolute gradients.
    reward: ``R``, the wealth won.
  """

  init_particles: base.Updates
  cumulative_gradients: base.Updates
  scale: base.Updates
  subgradients: base.Updates
  reward: base.Updates


def _cocob_rule(u, w1, theta, big_l, big_g, reward, p, *, alpha):
  big_l = jnp.maximum(big_l, jnp.abs(u))
  big_g = big_g + jnp.abs(u)
  reward = jnp.maximum(reward - u * (p - w1), 0)
  theta = theta - u
  step = -p + (w1 + theta / (big_l * jnp.maximum(big_g + big_l, alpha * big_l))
               * (big_l + reward))
  return step, w1, theta, big_l, big_g, reward


@hyperparameters(alpha="(0, inf)", eps="(0, inf)")
def scale_by_cocob(alpha: float = 100.0, eps: float = 1e-8) -> base.GradientTransformation:
  """COCOB-Backprop's step (Orabona & Tommasi 2017, Algorithm 2), coordinate-wise.

  Emits ``w_1 + theta / (L max(G + L, alpha L)) (L + R) - w`` (see the module docstring);
  ``update`` needs the params. ``L`` starts at ``eps`` instead of the paper's 0, which
  would divide by zero, as Optax does.

  Args:
    alpha: the paper's ``alpha`` (default 100, the paper's), which caps the fraction
      bet early on.
    eps: the initial ``L``.
  """

  def init(p):
    return (jnp.array(p), tree_zeros_like(p), tree_full_like(p, eps), tree_zeros_like(p),
            tree_zeros_like(p))

  return leafwise("scale_by_cocob", _cocob_rule, state=COCOBState, init=init,
                  uses_params=True, hyperparams=dict(alpha=alpha))


@hyperparameters(native=("learning_rate", "weight_decay"), learning_rate="[0, inf)",
                 alpha="(0, inf)", eps="(0, inf)", weight_decay="[0, inf)")
def cocob(learning_rate: base.ScalarOrSchedule = 1.0, alpha: float = 100.0,
          eps: float = 1e-8, weight_decay: base.ScalarOrSchedule = 0.0,
          mask: Optional[Union[Any, Callable[[base.Params], Any]]] = None
          ) -> base.GradientTransformation:
  """COCOB-Backprop (Orabona & Tommasi 2017), as Optax's ``optax.contrib.cocob``.

  ``chain(add_decayed_weights(weight_decay, mask), scale_by_learning_rate(lr,
  flip_sign=False), scale_by_cocob(alpha, eps))``: the (decayed) gradient is multiplied
  by ``learning_rate`` before the bet, so ``learning_rate`` (default 1, no scaling) is a
  knob for schedules, not a step size.
  """
  return chain(add_decayed_weights(weight_decay, mask),
               scale_by_learning_rate(learning_rate, flip_sign=False),
               scale_by_cocob(alpha, eps))
