"""Tree math: the one home of the pytree helpers every transform and solver uses.

``math`` holds arithmetic, reductions and moments; ``casting`` fills, casts and the
widest-dtype rule; ``state`` reads and writes fields of optimizer states; ``random``
draws random trees. The public modules ``gradtx.tree_utils`` (Optax's
``optax.tree_utils`` names) and ``gradtx.tree`` (``optax.tree``'s) re-export them.
"""
