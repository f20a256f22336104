"""The distribution a token is drawn from: temperature, banned ids, top-k, top-p.

The sampler draws from `sampling_logprobs(...)` and reports the log-probability of the drawn
token under it; the trainer's `logprobs` calls the same function on its own logits, so a
policy-gradient ratio compares like with like. Pure jnp, vectorized over leading dims.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf


def banned_mask(vocab_size: int, banned_ids: Sequence[int]) -> jax.Array:
    """[V] bool, True at ids that may never be generated (pad, BOS)."""
    mask = jnp.zeros((vocab_size,), bool)
    ids = [i for i in banned_ids if 0 <= i < vocab_size]
    return mask.at[jnp.asarray(ids, jnp.int32)].set(True) if ids else mask


def top_k_mask(logits: jax.Array, k: int) -> jax.Array:
    """True at exactly the k largest logits of each row (ties broken by lower id)."""
    _, idx = jax.lax.top_k(logits, k)
    onehot = jax.nn.one_hot(idx, logits.shape[-1], dtype=bool)
    return onehot.any(axis=-2)


def top_p_mask(logp: jax.Array, top_p: float) -> jax.Array:
    """True at the smallest set of highest-probability tokens whose mass reaches `top_p`.

    No sort over the vocabulary: the set is {p >= t*} for the largest threshold t* whose mass
    sum(p[p >= t*]) still reaches top_p, found exactly by bisection on the bits of float32
    probabilities (non-negative floats order like their bit patterns), 31 masked sums per row.
    Tokens tied with the last one kept are all kept."""
    p = jnp.exp(logp.astype(jnp.float32))
    bits = jax.lax.bitcast_convert_type(p, jnp.int32)
    lo = jnp.zeros(bits.shape[:-1] + (1,), jnp.int32)  # mass(p >= 0) = 1 >= top_p
    hi = bits.max(axis=-1, keepdims=True) + 1  # mass(p >= max + ulp) = 0 < top_p

    def step(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        ok = jnp.where(bits >= mid, p, 0.0).sum(axis=-1, keepdims=True) >= top_p
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, 31, step, (lo, hi))
    return bits >= lo


def sampling_logprobs(
    logits: jax.Array,
    temperature: float | jax.Array,
    *,
    greedy: bool = False,
    top_k: int = 0,
    top_p: float = 1.0,
    banned: jax.Array | None = None,
) -> jax.Array:
    """Log-probabilities [..., V] of the distribution sampled from (-inf outside it).

    Order: banned ids removed, logits / temperature, top-k, then top-p on what top-k kept, each
    renormalized. `greedy` gives the untruncated temperature-1 distribution over the allowed
    ids: greedy decoding draws its argmax, and reports that token's log-prob under it."""
    z = logits.astype(jnp.float32)
    if banned is not None:
        z = jnp.where(banned, NEG_INF, z)
    if greedy:
        return jax.nn.log_softmax(z, axis=-1)
    z = z / jnp.maximum(jnp.asarray(temperature, jnp.float32), 1e-6)
    if top_k:
        z = jnp.where(top_k_mask(z, top_k), z, NEG_INF)
    logp = jax.nn.log_softmax(z, axis=-1)
    if top_p < 1.0:
        logp = jax.nn.log_softmax(jnp.where(top_p_mask(logp, top_p), z, NEG_INF), axis=-1)
    return logp


def first_argmax(x: jax.Array) -> jax.Array:
    """jnp.argmax(x, axis=-1) (the first maximum; the first NaN if any) as int32, as a max and a
    min over indices: XLA:CPU runs argmax's (value, index) reduction element by element, and
    fuses into it whatever produces x (the Gumbel noise of a draw), 3x slower per decode step."""
    m = x.max(axis=-1, keepdims=True)
    hit = (x == m) | jnp.isnan(x)
    ids = jnp.arange(x.shape[-1], dtype=jnp.int32)
    return jnp.min(jnp.where(hit, ids, x.shape[-1] - 1), axis=-1)


def draw(key: jax.Array, logp: jax.Array, greedy: bool) -> tuple[jax.Array, jax.Array]:
    """(token ids [...], their log-probs) drawn from logp [..., V] (argmax when greedy); the
    draw is jax.random.categorical's (argmax of logp + Gumbel noise), token for token."""
    noisy = logp if greedy else logp + jax.random.gumbel(key, logp.shape, logp.dtype)
    tok = first_argmax(noisy)
    return tok, jnp.take_along_axis(logp, tok[..., None], axis=-1)[..., 0]
