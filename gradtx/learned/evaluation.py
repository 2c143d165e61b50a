"""Evaluating optimizers on held-out problems, and tuning baselines' learning rates.

Problems are drawn from the family's evaluation stream (never used by
:func:`~gradtx.learned.meta_train`), so they are held out from meta-training whatever the
seeds.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gtx
from gradtx.learned.meta_train import EVAL_STREAM, problem_key
from gradtx.learned.problems import ProblemFamily, get_family, sample_problems


def _curves(tx: gtx.GradientTransformation, family: ProblemFamily, data, params,
            steps: int, every_step: bool = True) -> jax.Array:
  """``(problems, steps + 1)`` eval losses along ``tx``'s trajectories (vmapped), or with
  ``every_step=False`` only the final ones, ``(problems,)``."""

  def one(data, params):
    def step(carry, t):
      params, state = carry
      grad = jax.grad(family.loss)(params, data, t)
      updates, state = tx.update(grad, state, params)
      params = gtx.apply_updates(params, updates)
      return (params, state), family.eval_loss(params, data) if every_step else None

    (final, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
    if not every_step:
      return family.eval_loss(final, data)
    return jnp.concatenate([family.eval_loss(params, data)[None], losses])

  return jax.vmap(one)(data, params)


def evaluate(tx: gtx.GradientTransformation, problem_family: str | ProblemFamily, *,
             num_problems: int = 100, steps: int = 100, seed: int = 0) -> np.ndarray:
  """Loss curves of ``tx`` on ``num_problems`` held-out problems.

  Returns a ``(num_problems, steps + 1)`` array: ``eval_loss`` of the params before the
  first step and after each step. The problems depend only on the family and ``seed``, so
  every optimizer evaluated with the same seed sees the same problems.
  """
  family = get_family(problem_family)
  data, params = sample_problems(family, problem_key(seed, EVAL_STREAM), num_problems)
  return np.asarray(jax.jit(lambda d, x: _curves(tx, family, d, x, steps))(data, params))


def tune_learning_rate(make_tx: Callable[[jax.Array], gtx.GradientTransformation],
                       learning_rates: Sequence[float],
                       problem_family: str | ProblemFamily, *, num_problems: int = 100,
                       steps: int = 100, seed: int = 0,
                       ) -> tuple[float, np.ndarray, np.ndarray]:
  """The learning rate of a grid with the lowest mean final loss, on the problems
  :func:`evaluate` uses with the same arguments (so the tuning favours the baseline).

  ``make_tx(lr)`` builds the optimizer; all learning rates run in one compiled, vmapped
  computation. A learning rate whose runs diverge (a non-finite mean) is never chosen.

  Returns:
    ``(best_lr, best_final, final)``: the best learning rate, its final loss on each
    problem ``(num_problems,)``, and the mean final loss of every learning rate of the
    grid ``(len(learning_rates),)``. ``evaluate(make_tx(best_lr), ...)`` gives its curves.
  """
  family = get_family(problem_family)
  data, params = sample_problems(family, problem_key(seed, EVAL_STREAM), num_problems)
  grid = jnp.asarray(learning_rates, jnp.float32)
  finals = np.asarray(jax.jit(jax.vmap(
      lambda lr: _curves(make_tx(lr), family, data, params, steps, every_step=False)))(grid))
  final = finals.mean(axis=1)
  score = np.where(np.isfinite(final), final, np.inf)
  best = int(np.argmin(score))
  return float(learning_rates[best]), finals[best], final
