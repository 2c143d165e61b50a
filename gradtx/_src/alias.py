"""The classic optimizers, each a visible ``chain`` of the primitives.

Signatures, defaults and numerics follow Optax, so ``optax.adam`` -> ``gtx.adam`` is the
whole migration. ``g`` is the gradient, ``lr`` the learning rate, ``t`` the step from 1;
each update rule is what the chain computes.
"""

from __future__ import annotations

from typing import Any

from gradtx._src import base, validation
from gradtx._src.adagrad import scale_by_adadelta, scale_by_rss
from gradtx._src.adam import ADAM_SPECS, scale_by_adam, scale_by_adamax, scale_by_amsgrad
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.momentum import add_momentum
from gradtx._src.radam import scale_by_radam
from gradtx._src.rmsprop import scale_by_rms, scale_by_stddev
from gradtx._src.rprop import RPROP_SPECS, scale_by_rprop
from gradtx._src.scaling import add_decayed_weights, scale, scale_by_learning_rate

LR = dict(native=("learning_rate",), learning_rate="[0, inf)")


@hyperparameters(**LR, momentum="[0, 1] | None", nesterov="bool",
                 accumulator_dtype="dtype | None")
def sgd(learning_rate: base.ScalarOrSchedule, momentum: float | None = None,
        nesterov: bool = False, accumulator_dtype: Any = None) -> base.GradientTransformation:
  """Stochastic gradient descent, with heavy-ball or Nesterov momentum.

  ``m = momentum*m + g``; ``p -= lr * m`` (``p -= lr * (g + momentum*m)`` with
  ``nesterov``). Robbins & Monro 1951; Polyak 1964; Sutskever et al. 2013 (Nesterov).
  """
  return chain(
      add_momentum(momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
      if momentum is not None else base.identity(),
      scale_by_learning_rate(learning_rate))


@hyperparameters(**LR, initial_accumulator_value="[0, inf)", eps="[0, inf)")
def adagrad(learning_rate: base.ScalarOrSchedule, initial_accumulator_value: float = 0.1,
            eps: float = 1e-7) -> base.GradientTransformation:
  """Adagrad (Duchi, Hazan & Singer 2011).

  ``s += g**2`` (from ``initial_accumulator_value``); ``p -= lr * g / sqrt(s + eps)``.
  """
  return chain(scale_by_rss(initial_accumulator_value, eps),
               scale_by_learning_rate(learning_rate))


@hyperparameters(**LR, decay="[0, 1]", eps="[0, inf)", initial_scale="[0, inf)",
                 eps_in_sqrt="bool", centered="bool", momentum="[0, 1] | None",
                 nesterov="bool", bias_correction="bool")
def rmsprop(learning_rate: base.ScalarOrSchedule, decay: float = 0.9, eps: float = 1e-8,
            initial_scale: float = 0.0, eps_in_sqrt: bool = True, centered: bool = False,
            momentum: float | None = None, nesterov: bool = False,
            bias_correction: bool = False) -> base.GradientTransformation:
  """RMSProp (Tieleman & Hinton 2012); centred variant from Graves 2013.

  ``nu = decay*nu + (1-decay)*g**2``; ``d = g / sqrt(nu + eps)`` (centred:
  ``g / sqrt(nu - mu**2 + eps)`` with ``mu`` the running mean); then, with ``momentum``,
  ``m = momentum*m + lr*d`` and ``p -= m`` (Nesterov: ``p -= lr*d + momentum*m``); without,
  ``p -= lr * d``.
  """
  if bias_correction:  # 1 - decay**t would be 0
    validation.real("rmsprop", "decay", decay, "[0, 1)")
  normaliser = scale_by_stddev if centered else scale_by_rms
  return chain(
      normaliser(decay, eps, initial_scale, eps_in_sqrt, bias_correction),
      scale_by_learning_rate(learning_rate),
      add_momentum(momentum, nesterov=nesterov) if momentum is not None else base.identity())


@hyperparameters(native=("learning_rate", "weight_decay"),
                 learning_rate="[0, inf) | None", rho="[0, 1]", eps="[0, inf)",
                 weight_decay="[0, inf)")
def adadelta(learning_rate: base.ScalarOrSchedule | None = None, rho: float = 0.9,
             eps: float = 1e-6, weight_decay: base.ScalarOrSchedule = 0.0,
             weight_decay_mask: Any = None) -> base.GradientTransformation:
  """Adadelta (Zeiler 2012).

  ``g' = g + weight_decay*p``; ``E[g²] = rho*E[g²] + (1-rho)*g'**2``;
  ``d = sqrt(E[x²] + eps) / sqrt(E[g²] + eps) * g'``; ``E[x²] = rho*E[x²] + (1-rho)*d**2``;
  ``p -= lr * d`` (``lr=None``: ``p -= d``, the paper's rule; Optax 0.2.8 instead adds
  ``d``, climbing the loss, so ``optax.adadelta()`` corresponds to ``gtx.adadelta(1.0)``
  only with a learning rate given).
  """
  return chain(add_decayed_weights(weight_decay, mask=weight_decay_mask),
               scale_by_adadelta(rho, eps),
               scale_by_learning_rate(1.0 if learning_rate is None else learning_rate))


@hyperparameters(**LR, **ADAM_SPECS, nesterov="bool")
def adam(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8, eps_root: float = 0.0, mu_dtype: Any = None, *,
         nesterov: bool = False) -> base.GradientTransformation:
  """Adam (Kingma & Ba 2015).

  ``mu = b1*mu + (1-b1)*g``; ``nu = b2*nu + (1-b2)*g**2``;
  ``p -= lr * (mu/(1-b1**t)) / (sqrt(nu/(1-b2**t) + eps_root) + eps)``.
  ``nesterov=True`` is Nadam (Dozat 2016).
  """
  return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
               scale_by_learning_rate(learning_rate))


@hyperparameters(**LR, **ADAM_SPECS, nesterov="bool")
def nadam(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, eps_root: float = 0.0, mu_dtype: Any = None, *,
          nesterov: bool = True) -> base.GradientTransformation:
  """Nadam (Dozat 2016): Adam with a Nesterov look-ahead first moment.

  As :func:`adam`, with ``mu_hat = b1*mu/(1-b1**(t+1)) + (1-b1)*g/(1-b1**t)``; Optax's
  ``adam(..., nesterov=True)``, so ``nesterov=False`` is Adam.
  """
  return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
               scale_by_learning_rate(learning_rate))


@hyperparameters(native=("learning_rate", "weight_decay"), learning_rate="[0, inf)",
                 **ADAM_SPECS, weight_decay="[0, inf)", nesterov="bool")
def adamw(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, eps_root: float = 0.0, mu_dtype: Any = None,
          weight_decay: base.ScalarOrSchedule = 1e-4, mask: Any = None, *,
          nesterov: bool = False) -> base.GradientTransformation:
  """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay.

  ``p -= lr * (adam_direction + weight_decay * p)``, the decay applied only where
  ``mask`` is True (all params by default).
  """
  return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
               add_decayed_weights(weight_decay, mask),
               scale_by_learning_rate(learning_rate))


@hyperparameters(**LR, b1="[0, 1)", b2="[0, 1)", eps="[0, inf)")
def adamax(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
           eps: float = 1e-8) -> base.GradientTransformation:
  """Adamax (Kingma & Ba 2015, §7.1): Adam with the infinity norm.

  ``mu = b1*mu + (1-b1)*g``; ``nu = max(|g| + eps, b2*nu)``;
  ``p -= lr * mu/(1-b1**t) / nu``.
  """
  return chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))


@hyperparameters(**LR, **ADAM_SPECS, bias_correction_mu="bool",
                 bias_correction_nu="bool")
def amsgrad(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
            eps: float = 1e-8, eps_root: float = 0.0, mu_dtype: Any = None,
            bias_correction_mu: bool = True,
            bias_correction_nu: bool = True) -> base.GradientTransformation:
  """AMSGrad (Reddi, Kale & Kumar 2018): Adam with ``nu_max = max(nu_max, nu_hat)``.

  ``p -= lr * mu_hat / (sqrt(nu_max + eps_root) + eps)``.
  """
  return chain(scale_by_amsgrad(b1, b2, eps, eps_root, mu_dtype, bias_correction_mu,
                                bias_correction_nu),
               scale_by_learning_rate(learning_rate))


@hyperparameters(**LR, **{k: v for k, v in ADAM_SPECS.items() if k != "mu_dtype"},
                 threshold="[0, inf)", nesterov="bool")
def radam(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, eps_root: float = 0.0, threshold: float = 5.0, *,
          nesterov: bool = False) -> base.GradientTransformation:
  """RAdam (Liu et al. 2019): Adam with its adaptive step size rectified.

  ``p -= lr * r_t * mu_hat / (sqrt(nu_hat + eps_root) + eps)`` once ``rho_t >= threshold``,
  ``p -= lr * mu_hat`` before (see :mod:`gradtx._src.radam` for ``r_t``, ``rho_t``).
  """
  return chain(scale_by_radam(b1, b2, eps, eps_root, threshold, nesterov=nesterov),
               scale_by_learning_rate(learning_rate))


@hyperparameters(native=("learning_rate",), **RPROP_SPECS)
def rprop(learning_rate: float, eta_minus: float = 0.5, eta_plus: float = 1.2,
          min_step_size: float = 1e-6,
          max_step_size: float = 50.0) -> base.GradientTransformation:
  """Rprop (Riedmiller & Braun 1993), full-batch sign-based steps; see
  :func:`gradtx.scale_by_rprop`. ``p -= step * sign(g)``, ``step`` adapted per weight.

  As torch.optim.Rprop and the paper. Optax 0.2.8's ``rprop`` emits each step one step
  late (its first update is zero; optax PR #1725); gradtx does not copy that.
  """
  validation.ordered("rprop", "min_step_size", min_step_size, "max_step_size",
                     max_step_size)
  return chain(scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size,
                              max_step_size),
               scale(-1.0))
