"""Optax's ``optax.transforms`` names: wrappers and combinators, under the same names,
signatures and numerics. They are exported at the top level too."""

from gradtx._src.combine import (MaskedNode, MaskedState, PartitionState, chain, masked,
                                 named_chain, partition)
from gradtx._src.wrappers import (ApplyIfFiniteState, apply_if_finite)
# --- issue 17-transforms: add imports below this line ---
# --- issue 17-optimizers-b: add imports below this line ---

__all__ = [
    "ApplyIfFiniteState", "MaskedNode", "MaskedState", "PartitionState", "apply_if_finite",
    "chain", "masked", "named_chain", "partition",
    # --- issue 17-transforms: add names below this line ---
    # --- issue 17-optimizers-b: add names below this line ---
]
