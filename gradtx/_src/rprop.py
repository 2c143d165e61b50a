"""Rprop (Riedmiller & Braun 1993), sign-based adaptive step sizes: each weight's step grows while its gradient keeps
its sign and shrinks when the sign flips.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from gradtx._src import base, validation
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.tree.casting import tree_full_like, tree_zeros_like


class ScaleByRpropState(NamedTuple):
  step_sizes: base.PyTree
  prev_updates: base.PyTree


RPROP_SPECS = dict(learning_rate="[0, inf)", eta_minus="[0, 1]", eta_plus="[1, inf)",
                   min_step_size="[0, inf)", max_step_size="[0, inf)")


@hyperparameters(**RPROP_SPECS)
def scale_by_rprop(learning_rate: float, eta_minus: float = 0.5, eta_plus: float = 1.2,
                   min_step_size: float = 1e-6,
                   max_step_size: float = 50.0) -> base.GradientTransformation:
  """Rprop (Riedmiller & Braun 1993) without weight backtracking, as torch.optim.Rprop.

  Per coordinate, with ``s = u * u_prev``: the step size is multiplied by ``eta_plus``
  where ``s > 0`` and by ``eta_minus`` where ``s < 0`` (kept where ``s == 0``), clipped
  to ``[min_step_size, max_step_size]``; emits ``step * sign(u)``, or 0 where the sign
  flipped, and remembers 0 there so the next step does not shrink again.

  Optax's signature; not Optax 0.2.8's numerics, which emit each step one step late (its
  first update is zero; optax PR #1725).
  """
  validation.ordered("scale_by_rprop", "min_step_size", min_step_size, "max_step_size",
                     max_step_size)

  def rule(u, step, prev, *, eta_minus, eta_plus, min_step_size, max_step_size):
    s = u * prev
    grown = jnp.clip(step * jnp.where(s > 0, eta_plus, eta_minus), min_step_size,
                     max_step_size)
    step = jnp.where(s == 0, step, grown)
    new_prev = jnp.where(s < 0, jnp.zeros_like(u), step * jnp.sign(u))
    return jnp.where(s < 0, jnp.zeros_like(prev), new_prev), step, new_prev

  return leafwise(
      "scale_by_rprop", rule, state=ScaleByRpropState,
      init=lambda p: (tree_full_like(p, learning_rate), tree_zeros_like(p)),
      hyperparams=dict(eta_minus=eta_minus, eta_plus=eta_plus, min_step_size=min_step_size,
                       max_step_size=max_step_size))
