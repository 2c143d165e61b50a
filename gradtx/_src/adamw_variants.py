"""Adam's variants with decoupled weight decay (Loshchilov & Hutter 2019) that Optax names
separately: NAdamW (Dozat 2016's Nesterov look-ahead) and AdamaxW (Kingma & Ba 2015,
section 7.1, the infinity norm).

Each is the visible chain ``normaliser -> add_decayed_weights(weight_decay, mask) ->
scale_by_learning_rate``, with Optax 0.2.8's signatures, defaults and numerics (Optax's
``nadamw`` is ``functools.partial(adamw, nesterov=True)``: the same parameters, with
``nesterov`` defaulting to True).
"""

from __future__ import annotations

from typing import Any

from gradtx._src import base
from gradtx._src.adam import ADAM_SPECS, scale_by_adam, scale_by_adamax
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.scaling import add_decayed_weights, scale_by_learning_rate

DECOUPLED = dict(native=("learning_rate", "weight_decay"), learning_rate="[0, inf)",
                 weight_decay="[0, inf)")


@hyperparameters(**DECOUPLED, **ADAM_SPECS, nesterov="bool")
def nadamw(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
           eps: float = 1e-8, eps_root: float = 0.0, mu_dtype: Any = None,
           weight_decay: base.ScalarOrSchedule = 1e-4, mask: Any = None, *,
           nesterov: bool = True) -> base.GradientTransformation:
  """NAdamW: AdamW with Nadam's look-ahead first moment (Dozat 2016).

  ``mu_hat = b1*mu/(1-b1**(t+1)) + (1-b1)*g/(1-b1**t)``;
  ``p -= lr * (mu_hat / (sqrt(nu/(1-b2**t) + eps_root) + eps) + weight_decay * p)``, the
  decay applied only where ``mask`` is True. ``nesterov=False`` is :func:`gradtx.adamw`.
  """
  return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
               add_decayed_weights(weight_decay, mask),
               scale_by_learning_rate(learning_rate))


@hyperparameters(**DECOUPLED, b1="[0, 1)", b2="[0, 1)", eps="[0, inf)")
def adamaxw(learning_rate: base.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
            eps: float = 1e-8, weight_decay: base.ScalarOrSchedule = 1e-4,
            mask: Any = None) -> base.GradientTransformation:
  """AdamaxW: Adamax with decoupled weight decay.

  ``mu = b1*mu + (1-b1)*g``; ``nu = max(|g| + eps, b2*nu)``;
  ``p -= lr * (mu/(1-b1**t) / nu + weight_decay * p)``, the decay applied only where
  ``mask`` is True.
  """
  return chain(scale_by_adamax(b1, b2, eps), add_decayed_weights(weight_decay, mask),
               scale_by_learning_rate(learning_rate))
