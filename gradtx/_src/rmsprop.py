"""RMSProp's normalisers (Tieleman & Hinton 2012), plain and centred (Graves 2013):
divide each coordinate by a running root mean square (or standard deviation) of the
gradient. Numerics follow Optax."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, validation
from gradtx._src.adam import bias_corrections
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import leafwise
from gradtx._src.tree.casting import tree_full_like, tree_zeros_like
from gradtx._src.tree.math import abs_sq, ema


class ScaleByRmsState(NamedTuple):
  nu: base.PyTree


class ScaleByRmsWithCountState(NamedTuple):
  count: jax.Array
  nu: base.PyTree


def _scaling(x, eps, eps_in_sqrt):
  return jax.lax.rsqrt(x + eps) if eps_in_sqrt else 1 / (jnp.sqrt(x) + eps)


@hyperparameters(decay="[0, 1]", eps="[0, inf)", initial_scale="[0, inf)",
                 eps_in_sqrt="bool", bias_correction="bool")
def scale_by_rms(decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
                 eps_in_sqrt: bool = True,
                 bias_correction: bool = False) -> base.GradientTransformation:
  """RMSProp's normaliser (Tieleman & Hinton 2012).

  ``nu = decay*nu + (1-decay)*u**2``; emits ``u / sqrt(nu + eps)`` (or
  ``u / (sqrt(nu) + eps)`` with ``eps_in_sqrt=False``), with ``nu`` divided by
  ``1 - decay**t`` first if ``bias_correction`` (then ``decay`` must be below 1).
  """
  if bias_correction:  # decay=1 never forgets, which is fine, but 1 - 1**t is 0.
    validation.real("scale_by_rms", "decay", decay, "[0, 1)")

  def rule(u, nu, *, decay, eps, correction=1.0):
    nu = ema(decay, nu, abs_sq(u))
    nu_hat = nu / correction if bias_correction else nu
    return _scaling(nu_hat, eps, eps_in_sqrt) * u, nu

  return leafwise(
      "scale_by_rms", rule,
      state=ScaleByRmsWithCountState if bias_correction else ScaleByRmsState,
      init=lambda p: tree_full_like(p, initial_scale), hyperparams=dict(decay=decay, eps=eps),
      scalars=(lambda count: bias_corrections(count, correction=decay))
      if bias_correction else None)


class ScaleByRStdDevState(NamedTuple):
  mu: base.PyTree
  nu: base.PyTree


class ScaleByRStdDevWithCountState(NamedTuple):
  count: jax.Array
  mu: base.PyTree
  nu: base.PyTree


@hyperparameters(decay="[0, 1]", eps="[0, inf)", initial_scale="[0, inf)",
                 eps_in_sqrt="bool", bias_correction="bool")
def scale_by_stddev(decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
                    eps_in_sqrt: bool = True,
                    bias_correction: bool = False) -> base.GradientTransformation:
  """Centred RMSProp's normaliser (Graves 2013): divides by a running standard deviation.

  ``mu = decay*mu + (1-decay)*u``, ``nu = decay*nu + (1-decay)*u**2``; emits
  ``u / sqrt(nu - mu**2 + eps)`` (or ``u / (sqrt(nu - mu**2) + eps)``).
  """

  def rule(u, mu, nu, *, decay, eps, correction=1.0):
    mu = ema(decay, mu, u)
    nu = ema(decay, nu, abs_sq(u))
    mu_hat, nu_hat = (mu / correction, nu / correction) if bias_correction else (mu, nu)
    return _scaling(nu_hat - abs_sq(mu_hat), eps, eps_in_sqrt) * u, mu, nu

  return leafwise(
      "scale_by_stddev", rule,
      state=ScaleByRStdDevWithCountState if bias_correction else ScaleByRStdDevState,
      init=lambda p: (tree_zeros_like(p), tree_full_like(p, initial_scale)),
      hyperparams=dict(decay=decay, eps=eps),
      scalars=(lambda count: bias_corrections(count, correction=decay))
      if bias_correction else None)
