"""Sophia (Liu, Li, Hall, Liang & Ma 2023, "Sophia: A Scalable Stochastic Second-order
Optimizer for Language Model Pre-training", Algorithm 3) with Hutchinson's estimator of
the Hessian's diagonal: Optax 0.2.8's ``optax.contrib.sophia``,
``hutchinson_estimator_diag_hessian`` and their states.

Sophia divides a momentum by an exponential average of the Hessian's diagonal, refreshed
every ``k = update_interval`` steps, and clips the ratio coordinate-wise::

  m_t = b1 m_{t-1} + (1 - b1) g_t
  u_t = clip((m_t / (1 - b1**t)) / max(gamma h, eps), -rho, rho)
  if (t - 1) % k == 0:  h <- b2 h + (1 - b2) h_hat,  h_hat from hessian_diagonal_fn

and the optimizer is ``chain(scale_by_sophia, add_decayed_weights,
scale_by_learning_rate)``: ``theta <- theta - lr (u_t + weight_decay theta)``.

As in Optax (after Levanter's implementation), ``u_t`` uses the Hessian average before
this step's refresh (the paper refreshes first), ``m_t`` is bias-corrected (the paper's
is not), and the estimate ``h_hat = r * (H r)`` draws Rademacher vectors ``r`` (the
paper's are Gaussian). The first step sees ``h = 0``: it divides by ``eps``, so the
coordinates move by ``lr * rho`` against the sign of ``m`` (``rho = clip_threshold``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp

from gradtx._src import base
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import check_float_leaves, map_leaves
from gradtx._src.noise import _typed_key
from gradtx._src.scaling import add_decayed_weights, scale_by_learning_rate
from gradtx._src.tree.casting import tree_cast_like, tree_zeros_like
from gradtx._src.tree.math import bias_correction_factor, ema, safe_increment, zero_count
from gradtx._src.tree.random import tree_random_like


class HutchinsonState(NamedTuple):
  """State of :func:`hutchinson_estimator_diag_hessian`: the raw data
  (``jax.random.key_data``) of the key of the next draw."""

  key: jax.Array


def hutchinson_estimator_diag_hessian(random_seed: Optional[jax.Array] = None
                                      ) -> base.GradientTransformationExtraArgs:
  """Hutchinson's estimate of the Hessian's diagonal (Hutchinson 1989; Bekas, Kokiopoulou
  & Saad 2007): ``r * (H r)`` for a Rademacher vector ``r`` (independent +-1 entries),
  whose expectation is ``diag(H)``. Unbiased, with a high variance.

  ``update(updates, state, params, obj_fn=f)`` ignores ``updates`` and returns the
  estimate for ``H = hessian(f)(params)``, from one Hessian-vector product (forward over
  reverse mode); ``f(params)`` must return the scalar loss. Each call splits the key into
  the next key and the draw's key, which is split into one key per leaf in leaf order,
  as in Optax, so the same key gives Optax's vectors.

  Args:
    random_seed: the key: raw key data (``jax.random.PRNGKey``), a typed key
      (``jax.random.key``) or an integer seed; ``None`` for ``jax.random.PRNGKey(0)``,
      Optax's default. The state holds the key's raw data (a typed key's too, so that
      it checkpoints), as ``add_noise``'s does.

  ``r`` is drawn in float32 and cast to each param's dtype (+-1 exactly in any of them);
  Optax casts it to the lowest dtype of the params, the same for params of one dtype
  (with several, Optax's ``jax.jvp`` rejects the tangents).
  """
  impl = None
  if isinstance(random_seed, jax.Array) and jnp.issubdtype(random_seed.dtype,
                                                           jax.dtypes.prng_key):
    impl = jax.random.key_impl(random_seed)

  def init_fn(params):
    del params
    # Built here, not at construction: sophia's default builds an estimator at import.
    key = _typed_key(0 if random_seed is None else random_seed)
    return HutchinsonState(key=jax.random.key_data(key))

  def update_fn(updates, state, params=None, obj_fn=None, **extra_args):
    del updates, extra_args
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format("hutchinson_estimator_diag_hessian"))
    if obj_fn is None:
      raise ValueError("hutchinson_estimator_diag_hessian: give the loss as obj_fn: "
                       "update(updates, state, params, obj_fn=lambda params: loss)")
    check_float_leaves("hutchinson_estimator_diag_hessian", params, "param")
    key, draw = jax.random.split(jax.random.wrap_key_data(state.key, impl=impl))
    signs = tree_random_like(draw, params, jax.random.rademacher, dtype=jnp.float32)
    signs = tree_cast_like(signs, params)
    hvp = jax.jvp(jax.grad(obj_fn), (params,), (signs,))[1]
    estimate = jax.tree.map(lambda h, r: h * r, hvp, signs)
    return estimate, HutchinsonState(key=jax.random.key_data(key))

  return base.GradientTransformationExtraArgs(init_fn, update_fn)


class SophiaState(NamedTuple):
  """State of :func:`scale_by_sophia` (Optax's fields).

  Attributes:
    count: the number of earlier updates, int32.
    mu: the momentum ``m``, in ``mu_dtype`` (default: the params').
    nu: the average ``h`` of the Hessian's diagonal estimates.
    hessian_fn_state: the state of ``hessian_diagonal_fn``.
  """

  count: jax.Array
  mu: base.Updates
  nu: base.Updates
  hessian_fn_state: Any


def _ratio(u, mu, nu, *, b1, c1, gamma, eps, clip_threshold):
  """One leaf: the new momentum, and ``m_hat / max(gamma h, eps)``, clipped to
  ``[-clip_threshold, clip_threshold]`` unless that is None."""
  mu = ema(b1, mu, u)
  ratio = (mu / c1) / jnp.maximum(gamma * nu, eps)
  if clip_threshold is not None:
    ratio = jnp.clip(ratio, -clip_threshold, clip_threshold)
  return ratio, mu


SOPHIA_SPECS = dict(b1="[0, 1)", b2="[0, 1]", eps="(0, inf)", gamma="[0, inf)",
                    clip_threshold="(0, inf) | None", update_interval="int >= 1",
                    hessian_diagonal_fn="transform", mu_dtype="dtype | None",
                    verbose="bool", print_win_rate_every_n_steps="int >= 0")


@hyperparameters(**SOPHIA_SPECS)
def scale_by_sophia(
    b1: float = 0.965, b2: float = 0.99, eps: float = 1e-8, gamma: float = 0.01,
    clip_threshold: Optional[float] = 1.0, update_interval: int = 10,
    hessian_diagonal_fn: base.GradientTransformation = hutchinson_estimator_diag_hessian(),
    mu_dtype: Any = None, verbose: bool = False, print_win_rate_every_n_steps: int = 0
) -> base.GradientTransformationExtraArgs:
  """Sophia's preconditioner (see the module docstring for the rule).

  Extra keyword arguments of ``update`` (``obj_fn=`` for the default estimator) are
  passed to ``hessian_diagonal_fn``, which runs on steps ``1, 1 + k, 1 + 2k, ...``
  (``k = update_interval``). Defaults: the paper's ``b1``, ``b2``, ``k``, and Optax's
  ``eps``, ``gamma``, ``clip_threshold``. With ``verbose``, the fraction of coordinates
  not clipped (the paper's "win rate", best between 0.1 and 0.5; raise ``gamma`` if it
  is lower) is printed every ``print_win_rate_every_n_steps`` steps.
  """
  mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)
  hessian_fn = hessian_diagonal_fn
  owner = "scale_by_sophia"

  def init_fn(params):
    check_float_leaves(owner, params, "param")
    return SophiaState(count=zero_count(), mu=tree_zeros_like(params, mu_dtype),
                       nu=tree_zeros_like(params), hessian_fn_state=hessian_fn.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(base.NO_PARAMS_MSG.format(owner))
    check_float_leaves(owner, updates, "update")
    base.check_same_structure(owner, updates, params)
    count = safe_increment(state.count)
    scalars = dict(b1=b1, c1=bias_correction_factor(b1, count), gamma=gamma, eps=eps)
    new_updates, mu = map_leaves(owner, _ratio, updates, state.mu, state.nu, **scalars,
                                 clip_threshold=clip_threshold)
    if verbose and clip_threshold is not None:
      ratios, _ = map_leaves(owner, _ratio, updates, state.mu, state.nu, **scalars,
                             clip_threshold=None)
      inside = sum(jnp.sum(jnp.abs(r) < clip_threshold) for r in jax.tree.leaves(ratios))
      win_rate = inside / sum(jnp.size(r) for r in jax.tree.leaves(ratios))
      jax.lax.cond(count % print_win_rate_every_n_steps == 0,
                   lambda: jax.debug.print("Sophia optimizer win rate: {}", win_rate),
                   lambda: None)

    def refresh(hessian_fn_state, nu):
      estimate, hessian_fn_state = base.call_update(hessian_fn, updates, hessian_fn_state,
                                                    params, extra_args)
      nu = map_leaves(owner, lambda nu, h, *, b2: ema(b2, nu, h), nu, estimate, b2=b2)
      return hessian_fn_state, nu

    hessian_fn_state, nu = jax.lax.cond(state.count % update_interval == 0, refresh,
                                        lambda h, n: (h, n), state.hessian_fn_state,
                                        state.nu)
    return new_updates, SophiaState(count=count, mu=mu, nu=nu,
                                    hessian_fn_state=hessian_fn_state)

  return base.GradientTransformationExtraArgs(init_fn, update_fn)


@hyperparameters(native=("learning_rate", "weight_decay"), learning_rate="[0, inf)",
                 weight_decay="[0, inf)", **SOPHIA_SPECS)
def sophia(
    learning_rate: base.ScalarOrSchedule, b1: float = 0.965, b2: float = 0.99,
    eps: float = 1e-8, weight_decay: float = 1e-4,
    weight_decay_mask: Optional[Union[Any, Callable[[base.Params], Any]]] = None,
    gamma: float = 0.01, clip_threshold: Optional[float] = 1.0, update_interval: int = 10,
    hessian_diagonal_fn: base.GradientTransformation = hutchinson_estimator_diag_hessian(),
    mu_dtype: Any = None, verbose: bool = False, print_win_rate_every_n_steps: int = 0
) -> base.GradientTransformationExtraArgs:
  """Sophia-H (Liu et al. 2023), Optax's ``contrib.sophia``:
  ``chain(scale_by_sophia(...), add_decayed_weights(weight_decay, weight_decay_mask),
  scale_by_learning_rate(learning_rate))``.

  The default estimator needs the loss: ``update(grads, state, params, obj_fn=f)`` with
  ``f(params) -> scalar`` (``lambda p: loss_fn(p, batch)``); every extra keyword argument
  reaches ``hessian_diagonal_fn``. With several devices, the estimator must average its
  estimate across them (the default does not). ``b2`` is the decay per refresh: per step
  it is about ``1 - (1 - b2) / update_interval`` (0.999 with the defaults). Defaults:
  the paper's ``b1=0.965``, ``b2=0.99``, ``k=10``; Optax's ``eps``, ``gamma=0.01``,
  ``clip_threshold=1``, ``weight_decay=1e-4``. See :func:`scale_by_sophia` and the module
  docstring for the rule.
  """
  return chain(
      scale_by_sophia(b1=b1, b2=b2, eps=eps, gamma=gamma, clip_threshold=clip_threshold,
                      update_interval=update_interval,
                      hessian_diagonal_fn=hessian_diagonal_fn, mu_dtype=mu_dtype,
                      verbose=verbose,
                      print_win_rate_every_n_steps=print_win_rate_every_n_steps),
      add_decayed_weights(weight_decay, mask=weight_decay_mask),
      scale_by_learning_rate(learning_rate))
