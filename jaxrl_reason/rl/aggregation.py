"""Loss aggregations by name, as per-token weights and one denominator.

Each mode turns a per-token loss l [B, T] under a mask m into (sum_t w_t l_t, count): the core's
train step adds sums and counts over every micro-batch and device and divides ONCE, so the
loss is the same on 1 or 8 devices and with 1 or 4 micro-batches (normalized over the global
batch, as verl does). Modes (verl's names):
- token-mean: w = m, count = number of tokens;
- seq-mean-token-sum: w = m, count = number of sequences;
- seq-mean-token-mean: w = m / |o_i| (each sequence's token mean), count = number of sequences;
- seq-mean-token-sum-norm (Dr. GRPO): w = m, count = sequences x `norm_length`, a CONSTANT
  (the generation budget, so it never depends on the batch). verl divides by the padded width,
  tunix by the batch size, TRL's dr_grpo by batch x max completion length: ours equals TRL's
  when norm_length = max_new_tokens, the default.
A sequence counts when it has at least one token in the mask.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxrl_reason.named import Named

# mask [B, T] float -> (weights [B, T], count)
AggFn = Callable[[jax.Array, float], tuple[jax.Array, jax.Array]]
MODES: Named[AggFn] = Named("loss aggregation")
register = MODES.register


def _sequences(mask: jax.Array) -> jax.Array:
    return (mask.sum(axis=1) > 0).sum().astype(jnp.float32)


@register("token-mean")
def token_mean(mask: jax.Array, norm_length: float) -> tuple[jax.Array, jax.Array]:
    return mask, mask.sum()


@register("seq-mean-token-sum")
def seq_mean_token_sum(mask: jax.Array, norm_length: float) -> tuple[jax.Array, jax.Array]:
    return mask, _sequences(mask)


@register("seq-mean-token-mean")
def seq_mean_token_mean(mask: jax.Array, norm_length: float) -> tuple[jax.Array, jax.Array]:
    lengths = mask.sum(axis=1, keepdims=True)
    return mask / jnp.maximum(lengths, 1.0), _sequences(mask)


@register("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(mask: jax.Array, norm_length: float
                            ) -> tuple[jax.Array, jax.Array]:
    return mask, _sequences(mask) * norm_length


def get(name: str) -> AggFn:
    return MODES.pick(name)
