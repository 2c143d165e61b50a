"""Optax's ``optax.second_order`` names: a Hessian-vector product and the diagonals of
the Hessian and of the observed Fisher information of a loss
``loss(params, inputs, targets)``, under the same names, signatures and numerics
(deprecated in Optax 0.2.7, kept there until 0.2.9).
"""

from gradtx._src.second_order import fisher_diag, hessian_diag, hvp

__all__ = ["fisher_diag", "hessian_diag", "hvp"]
