"""The distribution a token is drawn from: temperature, banned ids, top-k, top-p.

The sampler draws from `sampling_logprobs(...)` and reports the log-probability of the drawn
token under it; the trainer's `logprobs` calls the same function on its own logits, so a
policy-gradient ratio compares like with like. Pure jnp, vectorized over leading dims.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

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


def _threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 hash (20 rounds), written out as jax does everywhere but on CPU."""
    rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
    ks = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in rotations[i % 2]:
            x1 = x1 + x2
            x2 = ((x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r))) ^ x1
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def _exact_gumbel_applies(key: jax.Array, shape: tuple[int, ...], dtype) -> bool:
    """Whether `gumbel` can reproduce jax.random.gumbel bit for bit: one typed threefry key,
    float32, jax's default (partitionable, low-range) settings, under 2**32 draws."""
    return (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()
            and str(jax.random.key_impl(key)) == "threefry2x32"
            and jnp.dtype(dtype) == jnp.float32 and 0 < math.prod(shape) < 2**32
            and jax.config.jax_threefry_partitionable
            and not jax.config.jax_high_dynamic_range_gumbel)


@functools.partial(jax.jit, static_argnums=(1, 2))
def gumbel(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """jax.random.gumbel(key, shape, dtype), the same bits, faster on CPU.

    jax lowers its Threefry hash on CPU as a rolled loop of 5 iterations (an XLA while loop
    that copies its [shape] counters every iteration, the largest share of a decode step's
    draw); here the same hash is unrolled, so XLA fuses counters, hash, the float conversion
    and the logs into one pass. Same counters (the partitionable iota), the same uniform in
    [tiny, 1) and -log(-log(u)) as `jax.random.gumbel`'s default mode: the same noise, bit for
    bit, wherever `_exact_gumbel_applies` (else it calls jax.random.gumbel)."""
    shape = tuple(shape)
    if not _exact_gumbel_applies(key, shape, dtype):
        return jax.random.gumbel(key, shape, dtype)
    k = jax.random.key_data(key)
    counts = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    hi, lo = _threefry2x32(k[0], k[1], jnp.zeros(shape, jnp.uint32), counts)
    mantissa = ((hi ^ lo) >> np.uint32(9)) | np.uint32(0x3F800000)  # [1, 2)
    floats = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - jnp.float32(1)
    tiny = jnp.float32(np.finfo(np.float32).tiny)
    u = jnp.maximum(tiny, floats * (jnp.float32(1) - tiny) + tiny)
    return -jnp.log(-jnp.log(u))


def draw(key: jax.Array, logp: jax.Array, greedy: bool) -> tuple[jax.Array, jax.Array]:
    """(token ids [...], their log-probs) drawn from logp [..., V] (argmax when greedy); the
    draw is jax.random.categorical's (argmax of logp + Gumbel noise), token for token."""
    noisy = logp if greedy else logp + gumbel(key, logp.shape, logp.dtype)
    tok = first_argmax(noisy)
    return tok, jnp.take_along_axis(logp, tok[..., None], axis=-1)[..., 0]
