"""Tree utilities under ``optax.tree_utils``'s names (Optax 0.2.8), plus the older
``tree_l2_norm``.

>>> import gradtx.tree_utils as gtu
>>> gtu.tree_norm({"w": jnp.ones(3)})
"""

from gradtx._src.tree.casting import (tree_cast, tree_cast_like, tree_dtype,
                                      tree_full_like, tree_ones_like, tree_zeros_like)
from gradtx._src.tree.math import (tree_add, tree_add_scale, tree_allclose,
                                   tree_batch_shape, tree_bias_correction, tree_clip,
                                   tree_conj, tree_div, tree_l2_norm, tree_max, tree_min,
                                   tree_mul, tree_norm, tree_real, tree_scale, tree_size,
                                   tree_sub, tree_sum, tree_update_infinity_moment,
                                   tree_update_moment, tree_update_moment_per_elem_norm,
                                   tree_vdot, tree_where)
from gradtx._src.tree.random import (tree_random_like, tree_split_key_like,
                                     tree_unwrap_random_key_data)
from gradtx._src.tree.state import (NamedTupleKey, tree_get, tree_get_all_with_path,
                                    tree_map_params, tree_set)

__all__ = [
    "NamedTupleKey", "tree_add", "tree_add_scale", "tree_allclose", "tree_batch_shape",
    "tree_bias_correction", "tree_cast", "tree_cast_like", "tree_clip", "tree_conj",
    "tree_div", "tree_dtype", "tree_full_like", "tree_get", "tree_get_all_with_path",
    "tree_l2_norm", "tree_map_params", "tree_max", "tree_min", "tree_mul", "tree_norm",
    "tree_ones_like", "tree_random_like", "tree_real", "tree_scale", "tree_set",
    "tree_size", "tree_split_key_like", "tree_sub", "tree_sum",
    "tree_unwrap_random_key_data", "tree_update_infinity_moment", "tree_update_moment",
    "tree_update_moment_per_elem_norm", "tree_vdot", "tree_where", "tree_zeros_like",
]
