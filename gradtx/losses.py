"""Optax's ``optax.losses`` names: loss functions, under the same names, signatures,
defaults and numerics (``import gradtx as optax`` then ``optax.losses.ctc_loss``). The
names Optax also exports at its top level are exported at gradtx's too.

>>> import jax.numpy as jnp, gradtx as gtx
>>> logits, labels = jnp.array([[1.2, -0.8, -0.5]]), jnp.array([0])
>>> print(gtx.losses.softmax_cross_entropy_with_integer_labels(logits, labels))
[0.27...]
"""

from gradtx._src.losses.classification import (hinge_loss, multiclass_hinge_loss,
                                               multiclass_perceptron_loss,
                                               perceptron_loss, sigmoid_binary_cross_entropy,
                                               sigmoid_focal_loss)
from gradtx._src.losses.contrastive import ntxent, triplet_margin_loss
from gradtx._src.losses.ctc import ctc_loss, ctc_loss_with_forward_probs
from gradtx._src.losses.dice import (binary_dice_loss, dice_loss,
                                     multiclass_generalized_dice_loss)
from gradtx._src.losses.divergences import (convex_kl_divergence, generalized_kl_divergence,
                                            kl_divergence, kl_divergence_with_log_targets)
from gradtx._src.losses.fenchel_young import (make_fenchel_young_loss,
                                              multiclass_sparsemax_loss, sparsemax_loss)
from gradtx._src.losses.ranking import ranking_softmax_loss
from gradtx._src.losses.regression import (cosine_distance, cosine_similarity, huber_loss,
                                           l2_loss, log_cosh, squared_error)
from gradtx._src.losses.softmax import (poly_loss_cross_entropy, safe_softmax_cross_entropy,
                                        smooth_labels, softmax_cross_entropy,
                                        softmax_cross_entropy_with_integer_labels)

__all__ = [
    "binary_dice_loss", "convex_kl_divergence", "cosine_distance", "cosine_similarity",
    "ctc_loss", "ctc_loss_with_forward_probs", "dice_loss", "generalized_kl_divergence",
    "hinge_loss", "huber_loss", "kl_divergence", "kl_divergence_with_log_targets",
    "l2_loss", "log_cosh", "make_fenchel_young_loss", "multiclass_generalized_dice_loss",
    "multiclass_hinge_loss", "multiclass_perceptron_loss", "multiclass_sparsemax_loss",
    "ntxent", "perceptron_loss", "poly_loss_cross_entropy", "ranking_softmax_loss",
    "safe_softmax_cross_entropy", "sigmoid_binary_cross_entropy", "sigmoid_focal_loss",
    "smooth_labels", "softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels",
    "sparsemax_loss", "squared_error", "triplet_margin_loss",
]
