"""Optax's ``optax.transforms`` names: wrappers and combinators, under the same names,
signatures and numerics. They are exported at the top level too."""

from gradtx._src.combine import (MaskedNode, MaskedState, PartitionState, chain, masked,
                                 named_chain, partition)
from gradtx._src.clipping import clip, clip_by_global_norm
from gradtx._src.flatten import flatten
from gradtx._src.noise import AddNoiseState, add_noise
from gradtx._src.scaling import add_decayed_weights
from gradtx._src.wrappers import (ApplyIfFiniteState, apply_if_finite)
# --- issue 17-transforms: add imports below this line ---
from gradtx._src.conditional import (ConditionFn, ConditionallyMaskState,
                                    ConditionallyTransformState, conditionally_mask,
                                    conditionally_transform, freeze, selective_transform)
from gradtx._src.skip import (NonNegativeParamsState, ShouldSkipUpdateFunction,
                              ZeroNansState, keep_params_nonnegative, skip_large_updates,
                              skip_not_finite, zero_nans)
from gradtx._src.traces import EmaState, TraceState, ema, trace
from gradtx._src.monitor import (MonitorState, SnapshotState, measure_with_ema, monitor,
                                 snapshot)
from gradtx._src.multi_steps import MultiSteps, MultiStepsState
# --- issue 17-optimizers-b: add imports below this line ---
from gradtx._src.adaptive_clipping import (adaptive_grad_clip, clip_by_block_rms,
                                           unitwise_clip, unitwise_norm)
from gradtx._src.per_example_clipping import (per_example_global_norm_clip,
                                              per_example_layer_norm_clip)

__all__ = [
    "AddNoiseState", "ApplyIfFiniteState", "MaskedNode", "add_decayed_weights", "add_noise",
    "clip", "clip_by_global_norm", "flatten", "MaskedState", "PartitionState", "apply_if_finite",
    "chain", "masked", "named_chain", "partition",
    # --- issue 17-transforms: add names below this line ---
    "ConditionFn", "ConditionallyMaskState", "ConditionallyTransformState", "EmaState",
    "MonitorState", "MultiSteps", "MultiStepsState", "NonNegativeParamsState",
    "ShouldSkipUpdateFunction", "SnapshotState",
    "TraceState", "ZeroNansState", "conditionally_mask", "conditionally_transform", "ema",
    "freeze", "keep_params_nonnegative", "measure_with_ema", "monitor",
    "selective_transform", "skip_large_updates", "skip_not_finite", "snapshot", "trace",
    "zero_nans",
    # --- issue 17-optimizers-b: add names below this line ---
    "adaptive_grad_clip", "clip_by_block_rms", "per_example_global_norm_clip",
    "per_example_layer_norm_clip", "unitwise_clip", "unitwise_norm",
]
