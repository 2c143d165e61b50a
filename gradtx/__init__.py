"""gradtx: composable gradient transformations for JAX.

>>> import gradtx as gtx
>>> tx = gtx.chain(gtx.clip_by_global_norm(1.0), gtx.adam(1e-3))
"""

from gradtx._src.base import (EmptyState, GradientTransformation, Params, Schedule,
                              ScalarOrSchedule, apply_updates, identity, set_to_zero,
                              stateless)
from gradtx._src.combine import (MaskedNode, MaskedState, MultiplyState, PartitionState,
                                 chain, masked, multiply, named_chain, partition)
from gradtx._src.hyperparams import (InjectHyperparamsState, hyperparameters,
                                     inject_hyperparams)
from gradtx._src.leafwise import leafwise
from gradtx._src.scaling import (AddDecayedWeightsState, ScaleByScheduleState,
                                 add_decayed_weights, scale, scale_by_learning_rate,
                                 scale_by_schedule)
from gradtx._src.momentum import (AddMomentumState, BiasCorrectionState, add_momentum,
                                  bias_correction)
from gradtx._src.adagrad import (ScaleByAdaDeltaState, ScaleByRssState, scale_by_adadelta,
                                 scale_by_rss)
from gradtx._src.rmsprop import (ScaleByRmsState, ScaleByRmsWithCountState,
                                 ScaleByRStdDevState, ScaleByRStdDevWithCountState,
                                 scale_by_rms, scale_by_stddev)
from gradtx._src.adam import (AdaptiveStepSizeState, ScaleByAdamState, ScaleByAmsgradState,
                              adaptive_step_size, scale_by_adam, scale_by_adamax,
                              scale_by_amsgrad)
from gradtx._src.radam import RectifyState, rectify, scale_by_radam
from gradtx._src.rprop import ScaleByRpropState, scale_by_rprop
from gradtx._src.clipping import centralize, clip, clip_by_global_norm
from gradtx._src.tree.math import global_norm
from gradtx._src.alias import (adadelta, adagrad, adam, adamax, adamw, amsgrad, nadam,
                               radam, rmsprop, rprop, sgd)
from gradtx._src.adabound import (AdaBoundStepSizeState, AMSBoundStepSizeState,
                                  ClipBoundsState, adabound, adabound_step_size, amsbound,
                                  clip_bounds)
from gradtx._src.delta_bar_delta import (ScaleByLocalGainState, delta_bar_delta,
                                         scale_by_local_gain)
from gradtx._src.flatten import FlattenState, flatten
from gradtx._src.lookahead import LookaheadState, lookahead, ranger
from gradtx._src.swats import SwatsState, swats
from gradtx._src.reduce_on_plateau import ReduceOnPlateauState
from gradtx._src.linesearch import (BacktrackingLinesearchInfo, MoreThuenteLinesearchInfo,
                                    ScaleByBacktrackingLinesearchState,
                                    ScaleByMoreThuenteLinesearchState,
                                    ScaleByZoomLinesearchState, ZoomLinesearchInfo,
                                    scale_by_backtracking_linesearch,
                                    scale_by_more_thuente_linesearch,
                                    scale_by_zoom_linesearch, value_and_grad_from_state)
from gradtx._src.solvers import (HessianFreeState, MinimizeResult, NewtonState,
                                 ScaleByLBFGSState, hessian_free, lbfgs, minimize, newton,
                                 scale_by_hessian_free, scale_by_lbfgs, scale_by_newton)
from gradtx._src.sharding import state_shardings
from gradtx._src.wrappers import (AccumulateGradientsState, ApplyIfFiniteState,
                                  accumulate_gradients, apply_if_finite)
from gradtx.schedules import (constant_schedule, cosine_decay_schedule, cyclic_schedule,
                              exponential_decay, inverse_time_decay, join_schedules,
                              linear_schedule, piecewise_constant_schedule,
                              polynomial_schedule, reduce_on_plateau, step_decay,
                              warmup_cosine_decay_schedule,
                              warmup_exponential_decay_schedule, warmup_linear)
# --- issue 17-losses: add imports below this line ---
from gradtx import losses
from gradtx.losses import (convex_kl_divergence, cosine_distance, cosine_similarity,
                           ctc_loss, ctc_loss_with_forward_probs,
                           generalized_kl_divergence, hinge_loss, huber_loss,
                           kl_divergence, l2_loss, log_cosh, ntxent,
                           safe_softmax_cross_entropy, sigmoid_binary_cross_entropy,
                           sigmoid_focal_loss, smooth_labels, softmax_cross_entropy,
                           softmax_cross_entropy_with_integer_labels, squared_error)
# --- issue 17-schedules: add imports below this line ---
from gradtx.schedules import (InjectStatefulHyperparamsState, StatefulSchedule,
                              WrappedSchedule, cosine_annealing_warm_restarts,
                              cosine_onecycle_schedule, inject_stateful_hyperparams,
                              linear_onecycle_schedule, multiply_schedules,
                              one_cycle_schedule, piecewise_interpolate_schedule,
                              sgdr_schedule, warmup_constant_schedule,
                              warmup_stable_decay_schedule)
# --- issue 17-optimizers-a: add imports below this line ---
from gradtx._src.lion import ScaleByLionState, lion, scale_by_lion
from gradtx._src.sign import scale_by_sign, sign_sgd, signum
from gradtx._src.adabelief import ScaleByBeliefState, adabelief, scale_by_belief
from gradtx._src.yogi import scale_by_yogi, yogi
from gradtx._src.adamw_variants import adamaxw, nadamw
from gradtx._src.adan import ScaleByAdanState, adan, scale_by_adan
from gradtx._src.novograd import ScaleByNovogradState, novograd, scale_by_novograd
from gradtx._src.noise import AddNoiseState, add_noise, noisy_sgd
from gradtx._src.optimistic import (optimistic_adam, optimistic_adam_v2,
                                    optimistic_gradient_descent,
                                    scale_by_optimistic_gradient)
# --- issue 17-optimizers-b: add imports below this line ---
from gradtx._src.trust_ratio import (ScaleByTrustRatioState, fromage, lamb, lars,
                                     normalize_by_update_norm, scale_by_param_block_norm,
                                     scale_by_param_block_rms, scale_by_trust_ratio)
from gradtx._src.sm3 import ScaleBySM3State, scale_by_sm3, sm3
from gradtx._src.adafactor import FactoredState, adafactor, scale_by_factored_rms
from gradtx._src.polyak import polyak_sgd, scale_by_polyak
from gradtx._src.dog import scale_by_distance_over_gradients
from gradtx._src.adaptive_clipping import (AdaptiveGradClipState, ClipByGlobalNormState,
                                           ClipState, adaptive_grad_clip, clip_by_block_rms)
from gradtx._src.per_example_clipping import (per_example_global_norm_clip,
                                              per_example_layer_norm_clip)
# --- issue 17-transforms: add imports below this line ---
from gradtx._src.conditional import (ConditionallyMaskState, ConditionallyTransformState,
                                    conditionally_mask, conditionally_transform, freeze,
                                    selective_transform)
from gradtx._src.skip import (NonNegativeParamsState, ShouldSkipUpdateFunction,
                              ZeroNansState, keep_params_nonnegative, skip_large_updates,
                              skip_not_finite, zero_nans)
from gradtx._src.traces import EmaState, TraceState, ema, trace
from gradtx._src.monitor import (MonitorState, SnapshotState, measure_with_ema, monitor,
                                 snapshot)
from gradtx._src.microbatch import microbatch
from gradtx import microbatching
from gradtx._src.multi_steps import ApplyEvery, MultiSteps, MultiStepsState, apply_every
# --- issue 17-toplevel: add imports below this line ---
from gradtx._src.base import (GradientTransformationExtraArgs, OptState,
                              TransformInitFn, TransformUpdateExtraArgsFn,
                              TransformUpdateFn, Updates, incremental_update,
                              init_empty_state, periodic_update,
                              stateless_with_tree_map, with_extra_args_support)
from gradtx._src.combine import MaskOrFn
from gradtx._src.combine import PartitionState as MultiTransformState
from gradtx._src.combine import partition as multi_transform
from gradtx._src.scaling import ScaleState
from gradtx._src.lookahead import LookaheadParams
from gradtx._src.numerics import (safe_increment, safe_int32_increment, safe_norm,
                                  safe_root_mean_squares, scale_gradient)
from gradtx._src.linear_algebra import matrix_inverse_pth_root, nnls, power_iteration
from gradtx._src.distributions import multi_normal
from gradtx._src.tree.math import (tree_update_infinity_moment as update_infinity_moment,
                                   tree_update_moment as update_moment,
                                   tree_update_moment_per_elem_norm as
                                   update_moment_per_elem_norm)
from gradtx._src.tree.state import tree_map_params
# --- issue 17-contrib-a: add imports below this line ---
from gradtx._src.cocob import COCOBState, cocob, scale_by_cocob
from gradtx._src.dadapt import DAdaptAdamWState, dadapt_adamw
from gradtx._src.dog import DoGState, DoWGState, dog, dowg
from gradtx._src.mechanic import MechanicState, mechanize
from gradtx._src.muon import MuonDimensionNumbers, MuonState, muon, scale_by_muon
from gradtx._src.prodigy import ProdigyState, prodigy
from gradtx._src.schedule_free import (ScheduleFreeState, schedule_free, schedule_free_adamw,
                                       schedule_free_eval_params, schedule_free_sgd)
# --- issue 17-contrib-b: add imports below this line ---
from gradtx._src.madgrad import MadgradState, madgrad, scale_by_madgrad
from gradtx._src.momo import MomoAdamState, MomoState, momo, momo_adam
# --- issue 17-contrib-c: add imports below this line ---
from gradtx._src.sam import SAMState, sam
from gradtx._src.sophia import (HutchinsonState, SophiaState,
                                hutchinson_estimator_diag_hessian, sophia)
# --- issue 17-contrib-d: add imports below this line ---
from gradtx._src.acprop import acprop, scale_by_acprop
from gradtx._src.ademamix import (ScaleByAdemamixState, ScaleBySimplifiedAdEMAMixState,
                                  ademamix, scale_by_ademamix,
                                  scale_by_simplified_ademamix, simplified_ademamix)
from gradtx._src.adopt import adopt, scale_by_adopt
# --- issue 17-contrib-e: add imports below this line ---
from gradtx._src.complex_valued import SplitRealAndImaginaryState, split_real_and_imaginary
from gradtx._src.galore import GaLoreDimensionNumbers, GaLoreState, galore, scale_by_galore
from gradtx._src.normalize import NormalizeState, normalize
from gradtx._src.privacy import (DifferentiallyPrivateAggregateState,
                                 differentially_private_aggregate, dpsgd)
# --- issue 17-torch: add imports below this line ---
from gradtx._src.asgd import ASGDState, asgd, scale_by_asgd
from gradtx._src.averaging import AverageParamsState, average_params, averaged_params
# --- issue 17-submodules: add imports below this line ---
from gradtx import assignment, experimental, perturbations, projections, second_order
# --- issue 18-pack: add imports below this line ---
from gradtx._src.packing import Packed, pack, unpack
from gradtx import flax
# --- issue 19-diloco: add imports below this line ---
from gradtx._src.local_sgd import DiLoCoState, diloco, local_sgd
# --- issue 19-probls: add imports below this line ---
from gradtx._src.linesearch.probabilistic import (ProbabilisticLinesearchInfo,
                                                  ProbabilisticLinesearchState,
                                                  probabilistic_linesearch,
                                                  probabilistic_linesearch_variances)
# --- issue 18-pad: add imports below this line ---
from gradtx import contrib, transforms, tree, tree_utils

__version__ = "0.1.0"

__all__ = [
    "accumulate_gradients", "AccumulateGradientsState", "acprop", "adabelief", "adabound",
    "adabound_step_size", "AdaBoundStepSizeState", "adadelta", "adafactor", "adagrad",
    "adam", "adamax", "adamaxw", "adamw", "adan", "adaptive_grad_clip",
    "adaptive_step_size", "AdaptiveGradClipState", "AdaptiveStepSizeState",
    "add_decayed_weights", "add_momentum", "add_noise", "AddDecayedWeightsState",
    "AddMomentumState", "AddNoiseState", "ademamix", "adopt", "amsbound",
    "AMSBoundStepSizeState", "amsgrad", "apply_every", "apply_if_finite", "apply_updates",
    "ApplyEvery", "ApplyIfFiniteState", "asgd", "ASGDState", "assignment", "average_params",
    "averaged_params", "AverageParamsState", "BacktrackingLinesearchInfo",
    "bias_correction", "BiasCorrectionState", "centralize", "chain", "clip", "clip_bounds",
    "clip_by_block_rms", "clip_by_global_norm", "ClipBoundsState", "ClipByGlobalNormState",
    "ClipState", "cocob", "COCOBState", "conditionally_mask", "conditionally_transform",
    "ConditionallyMaskState", "ConditionallyTransformState", "constant_schedule", "contrib",
    "convex_kl_divergence", "cosine_annealing_warm_restarts", "cosine_decay_schedule",
    "cosine_distance", "cosine_onecycle_schedule", "cosine_similarity", "ctc_loss",
    "ctc_loss_with_forward_probs", "cyclic_schedule", "dadapt_adamw", "DAdaptAdamWState",
    "delta_bar_delta", "differentially_private_aggregate",
    "DifferentiallyPrivateAggregateState", "diloco", "DiLoCoState", "dog", "DoGState",
    "dowg", "DoWGState", "dpsgd", "ema", "EmaState", "EmptyState", "experimental",
    "exponential_decay", "FactoredState", "flatten", "FlattenState", "flax", "freeze",
    "fromage", "galore", "GaLoreDimensionNumbers", "GaLoreState",
    "generalized_kl_divergence", "global_norm", "GradientTransformation",
    "GradientTransformationExtraArgs", "hessian_free", "HessianFreeState", "hinge_loss",
    "huber_loss", "hutchinson_estimator_diag_hessian", "HutchinsonState", "hyperparameters",
    "identity", "incremental_update", "init_empty_state", "inject_hyperparams",
    "inject_stateful_hyperparams", "InjectHyperparamsState",
    "InjectStatefulHyperparamsState", "inverse_time_decay", "join_schedules",
    "keep_params_nonnegative", "kl_divergence", "l2_loss", "lamb", "landscapes", "lars",
    "lbfgs", "leafwise", "learned", "linear_onecycle_schedule", "linear_schedule", "lion",
    "local_sgd", "log_cosh", "lookahead", "LookaheadParams", "LookaheadState", "losses",
    "madgrad", "MadgradState", "masked", "MaskedNode", "MaskedState", "MaskOrFn",
    "matrix_inverse_pth_root", "measure_with_ema", "MechanicState", "mechanize",
    "microbatch", "microbatching", "minimize", "MinimizeResult", "momo", "momo_adam",
    "MomoAdamState", "MomoState", "monitor", "MonitorState", "MoreThuenteLinesearchInfo",
    "multi_normal", "multi_transform", "multiply", "multiply_schedules", "MultiplyState",
    "MultiSteps", "MultiStepsState", "MultiTransformState", "muon", "MuonDimensionNumbers",
    "MuonState", "nadam", "nadamw", "named_chain", "newton", "NewtonState", "nnls",
    "noisy_sgd", "NonNegativeParamsState", "normalize", "normalize_by_update_norm",
    "NormalizeState", "novograd", "ntxent", "one_cycle_schedule", "optimistic_adam",
    "optimistic_adam_v2", "optimistic_gradient_descent", "OptState", "pack", "Packed",
    "Params", "partition", "PartitionState", "per_example_global_norm_clip",
    "per_example_layer_norm_clip", "periodic_update", "perturbations",
    "piecewise_constant_schedule", "piecewise_interpolate_schedule", "polyak_sgd",
    "polynomial_schedule", "power_iteration", "probabilistic_linesearch",
    "probabilistic_linesearch_variances", "ProbabilisticLinesearchInfo",
    "ProbabilisticLinesearchState", "prodigy", "ProdigyState", "projections", "radam",
    "ranger", "rectify", "RectifyState", "reduce_on_plateau", "ReduceOnPlateauState",
    "rmsprop", "rprop", "safe_increment", "safe_int32_increment", "safe_norm",
    "safe_root_mean_squares", "safe_softmax_cross_entropy", "sam", "SAMState",
    "ScalarOrSchedule", "scale", "scale_by_acprop", "scale_by_adadelta", "scale_by_adam",
    "scale_by_adamax", "scale_by_adan", "scale_by_ademamix", "scale_by_adopt",
    "scale_by_amsgrad", "scale_by_asgd", "scale_by_backtracking_linesearch",
    "scale_by_belief", "scale_by_cocob", "scale_by_distance_over_gradients",
    "scale_by_factored_rms", "scale_by_galore", "scale_by_hessian_free", "scale_by_lbfgs",
    "scale_by_learning_rate", "scale_by_lion", "scale_by_local_gain", "scale_by_madgrad",
    "scale_by_more_thuente_linesearch", "scale_by_muon", "scale_by_newton",
    "scale_by_novograd", "scale_by_optimistic_gradient", "scale_by_param_block_norm",
    "scale_by_param_block_rms", "scale_by_polyak", "scale_by_radam", "scale_by_rms",
    "scale_by_rprop", "scale_by_rss", "scale_by_schedule", "scale_by_sign",
    "scale_by_simplified_ademamix", "scale_by_sm3", "scale_by_stddev",
    "scale_by_trust_ratio", "scale_by_yogi", "scale_by_zoom_linesearch", "scale_gradient",
    "ScaleByAdaDeltaState", "ScaleByAdamState", "ScaleByAdanState", "ScaleByAdemamixState",
    "ScaleByAmsgradState", "ScaleByBacktrackingLinesearchState", "ScaleByBeliefState",
    "ScaleByLBFGSState", "ScaleByLionState", "ScaleByLocalGainState",
    "ScaleByMoreThuenteLinesearchState", "ScaleByNovogradState", "ScaleByRmsState",
    "ScaleByRmsWithCountState", "ScaleByRpropState", "ScaleByRssState",
    "ScaleByRStdDevState", "ScaleByRStdDevWithCountState", "ScaleByScheduleState",
    "ScaleBySimplifiedAdEMAMixState", "ScaleBySM3State", "ScaleByTrustRatioState",
    "ScaleByZoomLinesearchState", "ScaleState", "Schedule", "schedule_free",
    "schedule_free_adamw", "schedule_free_eval_params", "schedule_free_sgd",
    "ScheduleFreeState", "schedules", "second_order", "selective_transform", "set_to_zero",
    "sgd", "sgdr_schedule", "ShouldSkipUpdateFunction", "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss", "sign_sgd", "signum", "simplified_ademamix", "skip_large_updates",
    "skip_not_finite", "sm3", "smooth_labels", "snapshot", "SnapshotState",
    "softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels", "sophia",
    "SophiaState", "split_real_and_imaginary", "SplitRealAndImaginaryState",
    "squared_error", "state_shardings", "StatefulSchedule", "stateless",
    "stateless_with_tree_map", "step_decay", "swats", "SwatsState", "trace", "TraceState",
    "TransformInitFn", "transforms", "TransformUpdateExtraArgsFn", "TransformUpdateFn",
    "tree", "tree_map_params", "tree_utils", "unpack", "update_infinity_moment",
    "update_moment", "update_moment_per_elem_norm", "Updates", "value_and_grad_from_state",
    "warmup_constant_schedule", "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule", "warmup_linear", "warmup_stable_decay_schedule",
    "with_extra_args_support", "WrappedSchedule", "yogi", "zero_nans", "ZeroNansState",
    "ZoomLinesearchInfo",
]

_LAZY_SUBMODULES = ("landscapes", "learned")


def __getattr__(name: str):
  """``gtx.landscapes`` and ``gtx.learned`` are imported on first use, so that
  ``import gradtx`` loads only the transforms."""
  if name in _LAZY_SUBMODULES:
    import importlib  # pylint: disable=import-outside-toplevel
    module = importlib.import_module(f"gradtx.{name}")
    globals()[name] = module
    return module
  raise AttributeError(f"module 'gradtx' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_LAZY_SUBMODULES))
