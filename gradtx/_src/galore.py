"""GaLore (Zhao et al. 2024, "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
Projection", Algorithm 2), as Optax 0.2.8's ``optax.contrib.galore`` and
``scale_by_galore``.

A matrix param's gradient ``G`` (``m x n``) is projected onto a rank-``r`` subspace
spanned by its top singular vectors, the base optimizer (Adam by default) runs there, on
moments of the small shape, and its update is projected back::

  every update_proj_gap steps (from the first):  U S V^T = svd(G)
      P = U[:, :r]   if m >= n   (R = P^T G, r x n)
      P = V[:, :r]   otherwise   (R = G P,   m x r)
  N = base_optimizer(R)                          (its state has R's shape)
  update = scale * P N   (or scale * N P^T)

``r = min(rank, m, n)``. Params that are not matrices pass to the base optimizer
unprojected, and unscaled (the paper's ``scale`` is for projected params only). An array
of another rank is treated as a matrix when :class:`GaLoreDimensionNumbers` say which of
its axes are the rows (``reduction_axis``) and which the columns (``output_axis``).
``galore`` chains ``scale_by_galore``, decoupled weight decay (in the full space) and the
learning rate. Defaults (``rank=128``, ``update_proj_gap=200``, ``scale=1``, Adam) are
Optax's; the paper tunes ``rank`` per model and uses ``T = 200`` and ``alpha = 0.25``.

The base optimizer gets low-rank arrays, not the params: it must not need params (use
``scale_by_adam``, ``scale_by_lion``, ...; not ``adamw``).

One departure from Optax 0.2.8: the SVD runs in the precision of the gradient, at least
float32. Optax computes it in float32 for every dtype, so float64 params get a projector
orthonormal only to float32 precision (``P^T P = I + O(1e-7)``), which is then in every
float64 update; ``tests/test_galore.py`` shows it, and that gradtx's float64 steps are
Optax's with the SVD in float64. For float32 and lower, the numbers are Optax's.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp

from gradtx._src import base, packing
from gradtx._src.adam import scale_by_adam
from gradtx._src.combine import chain
from gradtx._src.hyperparams import hyperparameters
from gradtx._src.leafwise import check_float_leaves, leaf_paths
from gradtx._src.scaling import add_decayed_weights, scale_by_learning_rate
from gradtx._src.tree.casting import compute_dtype, tree_zeros_like
from gradtx._src.tree.math import safe_increment, zero_count


class GaLoreDimensionNumbers(NamedTuple):
  """Which axes of a param form the matrix GaLore projects: the rows (``reduction_axis``,
  the input dimension of ``x W = y``) and the columns (``output_axis``). Several axes on
  one side are flattened into one; together the two sides must name every axis."""

  reduction_axis: Union[Sequence[int], int] = 0
  output_axis: Union[Sequence[int], int] = 1


class GaLoreState(NamedTuple):
  """State of :func:`scale_by_galore` (Optax's fields).

  Attributes:
    count: the number of updates so far.
    base_optimizer_state: the base optimizer's state, for the low-rank ``R`` of each
      projected param and the full update of every other.
    projector: ``P`` per param: ``(m, r)`` or ``(n, r)``; ``(0, 0)`` for a param that
      is not projected.
  """

  count: jax.Array
  base_optimizer_state: base.OptState
  projector: base.Updates


def _is_dims(x: Any) -> bool:
  return isinstance(x, GaLoreDimensionNumbers)


class _Matrix(NamedTuple):
  """How one array is seen as an ``m x n`` matrix, and which side is projected."""

  order: tuple[int, ...]  # the reduction axes, then the output axes
  shape: tuple[int, ...]  # the array's shape in that order
  m: int
  n: int
  rank: int

  @property
  def left(self) -> bool:  # P spans the columns of G (m >= n)
    return self.m >= self.n

  def to_matrix(self, x: jax.Array) -> jax.Array:
    return x.transpose(self.order).reshape(self.m, self.n)

  def from_matrix(self, x: jax.Array) -> jax.Array:
    inverse = tuple(sorted(range(len(self.order)), key=lambda i: self.order[i]))
    return x.reshape(self.shape).transpose(inverse)

  @property
  def projector_shape(self) -> tuple[int, int]:
    return (self.m if self.left else self.n, self.rank)

  @property
  def low_rank_shape(self) -> tuple[int, int]:
    return (self.rank, self.n) if self.left else (self.m, self.rank)


def _matrix(owner: str, x: Any, dims: GaLoreDimensionNumbers, rank: int) -> _Matrix:
  """The matrix view of ``x`` that ``dims`` describe (the errors are Optax's)."""
  shape, ndim = jnp.shape(x), jnp.ndim(x)
  if ndim < 2:
    raise ValueError(f"{owner}: GaLore requires tensors with rank >= 2, got shape {shape}")
  as_tuple = lambda a: (a,) if isinstance(a, int) else tuple(a)  # noqa: E731
  reduction = tuple(a % ndim for a in as_tuple(dims.reduction_axis))
  output = tuple(a % ndim for a in as_tuple(dims.output_axis))
  if set(reduction) & set(output):
    raise ValueError(f"{owner}: reduction axes {reduction} and output axes {output} must "
                     f"be disjoint. Got dim_nums={dims} for shape {shape}")
  if len(set(reduction) | set(output)) != ndim:
    raise ValueError(f"{owner}: all axes must be specified. Got reduction={reduction}, "
                     f"output={output} for tensor with {ndim} dimensions")
  order = reduction + output
  m = math.prod(shape[a] for a in reduction)
  n = math.prod(shape[a] for a in output)
  return _Matrix(order, tuple(shape[a] for a in order), m, n, min(rank, m, n))


def _top_singular_vectors(g: jax.Array, view: _Matrix) -> jax.Array:
  """``U[:, :r]`` (left) or ``V[:, :r]`` of ``g = U S V^T``."""
  u, _, vh = jnp.linalg.svd(g, full_matrices=False)
  return u[:, :view.rank] if view.left else vh[:view.rank, :].T


@hyperparameters(rank="int >= 1", update_proj_gap="int >= 1", scale="(-inf, inf)",
                 base_optimizer="transform | None")
def scale_by_galore(rank: int = 128, update_proj_gap: int = 200, scale: float = 1.0,
                    base_optimizer: Optional[base.GradientTransformation] = None,
                    weight_dimension_numbers: Any = None) -> base.GradientTransformation:
  """GaLore's projected base optimizer (see the module docstring).

  Args:
    rank: the projection's rank ``r`` (at most the matrix's smaller side).
    update_proj_gap: the SVD is recomputed every this many steps, from the first.
    scale: ``alpha``, multiplies the projected params' updates.
    base_optimizer: the transform run in the low-rank space (default
      ``scale_by_adam()``); it must not need params.
    weight_dimension_numbers: which params are matrices: None (the 2-D ones, rows and
      columns), a :class:`GaLoreDimensionNumbers` (for every param of rank >= 2), a tree
      of them with the params' structure (None for a param not projected), or a
      function of the params returning such a tree.
  """
  owner = "scale_by_galore"
  base_optimizer = scale_by_adam() if base_optimizer is None else base_optimizer

  def views(tree) -> list[_Matrix | None]:
    """Each leaf's matrix view, or None for a leaf that is not projected."""
    leaves, treedef = jax.tree.flatten(tree)
    spec = weight_dimension_numbers
    if spec is None:
      dims = [GaLoreDimensionNumbers() if jnp.ndim(x) == 2 else None for x in leaves]
    elif _is_dims(spec):
      dims = [spec if jnp.ndim(x) >= 2 else None for x in leaves]
    else:
      spec = spec(tree) if callable(spec) else spec
      try:
        dims = treedef.flatten_up_to(spec)
      except (ValueError, TypeError):
        raise ValueError(
            f"{owner}: weight_dimension_numbers has another tree structure than the "
            f"params:\n  params: {treedef}\n  dimension numbers: "
            f"{jax.tree.structure(spec, is_leaf=_is_dims)}") from None
    return [None if d is None else _matrix(owner, x, d, rank) for x, d in zip(leaves, dims)]

  def init(params):
    check_float_leaves(owner, params, "param")
    leaves, treedef = jax.tree.flatten(params)
    if not leaves:  # e.g. a placeholder without arrays: nothing to project
      return GaLoreState(zero_count(), base_optimizer.init(params), params)
    projectors, proxies = [], []
    for p, view in zip(leaves, views(params)):
      dtype = jnp.asarray(p).dtype
      if view is None:
        projectors.append(jnp.zeros((0, 0), dtype))
        proxies.append(tree_zeros_like(p))
      else:  # zeros computed from slices of the param, so they share its sharding
        g, r = view.to_matrix(jnp.asarray(p)), view.rank
        projectors.append(tree_zeros_like(g[:, :r] if view.left else g[:r, :].T))
        proxies.append(tree_zeros_like(g[:r, :] if view.left else g[:, :r]))
    return GaLoreState(zero_count(), base_optimizer.init(treedef.unflatten(proxies)),
                       treedef.unflatten(projectors))

  def update(updates, state, params=None, **extra_args):
    del params
    check_float_leaves(owner, updates, "update")
    leaves, treedef = jax.tree.flatten(updates)
    try:
      old_projectors = treedef.flatten_up_to(state.projector)
    except (ValueError, TypeError):
      raise base.structure_error(owner, treedef,
                                 jax.tree.structure(state.projector)) from None
    refresh = state.count % update_proj_gap == 0
    leaf_views = views(updates)

    projectors, low_rank = [], []
    for path, u, old, view in zip(leaf_paths(updates), leaves, old_projectors, leaf_views):
      if view is None:
        projectors.append(old)
        low_rank.append(u)
        continue
      if tuple(jnp.shape(old)) != view.projector_shape:
        raise ValueError(f"{owner}: the update at {path or '(the root)'} has shape "
                         f"{u.shape}, but its projector has shape {jnp.shape(old)}, built "
                         f"for another param (expected {view.projector_shape})")
      dtype = compute_dtype(u.dtype, old.dtype)
      g = view.to_matrix(u.astype(dtype))
      p = jax.lax.cond(refresh,
                       lambda: _top_singular_vectors(g, view).astype(old.dtype),
                       lambda: old)
      projectors.append(p)
      p = p.astype(dtype)
      low_rank.append((p.T @ g if view.left else g @ p).astype(u.dtype))

    low_rank_updates, base_state = base.call_update(
        base_optimizer, treedef.unflatten(low_rank), state.base_optimizer_state, None,
        extra_args)

    new_updates = []
    for u, n, p, view in zip(leaves, treedef.flatten_up_to(low_rank_updates), projectors,
                             leaf_views):
      if view is None:
        new_updates.append(n)
        continue
      dtype = compute_dtype(u.dtype, n.dtype, p.dtype)
      n, p = n.astype(dtype), p.astype(dtype)
      full = view.from_matrix(p @ n if view.left else n @ p.T)
      new_updates.append((jnp.asarray(scale, dtype) * full).astype(u.dtype))
    return treedef.unflatten(new_updates), GaLoreState(
        safe_increment(state.count), base_state, treedef.unflatten(projectors))

  return packing.per_leaf_views(base.GradientTransformation(init, update))


@hyperparameters(native=("learning_rate", "weight_decay"), learning_rate="[0, inf)",
                 rank="int >= 1", update_proj_gap="int >= 1", scale="(-inf, inf)",
                 base_optimizer="transform | None", weight_decay="[0, inf)")
def galore(learning_rate: base.ScalarOrSchedule, rank: int = 128, update_proj_gap: int = 200,
           scale: float = 1.0, base_optimizer: Optional[base.GradientTransformation] = None,
           weight_decay: Any = 0.0,
           mask: Optional[Union[Any, Callable[[base.Params], Any]]] = None,
           weight_dimension_numbers: Any = None) -> base.GradientTransformation:
  """GaLore (Zhao et al. 2024): :func:`scale_by_galore`, decoupled weight decay
  (``add_decayed_weights(weight_decay, mask)``, in the full space) and
  ``-learning_rate``. With Adam as the base optimizer this is the paper's GaLore-AdamW.

  Args:
    learning_rate: the step size, a number or a schedule.
    rank, update_proj_gap, scale, base_optimizer, weight_dimension_numbers: as
      :func:`scale_by_galore`. A base optimizer with its own learning rate wants
      ``learning_rate=1``.
    weight_decay: the decoupled weight decay's rate.
    mask: which params are decayed: a tree of booleans or a function of the params.
  """
  return chain(
      scale_by_galore(rank=rank, update_proj_gap=update_proj_gap, scale=scale,
                      base_optimizer=base_optimizer,
                      weight_dimension_numbers=weight_dimension_numbers),
      add_decayed_weights(weight_decay, mask),
      scale_by_learning_rate(learning_rate))
