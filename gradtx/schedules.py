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

__all__ = [
    "constant_schedule", "cosine_decay_schedule", "cyclic_schedule", "exponential_decay",
    "inverse_time_decay", "join_schedules", "linear_schedule",
    "piecewise_constant_schedule", "polynomial_schedule", "reduce_on_plateau", "step_decay",
    "warmup_cosine_decay_schedule", "warmup_exponential_decay_schedule", "warmup_linear",
]
