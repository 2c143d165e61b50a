"""Euclidean projections of pytrees onto convex sets (Optax's ``optax.projections``).

Each function returns ``argmin_p ||x - p||_2^2`` over its set, for a tree ``x`` treated
as one vector (all leaves together). Signatures, defaults and numerics are Optax
0.2.8's. The simplex projection is the sort-and-threshold algorithm of Held, Wolfe &
Crowder (1974) as given by Duchi et al. (2008), "Efficient projections onto the
l1-ball for learning in high dimensions", with the Jacobian of Martins & Astudillo
(2016) as its derivative; the l1 projections follow from it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gradtx._src.tree.math import tree_add_scale, tree_mul, tree_norm, tree_scale, tree_vdot


def projection_non_negative(tree: Any) -> Any:
  r"""Projection onto the non-negative orthant: ``max(x, 0)`` leaf by leaf."""
  return jax.tree.map(jax.nn.relu, tree)


def projection_box(tree: Any, lower: Any, upper: Any) -> Any:
  r"""Projection onto the box ``lower <= p <= upper``: ``clip(x, lower, upper)`` leaf by
  leaf. ``lower`` and ``upper`` are scalars or trees of ``tree``'s structure (or
  prefixes of it).

  Optax 0.2.8 documents scalar bounds too but maps ``jnp.clip`` over the three trees
  together, so a scalar bound fails there for any tree that is not a single array
  (``projection_hypercube({"w": w})`` raises); here bounds are broadcast to the tree
  first, which gives Optax's numbers wherever Optax runs.
  """
  return jax.tree.map(jnp.clip, tree, jax.tree.broadcast(lower, tree),
                      jax.tree.broadcast(upper, tree))


def projection_hypercube(tree: Any, scale: Any = 1) -> Any:
  r"""Projection onto the hypercube ``0 <= p <= scale`` (``scale`` a scalar or a tree;
  default: the unit hypercube)."""
  return projection_box(tree, lower=0, upper=scale)


@jax.custom_jvp
def _project_onto_unit_simplex(values: jax.Array) -> jax.Array:
  """``max(x - theta, 0)`` with ``theta`` such that the result sums to 1.

  With ``u`` the values sorted in descending order and ``S_k = u_1 + ... + u_k``, the
  support has the ``k`` largest values for the largest ``k`` with
  ``1/k + u_k - S_k/k > 0``, and ``theta = S_k/k - 1/k``.
  """
  descending = jnp.sort(values)[::-1]
  partial_sums = jnp.cumsum(descending)
  ks = jnp.arange(1, values.shape[0] + 1)
  k = jnp.count_nonzero(1 / ks + (descending - partial_sums / ks) > 0)
  return jax.nn.relu(1 / k + (values - partial_sums[k - 1] / k))


@_project_onto_unit_simplex.defjvp
def _project_onto_unit_simplex_jvp(primals, tangents):
  """On the support ``S`` of the projection the map is ``x -> x - mean_S(x) + 1/|S|``,
  so its derivative takes a tangent ``t`` to ``1_S * (t - mean_S(t))`` (Martins &
  Astudillo 2016); off the support it is 0."""
  (values,), (tangent,) = primals, tangents
  projected = _project_onto_unit_simplex(values)
  support = projected > 0
  mean_on_support = jnp.dot(support, tangent) / jnp.count_nonzero(support)
  return projected, support * tangent - mean_on_support * support


def projection_simplex(tree: Any, scale: jax.typing.ArrayLike = 1) -> Any:
  r"""Projection onto the simplex ``{p >= 0, sum(p) = scale}`` (default: the
  probability simplex), the tree's leaves taken together as one vector.

  Computed as ``scale * P(x / scale)`` with ``P`` the projection onto the unit simplex:
  ``P(x) = max(x - theta, 0)`` with the threshold ``theta`` found by sorting (Duchi et
  al. 2008, Fig. 1). Differentiable: ``jax.jvp``/``jax.grad`` use the projection's
  Jacobian, ``diag(1_S) - 1_S 1_S^T / |S|`` on its support ``S``.

  >>> data = {"w": jnp.array([2.5, 3.2]), "b": 0.5}
  >>> gtx.tree.sum(gtx.projections.projection_simplex(data))  # 1.0
  """
  values, unravel = ravel_pytree(tree)
  return unravel(scale * _project_onto_unit_simplex(values / scale))


def projection_l1_sphere(tree: Any, scale: jax.typing.ArrayLike = 1) -> Any:
  r"""Projection onto the l1 sphere ``||p||_1 = scale``: ``sign(x) * P(|x|)`` with
  ``P`` the projection onto the simplex of sum ``scale``."""
  magnitudes = jax.tree.map(jnp.abs, tree)
  signs = jax.tree.map(jnp.sign, tree)
  return tree_mul(signs, projection_simplex(magnitudes, scale))


def projection_l1_ball(tree: Any, scale: jax.typing.ArrayLike = 1) -> Any:
  r"""Projection onto the l1 ball ``||p||_1 <= scale``: ``x`` itself inside the ball,
  else its projection onto the sphere (Duchi et al. 2008, Fig. 1)."""
  return jax.lax.cond(tree_norm(tree, ord=1) <= scale, lambda x: x,
                      lambda x: projection_l1_sphere(x, scale), tree)


def projection_l2_sphere(tree: Any, scale: jax.typing.ArrayLike = 1) -> Any:
  r"""Projection onto the l2 sphere ``||p||_2 = scale``: ``scale * x / ||x||_2``."""
  return tree_scale(scale / tree_norm(tree), tree)


def projection_l2_ball(tree: Any, scale: jax.typing.ArrayLike = 1) -> Any:
  r"""Projection onto the l2 ball ``||p||_2 <= scale``:
  ``x * scale / max(||x||_2, scale)``."""
  factor = scale / jnp.sqrt(jnp.maximum(tree_norm(tree, squared=True), scale**2))
  return tree_scale(factor, tree)


def projection_linf_ball(tree: Any, scale: jax.typing.ArrayLike = 1) -> Any:
  r"""Projection onto the l-infinity ball ``max|p| <= scale``: ``clip(x, -scale,
  scale)`` leaf by leaf, the bounds in each leaf's dtype."""
  lower = jax.tree.map(lambda x: jnp.full_like(x, -scale), tree)
  upper = jax.tree.map(lambda x: jnp.full_like(x, scale), tree)
  return projection_box(tree, lower=lower, upper=upper)


def projection_vector(x: Any, a: Any) -> Any:
  r"""Projection onto the line spanned by ``a`` (a tree of ``x``'s structure):
  ``<x, a> / <a, a> * a``."""
  return tree_scale(tree_vdot(x, a) / tree_vdot(a, a), a)


def projection_hyperplane(x: Any, a: Any, b: jax.typing.ArrayLike) -> Any:
  r"""Projection onto the hyperplane ``<a, p> = b``: ``x + (b - <x, a>) / <a, a> * a``."""
  return tree_add_scale(x, (b - tree_vdot(x, a)) / tree_vdot(a, a), a)


def projection_halfspace(x: Any, a: Any, b: jax.typing.ArrayLike) -> Any:
  r"""Projection onto the halfspace ``<a, p> <= b``: ``x`` moved along ``a`` onto the
  boundary when outside, ``x + min((b - <x, a>) / <a, a>, 0) * a``."""
  step = jnp.clip((b - tree_vdot(x, a)) / tree_vdot(a, a), max=0)
  return tree_add_scale(x, step, a)
