"""Policy-gradient losses by name: per-token losses from the policy's and the sampling policy's
log-probs and the advantages. Pure jnp; aggregation is `rl.aggregation`'s business.

Each returns (loss [B, T], indicators) where indicators are per-token 0/1 arrays for the
metrics: `clip_low` (A < 0 and the ratio fell under 1 - eps_low: no gradient), `clip_high`
(A > 0 and the ratio rose over 1 + eps_high), `dual_clip` (A < 0 and the ratio exceeded c).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxrl_reason.named import Named


@dataclasses.dataclass(frozen=True)
class Clip:
    """eps_low / eps_high: the clip range [1 - eps_low, 1 + eps_high] (DAPO's clip-higher when
    eps_high > eps_low); dual_clip: c > 1 bounds the loss of negative-advantage tokens at
    -c * A (Ye et al. 2020; verl always on with c = 3, tunix opt-in, TRL absent), None = off."""

    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip: float | None = None


PolicyLoss = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
LOSSES: Named[PolicyLoss] = Named("policy loss")
register = LOSSES.register


def clipped_objective(log_ratio: jax.Array, adv: jax.Array, clip: Clip
                      ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """-min(rho A, clip(rho) A) per token, with the optional dual clip; rho = exp(log_ratio)
    (the log-ratio clamped to +-20 first, as verl and tunix do)."""
    ratio = jnp.exp(jnp.clip(log_ratio, -20.0, 20.0))
    unclipped = -adv * ratio
    clipped = -adv * jnp.clip(ratio, 1.0 - clip.eps_low, 1.0 + clip.eps_high)
    loss = jnp.maximum(unclipped, clipped)
    ind = {"clip_low": (adv < 0) & (ratio < 1.0 - clip.eps_low),
           "clip_high": (adv > 0) & (ratio > 1.0 + clip.eps_high)}
    if clip.dual_clip is not None:
        bound = -adv * clip.dual_clip
        ind["dual_clip"] = (adv < 0) & (loss > bound)
        loss = jnp.where(adv < 0, jnp.minimum(loss, bound), loss)
    return loss, {k: v.astype(jnp.float32) for k, v in ind.items()}


@register("clip")
def clip_loss(logp: jax.Array, old_logp: jax.Array, adv: jax.Array, mask: jax.Array,
              clip: Clip) -> tuple[jax.Array, dict[str, jax.Array]]:
    """PPO / GRPO token-level ratio pi / pi_old."""
    return clipped_objective(logp - old_logp, adv, clip)


@register("gspo")
def gspo_loss(logp: jax.Array, old_logp: jax.Array, adv: jax.Array, mask: jax.Array,
              clip: Clip) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GSPO (Zheng et al. 2025): one ratio per sequence, s_i = exp(mean_t log(pi/pi_old)),
    clipped as a whole (the paper's range is tiny: eps 3e-4 / 4e-4). Token t carries
    log s_i + log pi_t - sg(log pi_t), so each token's gradient is s_i A_i grad log pi_t /|o_i|
    under seq-mean-token-mean, the paper's aggregation. log s_i is capped at 10 (verl)."""
    lengths = jnp.maximum(mask.sum(axis=1, keepdims=True), 1.0)
    seq = ((logp - old_logp) * mask).sum(axis=1, keepdims=True) / lengths
    log_ratio = logp - jax.lax.stop_gradient(logp) + jax.lax.stop_gradient(seq)
    return clipped_objective(jnp.minimum(log_ratio, 10.0), adv, clip)


@register("gspo_sequence")
def gspo_sequence_loss(logp: jax.Array, old_logp: jax.Array, adv: jax.Array, mask: jax.Array,
                       clip: Clip) -> tuple[jax.Array, dict[str, jax.Array]]:
    """TRL's importance_sampling_level='sequence': one ratio per sequence, s_i = exp(mean_t
    log(pi/pi_old)), with the gradient THROUGH the mean, clipped as a whole; every token of
    row i carries -min(s_i A_t, clip(s_i) A_t) (log s_i clamped to +-20 like every ratio
    here, not capped at 10 as `gspo` is). Equal to `gspo` in value (under its cap), and in
    gradient when a row's advantages and aggregation weights are uniform; otherwise
    (per-token advantages: process, gae) token t's gradient is -s_i sum_t' w_t' A_t' / |o_i|
    (w the aggregation's weights, over unclipped tokens) where `gspo`'s is -s_i w_t A_t."""
    lengths = jnp.maximum(mask.sum(axis=1, keepdims=True), 1.0)
    seq = ((logp - old_logp) * mask).sum(axis=1, keepdims=True) / lengths
    return clipped_objective(jnp.broadcast_to(seq, logp.shape), adv, clip)


def get(name: str) -> PolicyLoss:
    return LOSSES.pick(name)
