"""Loss functions over a model and a batch, registered by name so a config line swaps them.

A batch is a dict of arrays: `tokens` [B, T] (right-padded with 0) and `loss_mask` [B, T]
(1 where the token is a training target, i.e. completion tokens; prompt tokens are 0).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
LOSSES: dict[str, LossFn] = {}


def register(name: str):
    def wrap(fn: LossFn) -> LossFn:
        LOSSES[name] = fn
        return fn

    return wrap


def token_logprobs(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(targets) under `logits` [B, T, V], fp32."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


@register("sft")
def sft_loss(model, batch: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Next-token cross-entropy on the masked (completion) tokens, averaged per token."""
    tokens = batch["tokens"]
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    mask = batch["loss_mask"][:, 1:].astype(jnp.float32)
    logits, _, _ = model(inputs, input_mask=inputs != 0)
    logp = token_logprobs(logits, targets)
    n = jnp.maximum(mask.sum(), 1.0)
    loss = -(logp * mask).sum() / n
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    # A sequence is exactly right when every target token is the argmax (greedy would emit it).
    seq_ok = jnp.all((correct == 1) | (mask == 0), axis=1).astype(jnp.float32)
    return loss, {
        "loss": loss,
        "token_accuracy": (correct * mask).sum() / n,
        "sequence_accuracy": seq_ok.mean(),
        "tokens": mask.sum(),
    }
