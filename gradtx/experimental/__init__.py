"""Optax's ``optax.experimental``: its one public submodule, :mod:`aggregating`
(transforms of per-example gradients)."""

from gradtx.experimental import aggregating

__all__ = ["aggregating"]
