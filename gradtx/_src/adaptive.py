"""Adaptive normalisers: per-coordinate scaling by running statistics of the gradient.

Each update rule below is written for one array and lifted to pytrees by
:func:`gradtx._src.base.map_leaves`. Numerics follow Optax (same epsilon placement, same
bias correction, same step counting), computed in at least float32.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src.hyperparams import accepts_schedules
from gradtx._src import base, validation


def abs_sq(x: jax.Array) -> jax.Array:
  """``|x|**2``, real for complex ``x``."""
  return (x.conj() * x).real if jnp.iscomplexobj(x) else x**2


def ema(decay: Any, moment: jax.Array, value: jax.Array) -> jax.Array:
  """``(1 - decay)*value + decay*moment``, in Optax's order of operations."""
  return (1 - decay) * value + decay * moment


def _full_like(params: base.Params, value: Any, dtype: Any = None) -> base.PyTree:
  return base.full_like(params, value, dtype)


def _zeros_like(params: base.Params, dtype: Any = None) -> base.PyTree:
  return base.full_like(params, 0, dtype)


def _canonical_dtype(dtype: Any) -> Any:
  return None if dtype is None else jnp.dtype(dtype)


class ScaleByRssState(NamedTuple):
  sum_of_squares: base.PyTree


@accepts_schedules()
def scale_by_rss(initial_accumulator_value: float = 0.1,
                 eps: float = 1e-7) -> base.GradientTransformation:
  """Adagrad's normaliser (Duchi et al. 2011): ``s += u**2; u / sqrt(s + eps)``.

  Coordinates whose sum of squares is still zero emit zero.
  """
  validation.check("scale_by_rss",
                   initial_accumulator_value=(initial_accumulator_value, "[0, inf)"),
                   eps=(eps, "[0, inf)"))

  def init(params):
    return ScaleByRssState(_full_like(params, initial_accumulator_value))

  def rule(u, s, eps):
    s = abs_sq(u) + s
    return jnp.where(s > 0, jax.lax.rsqrt(s + eps), 0.0) * u, s

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    updates, s = base.map_leaves("scale_by_rss", rule, updates, state.sum_of_squares,
                                 eps=eps)
    return updates, ScaleByRssState(s)

  return base.GradientTransformation(init, update)


class ScaleByRmsState(NamedTuple):
  nu: base.PyTree


class ScaleByRmsWithCountState(NamedTuple):
  count: jax.Array
  nu: base.PyTree


@accepts_schedules()
def scale_by_rms(decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
                 eps_in_sqrt: bool = True,
                 bias_correction: bool = False) -> base.GradientTransformation:
  """RMSProp's normaliser (Tieleman & Hinton 2012).

  ``nu = decay*nu + (1-decay)*u**2``; emits ``u / sqrt(nu + eps)`` (or
  ``u / (sqrt(nu) + eps)`` with ``eps_in_sqrt=False``), with ``nu`` divided by
  ``1 - decay**t`` first if ``bias_correction``.
  """
  # decay=1 never forgets, which is fine, but its bias correction 1 - 1**t is 0.
  validation.check("scale_by_rms", decay=(decay, "[0, 1)" if bias_correction else "[0, 1]"),
                   eps=(eps, "[0, inf)"), initial_scale=(initial_scale, "[0, inf)"))

  def init(params):
    nu = _full_like(params, initial_scale)
    return ScaleByRmsWithCountState(base.zero_count(), nu) if bias_correction else (
        ScaleByRmsState(nu))

  def rule(u, nu, decay, eps, correction):
    nu = ema(decay, nu, abs_sq(u))
    nu_hat = nu / correction if bias_correction else nu
    scaling = jax.lax.rsqrt(nu_hat + eps) if eps_in_sqrt else 1 / (jnp.sqrt(nu_hat) + eps)
    return scaling * u, nu

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    count = base.safe_increment(state.count) if bias_correction else None
    correction = base.bias_correction_factor(decay, count) if bias_correction else 1.0
    updates, nu = base.map_leaves("scale_by_rms", rule, updates, state.nu, decay=decay,
                                  eps=eps, correction=correction)
    return updates, (ScaleByRmsWithCountState(count, nu) if bias_correction else
                     ScaleByRmsState(nu))

  return base.GradientTransformation(init, update)


class ScaleByRStdDevState(NamedTuple):
  mu: base.PyTree
  nu: base.PyTree


class ScaleByRStdDevWithCountState(NamedTuple):
  count: jax.Array
  mu: base.PyTree
  nu: base.PyTree


@accepts_schedules()
def scale_by_stddev(decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
                    eps_in_sqrt: bool = True,
                    bias_correction: bool = False) -> base.GradientTransformation:
  """Centred RMSProp's normaliser (Graves 2013): divides by a running standard deviation.

  ``mu = decay*mu + (1-decay)*u``, ``nu = decay*nu + (1-decay)*u**2``; emits
  ``u / sqrt(nu - mu**2 + eps)`` (or ``u / (sqrt(nu - mu**2) + eps)``).
  """
  validation.check("scale_by_stddev", decay=(decay, "[0, 1]"), eps=(eps, "[0, inf)"),
                   initial_scale=(initial_scale, "[0, inf)"))

  def init(params):
    mu, nu = _zeros_like(params), _full_like(params, initial_scale)
    return ScaleByRStdDevWithCountState(base.zero_count(), mu, nu) if bias_correction else (
        ScaleByRStdDevState(mu, nu))

  def rule(u, mu, nu, decay, eps, correction):
    mu = ema(decay, mu, u)
    nu = ema(decay, nu, abs_sq(u))
    mu_hat, nu_hat = (mu / correction, nu / correction) if bias_correction else (mu, nu)
    variance = nu_hat - abs_sq(mu_hat)
    scaling = (jax.lax.rsqrt(variance + eps) if eps_in_sqrt else
               1 / (jnp.sqrt(variance) + eps))
    return scaling * u, mu, nu

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    count = base.safe_increment(state.count) if bias_correction else None
    correction = base.bias_correction_factor(decay, count) if bias_correction else 1.0
    updates, mu, nu = base.map_leaves("scale_by_stddev", rule, updates, state.mu, state.nu,
                                      decay=decay, eps=eps, correction=correction)
    return updates, (ScaleByRStdDevWithCountState(count, mu, nu) if bias_correction else
                     ScaleByRStdDevState(mu, nu))

  return base.GradientTransformation(init, update)


class ScaleByAdaDeltaState(NamedTuple):
  e_g: base.PyTree
  e_x: base.PyTree


@accepts_schedules()
def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> base.GradientTransformation:
  """Adadelta's normaliser (Zeiler 2012, Algorithm 1).

  ``E[g²] = rho*E[g²] + (1-rho)*u**2``; ``u' = sqrt(E[x²] + eps) / sqrt(E[g²] + eps) * u``;
  ``E[x²] = rho*E[x²] + (1-rho)*u'**2``.
  """
  validation.check("scale_by_adadelta", rho=(rho, "[0, 1]"), eps=(eps, "[0, inf)"))

  def init(params):
    return ScaleByAdaDeltaState(_zeros_like(params), _zeros_like(params))

  def rule(u, e_g, e_x, rho, eps):
    e_g = ema(rho, e_g, u**2)
    u = (jnp.sqrt(e_x + eps) / jnp.sqrt(e_g + eps)) * u
    return u, e_g, ema(rho, e_x, u**2)

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    updates, e_g, e_x = base.map_leaves("scale_by_adadelta", rule, updates, state.e_g,
                                        state.e_x, rho=rho, eps=eps)
    return updates, ScaleByAdaDeltaState(e_g, e_x)

  return base.GradientTransformation(init, update)


class ScaleByAdamState(NamedTuple):
  count: jax.Array
  mu: base.PyTree
  nu: base.PyTree


def _check_adam_family(owner: str, b1: Any, b2: Any, eps: Any, eps_root: Any) -> None:
  validation.check(owner, b1=(b1, "[0, 1)"), b2=(b2, "[0, 1)"), eps=(eps, "[0, inf)"),
                   eps_root=(eps_root, "[0, inf)"))


def _adam_init(mu_dtype: Any):

  def init(params):
    return ScaleByAdamState(base.zero_count(), _zeros_like(params, mu_dtype),
                            _zeros_like(params))

  return init


def adam_moments(u, mu, nu, b1, b2, c1, c1_next, nesterov):
  """Adam's moment updates and bias-corrected first moment (Nadam's if ``nesterov``)."""
  mu = ema(b1, mu, u)
  nu = ema(b2, nu, abs_sq(u))
  mu_hat = b1 * (mu / c1_next) + (1 - b1) * (u / c1) if nesterov else mu / c1
  return mu, nu, mu_hat


@accepts_schedules()
def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                  eps_root: float = 0.0, mu_dtype: Any = None, *,
                  nesterov: bool = False) -> base.GradientTransformation:
  """Adam's normaliser (Kingma & Ba 2015, Algorithm 1).

  ``mu = b1*mu + (1-b1)*u``, ``nu = b2*nu + (1-b2)*u**2``,
  ``mu_hat = mu/(1-b1**t)``, ``nu_hat = nu/(1-b2**t)``; emits
  ``mu_hat / (sqrt(nu_hat + eps_root) + eps)``. With ``nesterov=True`` (Nadam, Dozat 2016)
  ``mu_hat = b1*mu/(1-b1**(t+1)) + (1-b1)*u/(1-b1**t)``.

  Args:
    b1, b2: decay rates of the first and second moments, in [0, 1).
    eps: added to the denominator outside the square root.
    eps_root: added inside the square root (keeps gradients through the step finite).
    mu_dtype: dtype to store ``mu`` in, e.g. ``jnp.bfloat16`` to halve its memory.
    nesterov: Nadam's look-ahead first moment.
  """
  _check_adam_family("scale_by_adam", b1, b2, eps, eps_root)
  mu_dtype = _canonical_dtype(mu_dtype)

  def rule(u, mu, nu, b1, b2, eps, eps_root, c1, c1_next, c2):
    mu, nu, mu_hat = adam_moments(u, mu, nu, b1, b2, c1, c1_next, nesterov)
    return mu_hat / (jnp.sqrt(nu / c2 + eps_root) + eps), mu, nu

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    count = base.safe_increment(state.count)
    updates, mu, nu = base.map_leaves(
        "scale_by_adam", rule, updates, state.mu, state.nu, b1=b1, b2=b2, eps=eps,
        eps_root=eps_root, c1=base.bias_correction_factor(b1, count),
        c1_next=base.bias_correction_factor(b1, base.safe_increment(count)),
        c2=base.bias_correction_factor(b2, count))
    return updates, ScaleByAdamState(count, mu, nu)

  return base.GradientTransformation(_adam_init(mu_dtype), update)


class ScaleByAmsgradState(NamedTuple):
  count: jax.Array
  mu: base.PyTree
  nu: base.PyTree
  nu_max: base.PyTree


@accepts_schedules()
def scale_by_amsgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                     eps_root: float = 0.0, mu_dtype: Any = None,
                     bias_correction_mu: bool = True,
                     bias_correction_nu: bool = True) -> base.GradientTransformation:
  """AMSGrad's normaliser (Reddi et al. 2018): Adam with a non-decreasing second moment.

  As :func:`scale_by_adam`, but divides by ``sqrt(nu_max + eps_root) + eps`` with
  ``nu_max = max(nu_max, nu_hat)``.
  """
  _check_adam_family("scale_by_amsgrad", b1, b2, eps, eps_root)
  mu_dtype = _canonical_dtype(mu_dtype)

  def init(params):
    return ScaleByAmsgradState(base.zero_count(), _zeros_like(params, mu_dtype),
                               _zeros_like(params), _zeros_like(params))

  def rule(u, mu, nu, nu_max, b1, b2, eps, eps_root, c1, c2):
    mu = ema(b1, mu, u)
    nu = ema(b2, nu, abs_sq(u))
    mu_hat = mu / c1 if bias_correction_mu else mu
    nu_hat = nu / c2 if bias_correction_nu else nu
    # `where`, not `maximum`: the gradient of `maximum` tests `x == max(x, y)`, which XLA
    # can break by computing `nu / c2` twice in different ways (jit and eager disagreed).
    nu_max = jnp.where(nu_hat > nu_max, nu_hat, nu_max)
    return mu_hat / (jnp.sqrt(nu_max + eps_root) + eps), mu, nu, nu_max

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    count = base.safe_increment(state.count)
    updates, mu, nu, nu_max = base.map_leaves(
        "scale_by_amsgrad", rule, updates, state.mu, state.nu, state.nu_max, b1=b1, b2=b2,
        eps=eps, eps_root=eps_root, c1=base.bias_correction_factor(b1, count),
        c2=base.bias_correction_factor(b2, count))
    return updates, ScaleByAmsgradState(count, mu, nu, nu_max)

  return base.GradientTransformation(init, update)


@accepts_schedules()
def scale_by_adamax(b1: float = 0.9, b2: float = 0.999,
                    eps: float = 1e-8) -> base.GradientTransformation:
  """Adamax's normaliser (Kingma & Ba 2015, §7.1): Adam with the infinity norm.

  ``mu = b1*mu + (1-b1)*u``, ``nu = max(|u| + eps, b2*nu)``; emits
  ``mu/(1-b1**t) / nu``.
  """
  _check_adam_family("scale_by_adamax", b1, b2, eps, 0.0)

  def rule(u, mu, nu, b1, b2, eps, c1):
    mu = ema(b1, mu, u)
    nu = jnp.maximum(jnp.abs(u) + eps, b2 * nu)
    return (mu / c1) / nu, mu, nu

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    count = base.safe_increment(state.count)
    updates, mu, nu = base.map_leaves("scale_by_adamax", rule, updates, state.mu, state.nu,
                                      b1=b1, b2=b2, eps=eps,
                                      c1=base.bias_correction_factor(b1, count))
    return updates, ScaleByAdamState(count, mu, nu)

  return base.GradientTransformation(_adam_init(None), update)
