"""Properties every public transform must have, checked over a registry of all of them.

The protocol every transform promises: pure functions that give the same numbers under
``jit``, ``vmap`` and ``lax.scan`` as eagerly, that can be differentiated through, whose
state is a pytree of arrays that survives a checkpoint, that keep the params' dtype, and
that report a gradient tree that does not match their state.

Oracles: the transform itself, eagerly (for jit) or in a Python loop of jitted steps
(for vmap, scan and the checkpoint round trip); a central finite difference in float64
(for ``jax.grad``); the same step on float32 params (for bfloat16 params).

Runtime is dominated by compilation: each transform's jitted ``update`` is compiled once
and shared, and the trees are small.
"""

import functools
import inspect

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gtx
from conftest import loss

LR = 0.1
sched = gtx.exponential_decay(0.1, 1, 0.9)


def _by_path(fn):
  """A mask/label function of the tree paths, so that it works on any tree, and on
  batched leaves under ``vmap`` (unlike one that looks at ``ndim``)."""
  return lambda tree: jax.tree_util.tree_map_with_path(
      lambda path, _: fn(jax.tree_util.keystr(path)), tree)


not_scalar = _by_path(lambda path: "scalar" not in path)
group = _by_path(lambda path: "sgd" if "nested" in path else "adam")
adam_direction = lambda: gtx.chain(gtx.add_momentum(0.9, ema=True),  # noqa: E731
                                   gtx.bias_correction(0.9))

def _fed_the_loss(tx):
  """``tx`` given ``value=loss(params)`` at every update, as a training loop would."""

  def update(updates, state, params=None, **extra_args):
    return tx.update(updates, state, params, **{"value": loss(params), **extra_args})

  return gtx.GradientTransformation(tx.init, update)


def _given_the_loss(tx):
  """``tx`` given ``value=``, ``grad=`` and ``value_fn=`` at every update, as a full-batch
  loop (``gtx.minimize``) does."""

  def update(updates, state, params=None, **extra_args):
    value, grad = jax.value_and_grad(loss)(params)
    return tx.update(updates, state, params,
                     **{"value": value, "grad": grad, "value_fn": loss, **extra_args})

  return gtx.GradientTransformation(tx.init, update)


# name -> factory; the part of the name before "/" is the public constructor under test.
# One entry per constructor, a second only where it takes another code path. Every entry
# costs a few compilations, so variants that only change numbers belong in the oracles.
TRANSFORMS = {
    "identity": gtx.identity,
    "set_to_zero": gtx.set_to_zero,
    "stateless": lambda: gtx.stateless(
        lambda u, p: jax.tree.map(lambda g, x: g + 0.1 * x, u, p)),
    "scale": lambda: gtx.scale(-LR),
    "scale_by_learning_rate/schedule": lambda: gtx.scale_by_learning_rate(sched),
    "scale_by_schedule": lambda: gtx.scale_by_schedule(sched),
    "add_decayed_weights/schedule_mask": lambda: gtx.add_decayed_weights(sched, not_scalar),
    "add_momentum/nesterov_ema": lambda: gtx.add_momentum(0.8, nesterov=True, ema=True),
    "bias_correction": adam_direction,
    "scale_by_rss/zero_init": lambda: gtx.scale_by_rss(0.0),
    "scale_by_rms/variants": lambda: gtx.scale_by_rms(0.9, 1e-6, 0.1, eps_in_sqrt=False,
                                                      bias_correction=True),
    "scale_by_stddev": lambda: gtx.scale_by_stddev(),
    "scale_by_adadelta": lambda: gtx.scale_by_adadelta(),
    "scale_by_adam": lambda: gtx.scale_by_adam(),
    "scale_by_amsgrad": lambda: gtx.scale_by_amsgrad(),
    "scale_by_adamax": lambda: gtx.scale_by_adamax(),
    "adaptive_step_size": lambda: gtx.adaptive_step_size(),
    "multiply": lambda: gtx.multiply(adam_direction(), gtx.adaptive_step_size(eps_root=1e-8)),
    # b2=0.9, threshold=4.5: the rectified branch is taken from step 5, within the tests
    # that run 5 steps (jit, scan).
    "rectify": lambda: gtx.multiply(adam_direction(), gtx.chain(
        gtx.adaptive_step_size(0.9), gtx.rectify(0.9, 4.5))),
    "scale_by_radam/rectified": lambda: gtx.scale_by_radam(0.9, 0.9, threshold=4.5),
    "scale_by_rprop": lambda: gtx.scale_by_rprop(LR),
    "adabound_step_size/amsbound": lambda: gtx.adabound_step_size(0.9, amsbound=True),
    # AdaBound's chain with both bounds replaced by schedules; the step size leaves them.
    "clip_bounds/schedules": lambda: gtx.multiply(gtx.add_momentum(0.9, ema=True), gtx.chain(
        gtx.adabound_step_size(0.9), gtx.bias_correction(0.9), gtx.scale(LR),
        gtx.clip_bounds(lower=lambda count: 0.05 * (1 - 0.5**(count + 1)), upper=sched))),
    "scale_by_local_gain": lambda: gtx.scale_by_local_gain(),
    "centralize": gtx.centralize,
    "clip": lambda: gtx.clip(0.5),
    "clip_by_global_norm": lambda: gtx.clip_by_global_norm(1.0),
    "chain": lambda: gtx.chain(gtx.clip(2.0), gtx.scale_by_adam(), gtx.scale(-LR)),
    "named_chain": lambda: gtx.named_chain(("clip", gtx.clip_by_global_norm(1.0)),
                                           ("adam", gtx.adam(LR))),
    "masked": lambda: gtx.masked(gtx.adam(LR), not_scalar),
    "partition": lambda: gtx.partition({"adam": gtx.adam(LR),
                                        "sgd": gtx.sgd(LR, momentum=0.9)}, group),
    "sgd/nesterov_schedule": lambda: gtx.sgd(sched, momentum=0.9, nesterov=True),
    "adagrad": lambda: gtx.adagrad(LR),
    # initial_scale > 0: with 0, the bias-corrected centred variance of step 1 is
    # g**2 - g**2, rounding noise, and the step is ill-conditioned (as in Optax).
    "rmsprop/centered_momentum": lambda: gtx.rmsprop(LR, centered=True, initial_scale=0.1,
                                                     momentum=0.9, nesterov=True,
                                                     bias_correction=True),
    "adadelta/weight_decay": lambda: gtx.adadelta(1.0, weight_decay=0.1),
    "adam": lambda: gtx.adam(LR),
    "adam/schedule_b2": lambda: gtx.adam(LR, b2=lambda count: 0.99 - 0.09 * 0.5**count),
    "adamw/mask": lambda: gtx.adamw(LR, weight_decay=0.1, mask=not_scalar),
    "adamax": lambda: gtx.adamax(LR),
    "nadam": lambda: gtx.nadam(LR),
    "amsgrad": lambda: gtx.amsgrad(LR),
    "radam": lambda: gtx.radam(LR),
    "adabound": lambda: gtx.adabound(LR, final_lr=0.05, gamma=0.1),
    "amsbound/schedule_weight_decay": lambda: gtx.amsbound(sched, b2=0.9, gamma=0.1,
                                                           weight_decay=0.1),
    "delta_bar_delta": lambda: gtx.delta_bar_delta(LR),
    "swats": lambda: gtx.swats(LR),
    # switch_tol=inf: the switch criterion holds at step 2, so the SGD phase runs from
    # step 3, within the tests that run 3 or 5 steps (grad, jit, scan).
    "swats/switched": lambda: gtx.swats(LR, switch_tol=float("inf")),
    # sync_period=2: the slow weights move on steps 2 and 4 of the 5-step tests.
    "lookahead": lambda: gtx.lookahead(gtx.adam(LR), sync_period=2),
    # b2=0.9, threshold=4.5: rectified from step 5; weight decay and a sync on step 2.
    "ranger": lambda: gtx.ranger(LR, b2=0.9, threshold=4.5, sync_period=2,
                                 weight_decay=0.1),
    "rprop": lambda: gtx.rprop(LR),
    "apply_if_finite": lambda: gtx.apply_if_finite(gtx.adam(LR), 2),
    "accumulate_gradients": lambda: gtx.accumulate_gradients(gtx.sgd(LR, momentum=0.9), 2),
    "inject_hyperparams": lambda: gtx.inject_hyperparams(gtx.adam)(learning_rate=sched),
    # atol=1e3: only the first loss improves, so the scale halves from the 2nd step on.
    "reduce_on_plateau": lambda: _fed_the_loss(gtx.reduce_on_plateau(0.5, patience=1,
                                                                      atol=1e3)),
    "flatten": lambda: gtx.flatten(gtx.chain(gtx.clip_by_global_norm(1.0),
                                             gtx.adamw(LR, weight_decay=0.1))),
    "scale_by_backtracking_linesearch": lambda: _given_the_loss(gtx.chain(
        gtx.scale(-1.0), gtx.scale_by_backtracking_linesearch(10, store_grad=True))),
    "scale_by_zoom_linesearch": lambda: _given_the_loss(gtx.chain(
        gtx.scale(-1.0), gtx.scale_by_zoom_linesearch(10))),
    "scale_by_more_thuente_linesearch": lambda: _given_the_loss(gtx.chain(
        gtx.scale(-1.0), gtx.scale_by_more_thuente_linesearch(
            10, initial_guess_strategy="keep"))),
    "scale_by_lbfgs": lambda: gtx.scale_by_lbfgs(3),
    "lbfgs": lambda: _given_the_loss(gtx.lbfgs(memory_size=3)),
    "scale_by_newton": lambda: _given_the_loss(gtx.scale_by_newton()),
    "newton": lambda: _given_the_loss(gtx.newton()),
    # cg_max_iters=3: with 5, the CG step taken without a line search leads (float32,
    # non-convex loss) to a point where vmap's rounding differs by 1.1e-4 relative.
    "scale_by_hessian_free": lambda: _given_the_loss(gtx.scale_by_hessian_free(cg_max_iters=3)),
    "hessian_free": lambda: _given_the_loss(gtx.hessian_free(cg_max_iters=5)),
    "learned.lstm_optimizer": lambda: gtx.learned.lstm_optimizer(
        gtx.learned.pretrained("quadratic")),
    # --- issue 17-losses: add entries below this line ---
    # --- issue 17-schedules: add entries below this line ---
    # A plain schedule (wrapped) for the learning rate, a WrappedSchedule for b1.
    "inject_stateful_hyperparams": lambda: gtx.inject_stateful_hyperparams(gtx.adam)(
        learning_rate=sched, b1=gtx.WrappedSchedule(lambda count: 0.9 - 0.4 * 0.5**count)),
    # --- issue 17-optimizers-a: add entries below this line ---
    "scale_by_lion/smooth": lambda: gtx.scale_by_lion(mode="smooth", smooth_beta=2.0),
    "lion/mask": lambda: gtx.lion(LR, weight_decay=0.1, mask=not_scalar),
    "scale_by_sign": gtx.scale_by_sign,
    "sign_sgd": lambda: gtx.sign_sgd(LR),
    "signum": lambda: gtx.signum(LR),
    "scale_by_belief/nesterov": lambda: gtx.scale_by_belief(nesterov=True),
    "adabelief": lambda: gtx.adabelief(LR),
    "scale_by_yogi": lambda: gtx.scale_by_yogi(),
    "yogi": lambda: gtx.yogi(LR),
    "nadamw/mask": lambda: gtx.nadamw(LR, weight_decay=0.1, mask=not_scalar),
    "adamaxw": lambda: gtx.adamaxw(LR),
    "scale_by_adan": lambda: gtx.scale_by_adan(),
    "adan/weight_decay": lambda: gtx.adan(LR, weight_decay=0.1),
    "scale_by_novograd/weight_decay": lambda: gtx.scale_by_novograd(weight_decay=0.1),
    "novograd": lambda: gtx.novograd(LR),
    "add_noise": lambda: gtx.add_noise(0.01, 0.55, key=0),
    "noisy_sgd": lambda: gtx.noisy_sgd(LR, key=0),
    "scale_by_optimistic_gradient": lambda: gtx.scale_by_optimistic_gradient(0.5, 2.0),
    "optimistic_gradient_descent": lambda: gtx.optimistic_gradient_descent(LR),
    "optimistic_adam": lambda: gtx.optimistic_adam(LR),
    "optimistic_adam_v2": lambda: gtx.optimistic_adam_v2(LR),
    # --- issue 17-optimizers-b: add entries below this line ---
    "scale_by_trust_ratio": lambda: gtx.scale_by_trust_ratio(),
    "scale_by_param_block_norm": lambda: gtx.scale_by_param_block_norm(),
    "scale_by_param_block_rms": lambda: gtx.scale_by_param_block_rms(),
    "normalize_by_update_norm": lambda: gtx.normalize_by_update_norm(-LR),
    "lamb/mask": lambda: gtx.lamb(LR, weight_decay=0.1, mask=not_scalar),
    "lars/masks_nesterov": lambda: gtx.lars(LR, weight_decay=0.1,
                                            weight_decay_mask=not_scalar,
                                            trust_ratio_mask=not_scalar, nesterov=True),
    "fromage": lambda: gtx.fromage(LR),
    "scale_by_sm3": lambda: gtx.scale_by_sm3(),
    "sm3": lambda: gtx.sm3(LR),
    # min_dim_size_to_factor=2: the (2, 3) matrix is factored, the scalar is not.
    "scale_by_factored_rms/factored": lambda: gtx.scale_by_factored_rms(
        min_dim_size_to_factor=2),
    # dtype_momentum=None: the momentum in the params' dtype (float64 with float64 params).
    "adafactor/momentum_decay": lambda: gtx.adafactor(
        LR, min_dim_size_to_factor=2, momentum=0.9, dtype_momentum=None,
        weight_decay_rate=0.1, weight_decay_mask=not_scalar),
    "scale_by_polyak": lambda: _fed_the_loss(gtx.scale_by_polyak(max_learning_rate=LR)),
    "polyak_sgd/sps+": lambda: _fed_the_loss(gtx.polyak_sgd(LR, variant="sps+")),
    # param_dtype=None: the initial params kept in their own dtype.
    "scale_by_distance_over_gradients": lambda: gtx.scale_by_distance_over_gradients(
        reps_rel=1e-2, param_dtype=None, global_scale=-1.0),
    "clip_by_block_rms": lambda: gtx.clip_by_block_rms(0.5),
    "adaptive_grad_clip": lambda: gtx.adaptive_grad_clip(0.1),
    # --- issue 17-transforms: add entries below this line ---
    "conditionally_mask": lambda: gtx.conditionally_mask(gtx.adam(LR),
                                                         lambda step: step % 2 == 0),
    "conditionally_transform": lambda: gtx.chain(gtx.conditionally_transform(
        gtx.scale_by_adam(), lambda step: step % 2 == 1), gtx.scale(-LR)),
    "keep_params_nonnegative": lambda: gtx.chain(gtx.sgd(LR),
                                                 gtx.keep_params_nonnegative()),
    "zero_nans": lambda: gtx.chain(gtx.zero_nans(), gtx.sgd(LR)),
    "ema": lambda: gtx.chain(gtx.ema(0.9), gtx.scale(-LR)),
    "trace/nesterov": lambda: gtx.chain(gtx.trace(0.9, nesterov=True), gtx.scale(-LR)),
    "apply_every": lambda: gtx.chain(gtx.sgd(LR), gtx.apply_every(2)),
    # accumulator_dtype=None (the params' dtype or float32): the default float32, Optax's,
    # keeps float64 params' running mean in float32, which the float64 test rejects.
    "MultiSteps": lambda: gtx.MultiSteps(gtx.sgd(LR, momentum=0.9), 2,
                                         accumulator_dtype=None).gradient_transformation(),
    # sgd, not adam: Adam's sqrt(nu) of the frozen params' zero updates has no derivative.
    "freeze": lambda: gtx.chain(gtx.freeze(not_scalar), gtx.sgd(LR, momentum=0.9)),
    "selective_transform": lambda: gtx.selective_transform(
        gtx.adam(LR), freeze_mask=_by_path(lambda path: "scalar" in path)),
    "snapshot": lambda: gtx.chain(gtx.snapshot("norm", gtx.global_norm), gtx.sgd(LR)),
    "monitor": lambda: gtx.chain(gtx.monitor({"norm": gtx.global_norm}), gtx.sgd(LR)),
    "measure_with_ema/monitored": lambda: gtx.chain(gtx.monitor({
        "clipped": gtx.measure_with_ema(lambda u: gtx.global_norm(u) > 1.0, 0.9)}),
        gtx.sgd(LR)),
    # --- issue 17-toplevel: add entries below this line ---
    "stateless_with_tree_map": lambda: gtx.stateless_with_tree_map(lambda u, p: u + 0.1 * p),
    # An update without **extra_args, given them by the wrapper and ignoring them.
    "with_extra_args_support": lambda: (lambda tx: gtx.with_extra_args_support(
        gtx.GradientTransformation(tx.init, lambda u, s, p=None: tx.update(u, s, p))))(
            gtx.adam(LR)),
    "multi_transform": lambda: gtx.multi_transform({"adam": gtx.sgd(LR),
                                                    "sgd": gtx.set_to_zero()}, group),
    # --- issue 17-contrib-a: add entries below this line ---
    # Muon for the 2-D leaves only (None: passed through), Adam's job in muon.
    "scale_by_muon": lambda: gtx.chain(gtx.contrib.scale_by_muon(
        weight_dimension_numbers=lambda u: jax.tree.map(
            lambda x: gtx.contrib.MuonDimensionNumbers() if jnp.ndim(x) == 2 else None, u)),
        gtx.scale(-LR)),
    "muon": lambda: gtx.contrib.muon(LR),
    "schedule_free": lambda: gtx.contrib.schedule_free(gtx.adam(LR, b1=0.0), LR),
    "schedule_free_sgd": lambda: gtx.contrib.schedule_free_sgd(LR, warmup_steps=2,
                                                               weight_decay=0.1),
    "schedule_free_adamw": lambda: gtx.contrib.schedule_free_adamw(LR),
    "prodigy": lambda: gtx.contrib.prodigy(),
    "dadapt_adamw": lambda: gtx.contrib.dadapt_adamw(),
    "dog": lambda: gtx.contrib.dog(),
    "dowg": lambda: gtx.contrib.dowg(),
    "scale_by_cocob": lambda: gtx.contrib.scale_by_cocob(),
    "cocob": lambda: gtx.contrib.cocob(weight_decay=0.1),
    "mechanize": lambda: gtx.contrib.mechanize(gtx.sgd(LR, momentum=0.9)),
    # --- issue 17-contrib-b: add entries below this line ---
    "momo/adapt_lower_bound": lambda: _fed_the_loss(gtx.contrib.momo(
        weight_decay=0.1, adapt_lower_bound=True)),
    "momo_adam": lambda: _fed_the_loss(gtx.contrib.momo_adam(LR)),
    "scale_by_madgrad": lambda: gtx.contrib.scale_by_madgrad(LR),
    "madgrad/weight_decay": lambda: gtx.contrib.madgrad(LR, weight_decay=0.1),
    # --- issue 17-contrib-c: add entries below this line ---
    # The paper's SAM (the adversary normalised by normalize_by_update_norm, finite at a
    # zero gradient); sync_period=2: outer steps on steps 2 and 4 of the 5-step tests.
    "sam": lambda: gtx.contrib.sam(gtx.sgd(LR, momentum=0.9), gtx.chain(
        gtx.normalize_by_update_norm(), gtx.sgd(0.05))),
    # Opaque mode: two adversarial steps inside each update, from grad_fn.
    "sam/opaque": lambda: (lambda tx: gtx.GradientTransformation(
        tx.init, lambda u, s, p=None, **kw: tx.update(
            u, s, p, grad_fn=lambda q, i: jax.grad(loss)(q), **kw)))(gtx.contrib.sam(
                gtx.sgd(LR, momentum=0.9), gtx.chain(gtx.normalize_by_update_norm(),
                                                     gtx.sgd(0.05)),
                sync_period=3, opaque_mode=True)),
    # Given obj_fn=loss, as a training loop would; the Hessian refreshed on steps 1, 3, 5.
    "sophia": lambda: (lambda tx: gtx.GradientTransformation(
        tx.init, lambda u, s, p=None, **kw: tx.update(u, s, p, obj_fn=loss, **kw)))(
            gtx.contrib.sophia(LR, update_interval=2)),
    "hutchinson_estimator_diag_hessian": lambda: (lambda tx: gtx.GradientTransformation(
        tx.init, lambda u, s, p=None, **kw: tx.update(u, s, p, obj_fn=loss, **kw)))(
            gtx.chain(gtx.contrib.hutchinson_estimator_diag_hessian(), gtx.scale(-0.01))),
    # --- issue 17-contrib-d: add entries below this line ---
    "scale_by_adopt": lambda: gtx.chain(gtx.contrib.scale_by_adopt(), gtx.scale(-LR)),
    "adopt/nesterov": lambda: gtx.contrib.adopt(LR, nesterov=True),
    "scale_by_ademamix": lambda: gtx.chain(gtx.contrib.scale_by_ademamix(), gtx.scale(-LR)),
    # b3 and alpha as schedules of count_m2; the decay masked.
    "ademamix/schedules": lambda: gtx.contrib.ademamix(
        LR, b3=lambda count: 0.99 - 0.5 * 0.9**count, alpha=lambda count: 0.5 * count,
        weight_decay=0.1, mask=not_scalar),
    "scale_by_simplified_ademamix": lambda: gtx.chain(
        gtx.contrib.scale_by_simplified_ademamix(alpha=sched), gtx.scale(-LR)),
    "simplified_ademamix": lambda: gtx.contrib.simplified_ademamix(LR, alpha=2.0,
                                                                   weight_decay=0.1),
    "scale_by_acprop": lambda: gtx.chain(gtx.contrib.scale_by_acprop(), gtx.scale(-LR)),
    "acprop": lambda: gtx.contrib.acprop(LR, weight_decay=0.1),
    # --- issue 17-contrib-e: add entries below this line ---
    # rank 1 of the (2, 3) matrix: projected on the right; the projector is recomputed
    # at steps 1, 3 and 5 of the 5-step tests.
    "scale_by_galore": lambda: gtx.chain(gtx.contrib.scale_by_galore(
        rank=1, update_proj_gap=2), gtx.scale(-LR)),
    "galore": lambda: gtx.contrib.galore(LR, weight_decay=0.1, mask=not_scalar),
    # Per-example gradients: each update is given as a batch of three examples (g,
    # -g/2, 2g), some clipped and some not; the noise's key is in the state.
    "dpsgd": lambda: (lambda tx: gtx.GradientTransformation(
        tx.init, lambda u, s, p=None, **kw: tx.update(
            jax.tree.map(lambda g: jnp.stack([g, -0.5 * g, 2.0 * g]), u), s, p, **kw)))(
        gtx.contrib.dpsgd(LR, l2_norm_clip=2.0, noise_multiplier=0.1, seed=0,
                          momentum=0.9)),
    "differentially_private_aggregate": lambda: (lambda tx: gtx.GradientTransformation(
        tx.init, lambda u, s, p=None, **kw: tx.update(
            jax.tree.map(lambda g: jnp.stack([g, -0.5 * g, 2.0 * g]), u), s, p, **kw)))(
        gtx.chain(gtx.contrib.differentially_private_aggregate(2.0, 0.1, key=1),
                  gtx.scale(-LR))),
    "normalize": lambda: gtx.chain(gtx.contrib.normalize(), gtx.scale(-LR)),
    "split_real_and_imaginary": lambda: gtx.contrib.split_real_and_imaginary(gtx.adam(LR)),
    # --- issue 17-torch: add entries below this line ---
    # t0 small enough that the averages start within the 5-step tests.
    "asgd": lambda: gtx.asgd(LR, lambd=0.1, t0=1.0, weight_decay=0.1),
    "scale_by_asgd": lambda: gtx.scale_by_asgd(LR, t0=1.5),
    "average_params": lambda: gtx.average_params(gtx.sgd(LR, momentum=0.9), start_step=1),
    "average_params/ema": lambda: gtx.average_params(gtx.adam(LR), decay=0.5, every=2),
    # --- issue 17-submodules: add entries below this line ---
    # gtx.experimental.aggregating's transforms of param-shaped updates (its aggregators
    # take per-example updates, tested in test_aggregating.py).
    "accumulate_avg_updates": lambda: gtx.experimental.aggregating.accumulate_avg_updates(2),
    "aggregating.process": lambda: gtx.experimental.aggregating.process(
        gtx.identity(), gtx.experimental.aggregating.accumulate_avg_updates(2), gtx.adam(LR)),
    # --- issue 18-pack: add entries below this line ---
    # pack and unpack are not transforms; their entries run packed updates through every
    # property test, packed inside the step by flatten: per-leaf views for centralize, the
    # trust ratio and a mask that cuts through a buffer, Adam's moments on the buffers.
    "pack/per_leaf_views": lambda: gtx.flatten(gtx.chain(gtx.centralize(), gtx.lamb(
        LR, weight_decay=0.1, mask=not_scalar))),
    "unpack/partition": lambda: gtx.flatten(gtx.partition(
        {"adam": gtx.adam(LR), "sgd": gtx.sgd(LR, momentum=0.9)}, group)),
    # --- issue 19-diloco: add entries below this line ---
    # Two replicas on a leading axis (axis_name=None), H=2 (the 5-step tests sync twice):
    # replica 0 gets the test's params and gradients, replica 1 the same params and the
    # gradients times -1/2 (other data); replica 0's updates come back.
    **(lambda on_two_replicas: {
        "diloco": lambda: on_two_replicas(gtx.diloco(
            gtx.adamw(LR, weight_decay=0.1), gtx.sgd(0.7, momentum=0.9, nesterov=True), 2,
            None)),
        "local_sgd": lambda: on_two_replicas(gtx.local_sgd(gtx.sgd(LR, momentum=0.9), 2,
                                                           None)),
    })(lambda tx: gtx.GradientTransformation(
        lambda p: tx.init(jax.tree.map(lambda x: jnp.stack([x, x]), p)),
        lambda u, s, p=None, **kw: (lambda out, state: (
            jax.tree.map(lambda x: x[0], out), state))(*tx.update(
                jax.tree.map(lambda g: jnp.stack([g, -0.5 * g]), u), s,
                jax.tree.map(lambda x: jnp.stack([x, x]), p), **kw)))),
    # --- issue 19-probls: add entries below this line ---
    "probabilistic_linesearch": lambda: _given_the_loss(gtx.chain(
        gtx.scale(-1.0), gtx.probabilistic_linesearch())),
    # --- issue 18-pad: add entries below this line ---
}
# Searches and solver loops are lax.while_loops, which jax.grad cannot differentiate
# (in Optax neither).
NOT_DIFFERENTIABLE = {"scale_by_backtracking_linesearch", "scale_by_zoom_linesearch",
                      "scale_by_more_thuente_linesearch", "lbfgs", "scale_by_newton", "newton",
                      "scale_by_hessian_free", "hessian_free"}
# Transforms that evaluate the loss themselves: with bfloat16 params the loss is computed
# in bfloat16, so a float32 run of the same step is no oracle for their numbers.
EVALUATE_THE_LOSS = NOT_DIFFERENTIABLE
NAMES = list(TRANSFORMS)

# Public callables that are not transform constructors. reduce_on_plateau is a transform
# even though it lives with the schedules.
NOT_TRANSFORMS = {"apply_updates", "leafwise", "hyperparameters", "global_norm",
                  "value_and_grad_from_state", "minimize",
                  # --- issue 17: non-transform public functions below this line ---
                  "probabilistic_linesearch_variances",
                  "averaged_params",
                  "schedule_free_eval_params",
                  "init_empty_state", "incremental_update", "periodic_update",
                  "safe_increment", "safe_int32_increment", "safe_norm",
                  "safe_root_mean_squares", "scale_gradient", "matrix_inverse_pth_root",
                  "nnls", "power_iteration", "multi_normal", "update_moment",
                  "update_infinity_moment", "update_moment_per_elem_norm", "tree_map_params",
                  "per_example_global_norm_clip", "per_example_layer_norm_clip",
                  "skip_not_finite", "skip_large_updates", "microbatch",
                  "state_shardings",
                  *(set(gtx.schedules.__all__) - {"reduce_on_plateau"}),
                  *getattr(getattr(gtx, "losses", None), "__all__", ())}


def test_registry_covers_every_public_transform():
  public = {name for name, obj in vars(gtx).items()
            if inspect.isfunction(obj) and not name.startswith("_")}
  covered = {name.split("/")[0] for name in TRANSFORMS}
  assert public - NOT_TRANSFORMS - covered == set()


# --- helpers -----------------------------------------------------------------------------


def make_params(dtype=jnp.float32, seed=0):
  """A scalar and a nested matrix: two leaves, so that the ~45 transforms below compile
  quickly (the cost grows with the leaves), of the ranks transforms treat differently
  (centralize, global norms, masks on biases)."""
  rng = np.random.default_rng(seed)
  shapes = {"scalar": (), "nested": {"matrix": (2, 3)}}
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), dtype), shapes,
                      is_leaf=lambda x: isinstance(x, tuple))


STEPS = 5


@functools.lru_cache(maxsize=None)
def jitted(name):
  """The transform and its jitted ``update``, built and compiled once for all tests."""
  tx = TRANSFORMS[name]()
  return tx, jax.jit(tx.update)


def run(tx, params, steps, update=None):
  """``steps`` steps on ``conftest.loss``: per step, the inputs ``(grads, state, params)``
  given to ``update`` and the ``(updates, state)`` it returned; and the final params."""
  update = update or tx.update
  state = tx.init(params)
  inputs, outputs = [], []
  for _ in range(steps):
    inputs.append((jax.grad(loss)(params), state, params))
    updates, state = update(*inputs[-1])
    outputs.append((updates, state))
    params = gtx.apply_updates(params, updates)
  return inputs, outputs, params


@functools.lru_cache(maxsize=None)
def jitted_run(name):
  """``STEPS`` jitted steps, the oracle of the scan, checkpoint and state tests."""
  tx, update = jitted(name)
  return run(tx, make_params(), STEPS, update=update)


@functools.lru_cache(maxsize=None)
def eager_run(name):
  """Two eager steps of the shared transform, the oracle of the jit test; its first step
  (from ``init``) is the eager update of the state test."""
  tx, _ = jitted(name)
  return run(tx, make_params(), 2)


def assert_trees_close(actual, expected, rtol=1e-6, atol=1e-7, what=""):
  assert jax.tree.structure(actual) == jax.tree.structure(expected), what
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(actual),
                          jax.tree.leaves(expected), strict=True):
    where = f"{what} {jax.tree_util.keystr(path)}"
    assert jnp.asarray(x).dtype == jnp.asarray(y).dtype, where
    np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                               rtol=rtol, atol=atol, err_msg=where)


# Compiled and eager float32 code may round differently (fusion, pow), and Adam-type bias
# corrections amplify that: 1 - 0.999**t loses 3 digits to cancellation at t=1.
F32 = dict(rtol=1e-4, atol=1e-6)


def per_param_state(name):
  """Whether the state has leaves per param: it changes shape when the params do."""
  tx = TRANSFORMS[name]()
  params = make_params()
  more = {**params, "extra": jnp.zeros(2)}
  return jax.tree.structure(jax.eval_shape(tx.init, params)) != jax.tree.structure(
      jax.eval_shape(tx.init, more))


PER_PARAM = [name for name in NAMES if per_param_state(name)]


def _grouped(names):
  """``names`` as parameters, each in the xdist group of its transform: the tests that
  share a transform's compiled ``update`` (:func:`jitted`, :func:`jitted_run`) run on one
  worker with ``--dist loadgroup``, which compiles it once."""
  return [pytest.param(n, id=n, marks=pytest.mark.xdist_group(f"properties:{n}"))
          for n in names]


COMPILED = _grouped(NAMES)


def test_per_param_detection_is_not_vacuous():
  assert {"adam", "scale_by_rprop", "masked", "partition", "inject_hyperparams",
          "apply_if_finite", "accumulate_gradients"} <= set(PER_PARAM)
  assert not {"identity", "scale", "clip", "scale_by_schedule"} & set(PER_PARAM)


# --- (a) jit -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", COMPILED)
def test_jit_matches_eager(name):
  _, update = jitted(name)
  inputs, eager, _ = eager_run(name)
  for t, (step_inputs, expected) in enumerate(zip(inputs, eager), start=1):
    # Same inputs to both, so that rounding differences cannot build up over the steps.
    assert_trees_close(update(*step_inputs), expected, **F32, what=f"step {t}")


# --- (b) vmap ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", COMPILED)
def test_vmap_matches_python_loop(name):
  tx, update = jitted(name)
  members = [make_params(seed=s) for s in range(3)]
  batch = jax.tree.map(lambda *xs: jnp.stack(xs), *members)
  # Compiled, as users run it: eagerly, every batched primitive is compiled on its own.
  batched_update = jax.jit(jax.vmap(tx.update))
  state = jax.vmap(tx.init)(batch)
  for _ in range(2):
    updates, state = batched_update(jax.vmap(jax.grad(loss))(batch), state, batch)
    batch = gtx.apply_updates(batch, updates)
  for i, member in enumerate(members):
    _, alone, _ = run(tx, member, 2, update=update)
    pick = lambda tree: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
    assert_trees_close(pick((updates, state)), alone[-1], **F32, what=f"member {i}")


# --- (c) grad ----------------------------------------------------------------------------


def bowl(params):
  return sum(jnp.sum(1.5 * p**2 - jnp.cos(p) - p) for p in jax.tree.leaves(params))


def bowl_grad(params):
  """``jax.grad(bowl)``, written out: nested autodiff makes the test slower."""
  return jax.tree.map(lambda p: 3.0 * p + jnp.sin(p) - 1.0, params)


def unrolled_loss(tx, steps=3):
  """``bowl`` after ``steps`` steps of ``tx`` on it, as a function of the initial params."""

  def fn(params):
    state = tx.init(params)
    for _ in range(steps):
      updates, state = tx.update(bowl_grad(params), state, params)
      params = gtx.apply_updates(params, updates)
    return bowl(params)

  return fn


def assert_matches_finite_difference(fn, x, direction, h=1e-5, rtol=1e-5):
  """``<grad fn(x), direction>`` against a central difference along ``direction``, in
  float64: truncation error O(h**2), rounding error O(1e-16/h). Two compilations: the
  gradient, and ``fn`` once, called at both shifted points (tracing ``fn`` twice more into
  the gradient's one program compiled slower: a 23-transform sample took 40.4 s, against
  36.4 s so)."""
  grad = jax.jit(jax.grad(fn))(x)
  along = sum(jnp.vdot(g, d)
              for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
  value = jax.jit(fn)
  shifted = lambda s: jax.tree.map(lambda a, d: a + s * d, x, direction)  # noqa: E731
  central = (value(shifted(h)) - value(shifted(-h))) / (2 * h)
  for g in jax.tree.leaves(grad):
    assert jnp.isfinite(g).all(), grad
  np.testing.assert_allclose(float(along), float(central), rtol=rtol, atol=1e-9)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NOT_DIFFERENTIABLE])
def test_grad_through_three_steps_matches_finite_difference(name):
  with jax.enable_x64(True):
    tx = TRANSFORMS[name]()
    params = make_params(jnp.float64)
    direction = make_params(jnp.float64, seed=7)
    assert_matches_finite_difference(unrolled_loss(tx), params, direction)


@pytest.mark.parametrize("name", ["scale_by_amsgrad", "scale_by_adamax"])
def test_compiled_grad_through_a_running_max_matches_eager(name):
  """Running maxima (AMSGrad's nu_max, Adamax's nu) are where compiled and eager
  gradients can part: ``jnp.maximum``'s derivative tests ``x == max(x, y)``, which XLA may
  evaluate on a recomputed, differently rounded ``x``. One matrix leaf, 3 steps."""
  with jax.enable_x64(True):
    tx = TRANSFORMS[name]()

    def fn(x):
      state = tx.init(x)
      for _ in range(3):
        updates, state = tx.update(bowl_grad(x), state, x)
        x = x + updates
      return jnp.sum(x**2)

    x = make_params(jnp.float64)["nested"]["matrix"]
    np.testing.assert_allclose(jax.jit(jax.grad(fn))(x), jax.grad(fn)(x), rtol=1e-9)


# Hyperparameters as differentiable inputs, through inject_hyperparams: the constructor
# is called inside the differentiated function, so it also sees traced values.
HYPERPARAMETERS = {
    "adabound/final_lr": (gtx.adabound, dict(learning_rate=LR, gamma=0.1), "final_lr", 0.05),
    "adam/learning_rate": (gtx.adam, dict(learning_rate=LR), "learning_rate", LR),
    "adam/b1": (gtx.adam, dict(learning_rate=LR), "b1", 0.9),
    "sgd/momentum": (gtx.sgd, dict(learning_rate=LR, momentum=0.9), "momentum", 0.9),
    "rmsprop/decay": (gtx.rmsprop, dict(learning_rate=LR), "decay", 0.9),
    "radam/b2": (gtx.radam, dict(learning_rate=LR), "b2", 0.99),
}


@pytest.mark.parametrize("case", HYPERPARAMETERS)
def test_grad_wrt_injected_hyperparameter_matches_finite_difference(case):
  factory, kwargs, name, value = HYPERPARAMETERS[case]
  with jax.enable_x64(True):
    params = make_params(jnp.float64)

    def fn(x):
      tx = gtx.inject_hyperparams(factory)(**{**kwargs, name: x})
      return unrolled_loss(tx)(params)

    assert_matches_finite_difference(fn, jnp.asarray(value, jnp.float64),
                                     jnp.asarray(1.0, jnp.float64), h=1e-6)


# --- (d) scan ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", COMPILED)
def test_scan_matches_python_loop(name):
  tx, _ = jitted(name)
  params = make_params()

  def step(carry, _):
    params, state = carry
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return (gtx.apply_updates(params, updates), state), updates

  (scanned, scan_state), scan_updates = jax.lax.scan(step, (params, tx.init(params)),
                                                     length=STEPS)
  _, looped, looped_params = jitted_run(name)
  for t in range(STEPS):
    assert_trees_close(jax.tree.map(lambda x: x[t], scan_updates), looped[t][0], **F32,
                       what=f"step {t + 1}")
  assert_trees_close(scanned, looped_params, **F32, what="params")
  assert_trees_close(scan_state, looped[-1][1], **F32, what="state")


# --- (e) checkpoints ---------------------------------------------------------------------


@pytest.mark.parametrize("name", COMPILED)
def test_state_round_trips_through_flax_serialization(name):
  tx, update = jitted(name)
  inputs, _, _ = jitted_run(name)
  grads, state, params = inputs[2]  # the state after two steps
  template = tx.init(make_params(seed=1))
  restored = {
      "bytes": flax.serialization.from_bytes(template, flax.serialization.to_bytes(state)),
      "state_dict": flax.serialization.from_state_dict(
          template, flax.serialization.to_state_dict(state)),
  }
  expected = update(grads, state, params)
  for how, copy in restored.items():
    assert_trees_close(copy, state, rtol=0, atol=0, what=how)
    # The restored state carries on exactly where the saved one would have.
    assert_trees_close(update(grads, copy, params), expected, rtol=0, atol=0,
                       what=f"{how}, next step")


# --- (f) state is arrays -----------------------------------------------------------------


@pytest.mark.parametrize("name", COMPILED)
def test_state_is_a_pytree_of_arrays(name):
  inputs, outputs, _ = eager_run(name)
  state = inputs[0][1]  # init's
  _, eager = outputs[0]
  _, compiled = jitted_run(name)[1][-1]
  for what, tree in [("init", state), ("eager update", eager),
                     (f"{STEPS} jitted updates", compiled)]:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      assert isinstance(leaf, jax.Array), f"{what}: {jax.tree_util.keystr(path)} is {leaf!r}"
    # Same shapes and dtypes as init's, so that the state can be a scan/while carry.
    assert jax.tree.map(jax.typeof, tree) == jax.tree.map(jax.typeof, state), what


# --- (g) tree mismatch -------------------------------------------------------------------


def _mismatches(params):
  renamed = {("scalarr" if k == "scalar" else k): v for k, v in params.items()}
  return {"extra_leaf": {**params, "extra": jnp.zeros(2)}, "renamed_key": renamed,
          "missing_leaf": {k: v for k, v in params.items() if k != "scalar"}}


@pytest.mark.parametrize("mismatch", ["extra_leaf", "renamed_key", "missing_leaf"])
@pytest.mark.parametrize("name", PER_PARAM)
def test_tree_mismatch_names_both_structures(name, mismatch):
  tx = TRANSFORMS[name]()
  params = make_params()
  grads = _mismatches(jax.grad(loss)(params))[mismatch]
  with pytest.raises((ValueError, TypeError)) as info:
    tx.update(grads, tx.init(params), params)
  message = str(info.value)
  assert "tree structure" in message and "differ" in message, message
  assert str(jax.tree.structure(grads)) in message, message


# --- (h) dtypes --------------------------------------------------------------------------


def _as(dtype, tree):
  return jax.tree.map(lambda x: x.astype(dtype), tree)


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_params_give_bfloat16_updates(name):
  tx = TRANSFORMS[name]()
  params = make_params(jnp.bfloat16)
  state = tx.init(params)
  grads = jax.grad(loss)(params)
  updates, new_state = tx.update(grads, state, params)
  assert jax.tree.map(lambda u: u.dtype, updates) == jax.tree.map(lambda p: p.dtype, params)
  assert jax.tree.map(jax.typeof, new_state) == jax.tree.map(jax.typeof, state)
  if name in EVALUATE_THE_LOSS:
    return
  # Oracle: the same step on the same values in float32, rounded to bfloat16 at the end.
  # Within 2 bfloat16 ulps of the leaf's scale (a hyperparameter rounded to bfloat16,
  # b2=0.999 -> 1.0 say, is off by orders of magnitude).
  f32 = lambda tree: _as(jnp.float32, tree)  # noqa: E731
  reference, _ = tx.update(f32(grads), tx.init(f32(params)), f32(params))
  for (path, u), r in zip(jax.tree_util.tree_leaves_with_path(updates),
                          jax.tree.leaves(reference)):
    r = np.asarray(r.astype(jnp.bfloat16), np.float32)
    np.testing.assert_allclose(np.asarray(u, np.float32), r, rtol=2**-7,
                               atol=2**-7 * np.abs(r).max(),
                               err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("name", NAMES)
def test_float64_params_give_float64_updates_and_state(name):
  # Types only (no compilation): that the arithmetic is float64 too, not float32 widened,
  # is shown by the finite-difference test above, which float32 noise would fail.
  with jax.enable_x64(True):
    tx = TRANSFORMS[name]()
    params = make_params(jnp.float64)

    def two_steps(params):
      state = tx.init(params)
      for _ in range(2):
        updates, state = tx.update(bowl_grad(params), state, params)
        params = gtx.apply_updates(params, updates)
      return updates, state

    updates, state = jax.eval_shape(two_steps, params)
    assert jax.tree.map(lambda u: u.dtype, updates) == jax.tree.map(lambda p: p.dtype, params)
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
      if jnp.issubdtype(leaf.dtype, jnp.floating):
        assert leaf.dtype == jnp.float64, jax.tree_util.keystr(path)


# --- (i) zero gradients ------------------------------------------------------------------


@pytest.mark.parametrize("name", COMPILED)
def test_zero_gradients_do_not_produce_nan(name):
  tx, update = jitted(name)
  params = make_params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  for start in ("from init", "after a real step"):
    state = tx.init(params)
    if start == "after a real step":
      _, state = update(jax.grad(loss)(params), state, params)
    for t in range(3):
      updates, state = update(zeros, state, params)
      for what, tree in [("updates", updates), ("state", state)]:
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
          assert not jnp.isnan(leaf).any(), (
              f"{start}, zero step {t + 1}, {what}{jax.tree_util.keystr(path)}")
