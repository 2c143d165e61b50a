"""Second-order and quasi-Newton solvers, and the compiled loop that runs them.

* ``lbfgs``: :func:`scale_by_lbfgs` (the L-BFGS direction) and :func:`lbfgs` (it, chained
  with a line search).
* ``newton``: :func:`scale_by_newton` (the damped Newton direction from the exact
  Hessian) and :func:`newton` (it, chained with a line search).
* ``hessian_free``: :func:`scale_by_hessian_free` (Martens' truncated-CG step) and
  :func:`hessian_free` (with Martens' backtracking, or chained with a line search).
* ``linalg``: what ``newton`` and ``hessian_free`` share: raveling, the damped Cholesky
  factorisation, conjugate gradient.
* ``minimize``: :func:`minimize`, a full-batch loop in one ``jax.lax.while_loop``.

The line searches they chain are in :mod:`gradtx._src.linesearch`.
"""

from gradtx._src.solvers.hessian_free import (HessianFreeState, hessian_free,
                                              scale_by_hessian_free)
from gradtx._src.solvers.lbfgs import ScaleByLBFGSState, lbfgs, scale_by_lbfgs
from gradtx._src.solvers.minimize import MinimizeResult, minimize
from gradtx._src.solvers.newton import NewtonState, newton, scale_by_newton

__all__ = [
    "HessianFreeState", "MinimizeResult", "NewtonState", "ScaleByLBFGSState",
    "hessian_free", "lbfgs", "minimize", "newton", "scale_by_hessian_free",
    "scale_by_lbfgs", "scale_by_newton",
]
