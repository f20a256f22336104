"""Optimizer: optax AdamW with gradient clipping, and a warmup + cosine/constant schedule.

The learning rate is an ARGUMENT of the compiled train step, not a constant inside it: one
compiled step serves every phase of a job (STaR's iterations, self-improvement's rounds), each
with its own schedule over its own number of steps.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl_reason.errors import require, typed


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """`tx` is AdamW at learning rate 1 (the step multiplies its updates by the schedule's
    rate); `learning_rates(total_steps)` is the schedule of a phase of that many steps."""

    tx: optax.GradientTransformation
    learning_rate: float
    warmup_steps: int
    schedule: str
    final_lr_fraction: float

    def learning_rates(self, total_steps: int) -> np.ndarray:
        """[total_steps] float32: the rate of step 1, 2, ... of a phase (host-side, once)."""
        warmup = min(self.warmup_steps, max(total_steps - 1, 0))
        lr, final = self.learning_rate, self.learning_rate * self.final_lr_fraction
        if self.schedule == "cosine":
            fn = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1),
                                                    final)
        else:
            fn = optax.join_schedules([optax.linear_schedule(0.0, lr, max(warmup, 1)),
                                       optax.constant_schedule(lr)], [warmup])
        return np.asarray(jax.vmap(fn)(jnp.arange(max(total_steps, 1))), np.float32)


@gin.configurable
@typed
def make_optimizer(
    learning_rate: float = 1e-3,
    warmup_steps: int = 50,
    schedule: Literal["cosine", "constant"] = "cosine",
    final_lr_fraction: float = 0.1,
    weight_decay: float = 0.01,
    b1: float = 0.9,
    b2: float = 0.98,
    clip_norm: float | None = 1.0,
) -> Optimizer:
    """`schedule` is "cosine" (decay to final_lr_fraction * lr at the phase's end) or
    "constant" (after the warmup)."""
    require(learning_rate > 0, "make_optimizer.learning_rate", learning_rate, "must be > 0")
    require(warmup_steps >= 0, "make_optimizer.warmup_steps", warmup_steps, "must be >= 0")
    require(0 <= final_lr_fraction <= 1, "make_optimizer.final_lr_fraction", final_lr_fraction,
            "must be in [0, 1]")
    require(clip_norm is None or clip_norm > 0, "make_optimizer.clip_norm", clip_norm,
            "must be > 0 or None")
    parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
    parts.append(optax.adamw(1.0, b1=b1, b2=b2, weight_decay=weight_decay))
    return Optimizer(optax.chain(*parts), learning_rate, warmup_steps, schedule,
                     final_lr_fraction)
