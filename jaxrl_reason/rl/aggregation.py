"""Loss aggregations by name, as per-token weights and one denominator.

Each mode turns a per-token loss l [B, T] under a mask m into (sum_t w_t l_t, count): the core's
train step adds sums and counts over every micro-batch and device and divides ONCE, so the
loss is the same on 1 or 8 devices and with 1 or 4 micro-batches (normalized over the global
batch, as verl does). A mode sees one micro-batch's mask, `norm_length` (L, a constant: the
generation budget `rl_learner.max_new_tokens` unless `RLLoss.norm_length` sets it) and `rows`,
how many rows the global mini-batch holds (empty rows included). Modes (verl's names, then the
peers' own):
- token-mean: w = m, count = number of tokens;
- seq-mean-token-sum: w = m, count = number of sequences;
- seq-mean-token-mean: w = m / |o_i| (each sequence's token mean), count = number of sequences;
- seq-mean-token-sum-norm (Dr. GRPO): w = m, count = sequences x L (ours: a constant per
  sequence, so it never depends on the padded width);
- seq-mean-token-sum-norm-verl: w = m, count = L once for the global mini-batch (the
  micro-batch's share of it, rows_here / rows x L): verl's agg_loss divides the token sum by
  the padded response width with no division by the batch;
- dr-grpo-trl: w = m, count = EVERY row x L: TRL's loss_type='dr_grpo' divides by the batch
  size x max_completion_length, rows emptied by truncation masking or left unfilled by dynamic
  sampling included (ours counts only sequences with a token).
A sequence counts when it has at least one token in the mask.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxrl_reason.errors import require
from jaxrl_reason.named import Named

Norm = jax.Array | float | None  # L, None where nothing set it
Rows = jax.Array | float  # rows of the global mini-batch
# (mask [B, T] float, L, rows) -> (weights [B, T], count)
AggFn = Callable[[jax.Array, Norm, Rows], tuple[jax.Array, jax.Array]]
MODES: Named[AggFn] = Named("loss aggregation")
register = MODES.register


def _sequences(mask: jax.Array) -> jax.Array:
    return (mask.sum(axis=1) > 0).sum().astype(jnp.float32)


def _length(norm_length: Norm, mode: str) -> jax.Array | float:
    """L, which the length-normalized modes need."""
    require(norm_length is not None, "RLLoss.norm_length", norm_length,
            f"must be set for the {mode} aggregation when the batch carries no generation "
            "budget (the RL learner puts rl_learner.max_new_tokens there)")
    return norm_length


@register("token-mean")
def token_mean(mask: jax.Array, norm_length: Norm, rows: Rows
               ) -> tuple[jax.Array, jax.Array]:
    return mask, mask.sum()


@register("seq-mean-token-sum")
def seq_mean_token_sum(mask: jax.Array, norm_length: Norm, rows: Rows
                       ) -> tuple[jax.Array, jax.Array]:
    return mask, _sequences(mask)


@register("seq-mean-token-mean")
def seq_mean_token_mean(mask: jax.Array, norm_length: Norm, rows: Rows
                        ) -> tuple[jax.Array, jax.Array]:
    lengths = mask.sum(axis=1, keepdims=True)
    return mask / jnp.maximum(lengths, 1.0), _sequences(mask)


@register("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(mask: jax.Array, norm_length: Norm, rows: Rows
                            ) -> tuple[jax.Array, jax.Array]:
    return mask, _sequences(mask) * _length(norm_length, "seq-mean-token-sum-norm")


@register("seq-mean-token-sum-norm-verl")
def seq_mean_token_sum_norm_verl(mask: jax.Array, norm_length: Norm, rows: Rows
                                 ) -> tuple[jax.Array, jax.Array]:
    share = mask.shape[0] / jnp.asarray(rows, jnp.float32)  # this micro-batch's part of the L
    return mask, share * _length(norm_length, "seq-mean-token-sum-norm-verl")


@register("dr-grpo-trl")
def dr_grpo_trl(mask: jax.Array, norm_length: Norm, rows: Rows
                ) -> tuple[jax.Array, jax.Array]:
    return mask, jnp.float32(mask.shape[0]) * _length(norm_length, "dr-grpo-trl")


def get(name: str) -> AggFn:
    return MODES.pick(name)
