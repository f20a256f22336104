"""Optimizer: optax AdamW with warmup and a cosine or constant schedule, plus clipping."""

from __future__ import annotations

import gin
import optax


@gin.configurable
def make_optimizer(
    total_steps: int,
    learning_rate: float = 1e-3,
    warmup_steps: int = 50,
    schedule: str = "cosine",
    final_lr_fraction: float = 0.1,
    weight_decay: float = 0.01,
    b1: float = 0.9,
    b2: float = 0.98,
    clip_norm: float | None = 1.0,
) -> optax.GradientTransformation:
    """`schedule` is "cosine" (decay to final_lr_fraction * lr at total_steps) or "constant"."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    if schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(
            0.0,
            learning_rate,
            warmup_steps,
            max(total_steps, warmup_steps + 1),
            learning_rate * final_lr_fraction,
        )
    elif schedule == "constant":
        lr = optax.join_schedules(
            [
                optax.linear_schedule(0.0, learning_rate, max(warmup_steps, 1)),
                optax.constant_schedule(learning_rate),
            ],
            [warmup_steps],
        )
    else:
        raise ValueError(
            f"make_optimizer.schedule must be 'cosine' or 'constant', got {schedule!r}"
        )
    parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
    parts.append(optax.adamw(lr, b1=b1, b2=b2, weight_decay=weight_decay))
    return optax.chain(*parts)
