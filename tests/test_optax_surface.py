"""The contract ``import gradtx as optax`` rests on, checked name by name against Optax
0.2.8 itself (introspection only, nothing is compiled).

For every public name gradtx shares with Optax, at the top level and in
``transforms``, ``schedules``, ``contrib``, ``tree_utils``, ``tree`` and ``losses``:

* a function's (or class's) parameters are Optax's, in Optax's order, with Optax's names,
  kinds and defaults; gradtx may add keyword-only parameters after them, and may give a
  default to a parameter Optax requires (an Optax call is still a gradtx call);
* a state class (a NamedTuple) starts with Optax's fields, in Optax's order (gradtx may
  append fields, as ``LookaheadState`` appends its slow weights).

``test_missing_names_are_only_those_still_being_written`` lists what Optax has and gradtx
does not yet: the set may only shrink.
"""

import enum
import inspect
import math
import types

import numpy as np
import optax
import pytest

import gradtx as gtx

NAMESPACES = ("", "transforms", "schedules", "contrib", "tree_utils", "tree", "losses")

# Names gradtx deliberately defines otherwise.
DEPARTURES = {
    # optax.bias_correction is tree_utils.tree_bias_correction(moment, decay, count);
    # gtx.bias_correction is the transform (optax.tree_utils.tree_bias_correction is the
    # function, under the same signature).
    ("", "bias_correction"),
}

# Optax names gradtx did not have when this list was written (grouped by namespace, ""
# the top level). Engineers adding them shrink it; a name that disappears from gradtx
# makes the test fail.
STILL_MISSING = {
    "": {
        "AdaptiveGradClipState", "AddNoiseState", "ApplyEvery", "ClipByGlobalNormState",
        "ClipState", "ConditionallyMaskState", "ConditionallyTransformState",
        "EmaState", "FactoredState", "InjectStatefulHyperparamsState", "MonitorState",
        "MultiSteps", "MultiStepsState", "NonNegativeParamsState", "ScaleByAdanState",
        "ScaleByBeliefState", "ScaleByLionState", "ScaleByNovogradState",
        "ScaleBySM3State", "ScaleByTrustRatioState", "ShouldSkipUpdateFunction",
        "SnapshotState", "TraceState", "WrappedSchedule", "ZeroNansState", "adabelief",
        "adafactor", "adamaxw", "adan", "adaptive_grad_clip", "add_noise",
        "apply_every", "assignment", "clip_by_block_rms", "conditionally_mask",
        "conditionally_transform", "convex_kl_divergence", "cosine_distance",
        "cosine_onecycle_schedule", "cosine_similarity", "ctc_loss",
        "ctc_loss_with_forward_probs", "ema", "experimental", "freeze", "fromage",
        "generalized_kl_divergence", "hinge_loss", "huber_loss",
        "inject_stateful_hyperparams", "keep_params_nonnegative", "kl_divergence",
        "l2_loss", "lamb", "lars", "linear_onecycle_schedule", "lion", "log_cosh",
        "losses", "measure_with_ema", "microbatch", "microbatching", "monitor",
        "nadamw", "noisy_sgd", "normalize_by_update_norm", "novograd", "ntxent",
        "optimistic_adam", "optimistic_adam_v2", "optimistic_gradient_descent",
        "per_example_global_norm_clip", "per_example_layer_norm_clip", "perturbations",
        "piecewise_interpolate_schedule", "polyak_sgd", "projections",
        "safe_softmax_cross_entropy", "scale_by_adan", "scale_by_belief",
        "scale_by_distance_over_gradients", "scale_by_factored_rms", "scale_by_lion",
        "scale_by_novograd", "scale_by_optimistic_gradient",
        "scale_by_param_block_norm", "scale_by_param_block_rms", "scale_by_polyak",
        "scale_by_sign", "scale_by_sm3", "scale_by_trust_ratio", "scale_by_yogi",
        "second_order", "selective_transform", "sgdr_schedule",
        "sigmoid_binary_cross_entropy", "sigmoid_focal_loss", "sign_sgd", "signum",
        "skip_large_updates", "skip_not_finite", "sm3", "smooth_labels", "snapshot",
        "softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels",
        "squared_error", "trace", "warmup_constant_schedule", "yogi", "zero_nans",
    },
    "transforms": {
        "AddNoiseState", "ConditionFn", "ConditionallyMaskState",
        "ConditionallyTransformState", "EmaState", "MonitorState", "MultiSteps",
        "MultiStepsState", "NonNegativeParamsState", "ShouldSkipUpdateFunction",
        "SnapshotState", "TraceState", "ZeroNansState", "adaptive_grad_clip",
        "add_decayed_weights", "add_noise", "clip", "clip_by_block_rms",
        "clip_by_global_norm", "conditionally_mask", "conditionally_transform", "ema",
        "flatten", "freeze", "keep_params_nonnegative", "measure_with_ema", "monitor",
        "per_example_global_norm_clip", "per_example_layer_norm_clip",
        "selective_transform", "skip_large_updates", "skip_not_finite", "snapshot",
        "trace", "unitwise_clip", "unitwise_norm", "zero_nans",
    },
    "schedules": {
        "InjectHyperparamsState", "InjectStatefulHyperparamsState", "Schedule",
        "StatefulSchedule", "WrappedSchedule", "cosine_onecycle_schedule",
        "inject_hyperparams", "inject_stateful_hyperparams", "linear_onecycle_schedule",
        "piecewise_interpolate_schedule", "sgdr_schedule", "warmup_constant_schedule",
    },
    "contrib": {
        "COCOBState", "DAdaptAdamWState", "DifferentiallyPrivateAggregateState",
        "DoGState", "DoWGState", "GaLoreDimensionNumbers", "GaLoreState",
        "HutchinsonState", "MadgradState", "MechanicState", "MomoAdamState",
        "MomoState", "MuonDimensionNumbers", "MuonState", "NormalizeState",
        "ProdigyState", "ReduceLROnPlateauState", "SAMState", "ScaleByAdemamixState",
        "ScaleBySimplifiedAdEMAMixState", "ScheduleFreeState", "SophiaState",
        "SplitRealAndImaginaryState", "acprop", "ademamix", "adopt", "cocob",
        "dadapt_adamw", "differentially_private_aggregate", "dog", "dowg", "dpsgd",
        "galore", "hutchinson_estimator_diag_hessian", "madgrad", "mechanize", "momo",
        "momo_adam", "muon", "normalize", "prodigy", "sam", "scale_by_acprop",
        "scale_by_ademamix", "scale_by_adopt", "scale_by_cocob", "scale_by_galore",
        "scale_by_madgrad", "scale_by_muon", "scale_by_simplified_ademamix",
        "schedule_free", "schedule_free_adamw", "schedule_free_eval_params",
        "schedule_free_sgd", "simplified_ademamix", "sophia",
        "split_real_and_imaginary",
    },
    "tree_utils": set(),
    "tree": set(),
    "losses": {
        "binary_dice_loss", "convex_kl_divergence", "cosine_distance",
        "cosine_similarity", "ctc_loss", "ctc_loss_with_forward_probs", "dice_loss",
        "generalized_kl_divergence", "hinge_loss", "huber_loss", "kl_divergence",
        "kl_divergence_with_log_targets", "l2_loss", "log_cosh",
        "make_fenchel_young_loss", "multiclass_generalized_dice_loss",
        "multiclass_hinge_loss", "multiclass_perceptron_loss",
        "multiclass_sparsemax_loss", "ntxent", "perceptron_loss",
        "poly_loss_cross_entropy", "ranking_softmax_loss", "safe_softmax_cross_entropy",
        "sigmoid_binary_cross_entropy", "sigmoid_focal_loss", "smooth_labels",
        "softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels",
        "sparsemax_loss", "squared_error", "triplet_margin_loss",
    },
}


def public_names(module):
  """The module's public names, without modules it merely imported (typing, ...)."""
  names = set()
  for name in dir(module):
    value = getattr(module, name)
    if name.startswith("_") or (isinstance(value, types.ModuleType)
                                and not value.__name__.startswith(module.__name__)):
      continue
    names.add(name)
  return names


def namespace(root, name):
  """``root.name`` (``root`` for ""), or an empty module where gradtx lacks it."""
  return getattr(root, name, types.ModuleType(f"missing_{name}")) if name else root


def shared_names():
  for ns in NAMESPACES:
    theirs, ours = namespace(optax, ns), namespace(gtx, ns)
    for name in sorted(public_names(theirs)):
      if hasattr(ours, name) and (ns, name) not in DEPARTURES:
        yield pytest.param(ns, name, id=f"{ns or 'optax'}.{name}")


def is_state_class(x):
  return isinstance(x, type) and issubclass(x, tuple) and hasattr(x, "_fields")


def is_transform(x):
  return callable(getattr(x, "init", None)) and callable(getattr(x, "update", None))


def same_default(a, b):
  """Defaults that behave the same: equal values, both transforms (a default line
  search), functions of one name, or members of one name of enums of one name."""
  if a is b or (is_transform(a) and is_transform(b)):
    return True
  if callable(a) and callable(b):
    # Optax's private helpers may be public in gradtx (decay_rate_pow).
    return (getattr(a, "__name__", "").lstrip("_") == getattr(b, "__name__", "").lstrip("_"))
  if isinstance(a, enum.Enum) and isinstance(b, enum.Enum):  # gradtx's own enum classes
    return (type(a).__name__, a.name, a.value) == (type(b).__name__, b.name, b.value)
  if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
    return True
  if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
    return a is b
  try:
    return bool(np.all(a == b))
  except Exception:  # pylint: disable=broad-except
    return False


def signature_differences(theirs, ours):
  """What keeps an Optax call from being a gradtx call with the same meaning."""
  theirs = list(inspect.signature(theirs).parameters.values())
  ours = list(inspect.signature(ours).parameters.values())
  problems = []
  for i, t in enumerate(theirs):
    if i >= len(ours):
      problems.append(f"Optax's {t.name} is missing")
      continue
    o = ours[i]
    if (o.name, o.kind) != (t.name, t.kind):
      problems.append(f"parameter {i}: Optax's {t.name} ({t.kind.description}), gradtx's "
                      f"{o.name} ({o.kind.description})")
    elif t.default is not inspect.Parameter.empty and not same_default(t.default,
                                                                        o.default):
      problems.append(f"{t.name}: Optax's default {t.default!r}, gradtx's {o.default!r}")
  for o in ours[len(theirs):]:
    if o.kind not in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD):
      problems.append(f"gradtx's addition {o.name} is not keyword-only")
  return problems


def has_signature(x):
  try:
    inspect.signature(x)
  except (TypeError, ValueError):
    return False
  return True


@pytest.mark.parametrize("ns, name", list(shared_names()))
def test_shared_name_keeps_optax_contract(ns, name):
  theirs, ours = getattr(namespace(optax, ns), name), getattr(namespace(gtx, ns), name)
  if isinstance(theirs, types.ModuleType):
    assert isinstance(ours, types.ModuleType), f"{name} is a module in Optax"
  elif is_state_class(theirs):
    assert is_state_class(ours), f"{name}: Optax's is a NamedTuple, gradtx's {ours!r}"
    fields = tuple(ours._fields[:len(theirs._fields)])
    assert fields == theirs._fields, (
        f"{name}: gradtx's fields {ours._fields} do not start with Optax's "
        f"{theirs._fields}")
  elif getattr(theirs, "_is_protocol", False) or not callable(theirs):
    pass  # typing aliases and protocols: the name is what scripts use
  elif has_signature(theirs):
    assert callable(ours) and has_signature(ours), f"{name} is not callable in gradtx"
    assert signature_differences(theirs, ours) == [], name


def missing_names():
  missing = {}
  for ns in NAMESPACES:
    missing[ns] = public_names(namespace(optax, ns)) - public_names(namespace(gtx, ns))
  return missing


def test_missing_names_are_only_those_still_being_written():
  missing = missing_names()
  regressed = {ns: sorted(names - STILL_MISSING[ns]) for ns, names in missing.items()}
  assert {ns: names for ns, names in regressed.items() if names} == {}


# The checks above, on purpose-made signatures.


def test_signature_check_flags_renames_order_defaults_and_positional_additions():

  def theirs(a, b=1.0, *, c=None):
    del a, b, c

  def renamed(x, b=1.0, *, c=None):
    del x, b, c

  def other_default(a, b=2.0, *, c=None):
    del a, b, c

  def positional_addition(a, b=1.0, d=0, *, c=None):
    del a, b, c, d

  def keyword_addition(a, b=1.0, *, c=None, d=0):
    del a, b, c, d

  def defaulted(a=0.0, b=1.0, *, c=None):
    del a, b, c

  assert signature_differences(theirs, renamed)
  assert signature_differences(theirs, other_default)
  assert signature_differences(theirs, positional_addition)
  assert signature_differences(theirs, keyword_addition) == []
  assert signature_differences(theirs, defaulted) == []
