"""Optax's ``optax.contrib`` names: newer and experimental optimizers, under the same
names, signatures and numerics (``import gradtx as optax`` then ``optax.contrib.muon``).
They are exported at the top level too."""

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
from gradtx._src.reduce_on_plateau import ReduceOnPlateauState, reduce_on_plateau

ReduceLROnPlateauState = ReduceOnPlateauState  # optax.contrib's name for the same state

__all__ = [
    "ReduceLROnPlateauState", "ReduceOnPlateauState", "reduce_on_plateau",
    # --- issue 17-contrib-a: add names below this line ---
    "COCOBState", "cocob", "scale_by_cocob", "DAdaptAdamWState", "dadapt_adamw",
    "DoGState", "DoWGState", "dog", "dowg", "MechanicState", "mechanize",
    "MuonDimensionNumbers", "MuonState", "muon", "scale_by_muon", "ProdigyState",
    "prodigy", "ScheduleFreeState", "schedule_free", "schedule_free_adamw",
    "schedule_free_eval_params", "schedule_free_sgd",
    # --- issue 17-contrib-b: add names below this line ---
    "MadgradState", "madgrad", "scale_by_madgrad", "MomoAdamState", "MomoState", "momo",
    "momo_adam",
    # --- issue 17-contrib-c: add names below this line ---
    "SAMState", "sam", "HutchinsonState", "SophiaState", "hutchinson_estimator_diag_hessian",
    "sophia",
    # --- issue 17-contrib-d: add names below this line ---
    "acprop", "scale_by_acprop", "ScaleByAdemamixState", "ScaleBySimplifiedAdEMAMixState",
    "ademamix", "scale_by_ademamix", "scale_by_simplified_ademamix", "simplified_ademamix",
    "adopt", "scale_by_adopt",
    # --- issue 17-contrib-e: add names below this line ---
    "GaLoreDimensionNumbers", "GaLoreState", "galore", "scale_by_galore",
    "DifferentiallyPrivateAggregateState", "differentially_private_aggregate", "dpsgd",
    "NormalizeState", "normalize", "SplitRealAndImaginaryState", "split_real_and_imaginary",
]
