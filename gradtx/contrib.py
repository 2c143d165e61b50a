"""Optax's ``optax.contrib`` names: newer and experimental optimizers, under the same
names, signatures and numerics (``import gradtx as optax`` then ``optax.contrib.muon``).
They are exported at the top level too."""

# --- issue 17-contrib-a: add imports below this line ---
# --- issue 17-contrib-b: add imports below this line ---
from gradtx._src.reduce_on_plateau import ReduceOnPlateauState, reduce_on_plateau

__all__ = [
    "ReduceOnPlateauState", "reduce_on_plateau",
    # --- issue 17-contrib-a: add names below this line ---
    # --- issue 17-contrib-b: add names below this line ---
]
