"""Optax's ``optax.perturbations`` names: differentiable Monte-Carlo smoothing of a
function by random perturbations of its input, under the same names, signatures,
defaults and numerics (a key gives Optax's numbers).

>>> f = gtx.perturbations.make_perturbed_fun(lambda x: jnp.sum(jnp.maximum(x, 0.0)), 1000)
>>> jax.grad(f, argnums=1)(jax.random.key(0), jnp.zeros(3))
"""

from gradtx._src.perturbations import Gumbel, Normal, make_perturbed_fun

__all__ = ["Gumbel", "Normal", "make_perturbed_fun"]
