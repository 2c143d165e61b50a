"""Schedules: ``fn(count) -> value`` for learning rates and other hyperparameters.

>>> import gradtx as gtx
>>> lr = gtx.schedules.warmup_cosine_decay_schedule(0.0, 1e-3, warmup_steps=100,
...                                                 decay_steps=1000)
"""

from gradtx._src.schedules import (constant_schedule, cosine_decay_schedule,
                                   cyclic_schedule, exponential_decay,
                                   inverse_time_decay, join_schedules, linear_schedule,
                                   piecewise_constant_schedule, polynomial_schedule,
                                   step_decay, warmup_cosine_decay_schedule,
                                   warmup_exponential_decay_schedule, warmup_linear)
from gradtx._src.reduce_on_plateau import ReduceOnPlateauState, reduce_on_plateau
from gradtx._src.base import Schedule
from gradtx._src.hyperparams import InjectHyperparamsState, inject_hyperparams
from gradtx._src.chained_schedules import multiply_schedules
from gradtx._src.cyclic_schedules import (cosine_annealing_warm_restarts,
                                          cosine_onecycle_schedule, linear_onecycle_schedule,
                                          one_cycle_schedule, piecewise_interpolate_schedule,
                                          sgdr_schedule)
from gradtx._src.stateful_schedules import (InjectStatefulHyperparamsState, StatefulSchedule,
                                            WrappedSchedule, inject_stateful_hyperparams)
from gradtx._src.warmup_schedules import (warmup_constant_schedule,
                                          warmup_stable_decay_schedule)

__all__ = [
    "constant_schedule", "cosine_decay_schedule", "cyclic_schedule", "exponential_decay",
    "inverse_time_decay", "join_schedules", "linear_schedule",
    "piecewise_constant_schedule", "polynomial_schedule", "reduce_on_plateau", "step_decay",
    "warmup_cosine_decay_schedule", "warmup_exponential_decay_schedule", "warmup_linear",
    # issue 17-schedules: the rest of optax.schedules, and torch.optim's schedulers
    "cosine_annealing_warm_restarts", "cosine_onecycle_schedule", "inject_hyperparams",
    "inject_stateful_hyperparams", "InjectHyperparamsState",
    "InjectStatefulHyperparamsState", "linear_onecycle_schedule", "multiply_schedules",
    "one_cycle_schedule", "piecewise_interpolate_schedule", "Schedule", "sgdr_schedule",
    "StatefulSchedule", "warmup_constant_schedule", "warmup_stable_decay_schedule",
    "WrappedSchedule",
]
