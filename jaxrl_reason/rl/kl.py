"""KL estimators between the policy and the reference, per token, from their log-probs of the
sampled token (Schulman's k1/k2/k3). Pure jnp; the same functions serve the loss term and the
reward penalty.

k3 follows verl's clamping: the log-ratio is clamped to +-20 before the exponential and the
estimate to +-10 after (without it one token whose reference log-prob collapses gives an inf
loss). `k3_unclamped` is TRL's and tunix's k3, with no clamp.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxrl_reason.named import Named

KlFn = Callable[[jax.Array, jax.Array], jax.Array]
ESTIMATORS: Named[KlFn] = Named("KL estimator")
register = ESTIMATORS.register


@register("k1")
def k1(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """log pi - log pi_ref (unbiased for KL(pi || ref) under samples of pi; can be negative)."""
    return logp - ref_logp


@register("k2")
def k2(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """(log pi - log pi_ref)^2 / 2 (low variance, biased; its gradient is the KL's)."""
    return 0.5 * jnp.square(logp - ref_logp)


@register("k3")
def k3(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """pi_ref/pi - log(pi_ref/pi) - 1 >= 0 (unbiased, low variance), clamped as verl does
    (expm1 keeps its precision when the ratio is near 1, where it matters most)."""
    log_ratio = jnp.clip(ref_logp - logp, -20.0, 20.0)
    return jnp.clip(jnp.expm1(log_ratio) - log_ratio, -10.0, 10.0)


@register("k3_unclamped")
def k3_unclamped(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """k3 without clamps: exp(r) - r - 1 with r = log pi_ref - log pi, as TRL computes
    `per_token_kl` and tunix its default `low_var_kl` (kl_clamp_value None). Grows like
    exp(r) when the policy leaves the reference (inf past r ~ 88 in float32)."""
    log_ratio = ref_logp - logp
    return jnp.expm1(log_ratio) - log_ratio


def get(name: str) -> KlFn:
    return ESTIMATORS.pick(name)
