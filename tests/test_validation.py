"""Hyperparameter validation at construction, as the protocol promises.

Every constructor checks its concrete numeric hyperparameters and raises a ``ValueError``
that names the constructor the user called, the parameter and its allowed range:
``adam: b2 must be in [0, 1), got 1.5``. NaN is never in range. Schedules and traced
values (a constructor called inside ``jit``/``vmap``) are accepted unchecked.

The ranges below are written from the papers' definitions, not read from the code: a
decay rate of an EMA is in [0, 1] (Adam's b1, b2 in [0, 1) because of the bias correction
1 - b**t), step sizes and epsilons are non-negative, Rprop's eta_minus shrinks and
eta_plus grows.
"""

import functools
import inspect
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx

UNIT = "[0, 1)"
DECAY = "[0, 1]"
NONNEG = "[0, inf)"
ADAM = dict(learning_rate=(0.25, NONNEG), b1=(0.75, UNIT), b2=(0.875, UNIT),
            eps=(2.0**-10, NONNEG), eps_root=(2.0**-20, NONNEG))
ADAM_PRIMITIVE = {k: v for k, v in ADAM.items() if k != "learning_rate"}


def without(spec, *names):
  return {k: v for k, v in spec.items() if k not in names}


# constructor -> (other arguments, {hyperparameter: (a valid value, allowed range)}).
# A range is an interval, or ("integer", minimum) for counts. The valid values are
# dyadic, so that a traced float32 copy holds exactly the same number.
ADABOUND = dict(learning_rate=(0.25, NONNEG), final_lr=(0.125, "(0, inf)"), b1=(0.75, UNIT),
                b2=(0.875, UNIT), gamma=(0.125, "(0, 1)"), eps=(2.0**-10, NONNEG),
                weight_decay=(0.125, NONNEG))
SPECS = {
    "scale": ({}, dict(step_size=(-0.5, "(-inf, inf)"))),
    "scale_by_learning_rate": ({}, dict(learning_rate=(0.25, NONNEG))),
    "add_decayed_weights": ({}, dict(weight_decay=(0.125, NONNEG))),
    "add_momentum": ({}, dict(decay=(0.75, DECAY))),
    "bias_correction": ({}, dict(decay=(0.75, UNIT))),
    "scale_by_rss": ({}, dict(initial_accumulator_value=(0.125, NONNEG),
                              eps=(2.0**-10, NONNEG))),
    "scale_by_rms": ({}, dict(decay=(0.75, DECAY), eps=(2.0**-10, NONNEG),
                              initial_scale=(0.125, NONNEG))),
    "scale_by_stddev": ({}, dict(decay=(0.75, DECAY), eps=(2.0**-10, NONNEG),
                                 initial_scale=(0.125, NONNEG))),
    "scale_by_adadelta": ({}, dict(rho=(0.75, DECAY), eps=(2.0**-10, NONNEG))),
    "scale_by_adam": ({}, ADAM_PRIMITIVE),
    "scale_by_amsgrad": ({}, ADAM_PRIMITIVE),
    "scale_by_adamax": ({}, without(ADAM_PRIMITIVE, "eps_root")),
    "adaptive_step_size": ({}, without(ADAM_PRIMITIVE, "b1")),
    "rectify": ({}, dict(b2=(0.875, UNIT), threshold=(4.5, NONNEG))),
    "scale_by_radam": ({}, dict(**ADAM_PRIMITIVE, threshold=(4.5, NONNEG))),
    "scale_by_rprop": ({}, dict(learning_rate=(0.25, NONNEG), eta_minus=(0.5, DECAY),
                                eta_plus=(1.25, "[1, inf)"),
                                min_step_size=(2.0**-10, NONNEG),
                                max_step_size=(8.0, NONNEG))),
    "clip": ({}, dict(max_delta=(0.5, "[0, inf]"))),
    "clip_by_global_norm": ({}, dict(max_norm=(0.5, "(0, inf]"))),
    "sgd": ({}, dict(learning_rate=(0.25, NONNEG), momentum=(0.75, DECAY))),
    "adagrad": ({}, dict(learning_rate=(0.25, NONNEG),
                         initial_accumulator_value=(0.125, NONNEG), eps=(2.0**-10, NONNEG))),
    "rmsprop": ({}, dict(learning_rate=(0.25, NONNEG), decay=(0.75, DECAY),
                         eps=(2.0**-10, NONNEG), initial_scale=(0.125, NONNEG),
                         momentum=(0.5, DECAY))),
    "adadelta": ({}, dict(learning_rate=(0.25, NONNEG), rho=(0.75, DECAY),
                          eps=(2.0**-10, NONNEG), weight_decay=(0.125, NONNEG))),
    "adam": ({}, ADAM),
    "nadam": ({}, ADAM),
    "adamw": ({}, dict(**ADAM, weight_decay=(0.125, NONNEG))),
    "adamax": ({}, without(ADAM, "eps_root")),
    "amsgrad": ({}, ADAM),
    "radam": ({}, dict(**ADAM, threshold=(4.5, NONNEG))),
    "rprop": ({}, dict(learning_rate=(0.25, NONNEG), eta_minus=(0.5, DECAY),
                       eta_plus=(1.25, "[1, inf)"), min_step_size=(2.0**-10, NONNEG),
                       max_step_size=(8.0, NONNEG))),
    "adabound_step_size": ({}, dict(b2=(0.875, UNIT), eps=(2.0**-10, NONNEG))),
    # lower's valid value is 0, so that upper's closed end 0 keeps lower <= upper.
    "clip_bounds": ({}, dict(final_lr=(0.125, "(0, inf)"), gamma=(0.125, "(0, 1)"),
                             lower=(0.0, NONNEG), upper=(8.0, NONNEG))),
    "adabound": ({}, ADABOUND),
    "amsbound": ({}, ADABOUND),
    "scale_by_local_gain": ({}, dict(increment=(0.25, NONNEG), decay=(0.5, "(0, 1]"),
                                     theta=(0.5, UNIT), min_gain=(2.0**-10, "(0, inf)"),
                                     max_gain=(8.0, "(0, inf]"))),
    "delta_bar_delta": ({}, dict(learning_rate=(0.25, NONNEG), increment=(0.25, NONNEG),
                                 decay=(0.5, "(0, 1]"), theta=(0.5, UNIT))),
    "swats": ({}, dict(learning_rate=(0.25, NONNEG), b1=(0.75, UNIT), b2=(0.875, UNIT),
                       eps=(2.0**-10, NONNEG), switch_tol=(2.0**-10, "[0, inf]"))),
    "lookahead": ({"fast_optimizer": gtx.sgd(0.25)},
                  dict(sync_period=(2, ("integer", 1)), slow_step_size=(0.5, DECAY))),
    "ranger": ({}, dict(learning_rate=(0.25, NONNEG), b1=(0.75, UNIT), b2=(0.875, UNIT),
                        eps=(2.0**-10, NONNEG), threshold=(4.5, NONNEG),
                        sync_period=(2, ("integer", 1)), slow_step_size=(0.5, DECAY),
                        weight_decay=(0.125, NONNEG))),
    "reduce_on_plateau": ({}, dict(factor=(0.5, "(0, 1)"), patience=(1, ("integer", 1)),
                                   rtol=(0.125, DECAY), atol=(0.25, NONNEG),
                                   cooldown=(1, ("integer", 0)),
                                   accumulation_size=(1, ("integer", 1)),
                                   min_scale=(0.25, DECAY))),
    "apply_if_finite": ({"inner": gtx.sgd(0.25)},
                        dict(max_consecutive_errors=(2, ("integer", 0)))),
    "accumulate_gradients": ({"inner": gtx.sgd(0.25)}, dict(every_k=(2, ("integer", 1)))),
    "scale_by_backtracking_linesearch": ({}, dict(
        max_backtracking_steps=(4, ("integer", 0)), slope_rtol=(0.125, UNIT),
        decrease_factor=(0.5, "(0, 1)"), increase_factor=(1.5, "[1, inf]"),
        max_learning_rate=(1.0, "(0, inf)"), atol=(0.0, NONNEG), rtol=(0.0, NONNEG),
        curv_rtol=(0.875, "(0, 1)"))),
    "scale_by_zoom_linesearch": ({}, dict(
        max_linesearch_steps=(4, ("integer", 1)), max_learning_rate=(2.0, "(0, inf)"),
        tol=(0.0, NONNEG), increase_factor=(2.0, "(1, inf)"), slope_rtol=(2.0**-10, UNIT),
        curv_rtol=(0.875, "(0, inf]"), approx_dec_rtol=(2.0**-20, NONNEG),
        stepsize_precision=(2.0**-16, NONNEG))),
    "scale_by_more_thuente_linesearch": ({}, dict(
        max_linesearch_steps=(4, ("integer", 1)), slope_rtol=(2.0**-10, UNIT),
        curv_rtol=(0.875, "(0, inf)"), xtol=(0.125, NONNEG),
        max_learning_rate=(2.0, "(0, inf]"), first_step_length=(1.0, "(0, inf)"))),
    "scale_by_lbfgs": ({}, dict(memory_size=(3, ("integer", 1)))),
    "lbfgs": ({}, dict(learning_rate=(0.25, NONNEG), memory_size=(3, ("integer", 1)))),
    "newton": ({}, dict(damping=(2.0**-10, NONNEG), max_params=(100, ("integer", 1)))),
    "scale_by_newton": ({}, dict(damping=(2.0**-10, NONNEG),
                                 max_params=(100, ("integer", 1)))),
    "hessian_free": ({}, dict(damping=(0.5, "(0, inf)"), cg_max_iters=(5, ("integer", 1)),
                              cg_tol=(2.0**-10, NONNEG), seed=(0, ("integer", 0)))),
    "scale_by_hessian_free": ({}, dict(damping=(0.5, "(0, inf)"),
                                       cg_max_iters=(5, ("integer", 1)),
                                       cg_tol=(2.0**-10, NONNEG), seed=(0, ("integer", 0)))),
    # --- issue 17-losses: add entries below this line ---
    # --- issue 17-schedules: add entries below this line ---
    # --- issue 17-optimizers-a: add entries below this line ---
    "scale_by_lion": ({}, dict(b1=(0.75, DECAY), b2=(0.875, DECAY),
                               smooth_beta=(1.5, "(0, inf)"))),
    "lion": ({}, dict(learning_rate=(0.25, NONNEG), b1=(0.75, DECAY), b2=(0.875, DECAY),
                      weight_decay=(0.125, NONNEG))),
    "sign_sgd": ({}, dict(learning_rate=(0.25, NONNEG))),
    "signum": ({}, dict(learning_rate=(0.25, NONNEG), beta=(0.75, UNIT))),
    "scale_by_belief": ({}, ADAM_PRIMITIVE),
    "adabelief": ({}, ADAM),
    "scale_by_yogi": ({}, dict(**ADAM_PRIMITIVE, initial_accumulator_value=(0.125, NONNEG))),
    "yogi": ({}, without(ADAM, "eps_root")),
    "nadamw": ({}, dict(**ADAM, weight_decay=(0.125, NONNEG))),
    "adamaxw": ({}, dict(**without(ADAM, "eps_root"), weight_decay=(0.125, NONNEG))),
    "scale_by_adan": ({}, dict(**ADAM_PRIMITIVE, b3=(0.625, UNIT))),
    "adan": ({}, dict(**ADAM, b3=(0.625, UNIT), weight_decay=(0.125, NONNEG))),
    "scale_by_novograd": ({}, dict(b1=(0.75, DECAY), b2=(0.25, DECAY), eps=(2.0**-10, NONNEG),
                                   eps_root=(2.0**-20, NONNEG), weight_decay=(0.125, NONNEG))),
    "novograd": ({}, dict(learning_rate=(0.25, NONNEG), b1=(0.75, DECAY), b2=(0.25, DECAY),
                          eps=(2.0**-10, NONNEG), eps_root=(2.0**-20, NONNEG),
                          weight_decay=(0.125, NONNEG))),
    # key given, seed (its deprecated integer form) left None: both at once is an error.
    "add_noise": ({"key": 0}, dict(eta=(0.125, NONNEG), gamma=(0.5, NONNEG),
                                   seed=(None, ("integer", 0)))),
    "noisy_sgd": ({"key": 0}, dict(learning_rate=(0.25, NONNEG), eta=(0.125, NONNEG),
                                   gamma=(0.5, NONNEG), seed=(None, ("integer", 0)))),
    "scale_by_optimistic_gradient": ({}, dict(alpha=(0.5, NONNEG), beta=(0.75, NONNEG))),
    "optimistic_gradient_descent": ({}, dict(learning_rate=(0.25, NONNEG),
                                             alpha=(0.5, NONNEG), beta=(0.75, NONNEG))),
    "optimistic_adam": ({}, dict(**ADAM, optimism=(0.125, NONNEG))),
    "optimistic_adam_v2": ({}, dict(**ADAM, alpha=(0.5, NONNEG), beta=(0.75, NONNEG))),
    # --- issue 17-optimizers-b: add entries below this line ---
    "scale_by_trust_ratio": ({}, dict(min_norm=(2.0**-10, NONNEG),
                                      trust_coefficient=(0.5, NONNEG), eps=(2.0**-10, NONNEG))),
    "scale_by_param_block_norm": ({}, dict(min_scale=(2.0**-10, NONNEG))),
    "scale_by_param_block_rms": ({}, dict(min_scale=(2.0**-10, NONNEG))),
    "normalize_by_update_norm": ({}, dict(scale_factor=(-0.5, "(-inf, inf)"),
                                          eps=(2.0**-10, NONNEG))),
    "lamb": ({}, dict(**ADAM, weight_decay=(0.125, NONNEG))),
    "lars": ({}, dict(learning_rate=(0.25, NONNEG), weight_decay=(0.125, NONNEG),
                      trust_coefficient=(0.5, NONNEG), eps=(2.0**-10, NONNEG),
                      momentum=(0.75, DECAY))),
    "fromage": ({}, dict(learning_rate=(0.25, NONNEG), min_norm=(2.0**-10, NONNEG))),
    "scale_by_sm3": ({}, dict(b1=(0.75, DECAY), b2=(0.875, DECAY), eps=(2.0**-10, NONNEG))),
    "sm3": ({}, dict(learning_rate=(0.25, NONNEG), momentum=(0.75, DECAY))),
    # decay_rate: the exponent c of 1 - t**-c; min_dim_size_to_factor=2 factors "w".
    "scale_by_factored_rms": ({}, dict(decay_rate=(0.75, NONNEG),
                                       step_offset=(0, ("integer", 0)),
                                       min_dim_size_to_factor=(2, ("integer", 0)),
                                       epsilon=(2.0**-20, NONNEG))),
    "adafactor": ({}, dict(learning_rate=(0.25, NONNEG),
                           min_dim_size_to_factor=(2, ("integer", 0)),
                           decay_rate=(0.75, NONNEG), decay_offset=(0, ("integer", 0)),
                           clipping_threshold=(1.0, "(0, inf]"), momentum=(0.75, UNIT),
                           weight_decay_rate=(0.125, NONNEG), eps=(2.0**-20, NONNEG))),
    "scale_by_polyak": ({}, dict(f_min=(-0.5, "(-inf, inf)"),
                                 max_learning_rate=(0.5, "[0, inf]"), eps=(2.0**-10, NONNEG))),
    "polyak_sgd": ({}, dict(max_learning_rate=(0.5, "[0, inf]"), scaling=(0.25, NONNEG),
                            f_min=(-0.5, "(-inf, inf)"), eps=(2.0**-10, NONNEG))),
    "scale_by_distance_over_gradients": ({}, dict(reps_rel=(2.0**-10, "(0, inf)"),
                                                  eps=(2.0**-10, NONNEG),
                                                  global_scale=(-1.0, "(-inf, inf)"))),
    "clip_by_block_rms": ({}, dict(threshold=(0.5, "(0, inf]"))),
    "adaptive_grad_clip": ({}, dict(clipping=(0.125, "[0, inf]"), eps=(2.0**-10, NONNEG))),
    # --- issue 17-transforms: add entries below this line ---
    "trace": ({}, dict(decay=(0.75, DECAY))),
    "ema": ({}, dict(decay=(0.75, UNIT))),
    "measure_with_ema": ({"measure": gtx.global_norm}, dict(decay=(0.75, UNIT))),
    "apply_every": ({}, dict(k=(2, ("integer", 1)))),
    # --- issue 17-toplevel: add entries below this line ---
    # --- issue 17-contrib-a: add entries below this line ---
    "scale_by_muon": ({"weight_dimension_numbers": lambda u: jax.tree.map(
        lambda x: gtx.contrib.MuonDimensionNumbers() if jnp.ndim(x) == 2 else None, u)},
        dict(ns_steps=(3, ("integer", 0)), beta=(0.75, UNIT), eps=(2.0**-10, NONNEG))),
    "muon": ({}, dict(learning_rate=(0.25, NONNEG), ns_steps=(3, ("integer", 0)),
                      beta=(0.75, UNIT), eps=(2.0**-10, NONNEG), weight_decay=(0.125, NONNEG),
                      adam_b1=(0.75, UNIT), adam_b2=(0.875, UNIT),
                      adam_eps_root=(2.0**-20, NONNEG), adam_weight_decay=(0.125, NONNEG),
                      adam_learning_rate=(0.125, NONNEG), consistent_rms=(0.25, NONNEG))),
    "schedule_free": ({"base_optimizer": gtx.sgd(0.25)},
                      dict(learning_rate=(0.25, NONNEG), b1=(0.75, "(0, 1]"),
                           weight_lr_power=(2.0, NONNEG))),
    "schedule_free_sgd": ({}, dict(learning_rate=(0.25, NONNEG),
                                   warmup_steps=(2, ("integer", 1)), b1=(0.75, "(0, 1]"),
                                   weight_decay=(0.125, NONNEG), weight_lr_power=(2.0, NONNEG))),
    "schedule_free_adamw": ({}, dict(learning_rate=(0.25, NONNEG),
                                     warmup_steps=(2, ("integer", 1)), b1=(0.75, "(0, 1]"),
                                     b2=(0.875, UNIT), eps=(2.0**-10, NONNEG),
                                     weight_decay=(0.125, NONNEG),
                                     weight_lr_power=(2.0, NONNEG))),
    "prodigy": ({}, dict(learning_rate=(0.25, NONNEG), beta3=(0.75, UNIT),
                         eps=(2.0**-10, NONNEG), estim_lr0=(2.0**-10, "(0, inf)"),
                         estim_lr_coef=(0.5, NONNEG), weight_decay=(0.125, NONNEG))),
    "dadapt_adamw": ({}, dict(learning_rate=(0.25, NONNEG), eps=(2.0**-10, NONNEG),
                              estim_lr0=(2.0**-10, "(0, inf)"), weight_decay=(0.125, NONNEG))),
    "dog": ({}, dict(learning_rate=(0.25, NONNEG), eps=(2.0**-10, NONNEG),
                     weight_decay=(0.125, NONNEG))),
    "dowg": ({}, dict(learning_rate=(0.25, NONNEG), init_estim_sq_dist=(0.25, "(0, inf)"),
                      eps=(2.0**-10, "(0, inf)"), weight_decay=(0.125, NONNEG))),
    "scale_by_cocob": ({}, dict(alpha=(64.0, "(0, inf)"), eps=(2.0**-10, "(0, inf)"))),
    "cocob": ({}, dict(learning_rate=(0.25, NONNEG), alpha=(64.0, "(0, inf)"),
                       eps=(2.0**-10, "(0, inf)"), weight_decay=(0.125, NONNEG))),
    "mechanize": ({"base_optimizer": gtx.sgd(0.25)},
                  dict(weight_decay=(0.125, NONNEG), eps=(2.0**-10, "(0, inf)"),
                       s_init=(2.0**-10, "(0, inf)"), num_betas=(3, ("integer", 1)))),
    # --- issue 17-contrib-b: add entries below this line ---
    "momo": ({}, dict(learning_rate=(0.5, NONNEG), beta=(0.75, DECAY),
                      lower_bound=(0.125, "(-inf, inf)"), weight_decay=(0.125, NONNEG))),
    "momo_adam": ({}, dict(learning_rate=(0.25, NONNEG), b1=(0.75, UNIT), b2=(0.875, UNIT),
                           eps=(2.0**-10, NONNEG), lower_bound=(0.125, "(-inf, inf)"),
                           weight_decay=(0.125, NONNEG))),
    "scale_by_madgrad": ({}, dict(learning_rate=(0.25, NONNEG), momentum=(0.75, UNIT),
                                  eps=(2.0**-10, NONNEG))),
    "madgrad": ({}, dict(learning_rate=(0.25, NONNEG), momentum=(0.75, UNIT),
                         weight_decay=(0.125, NONNEG), eps=(2.0**-10, NONNEG))),
    # --- issue 17-contrib-c: add entries below this line ---
    "sam": ({"optimizer": gtx.sgd(0.25), "adv_optimizer": gtx.sgd(0.125)},
            dict(sync_period=(2, ("integer", 1)))),
    # An estimator that needs no obj_fn (the steps here pass value_fn=, not obj_fn=).
    "sophia": ({"hessian_diagonal_fn": gtx.stateless(
        lambda u, p: jax.tree.map(jnp.square, u))},
        dict(learning_rate=(0.25, NONNEG), b1=(0.75, UNIT), b2=(0.875, DECAY),
             eps=(2.0**-10, "(0, inf)"), weight_decay=(0.125, NONNEG),
             gamma=(0.125, NONNEG), clip_threshold=(0.5, "(0, inf)"),
             update_interval=(2, ("integer", 1)),
             print_win_rate_every_n_steps=(0, ("integer", 0)))),
    # --- issue 17-contrib-d: add entries below this line ---
    "scale_by_adopt": ({}, dict(b1=(0.75, UNIT), b2=(0.875, UNIT), eps=(2.0**-10, NONNEG))),
    "adopt": ({}, dict(learning_rate=(0.25, NONNEG), b1=(0.75, UNIT), b2=(0.875, UNIT),
                       eps=(2.0**-10, NONNEG))),
    "scale_by_ademamix": ({}, dict(**ADAM_PRIMITIVE, b3=(0.9375, DECAY), alpha=(4.0, NONNEG))),
    "ademamix": ({}, dict(**ADAM, b3=(0.9375, DECAY), alpha=(4.0, NONNEG),
                          weight_decay=(0.125, NONNEG))),
    "scale_by_simplified_ademamix": ({}, dict(**ADAM_PRIMITIVE, alpha=(2.0, NONNEG))),
    "simplified_ademamix": ({}, dict(**ADAM, alpha=(2.0, NONNEG),
                                     weight_decay=(0.125, NONNEG))),
    "scale_by_acprop": ({}, ADAM_PRIMITIVE),
    "acprop": ({}, dict(**ADAM, weight_decay=(0.125, NONNEG))),
    # --- issue 17-contrib-e: add entries below this line ---
    "scale_by_galore": ({}, dict(rank=(2, ("integer", 1)), update_proj_gap=(2, ("integer", 1)),
                                 scale=(0.5, "(-inf, inf)"))),
    "galore": ({}, dict(learning_rate=(0.25, NONNEG), rank=(2, ("integer", 1)),
                        update_proj_gap=(2, ("integer", 1)), scale=(0.5, "(-inf, inf)"),
                        weight_decay=(0.125, NONNEG))),
    # --- issue 17-torch: add entries below this line ---
    "scale_by_asgd": ({}, dict(learning_rate=(0.25, NONNEG), lambd=(2.0**-10, "(-inf, inf)"),
                               alpha=(0.75, "(-inf, inf)"), t0=(4.0, "(-inf, inf]"))),
    "asgd": ({}, dict(learning_rate=(0.25, NONNEG), lambd=(2.0**-10, "(-inf, inf)"),
                      alpha=(0.75, "(-inf, inf)"), t0=(4.0, "(-inf, inf]"),
                      weight_decay=(0.125, NONNEG))),
    "average_params": ({"inner": gtx.sgd(0.25)},
                       dict(decay=(0.75, DECAY), start_step=(2, ("integer", 0)),
                            every=(3, ("integer", 1)))),
    # --- issue 17-submodules: add entries below this line ---
    # --- issue 18-pack: add entries below this line ---
    # --- issue 19-diloco: add entries below this line ---
    # --- issue 19-probls: add entries below this line ---
    "probabilistic_linesearch": ({}, dict(
        initial_step_size=(0.25, "(0, inf)"), slope_rtol=(0.0625, "(0, 1)"),
        curv_rtol=(0.5, "(0, 1)"), wolfe_threshold=(0.25, "[0, 1)"),
        step_size_growth=(1.25, "[1, inf)"))),
    # --- issue 18-pad: add entries below this line ---
}
# Hyperparameters that set a shape or a Python-level size: they must be concrete, so the
# test that traces every hyperparameter keeps them as numbers.
STATIC = {("scale_by_lbfgs", "memory_size"), ("lbfgs", "memory_size"),
          ("newton", "max_params"), ("scale_by_newton", "max_params"),
          ("hessian_free", "seed"), ("hessian_free", "cg_max_iters"),
          ("scale_by_hessian_free", "seed"), ("scale_by_hessian_free", "cg_max_iters")}
# issue 17-optimizers-b: which arrays are factored is decided from shapes, in Python.
STATIC |= {("scale_by_factored_rms", "min_dim_size_to_factor"),
           ("adafactor", "min_dim_size_to_factor")}
# issue 17-contrib-a: loop lengths, array sizes and the warmup schedules' lengths are
# Python numbers.
STATIC |= {("scale_by_muon", "ns_steps"), ("muon", "ns_steps"), ("mechanize", "num_betas"),
           ("schedule_free_sgd", "warmup_steps"), ("schedule_free_adamw", "warmup_steps")}
# issue 17-contrib-e: GaLore's rank sets the projector's and the moments' shapes.
STATIC |= {("scale_by_galore", "rank"), ("galore", "rank")}

# Public constructors without numeric hyperparameters of their own.
NO_HYPERPARAMETERS = {"identity", "set_to_zero", "stateless", "scale_by_schedule",
                      "centralize", "chain", "named_chain", "masked", "partition",
                      "multiply", "inject_hyperparams", "flatten",
                      # --- issue 17-losses: add names below this line ---
                      # --- issue 17-schedules: add names below this line ---
                      # --- issue 17-optimizers-a: add names below this line ---
                      "scale_by_sign",
                      # --- issue 17-optimizers-b: add names below this line ---
                      # --- issue 17-transforms: add names below this line ---
                      "conditionally_mask", "conditionally_transform",
                      "keep_params_nonnegative", "zero_nans", "freeze",
                      "selective_transform", "monitor", "snapshot",
                      # --- issue 17-toplevel: add names below this line ---
                      "stateless_with_tree_map", "with_extra_args_support",
                      "multi_transform",
                      # --- issue 17-contrib-a: add names below this line ---
                      # --- issue 17-contrib-b: add names below this line ---
                      # --- issue 17-contrib-c: add names below this line ---
                      "hutchinson_estimator_diag_hessian",
                      # --- issue 17-contrib-d: add names below this line ---
                      # --- issue 17-contrib-e: add names below this line ---
                      # dpsgd and differentially_private_aggregate have numeric
                      # hyperparameters, but their update needs per-example gradients,
                      # which _two_steps does not give: tests/test_privacy.py runs these
                      # checks (ranges, types, closed ends, schedules, traced) for them.
                      "dpsgd", "differentially_private_aggregate",
                      "normalize", "split_real_and_imaginary",
                      # --- issue 17-torch: add names below this line ---
                      # --- issue 17-submodules: add names below this line ---
                      # --- issue 18-pack: add names below this line ---
                      "pack", "unpack",
                      # --- issue 19-diloco: add names below this line ---
                      # diloco and local_sgd: sync_period is their one number, and their
                      # params need a replica axis (or a mapped axis), which _two_steps
                      # does not give: tests/test_local_sgd.py checks its range, types
                      # and traced values, and the other arguments' types.
                      "diloco", "local_sgd",
                      # --- issue 19-probls: add names below this line ---
                      # --- issue 18-pad: add names below this line ---
}
NOT_CONSTRUCTORS = {"apply_updates", "leafwise", "hyperparameters", "global_norm",
                    "value_and_grad_from_state", "minimize",
                    # --- issue 17: non-transform public functions below this line ---
                    "probabilistic_linesearch_variances",
                    "averaged_params",
                    "schedule_free_eval_params",
                    "init_empty_state", "incremental_update", "periodic_update",
                    "safe_increment", "safe_int32_increment", "safe_norm",
                    "safe_root_mean_squares", "scale_gradient", "matrix_inverse_pth_root",
                    "nnls", "power_iteration", "multi_normal", "update_moment",
                    "update_infinity_moment", "update_moment_per_elem_norm",
                    "tree_map_params",
                    "per_example_global_norm_clip", "per_example_layer_norm_clip",
                    "skip_not_finite", "skip_large_updates", "microbatch",
                    "state_shardings",
                    *(set(gtx.schedules.__all__) - {"reduce_on_plateau"}),
                    *getattr(getattr(gtx, "losses", None), "__all__", ())}


def test_every_constructor_and_numeric_hyperparameter_is_specified():
  public = {name for name, obj in vars(gtx).items()
            if inspect.isfunction(obj) and not name.startswith("_")}
  assert public - NOT_CONSTRUCTORS - NO_HYPERPARAMETERS == set(SPECS)
  for name, (_, spec) in SPECS.items():
    for param in inspect.signature(getattr(gtx, name)).parameters.values():
      numeric_default = (isinstance(param.default, (int, float))
                         and not isinstance(param.default, bool))
      numeric_annotation = re.search(r"\b(float|int|ScalarOrSchedule)\b",
                                     str(param.annotation))
      if numeric_default or numeric_annotation:
        assert param.name in spec, f"{name}: {param.name} has no range in SPECS"


def valid_kwargs(name):
  fixed, spec = SPECS[name]
  return {**fixed, **{k: value for k, (value, _) in spec.items()}}


def _bad_values(interval):
  """Values just outside each finite end, the excluded ends themselves, and NaN."""
  text = interval.replace(" ", "")
  low, high = (float(x) for x in text[1:-1].split(","))
  bad = [math.nan]
  if math.isfinite(low):
    bad.append(low - 0.5)
    if text[0] == "(":
      bad.append(low)
  elif text[0] == "(":
    bad.append(-math.inf)
  if math.isfinite(high):
    bad.append(high + 0.5)
    if text[-1] == ")":
      bad.append(high)
  elif text[-1] == ")":
    bad.append(math.inf)
  return bad


def _good_ends(interval):
  """The closed ends of the interval (infinite ones included), which must be accepted."""
  text = interval.replace(" ", "")
  low, high = (float(x) for x in text[1:-1].split(","))
  return [x for x, closed in ((low, text[0] == "["), (high, text[-1] == "]")) if closed]


INTERVAL_CASES = [(name, param, interval, bad)
                  for name, (_, spec) in SPECS.items()
                  for param, (_, interval) in spec.items() if isinstance(interval, str)
                  for bad in _bad_values(interval)]
INTEGER_CASES = [(name, param, minimum, bad)
                 for name, (_, spec) in SPECS.items()
                 for param, (_, interval) in spec.items() if not isinstance(interval, str)
                 for minimum in [interval[1]]
                 for bad in (minimum - 1, minimum + 0.5, math.nan, True)]


def _id(case):
  return "-".join(map(str, case))


@pytest.mark.parametrize("case", INTERVAL_CASES, ids=map(_id, INTERVAL_CASES))
def test_out_of_range_value_raises_naming_constructor_parameter_and_range(case):
  name, param, interval, bad = case
  message = f"{name}: {param} must be in {interval}, got {bad!r}"
  with pytest.raises(ValueError, match="^" + re.escape(message)):
    getattr(gtx, name)(**{**valid_kwargs(name), param: bad})


@pytest.mark.parametrize("case", INTEGER_CASES, ids=map(_id, INTEGER_CASES))
def test_count_that_is_not_an_integer_in_range_raises(case):
  name, param, minimum, bad = case
  message = f"{name}: {param} must be an integer >= {minimum}, got {bad!r}"
  with pytest.raises(ValueError, match="^" + re.escape(message)):
    getattr(gtx, name)(**{**valid_kwargs(name), param: bad})


GOOD_ENDS = [(name, param, end) for name, (_, spec) in SPECS.items()
             for param, (_, interval) in spec.items() if isinstance(interval, str)
             for end in _good_ends(interval)]


@pytest.mark.parametrize("case", GOOD_ENDS, ids=map(_id, GOOD_ENDS))
def test_closed_ends_of_the_range_are_accepted(case):
  name, param, end = case
  kwargs = {**valid_kwargs(name), param: end}
  if param == "min_step_size":  # and keep min_step_size <= max_step_size
    kwargs["max_step_size"] = max(end, kwargs["max_step_size"])
  if param == "max_step_size":
    kwargs["min_step_size"] = min(end, kwargs["min_step_size"])
  assert isinstance(getattr(gtx, name)(**kwargs), gtx.GradientTransformation)


@pytest.mark.parametrize("bad", [np.float32(1.5), np.float64(np.nan), jnp.asarray(1.5),
                                 np.asarray([1.5])[0]], ids=["np.float32", "np.nan",
                                                            "jax.Array", "np.ndarray"])
def test_concrete_arrays_are_checked_like_numbers(bad):
  with pytest.raises(ValueError, match=r"^adam: b2 must be in \[0, 1\), got "):
    gtx.adam(0.1, b2=bad)


def test_message_of_the_docs():
  with pytest.raises(ValueError, match=r"^adam: b2 must be in \[0, 1\), got 1.5$"):
    gtx.adam(1e-3, b2=1.5)


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_inject_hyperparams_reports_with_the_factory_name(name):
  kwargs = valid_kwargs(name)
  param = "momentum" if name == "sgd" else "decay" if name == "rmsprop" else "b1"
  with pytest.raises(ValueError, match=f"^{name}: {param} must be in "):
    gtx.inject_hyperparams(getattr(gtx, name))(**{**kwargs, param: -1.0})


@pytest.mark.parametrize("name", ["scale_by_rprop", "rprop"])
def test_rprop_step_size_bounds_must_be_ordered(name):
  with pytest.raises(ValueError, match=f"^{name}: min_step_size must be <= max_step_size"):
    getattr(gtx, name)(0.1, min_step_size=2.0, max_step_size=1.0)


@pytest.mark.parametrize("make", [lambda **kw: gtx.scale_by_rms(**kw),
                                  lambda **kw: gtx.rmsprop(0.1, **kw)],
                         ids=["scale_by_rms", "rmsprop"])
def test_bias_corrected_rms_needs_decay_below_one(make):
  # 1 - decay**t is 0 for decay=1: the bias correction would divide by zero.
  make(decay=1.0)
  with pytest.raises(ValueError, match=r"decay must be in \[0, 1\), got 1.0"):
    make(decay=1.0, bias_correction=True)


def test_scale_by_schedule_needs_a_callable():
  with pytest.raises(ValueError, match="^scale_by_schedule: step_size_fn must be callable"):
    gtx.scale_by_schedule(0.1)


# --- schedules and traced values ---------------------------------------------------------


def _params():
  return {"w": jnp.asarray([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]),
          "b": jnp.asarray([0.125, -0.5, 1.0])}


def _value_fn(params):
  return sum(jnp.sum(jnp.sin(3.0 * p)) for p in jax.tree.leaves(params)) / 3.0 + 1.0


def _two_steps(tx):
  """Two updates on fixed gradients; the updates of both steps."""
  params = _params()
  grads = [jax.tree.map(lambda p: jnp.cos(3.0 * p + k), params) for k in (0, 1)]
  state = tx.init(params)
  emitted = []
  for g in grads:
    # value=: the loss, for reduce_on_plateau (the others ignore it). Constant: the first
    # step improves on it, the second does not. grad= and value_fn=: for line searches.
    updates, state = tx.update(g, state, params, value=jnp.asarray(1.0), grad=g,
                               value_fn=_value_fn)
    emitted.append(updates)
  return emitted


def _assert_close(actual, expected, rtol):
  for x, y in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-7)


SCHEDULABLE = [(name, param) for name, (_, spec) in SPECS.items()
               for param, (_, interval) in spec.items()
               if isinstance(interval, str) or param == "every_k"]


@pytest.mark.parametrize("case", SCHEDULABLE, ids=map(_id, SCHEDULABLE))
def test_schedules_are_accepted_unchecked(case):
  name, param = case
  # Out of range at step 0 is not an error: schedules are not checked at construction.
  unchecked = {**valid_kwargs(name), param: lambda count: jnp.asarray(-7.0)}
  assert isinstance(getattr(gtx, name)(**unchecked), gtx.GradientTransformation)


@functools.lru_cache(maxsize=None)
def _reference_steps(name):
  """``_two_steps`` of ``name`` built with the valid numbers, eagerly: the oracle of both
  tests below, computed once per constructor (they run in one xdist group)."""
  return _two_steps(getattr(gtx, name)(**valid_kwargs(name)))


def _grouped(names):
  """``names`` as parameters, each in the xdist group of its constructor, so that the
  tests sharing :func:`_reference_steps` run on one worker (``--dist loadgroup``)."""
  return [pytest.param(n, id=n, marks=pytest.mark.xdist_group(f"validation:{n}"))
          for n in names]


@pytest.mark.parametrize("name", _grouped(sorted({name for name, _ in SCHEDULABLE})))
def test_constant_schedules_give_the_constants_steps(name):
  # Every schedulable hyperparameter at once as a constant schedule: the same steps.
  kwargs = valid_kwargs(name)
  scheduled = {**kwargs, **{param: (lambda count, value=kwargs[param]: jnp.full([], value))
                            for n, param in SCHEDULABLE if n == name}}
  _assert_close(_two_steps(getattr(gtx, name)(**scheduled)), _reference_steps(name),
                rtol=1e-6)


@pytest.mark.parametrize("name", _grouped(SPECS))
def test_constructor_inside_jit_with_traced_hyperparameters(name):
  fixed, spec = SPECS[name]
  fixed = {**fixed, **{k: value for k, (value, _) in spec.items() if (name, k) in STATIC}}
  numbers = {k: value for k, (value, _) in spec.items() if (name, k) not in STATIC}
  assert {**fixed, **numbers} == valid_kwargs(name)  # what _reference_steps was built with

  @jax.jit
  def build_and_run(traced):
    return _two_steps(getattr(gtx, name)(**fixed, **traced))

  # Every hyperparameter traced; no ValueError, and the same steps as with numbers.
  _assert_close(build_and_run(numbers), _reference_steps(name), rtol=1e-6)


def test_constructor_inside_vmap_over_learning_rates():
  rates = jnp.asarray([0.0, 0.125, 0.5])
  batched = jax.vmap(lambda lr: _two_steps(gtx.adam(lr, b1=0.75)))(rates)
  for i, lr in enumerate([0.0, 0.125, 0.5]):
    _assert_close(jax.tree.map(lambda x: x[i], batched), _two_steps(gtx.adam(lr, b1=0.75)),
                  rtol=1e-6)


def test_traced_out_of_range_values_are_not_checked():
  # Inside jit a value cannot be inspected; construction must not fail (or concretise).
  jax.jit(lambda b2: _two_steps(gtx.adam(0.1, b2=b2)))(jnp.asarray(1.5))


# --- types: a value of the wrong type is a TypeError at construction ----------------------

# One wrong-typed value per kind: a string, a list, an array that is not a scalar.
WRONG_TYPES = {"str": "0.5", "list": [0.5], "vector": np.full(2, 0.5)}
TYPE_CASES = [(name, param, kind)
              for name, (_, spec) in SPECS.items()
              for param, (_, interval) in spec.items() if isinstance(interval, str)
              for kind in WRONG_TYPES]


@pytest.mark.parametrize("case", TYPE_CASES, ids=map(_id, TYPE_CASES))
def test_wrong_type_raises_a_type_error_naming_constructor_and_parameter(case):
  name, param, kind = case
  with pytest.raises(TypeError, match=f"^{re.escape(name)}: {param} must be a real number"):
    getattr(gtx, name)(**{**valid_kwargs(name), param: WRONG_TYPES[kind]})


@pytest.mark.parametrize("bad", ["3", 2.5, [3]], ids=["str", "float", "list"])
def test_wrong_type_for_a_count_is_a_type_error(bad):
  with pytest.raises(TypeError, match="^lookahead: sync_period must be an integer >= 1"):
    gtx.lookahead(gtx.sgd(0.1), sync_period=bad)


def test_a_keyword_mistake_keeps_the_function_name():
  with pytest.raises(TypeError, match=r"^adam: unexpected keyword argument 'lr'; adam takes "
                     r"\(learning_rate, b1"):
    gtx.adam(lr=1e-3)
  with pytest.raises(TypeError, match=r"^adam: missing a required argument: 'learning_rate'"):
    gtx.adam()


def test_flags_and_dtypes_are_checked():
  with pytest.raises(TypeError, match="^adam: nesterov must be True or False"):
    gtx.adam(0.1, nesterov="yes")
  with pytest.raises(TypeError, match="^scale_by_adam: mu_dtype must be a dtype"):
    gtx.scale_by_adam(mu_dtype="not a dtype")


@pytest.mark.parametrize("build", [
    lambda: gtx.chain(gtx.clip(1.0), gtx.adam),
    lambda: gtx.named_chain(("adam", gtx.adam)),
    lambda: gtx.masked(gtx.adam, {"w": True}),
    lambda: gtx.partition({"a": gtx.adam}, {"w": "a"}),
    lambda: gtx.multiply(gtx.adam, gtx.sgd(0.1)),
    lambda: gtx.lookahead(gtx.adam),
    lambda: gtx.apply_if_finite(gtx.adam, 3),
    lambda: gtx.accumulate_gradients(gtx.adam, 2),
    lambda: gtx.flatten(gtx.adam),
], ids=["chain", "named_chain", "masked", "partition", "multiply", "lookahead",
        "apply_if_finite", "accumulate_gradients", "flatten"])
def test_a_factory_passed_uncalled_is_caught_at_construction_with_a_hint(build):
  with pytest.raises(TypeError, match=r"the function adam; call it first, e.g. adam\(\.\.\.\)"):
    build()


def test_a_non_transform_member_is_caught_at_construction():
  with pytest.raises(TypeError, match=r"^chain: argument 2 must be a gradient transformation"):
    gtx.chain(gtx.clip(1.0), 0.1)
  with pytest.raises(TypeError, match=r"^partition: transforms must be a dict"):
    gtx.partition([gtx.adam(0.1)], {"w": 0})
