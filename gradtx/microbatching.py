"""Optax's ``optax.microbatching`` names: a function evaluated on slices of its batch
(``microbatch``), ``vmap`` and per-example gradients with bounded memory (``micro_vmap``,
``micro_grad``), and how the slices' results are combined (``AccumulationType``,
``Accumulator``). ``microbatch`` is also exported at the top level."""

from gradtx._src.microbatch import (AccumulationType, Accumulator, micro_grad, micro_vmap,
                                    microbatch, reshape_batch_axis)

__all__ = ["AccumulationType", "Accumulator", "micro_grad", "micro_vmap", "microbatch",
           "reshape_batch_axis"]
