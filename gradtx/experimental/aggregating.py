"""Optax's ``optax.experimental.aggregating`` names: aggregators of per-example
gradients, microbatch accumulation and per-example gradient statistics, under the same
names, signatures, defaults, state classes and numerics."""

from gradtx._src.aggregating import (AccumulateAvgUpdatesState, AggregatedUpdates,
                                     Aggregator, AggregatorUpdateFn, MaybeAxis,
                                     PerElementMeanAndSumSqDiffGradsState,
                                     PerElementMeanAndVarianceEMAState, PerElementUpdates,
                                     accumulate_avg_updates, add_mean_variance_to_opt,
                                     average_incrementally_updates,
                                     average_per_element_updates,
                                     get_batch_size_from_per_elt_updates,
                                     get_per_element_mean_and_sum_sq_diff_grads,
                                     get_unbiased_mean_and_variance_ema, process,
                                     track_per_element_mean_and_variance_with_ema)

__all__ = [
    "AccumulateAvgUpdatesState", "AggregatedUpdates", "Aggregator", "AggregatorUpdateFn",
    "MaybeAxis", "PerElementMeanAndSumSqDiffGradsState",
    "PerElementMeanAndVarianceEMAState",
    "PerElementUpdates", "accumulate_avg_updates", "add_mean_variance_to_opt",
    "average_incrementally_updates", "average_per_element_updates",
    "get_batch_size_from_per_elt_updates", "get_per_element_mean_and_sum_sq_diff_grads",
    "get_unbiased_mean_and_variance_ema", "process",
    "track_per_element_mean_and_variance_with_ema",
]
