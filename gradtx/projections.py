"""Optax's ``optax.projections`` names: Euclidean projections of pytrees onto convex
sets, under the same names, signatures, defaults and numerics.

>>> import jax.numpy as jnp, gradtx as gtx
>>> print(gtx.projections.projection_l2_ball({"w": jnp.array([3.0, 4.0])})["w"])
[0.6 0.8]
"""

from gradtx._src.projections import (projection_box, projection_halfspace,
                                     projection_hypercube, projection_hyperplane,
                                     projection_l1_ball, projection_l1_sphere,
                                     projection_l2_ball, projection_l2_sphere,
                                     projection_linf_ball, projection_non_negative,
                                     projection_simplex, projection_vector)

__all__ = [
    "projection_box", "projection_halfspace", "projection_hypercube",
    "projection_hyperplane", "projection_l1_ball", "projection_l1_sphere",
    "projection_l2_ball", "projection_l2_sphere", "projection_linf_ball",
    "projection_non_negative", "projection_simplex", "projection_vector",
]
