"""AdaBound's dynamic bounds on the adaptive step size (Luo, Xiong, Liu & Sun 2019,
"Adaptive Gradient Methods with Dynamic Bound of Learning Rate", ICLR 2019).

Adam's per-coordinate step size ``lr / (sqrt(v_hat) + eps)`` can be extremely large or
small late in training. AdaBound clips it to ``[eta_l(t), eta_u(t)]``, bounds that start
at ``[0, inf)`` and close in on ``final_lr``, so that training turns smoothly from Adam
into SGD with learning rate ``final_lr``:

  eta_l(t) = final_lr * (1 - 1/(gamma*t + 1)),   eta_u(t) = final_lr * (1 + 1/(gamma*t)).

The paper's experiments use ``gamma = 1 - b2``; the authors' package defaults to
``gamma=1e-3`` and ``final_lr=0.1``. The aliases follow the authors' reference code (the
PyTorch package ``adabound``, class ``AdaBound``) rather than Algorithm 2 of the paper,
which has no bias corrections, an ``eta/sqrt(t)`` decay and no ``eps``:

  g  = g + weight_decay * p                       (L2, added to the gradient)
  m  = b1*m + (1-b1)*g,   v = b2*v + (1-b2)*g**2  (AMSBound: v_max = max(v_max, v))
  s  = lr * sqrt(1-b2**t) / (1-b1**t) / (sqrt(v) + eps)
  p -= clip(s, eta_l(t), eta_u(t)) * m

so the bias corrections are folded into the step size before it is clipped, and the
momentum multiplies the clipped step size undebiased. Composable form: the step size is
built by :func:`adabound_step_size`, debiased by :func:`gradtx.bias_correction`, scaled
by the learning rate and clipped by :func:`clip_bounds`; :func:`gradtx.multiply` applies
it to the momentum::

  multiply(add_momentum(b1, ema=True),
           chain(adabound_step_size(b2, eps), bias_correction(b1),
                 scale_by_learning_rate(lr, flip_sign=False), clip_bounds(final_lr, gamma)))
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, validation
from gradtx._src.adam import bias_corrections
from gradtx._src.combine import chain, multiply
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import abs_sq, ema, safe_increment, zero_count
from gradtx._src.momentum import add_momentum, bias_correction
from gradtx._src.scaling import add_decayed_weights, scale, scale_by_learning_rate


class AdaBoundStepSizeState(NamedTuple):
  count: jax.Array
  nu: base.PyTree


class AMSBoundStepSizeState(NamedTuple):
  count: jax.Array
  nu: base.PyTree
  nu_max: base.PyTree


@hyperparameters(b2="[0, 1)", eps="[0, inf)", amsbound="bool")
def adabound_step_size(b2: float = 0.999, eps: float = 1e-8, *,
                       amsbound: bool = False) -> base.GradientTransformation:
  """AdaBound's per-coordinate step size (the authors' numerics), emitted in place of ``u``.

  ``nu = b2*nu + (1-b2)*u**2``; emits ``sqrt(1-b2**t) / (sqrt(nu) + eps)``. This is Adam's
  "eps-hat" placement (Kingma & Ba 2015, end of §2), as in the AdaBound authors' code:
  ``eps`` is added before the bias correction, so it equals
  :func:`gradtx.adaptive_step_size`'s ``1/(sqrt(nu/(1-b2**t)) + eps)`` with ``eps``
  replaced by ``eps/sqrt(1-b2**t)``. With ``amsbound=True``, ``nu`` is replaced by its
  running maximum ``nu_max = max(nu_max, nu)`` (of the uncorrected ``nu``, as the authors
  do; :func:`gradtx.scale_by_amsgrad` takes the maximum of the corrected one).
  """

  def rule(u, nu, *nu_max, b2, eps, c2):
    nu = ema(b2, nu, abs_sq(u))
    if not amsbound:
      return jnp.sqrt(c2) / (jnp.sqrt(nu) + eps), nu
    # `where`, not `maximum`: see scale_by_amsgrad (jit and eager gradients disagreed).
    nu_max = jnp.where(nu > nu_max[0], nu, nu_max[0])
    return jnp.sqrt(c2) / (jnp.sqrt(nu_max) + eps), nu, nu_max

  return leafwise(
      "adabound_step_size", rule,
      state=AMSBoundStepSizeState if amsbound else AdaBoundStepSizeState,
      init=(lambda p: (tree_zeros_like(p), tree_zeros_like(p))) if amsbound else
      tree_zeros_like,
      hyperparams=dict(b2=b2, eps=eps),
      scalars=lambda count: bias_corrections(count, c2=b2))


class ClipBoundsState(NamedTuple):
  count: jax.Array


def _default_bounds(final_lr: Any, gamma: Any, t: jax.Array) -> tuple[Any, Any]:
  """``final_lr * (1 - 1/(gamma*t + 1))`` and ``final_lr * (1 + 1/(gamma*t))``, written
  without the cancellation ``1 - 1/(1 + gamma*t)``, which in float32 loses 4 of the lower
  bound's 7 digits at ``gamma*t = 1e-3``."""
  gt = gamma * t
  return final_lr * (gt / (gt + 1)), final_lr * ((gt + 1) / gt)


@hyperparameters(native=("final_lr", "lower", "upper"), final_lr="(0, inf)",
                 gamma="(0, 1)", lower="[0, inf) | None", upper="[0, inf) | None")
def clip_bounds(final_lr: base.ScalarOrSchedule = 0.1, gamma: float = 1e-3, *,
                lower: base.ScalarOrSchedule | None = None,
                upper: base.ScalarOrSchedule | None = None) -> base.GradientTransformation:
  """AdaBound's dynamic bounds on a per-coordinate step size ``s`` (Luo et al. 2019).

  Emits ``clip(s, lower, upper)``, by default with AdaBound's bounds
  ``final_lr * (1 - 1/(gamma*t + 1))`` and ``final_lr * (1 + 1/(gamma*t))``, ``t``
  counting this transform's calls from 1. ``s`` is the step size including the learning
  rate (``lr / (sqrt(v_hat) + eps)``, see the module docstring for the chain that builds
  it); multiply the result with a momentum through :func:`gradtx.multiply`.

  Args:
    final_lr: the learning rate both bounds converge to, a number or a schedule (the
      ``adabound`` alias rescales it with a scheduled learning rate).
    gamma: how fast the bounds converge: for large ``t`` each lies about
      ``final_lr / (gamma*t)`` from ``final_lr``. In (0, 1): at 0 the upper bound would be
      infinite.
    lower, upper: replace the default bounds: a number, or a schedule of ``count``, the
      number of earlier calls (from 0, as every gradtx schedule; the default lower bound
      is ``lambda count: final_lr * (1 - 1/(gamma*(count + 1) + 1))``).
  """
  validation.ordered("clip_bounds", "lower", lower, "upper", upper)

  def scalars(count):
    default_lower, default_upper = _default_bounds(base.resolve(final_lr, count), gamma,
                                                   safe_increment(count))
    low = default_lower if lower is None else base.resolve(lower, count)
    high = default_upper if upper is None else base.resolve(upper, count)
    return dict(low=jnp.asarray(low), high=jnp.asarray(high))

  return leafwise("clip_bounds", lambda s, *, low, high: jnp.clip(s, low, high),
                  state=ClipBoundsState, scalars=scalars)


def _check_schedule_start(owner: str, learning_rate: base.Schedule) -> None:
  """The rescaling ``lr(t)/lr(0)`` needs ``lr(0) != 0`` (checked where it is concrete)."""
  start = validation.concrete_scalar(learning_rate(zero_count()))
  if start == 0.0:
    raise ValueError(
        f"{owner}: a learning-rate schedule must not start at 0, got learning_rate(0) = "
        f"{start!r}; final_lr is rescaled by learning_rate(t)/learning_rate(0), as in the "
        "authors' code. Start a warm-up at a small positive value.")


def _final_lr(final_lr: base.ScalarOrSchedule,
              learning_rate: base.ScalarOrSchedule) -> base.ScalarOrSchedule:
  """The authors' ``final_lr * lr(t)/lr(0)`` when the learning rate is a schedule."""
  if not callable(learning_rate):
    return final_lr
  return lambda count: (base.resolve(final_lr, count) * learning_rate(count)
                        / learning_rate(jnp.zeros_like(count)))


def _adabound(owner: str, learning_rate: base.ScalarOrSchedule,
              final_lr: base.ScalarOrSchedule, b1: float, b2: float, gamma: float,
              eps: float, weight_decay: base.ScalarOrSchedule,
              amsbound: bool) -> base.GradientTransformation:
  if callable(learning_rate):
    _check_schedule_start(owner, learning_rate)
  return chain(
      add_decayed_weights(weight_decay),  # before the moments: the authors' L2 penalty
      multiply(add_momentum(b1, ema=True),  # m, not debiased: 1/(1-b1**t) is in s
               chain(adabound_step_size(b2, eps, amsbound=amsbound), bias_correction(b1),
                     scale_by_learning_rate(learning_rate, flip_sign=False),
                     clip_bounds(_final_lr(final_lr, learning_rate), gamma))),
      scale(-1.0))


@hyperparameters(native=("learning_rate", "final_lr", "weight_decay"),
                 learning_rate="[0, inf)", final_lr="(0, inf)", b1="[0, 1)", b2="[0, 1)",
                 gamma="(0, 1)", eps="[0, inf)", weight_decay="[0, inf)")
def adabound(learning_rate: base.ScalarOrSchedule = 1e-3,
             final_lr: base.ScalarOrSchedule = 0.1, b1: float = 0.9, b2: float = 0.999,
             gamma: float = 1e-3, eps: float = 1e-8,
             weight_decay: base.ScalarOrSchedule = 0.0) -> base.GradientTransformation:
  """AdaBound (Luo et al. 2019), the authors' reference numerics (package ``adabound``).

  ``g += weight_decay*p``; ``m = b1*m + (1-b1)*g``; ``v = b2*v + (1-b2)*g**2``;
  ``s = lr * sqrt(1-b2**t)/(1-b1**t) / (sqrt(v) + eps)``;
  ``p -= clip(s, final_lr*(1 - 1/(gamma*t + 1)), final_lr*(1 + 1/(gamma*t))) * m``.
  With a learning-rate schedule ``final_lr`` becomes ``final_lr * lr(t)/lr(0)``, the
  authors' rule for a torch lr scheduler, so ``lr(0)`` must not be 0. Under
  :func:`gradtx.inject_hyperparams` the learning rate is a number at every step, so
  ``final_lr`` is not rescaled when it changes (inject ``final_lr`` too, to move it).
  """
  return _adabound("adabound", learning_rate, final_lr, b1, b2, gamma, eps, weight_decay,
                   amsbound=False)


@hyperparameters(native=("learning_rate", "final_lr", "weight_decay"),
                 learning_rate="[0, inf)", final_lr="(0, inf)", b1="[0, 1)", b2="[0, 1)",
                 gamma="(0, 1)", eps="[0, inf)", weight_decay="[0, inf)")
def amsbound(learning_rate: base.ScalarOrSchedule = 1e-3,
             final_lr: base.ScalarOrSchedule = 0.1, b1: float = 0.9, b2: float = 0.999,
             gamma: float = 1e-3, eps: float = 1e-8,
             weight_decay: base.ScalarOrSchedule = 0.0) -> base.GradientTransformation:
  """AMSBound (Luo et al. 2019): :func:`adabound` with AMSGrad's non-decreasing ``v``.

  As :func:`adabound` with ``v`` replaced by ``v_max = max(v_max, v)`` (the maximum of the
  uncorrected ``v``, as in the authors' code).
  """
  return _adabound("amsbound", learning_rate, final_lr, b1, b2, gamma, eps, weight_decay,
                   amsbound=True)
