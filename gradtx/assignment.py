"""Optax's ``optax.assignment`` names: the Hungarian algorithm for the linear assignment
problem, under the same names, signatures and output order.

>>> import jax.numpy as jnp, gradtx as gtx
>>> cost = jnp.array([[8, 4, 7], [5, 2, 3], [9, 6, 7], [9, 4, 8]])
>>> i, j = gtx.assignment.hungarian_algorithm(cost)
>>> print(cost[i, j].sum())
15
"""

from gradtx._src.assignment import base_hungarian_algorithm, hungarian_algorithm

__all__ = ["base_hungarian_algorithm", "hungarian_algorithm"]
