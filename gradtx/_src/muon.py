"""Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks",
modded-nanogpt): momentum whose matrix is orthogonalised by a Newton-Schulz iteration,
i.e. steepest descent under the spectral norm; Adam for the params that are not
matrices.

For a matrix param with gradient ``G`` (``t`` the step from 1)::

  M = beta M + (1 - beta) G
  M_hat = beta M / (1 - beta**(t+1)) + (1 - beta) G / (1 - beta**t)   (Nesterov, default)
        = M / (1 - beta**t)                                           (otherwise)
  X = M_hat / (||M_hat||_F + eps);  repeat ns_steps times: A = X X^T,
      X = a X + (b A + c A A) X      ((a, b, c) = (3.4445, -4.7750, 2.0315), Jordan's)
  O = X  (times <M_hat, X> with adaptive=True, Bernstein & Newhouse 2024)

``X`` is transposed first when it has more rows than columns. The quintic's
coefficients maximise its slope at 0, so with ``M_hat = U S V^T``, ``O`` is ``U S' V^T``
with ``S'`` near 1 (Jordan: roughly in ``[0.5, 1.5]``) rather than exactly ``U V^T``. Which axes of an array form the matrix is
said by :class:`MuonDimensionNumbers` (the other axes are a batch of matrices).

:func:`muon` scales ``O`` by ``sqrt(max(1, fan_out / fan_in))`` (or
``consistent_rms * sqrt(max(fan_in, fan_out))``, Liu et al. 2025), adds decoupled weight
decay and the learning rate; every other param gets NAdamW (AdamW with ``nesterov``).
Numerics, defaults, states and presets follow Optax 0.2.8's ``optax.contrib`` functions
of the same names.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._src import base, packing
from gradtx._src.alias import adamw
from gradtx._src.combine import MaskedNode, chain, partition
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import check_float_leaves, map_leaves
from gradtx._src.scaling import add_decayed_weights, scale_by_learning_rate
from gradtx._src.tree.casting import tree_zeros_like
from gradtx._src.tree.math import bias_correction_factor, safe_increment, zero_count

PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")
DEFAULT_NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_COEFFS_PRESETS = {
    "standard": DEFAULT_NS_COEFFS,
    # Ahn et al. 2025 (Dion): one triple per step, for 5 steps.
    "dion": ((4.0848, -6.8946, 2.9270), (3.9505, -6.3029, 2.6377),
             (3.7418, -5.5913, 2.3037), (2.8769, -3.1427, 1.2046),
             (2.8366, -3.0525, 1.2012)),
}


class MuonDimensionNumbers(NamedTuple):
  """Which axes of a param form the matrix that Muon orthogonalises (for ``x W = y``:
  the reduction axes, then the output axes). Every other axis is a batch axis: each
  matrix along it is orthogonalised on its own. Several axes on one side are flattened
  into one."""

  reduction_axis: Sequence[int] | int = 0
  output_axis: Sequence[int] | int = 1


def _is_dims(x: Any) -> bool:
  return isinstance(x, MuonDimensionNumbers)


def _axes(ndim: int, dims: MuonDimensionNumbers) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """The reduction and output axes as tuples of non-negative ints."""
  as_tuple = lambda a: (a,) if isinstance(a, int) else tuple(a)  # noqa: E731
  return (tuple(a % ndim for a in as_tuple(dims.reduction_axis)),
          tuple(a % ndim for a in as_tuple(dims.output_axis)))


def _fans(shape: tuple[int, ...], dims: MuonDimensionNumbers) -> tuple[int, int]:
  reduction, output = _axes(len(shape), dims)
  return math.prod(shape[a] for a in reduction), math.prod(shape[a] for a in output)


def _as_matrices(x: jax.Array, dims: MuonDimensionNumbers
                 ) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
  """``x`` as a stack of (reduction, output) matrices, and the map back."""
  if x.ndim < 2:
    raise ValueError(f"Muon optimized parameters must have rank >= 2, got x.ndim={x.ndim}")
  reduction, output = _axes(x.ndim, dims)
  if set(reduction) & set(output):
    raise ValueError("Normalized reduction axes and output axes must be disjoint, got "
                     f"{reduction} and {output}. Originally dims={dims} and "
                     f"x.shape={x.shape}")
  batch = tuple(sorted(set(range(x.ndim)) - set(reduction) - set(output)))
  order = batch + reduction + output
  sizes = lambda axes: tuple(x.shape[a] for a in axes)  # noqa: E731
  flat = (math.prod(sizes(batch)), math.prod(sizes(reduction)), math.prod(sizes(output)))
  inverse = tuple(sorted(range(x.ndim), key=lambda i: order[i]))
  back = lambda y: y.reshape(sizes(order)).transpose(inverse)  # noqa: E731
  return x.transpose(order).reshape(flat), back


def _quintic(x: jax.Array, a: jax.Array, coeffs: jax.Array) -> jax.Array:
  """``c0 X + (c1 A + c2 A A) X``."""
  return coeffs[0] * x + (coeffs[1] * a + coeffs[2] * a @ a) @ x


def _newton_schulz_step(x, coeffs, first, preconditioning, eps):
  """One step; the first one rescales ``X`` for 'aol' (Boissin et al. 2025: each row
  by ``1/sqrt(sum_j |A_ij|)``) and 'schatten' (by ``1/sqrt(||A||_F)``, Grishina et al.
  2025) instead of the 'frobenius'/'spectral' division done before the loop."""
  a = x @ x.T.conj()
  if first and preconditioning == "aol":
    s = jnp.expand_dims(jax.lax.rsqrt(jnp.clip(jnp.abs(a).sum(axis=-1), min=eps)), -1)
    x, a = x * s, a * s * s.transpose(-1, -2)
  elif first and preconditioning == "schatten":
    a = x @ x.T
    norm = jnp.clip(jnp.linalg.norm(a, ord="fro", axis=(-2, -1)), min=eps)
    s = jnp.expand_dims(jax.lax.rsqrt(norm), (0, -1))
    x, a = x * s, a * s**2
  return _quintic(x, a, coeffs)


def _orthogonalize_matrix(x, coeffs, ns_steps, preconditioning, eps):
  transposed = x.shape[0] > x.shape[1]
  if transposed:
    x = x.T
  if preconditioning == "frobenius":
    x = x / (jnp.linalg.norm(x, ord="fro") + eps)
  elif preconditioning == "spectral":
    x = x / (jnp.linalg.norm(x, ord=2) + eps)
  coeffs = coeffs.astype(x.dtype)
  per_step = [coeffs] * ns_steps if coeffs.ndim == 1 else list(coeffs)
  for i, step_coeffs in enumerate(per_step):
    x = _newton_schulz_step(x, step_coeffs, i == 0, preconditioning, eps)
  return x.T if transposed else x


def orthogonalize_via_newton_schulz(x: jax.Array, ns_coeffs: jax.Array, ns_steps: int = 5,
                                    preconditioning: str = "frobenius", eps: Any = 1e-8,
                                    dimension_numbers: Optional[MuonDimensionNumbers] = None
                                    ) -> jax.Array:
  """``x`` (a matrix, or the matrices ``dimension_numbers`` picks out of it) with its
  singular values pushed towards 1 by the Newton-Schulz quintic (see the module
  docstring). ``ns_coeffs``: one triple, used ``ns_steps`` times, or one per step
  (shape ``(n, 3)``, ``ns_steps`` ignored)."""
  if x.ndim != 2 and not _is_dims(dimension_numbers):
    raise ValueError("Input must have shape (m, n) or weight dimension numbers must be "
                     f"provided. Got shape={x.shape} and {dimension_numbers=}.")
  if x.ndim == 2 or dimension_numbers is None:
    dimension_numbers = MuonDimensionNumbers()
  matrices, back = _as_matrices(x, dimension_numbers)
  one = lambda m: _orthogonalize_matrix(m, ns_coeffs, ns_steps, preconditioning, eps)  # noqa: E731
  return back(jax.vmap(one)(matrices))


class MuonState(NamedTuple):
  """State of :func:`scale_by_muon` (Optax's fields).

  Attributes:
    count: the number of updates so far.
    mu: the momentum ``M``, per param (in ``mu_dtype``).
    ns_coeffs: the Newton-Schulz coefficients, shape ``(3,)`` or ``(n, 3)``.
  """

  count: jax.Array
  mu: base.Updates
  ns_coeffs: jax.Array


def _coefficients(owner: str, ns_coeffs: Any, ns_steps: int) -> np.ndarray:
  """The coefficients as an array of shape ``(3,)`` or ``(n, 3)``, ``n <= ns_steps``."""
  coeffs = np.asarray(ns_coeffs)
  if coeffs.ndim not in (1, 2) or coeffs.shape[-1] != 3:
    raise ValueError(f"{owner}: ns_coeffs must have shape (3,) or (n, 3), got "
                     f"{coeffs.shape}")
  if coeffs.ndim == 2 and coeffs.shape[0] > ns_steps:  # Optax 0.2.8 refuses this too
    raise ValueError(f"{owner}: ns_coeffs has {coeffs.shape[0]} rows, one per step, "
                     f"more than ns_steps={ns_steps}")
  return coeffs


def _dimension_numbers(owner: str, spec: Any, updates: base.Updates) -> list[Any]:
  """Each update leaf's :class:`MuonDimensionNumbers`, or None for a leaf the tree spec
  leaves out (a None spec: ``(0, 1)`` for every leaf)."""
  treedef = jax.tree.structure(updates)
  spec = spec(updates) if callable(spec) else spec
  if spec is None or _is_dims(spec):
    return [spec or MuonDimensionNumbers()] * treedef.num_leaves
  try:
    return treedef.flatten_up_to(spec)
  except (ValueError, TypeError):
    raise ValueError(f"{owner}: weight_dimension_numbers has another tree structure than "
                     f"the updates:\n  updates: {treedef}\n  "
                     f"dimension numbers: {jax.tree.structure(spec, is_leaf=_is_dims)}"
                     ) from None


@hyperparameters(ns_steps="int >= 0", beta="[0, 1)", eps="[0, inf)", mu_dtype="dtype | None",
                 nesterov="bool", adaptive="bool",
                 preconditioning="{'frobenius', 'spectral', 'aol', 'schatten'}")
def scale_by_muon(ns_coeffs: Any = DEFAULT_NS_COEFFS, ns_steps: int = 5, beta: float = 0.95,
                  eps: float = 1e-8, mu_dtype: Any = None, *, nesterov: bool = True,
                  adaptive: bool = False, preconditioning: str = "frobenius",
                  weight_dimension_numbers: Any = None) -> base.GradientTransformation:
  """Muon's orthogonalised momentum (see the module docstring), for every param.

  Args:
    ns_coeffs: the quintic's ``(a, b, c)``, or one triple per step.
    ns_steps: the number of Newton-Schulz steps (with one triple).
    beta: the momentum's decay.
    eps: keeps the first division (and the 'aol'/'schatten' rescalings) finite.
    mu_dtype: dtype to store the momentum in. The arithmetic runs in at least float32
      (Optax multiplies a bfloat16 momentum by ``beta`` in bfloat16; ``tests/test_muon.py``
      shows both).
    nesterov: Nesterov's look-ahead momentum (as Optax: the default).
    adaptive: multiply ``O`` by ``<M_hat, O>`` (Bernstein & Newhouse 2024).
    preconditioning: how ``X`` is scaled before the iteration: 'frobenius' (Jordan's),
      'spectral' (exact, an SVD), 'aol' or 'schatten' (rescaling in the first step).
    weight_dimension_numbers: a :class:`MuonDimensionNumbers`, a tree of them with the
      params' structure, or a function of the updates returning one. None: every param
      is a matrix ``(reduction, output)`` (Optax 0.2.8 fails on None unless the params
      are a single array; ``tests/test_muon.py`` shows it). A None entry in a tree
      marks a param that is not Muon's: its update passes through unchanged (Optax
      0.2.8 refuses such a tree); :func:`muon` gives those params Adam instead.
  """
  coeffs = _coefficients("scale_by_muon", ns_coeffs, ns_steps)
  mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

  def init(params):
    check_float_leaves("scale_by_muon", params, "param")
    # Kept from the last ns_steps rows, in the default float dtype, as Optax does.
    return MuonState(count=zero_count(), mu=tree_zeros_like(params, mu_dtype),
                     ns_coeffs=jnp.asarray(coeffs if coeffs.ndim == 1 else
                                           coeffs[-ns_steps:]))

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    check_float_leaves("scale_by_muon", updates, "update")
    leaves, treedef = jax.tree.flatten(updates)
    dims = _dimension_numbers("scale_by_muon", weight_dimension_numbers, updates)
    try:
      moments = treedef.flatten_up_to(state.mu)
    except (ValueError, TypeError):
      raise base.structure_error("scale_by_muon", treedef,
                                 jax.tree.structure(state.mu)) from None
    count_inc = safe_increment(state.count)
    c1 = bias_correction_factor(beta, count_inc)
    c2 = bias_correction_factor(beta, safe_increment(count_inc))

    def rule(u, mu, *, dims, beta, eps, coeffs, c1, c2):
      if dims is None:  # not a Muon param
        return u, mu
      mu = (1 - beta) * u + beta * mu
      mu_hat = beta * (mu / c2) + (1 - beta) * (u / c1) if nesterov else mu / c1
      o = orthogonalize_via_newton_schulz(mu_hat, coeffs, ns_steps, preconditioning, eps,
                                          dims)
      if adaptive:
        o = jnp.sum(mu_hat.conj() * o) * o
      return o, mu

    outputs = [map_leaves("scale_by_muon", rule, u, mu, dims=d, beta=beta, eps=eps,
                          coeffs=state.ns_coeffs, c1=c1, c2=c2)
               for u, mu, d in zip(leaves, moments, dims)]
    return treedef.unflatten([o for o, _ in outputs]), MuonState(
        count=count_inc, mu=treedef.unflatten([m for _, m in outputs]),
        ns_coeffs=state.ns_coeffs)

  return packing.per_leaf_views(base.GradientTransformation(init, update))


def _scale_by_shape(weight_dimension_numbers: Any, consistent_rms: Any
                    ) -> base.GradientTransformation:
  """``O * sqrt(max(1, fan_out / fan_in))`` (Jordan's width scaling), or
  ``O * consistent_rms * sqrt(max(fan_in, fan_out))`` (Liu et al. 2025)."""

  def scaled(u, dims):
    if dims is None:
      return u
    fan_in, fan_out = _fans(u.shape, dims)
    if consistent_rms is None:
      factor = jnp.sqrt(jnp.maximum(1, fan_out / fan_in))
    else:
      factor = jnp.sqrt(jnp.maximum(fan_in, fan_out)) * consistent_rms
    return map_leaves("muon", lambda u, *, factor: factor * u, u, factor=factor)

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    leaves, treedef = jax.tree.flatten(updates)
    dims = _dimension_numbers("muon", weight_dimension_numbers, updates)
    return treedef.unflatten([scaled(u, d) for u, d in zip(leaves, dims)]), state

  return packing.per_leaf_views(base.GradientTransformation(base.init_empty_state, update))


@hyperparameters(native=("learning_rate", "adam_learning_rate", "weight_decay",
                         "adam_weight_decay"),
                 learning_rate="[0, inf)", ns_steps="int >= 0", beta="[0, 1)",
                 eps="[0, inf)", weight_decay="[0, inf)", mu_dtype="dtype | None",
                 nesterov="bool", adaptive="bool",
                 preconditioning="{'frobenius', 'spectral', 'aol', 'schatten'}",
                 adam_b1="[0, 1)", adam_b2="[0, 1)", adam_eps_root="[0, inf)",
                 adam_weight_decay="[0, inf)", adam_learning_rate="[0, inf) | None",
                 consistent_rms="[0, inf) | None")
def muon(learning_rate: base.ScalarOrSchedule, ns_coeffs: Any = DEFAULT_NS_COEFFS,
         ns_steps: int = 5, beta: float = 0.95, eps: float = 1e-8,
         weight_decay: base.ScalarOrSchedule = 0.0,
         weight_decay_mask: Optional[Union[Any, Callable[[base.Params], Any]]] = None,
         mu_dtype: Any = None, *, nesterov: bool = True, adaptive: bool = False,
         preconditioning: str = "frobenius", adam_b1: float = 0.9, adam_b2: float = 0.999,
         adam_eps_root: float = 0.0, adam_weight_decay: base.ScalarOrSchedule = 0.0,
         adam_learning_rate: Optional[base.ScalarOrSchedule] = None,
         muon_weight_dimension_numbers: Any = None,
         consistent_rms: Optional[float] = None) -> base.GradientTransformation:
  """Muon for matrices, NAdamW for the rest (Jordan et al. 2024), as Optax's
  ``optax.contrib.muon``.

  ``partition``: the Muon params get ``chain(scale_by_muon(...), shape scaling,
  add_decayed_weights(weight_decay, weight_decay_mask), scale_by_learning_rate(lr))``;
  the others ``adamw(adam_learning_rate or lr, adam_b1, adam_b2, eps, adam_eps_root,
  weight_decay=adam_weight_decay, mu_dtype=mu_dtype, nesterov=nesterov)``.

  Args:
    learning_rate: the learning rate or schedule.
    ns_coeffs: ``(a, b, c)``, one triple per step, or a preset: 'standard' (Jordan's)
      or 'dion' (Ahn et al. 2025, five steps).
    muon_weight_dimension_numbers: which params are Muon's and which of their axes form
      the matrix: a tree of :class:`MuonDimensionNumbers` (None for an Adam param; a
      prefix of the params' tree is fine) or a function of the params returning one.
      None: the 2-D params, as ``(reduction, output)`` matrices.
    consistent_rms: None for the width scaling ``sqrt(max(1, fan_out / fan_in))``; a
      number ``r`` for ``r sqrt(max(fan_in, fan_out))`` (0.2 matches AdamW's update
      RMS, Liu et al. 2025).
    Others: as :func:`scale_by_muon` and :func:`gradtx.adamw`.
  """
  if adam_learning_rate is None:
    adam_learning_rate = learning_rate
  if isinstance(ns_coeffs, str):
    if ns_coeffs not in NS_COEFFS_PRESETS:
      raise ValueError(f"muon: unknown ns_coeffs preset {ns_coeffs!r}; the presets are "
                       f"{sorted(NS_COEFFS_PRESETS)}")
    ns_coeffs = NS_COEFFS_PRESETS[ns_coeffs]
  spec = muon_weight_dimension_numbers
  resolve = lambda params: spec(params) if callable(spec) else spec  # noqa: E731
  is_spec_leaf = lambda x: x is None or _is_dims(x) or isinstance(x, MaskedNode)  # noqa: E731

  def labels(params):
    if spec is None:
      return jax.tree.map(lambda x: "muon" if x.ndim == 2 else "adam", params)
    return jax.tree.map(lambda d, sub: jax.tree.map(
        lambda _: "muon" if d is not None else "adam", sub), resolve(params), params,
        is_leaf=is_spec_leaf)

  def muon_dims(params):
    """The dimension numbers of the Muon params, MaskedNode for the others (the tree
    ``partition`` hands the Muon group)."""
    dims = MuonDimensionNumbers() if spec is None else resolve(params)
    selected = jax.tree.map(lambda label: label == "muon", labels(params))
    return jax.tree.map(lambda d, sub: jax.tree.map(lambda m: d if m else MaskedNode(), sub),
                        dims, selected, is_leaf=is_spec_leaf)

  return partition({
      "muon": chain(
          scale_by_muon(ns_coeffs, ns_steps, beta, eps, mu_dtype, nesterov=nesterov,
                        adaptive=adaptive, preconditioning=preconditioning,
                        weight_dimension_numbers=muon_dims),
          _scale_by_shape(muon_dims, consistent_rms),
          add_decayed_weights(weight_decay, weight_decay_mask),
          scale_by_learning_rate(learning_rate)),
      "adam": adamw(adam_learning_rate, b1=adam_b1, b2=adam_b2, eps=eps,
                    eps_root=adam_eps_root, weight_decay=adam_weight_decay,
                    mu_dtype=mu_dtype, nesterov=nesterov),
  }, labels)
