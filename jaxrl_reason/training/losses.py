"""Loss functions over the model's outputs on a batch: a job hands its loss to the trainer as a
function (`Trainer(loss=...)`; the SFT loss is the default).

A loss returns SUMS, never means: (loss_sum, count, metrics) with metrics {name: (sum, count)}
(count None: the metric is the sum itself, e.g. a token count).
The train step adds sums and counts over all micro-batches and devices and divides once, so the
result does not depend on how the batch is split (micro-batches with unequal token counts
included). Batches follow `data.batching`: per-token fields are aligned with `tokens`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_reason.sampling.distribution import sampling_logprobs

Metrics = dict[str, tuple[jax.Array, jax.Array | None]]
LossOut = tuple[jax.Array, jax.Array, Metrics]


@dataclasses.dataclass(frozen=True)
class Forward:
    """The model on a batch: logits [B,T,V] (position t predicts token t+1) and values [B,T]
    (the value head after reading token t; None without a head), and the ids never generated."""

    tokens: jax.Array
    logits: jax.Array
    values: jax.Array | None
    banned: jax.Array | None = None

    def target_logprobs(self, temperature: float | jax.Array = 1.0, *, top_k: int = 0,
                        top_p: float = 1.0) -> jax.Array:
        """[B,T]: entry t is log p(token t | tokens < t) under the distribution the sampler
        draws from at these settings (`sampling_logprobs`); entry 0 is 0."""
        logp = sampling_logprobs(self.logits[:, :-1], temperature, top_k=top_k, top_p=top_p,
                                 banned=self.banned)
        lp = jnp.take_along_axis(logp, self.tokens[:, 1:, None], axis=-1)[..., 0]
        return jnp.pad(lp, ((0, 0), (1, 0)))


LossFn = Callable[[Forward, Any], LossOut]


def token_logprobs(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(targets) under `logits` [..., V], fp32 (the plain softmax, for cross-entropy)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def sft_loss(fwd: Forward, batch: dict[str, jax.Array]) -> LossOut:
    """Next-token cross-entropy summed over the target tokens (`loss_mask`, times the optional
    per-token `weights`); the step divides by the target count."""
    targets = fwd.tokens[:, 1:]
    mask = batch["loss_mask"][:, 1:].astype(jnp.float32)
    weights = mask * batch["weights"][:, 1:] if "weights" in batch else mask
    logp = token_logprobs(fwd.logits[:, :-1], targets)
    correct = (jnp.argmax(fwd.logits[:, :-1], -1) == targets).astype(jnp.float32)
    n = mask.sum()
    # A sequence is exactly right when every target token is the argmax (greedy would emit it).
    has_targets = mask.any(axis=1)
    seq_ok = (jnp.all((correct == 1) | (mask == 0), axis=1) & has_targets).astype(jnp.float32)
    return -(logp * weights).sum(), weights.sum(), {
        "token_accuracy": ((correct * mask).sum(), n),
        "sequence_accuracy": (seq_ok.sum(), has_targets.sum().astype(jnp.float32)),
        "tokens": (n, None),
    }
