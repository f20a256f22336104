"""The one training loop: steps, periodic eval, metrics, checkpoints, progress bar, resume.

Algorithms call `fit` with their data stream; checkpoints are keyed by a global step that
keeps rising across an algorithm's phases, and carry the stream's state and the caller's
`extra` (e.g. STaR's iteration), so a killed run resumes where it stopped. Each call is one
phase with its own learning-rate schedule over `num_steps`; the compiled step is shared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from jaxrl_reason.training.checkpoints import Checkpointer
from jaxrl_reason.training.metrics import MetricWriter
from jaxrl_reason.training.trainer import State, Trainer


def fit(
    trainer: Trainer,
    state: State,
    data: Iterator[dict[str, np.ndarray]],
    num_steps: int,
    *,
    ckpt: Checkpointer | None = None,
    writer: MetricWriter | None = None,
    step_offset: int = 0,
    extra: dict[str, Any] | None = None,
    ckpt_every: int = 0,
    log_every: int = 50,
    eval_every: int = 0,
    eval_fn: Callable[[State], dict[str, float]] | None = None,
    desc: str = "train",
) -> State:
    """Trains from state["step"] up to `num_steps`. Checkpoint ids are step_offset + step.

    Metrics are fetched (a device sync) only on logging and eval steps; an eval step also
    writes a line when it is not a logging step."""
    start = int(jax.device_get(state["step"]))
    rates = trainer.optimizer.learning_rates(num_steps)
    bar = tqdm(
        total=num_steps,
        initial=start,
        desc=desc,
        unit="step",
        dynamic_ncols=True,
        disable=jax.process_index() != 0,
        mininterval=1.0,
    )
    for step in range(start + 1, num_steps + 1):
        state, metrics = trainer.train_step(state, next(data), rates[step - 1])
        last = step == num_steps
        log = step % log_every == 0 or last
        evaluate = eval_fn is not None and eval_every and (step % eval_every == 0 or last)
        if log or evaluate:  # fetching metrics syncs: only when they are written
            rec = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if evaluate:
                rec.update(eval_fn(state))
            if writer is not None:
                writer.write(step_offset + step, {"phase": desc, **rec})
            bar.set_postfix(loss=f"{rec.get('loss', float('nan')):.4f}")
        bar.update(1)
        if ckpt is not None and ((ckpt_every and step % ckpt_every == 0) or last):
            data_state = data.get_state() if hasattr(data, "get_state") else {}
            ckpt.save(step_offset + step, state, {**(extra or {}), "data": data_state})
    bar.close()
    return state
