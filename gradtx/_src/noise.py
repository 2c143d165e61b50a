"""Gradient noise (Neelakantan et al. 2015, "Adding Gradient Noise Improves Learning for
Very Deep Networks"): Gaussian noise of annealed variance ``eta / t**gamma`` added to
every gradient.

Signatures, defaults (``eta=0.01``, ``gamma=0.55``, the paper's), state fields and
random stream are Optax 0.2.8's ``add_noise`` and ``noisy_sgd``: the key is split into
``(next_key, sample_key)`` every step and ``sample_key`` into one key per leaf, in leaf
order, so a key gives Optax's noise for float32 and float64 params. Two departures:

* ``rng_key`` holds the key's raw data (``jax.random.key_data``, uint32), not the typed
  key Optax keeps, so that the state is a tree of numeric arrays that checkpoints:
  ``flax.serialization`` cannot serialise a typed key (Optax's state fails to, see
  ``tests/test_noise.py``). The key's implementation is kept with the transform.
* Noise for a bfloat16 or float16 leaf is drawn in float32, as every gradtx rule
  computes in at least float32, and the noisy update rounded once: the float32 noise,
  rounded. Optax draws it in the low precision, a different sample.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple, Union

import jax
import jax.numpy as jnp

from gradtx._src import base, packing
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import check_float_leaves, map_leaves
from gradtx._src.scaling import scale_by_learning_rate
from gradtx._src.tree.casting import compute_dtype
from gradtx._src.tree.math import safe_increment, zero_count
from gradtx._src.tree.random import tree_random_like

# A typed key (jax.random.key), raw key data (jax.random.PRNGKey) or an integer seed.
KeyOrSeed = Union[jax.Array, int]

NOISE_SPECS = dict(eta="[0, inf)", gamma="[0, inf)", seed="int >= 0 | None")


class AddNoiseState(NamedTuple):
  """State of :func:`add_noise`: the step count and the raw data of the key of the next
  step's noise (``jax.random.key_data``)."""

  count: jax.Array
  rng_key: jax.Array


def _typed_key(key: KeyOrSeed) -> jax.Array:
  """A typed key from a typed key (as it is), raw key data or an integer seed."""
  if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key
  if jnp.ndim(key) > 0:  # raw key data, e.g. jax.random.PRNGKey(0)
    return jax.random.wrap_key_data(jnp.asarray(key))
  return jax.random.key(key)


def _normal(key: jax.Array, shape: tuple[int, ...], dtype, *, out_sharding=None):
  """Standard normal noise in ``dtype``, or in float32 for a lower precision."""
  return jax.random.normal(key, shape, compute_dtype(dtype), out_sharding=out_sharding)


def _resolve_key(owner: str, key: KeyOrSeed | None, seed: int | None) -> KeyOrSeed:
  """Optax's rules: ``seed`` is a deprecated name for ``key``; no key means seed 0."""
  if seed is not None:
    warnings.warn(f"{owner}: seed is deprecated, pass key instead", DeprecationWarning,
                  stacklevel=4)
    if key is not None:
      raise ValueError(f"{owner}: give one of seed and key, not both")
    return seed
  if key is None:
    warnings.warn(f"{owner}: no key given, using key 0; pass key= (a jax.random.key or "
                  "an integer seed)", stacklevel=4)
    return 0
  return key


@hyperparameters(**NOISE_SPECS)
def add_noise(eta: float, gamma: float, key: KeyOrSeed | None = None, *,
              seed: int | None = None) -> base.GradientTransformation:
  """``u + sqrt(eta / t**gamma) * z``, ``z`` standard normal, ``t`` counting from 1.

  Args:
    eta: the noise's variance at the first step.
    gamma: the exponent of its annealing.
    key: a ``jax.random.key``, raw key data or an integer seed (default 0, with a
      warning, as Optax).
    seed: deprecated name of an integer ``key``.
  """
  owner = "add_noise"
  typed_key = _typed_key(_resolve_key(owner, key, seed))
  impl = jax.random.key_impl(typed_key)

  def init(params):
    del params
    return AddNoiseState(zero_count(), jax.random.key_data(typed_key))

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    check_float_leaves(owner, updates, "update")
    count = safe_increment(state.count)
    std = jnp.sqrt(eta / count**gamma)
    next_key, sample_key = jax.random.split(jax.random.wrap_key_data(state.rng_key,
                                                                     impl=impl))
    noise = tree_random_like(sample_key, updates, sampler=_normal)
    updates = map_leaves(owner, lambda u, z, *, std: u + std * z, updates, noise, std=std)
    return updates, AddNoiseState(count, jax.random.key_data(next_key))

  # One draw per leaf, as on the plain tree, also for packed params.
  return packing.per_leaf_views(base.GradientTransformation(init, update))


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)", **NOISE_SPECS)
def noisy_sgd(learning_rate: base.ScalarOrSchedule, eta: float = 0.01, gamma: float = 0.55,
              key: KeyOrSeed | None = None, *,
              seed: int | None = None) -> base.GradientTransformation:
  """SGD with annealed Gaussian gradient noise (Neelakantan et al. 2015):
  ``p -= lr * (g + sqrt(eta / t**gamma) * z)`` (see :func:`gradtx.add_noise`)."""
  key = _resolve_key("noisy_sgd", key, seed)
  return chain(add_noise(eta, gamma, key), scale_by_learning_rate(learning_rate))
