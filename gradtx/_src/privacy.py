"""Differentially private SGD (Abadi et al. 2016, "Deep Learning with Differential
Privacy", Algorithm 1), as Optax 0.2.8's ``optax.contrib.dpsgd`` and
``differentially_private_aggregate``.

The gradients come per example: every leaf has the batch of ``B`` examples on axis 0
(e.g. ``jax.vmap(jax.grad(loss), (None, 0))(params, batch)``). Each example's gradient
is clipped to global 2-norm ``C`` (``l2_norm_clip``), the clipped gradients are summed,
Gaussian noise of standard deviation ``sigma * C`` (``sigma = noise_multiplier``) is
added and the sum averaged::

  g_i <- g_i * min(1, C / ||g_i||)
  g   <- (sum_i g_i + N(0, sigma**2 C**2 I)) / B

The noise's random stream is Optax's: the key (``rng_key``) is split into
``(next_key, one key per leaf)`` every step, leaf ``k`` drawing
``jax.random.normal(keys[k], shape, dtype)``, so one seed gives Optax's noise for
float32 and float64 params. Two departures, as :func:`gradtx.add_noise`'s:

* ``rng_key`` holds the key's raw data (``jax.random.key_data``, uint32) rather than a
  typed key, so that the state is a tree of numeric arrays that checkpoints
  (``flax.serialization`` cannot serialise a typed key).
* Noise for a bfloat16 or float16 leaf is drawn in float32 and the noisy mean rounded
  once, as every gradtx rule computes in at least float32.

``dpsgd`` is the chain ``differentially_private_aggregate``, ``trace`` (with
``momentum``), ``scale_by_learning_rate``. It must come first in a chain, and gradient
accumulation (``MultiSteps``, ``apply_every``) does not compose with it: the point is to
aggregate the examples in this particular way.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._src import base, packing
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import check_float_leaves
from gradtx._src.noise import KeyOrSeed, _normal, _resolve_key, _typed_key
from gradtx._src.per_example_clipping import per_example_global_norm_clip
from gradtx._src.scaling import scale_by_learning_rate
from gradtx._src.traces import trace
from gradtx._src.tree.casting import compute_dtype


class DifferentiallyPrivateAggregateState(NamedTuple):
  """State of :func:`differentially_private_aggregate` (Optax's field).

  Attributes:
    rng_key: the raw data (``jax.random.key_data``) of the key of the next step's noise.
  """

  rng_key: jax.Array


@hyperparameters(l2_norm_clip="[0, inf)", noise_multiplier="[0, inf)",
                 seed="int >= 0 | None")
def differentially_private_aggregate(l2_norm_clip: Any, noise_multiplier: Any,
                                     key: KeyOrSeed | None = None, *,
                                     seed: int | None = None) -> base.GradientTransformation:
  """The noisy mean of clipped per-example gradients (see the module docstring).

  Args:
    l2_norm_clip: ``C``, the largest 2-norm an example's gradient keeps.
    noise_multiplier: ``sigma``, the noise's standard deviation relative to ``C``.
    key: a ``jax.random.key``, raw key data or an integer seed (default 0, with a
      warning, as Optax).
    seed: deprecated name of an integer ``key``.

  The update expects every leaf to have the batch of examples on axis 0 and returns a
  tree like one example's gradient.
  """
  owner = "differentially_private_aggregate"
  typed_key = _typed_key(_resolve_key(owner, key, seed))
  impl = jax.random.key_impl(typed_key)

  def init(params):
    del params
    return DifferentiallyPrivateAggregateState(jax.random.key_data(typed_key))

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    check_float_leaves(owner, updates, "update")
    leaves, treedef = jax.tree.flatten(updates)
    sizes = {jnp.shape(g)[0] if jnp.ndim(g) else None for g in leaves}
    if len(sizes) != 1 or None in sizes:
      raise ValueError(f"{owner}: expects per-example gradients, every leaf with the "
                       f"batch of examples on axis 0 (one size for all), got shapes "
                       f"{jax.tree.map(jnp.shape, updates)}")
    batch_size = jnp.shape(leaves[0])[0]
    noise_std = l2_norm_clip * noise_multiplier  # numbers: in double precision, as Optax
    clipped_sums, _ = per_example_global_norm_clip(leaves, l2_norm_clip)
    next_key, *leaf_keys = jax.random.split(
        jax.random.wrap_key_data(state.rng_key, impl=impl), len(leaves) + 1)

    def noisy_mean(g, k):
      dtype = compute_dtype(g.dtype)
      noise = _normal(k, g.shape, g.dtype).astype(dtype)
      return ((g.astype(dtype) + jnp.asarray(noise_std, dtype) * noise)
              / batch_size).astype(g.dtype)

    noised = [noisy_mean(g, k) for g, k in zip(clipped_sums, leaf_keys)]
    return (treedef.unflatten(noised),
            DifferentiallyPrivateAggregateState(jax.random.key_data(next_key)))

  # One noise draw per leaf, as on the plain tree, also for packed params.
  return packing.per_leaf_views(base.GradientTransformation(init, update))


@hyperparameters(native=("learning_rate",), learning_rate="[0, inf)",
                 l2_norm_clip="[0, inf)", noise_multiplier="[0, inf)", seed="int >= 0",
                 momentum="[0, 1] | None", nesterov="bool")
def dpsgd(learning_rate: base.ScalarOrSchedule, l2_norm_clip: Any, noise_multiplier: Any,
          seed: int, momentum: Any = None,
          nesterov: bool = False) -> base.GradientTransformation:
  """DP-SGD (Abadi et al. 2016): :func:`differentially_private_aggregate` of the
  per-example gradients, heavy-ball momentum (:func:`gradtx.trace`) when ``momentum``
  is given, then ``-learning_rate``.

  Args:
    learning_rate: the step size, a number or a schedule.
    l2_norm_clip: the largest 2-norm an example's gradient keeps.
    noise_multiplier: the noise's standard deviation relative to ``l2_norm_clip``.
    seed: the integer seed of the noise's key.
    momentum: the trace's decay; None: no momentum (Optax's default).
    nesterov: Nesterov's momentum.
  """
  return chain(
      differentially_private_aggregate(l2_norm_clip, noise_multiplier, seed),
      trace(decay=momentum, nesterov=nesterov) if momentum is not None else base.identity(),
      scale_by_learning_rate(learning_rate))
