"""Random streams by name: one key per (seed, iteration, phase, chunk, ...) path.

Keys are `jax.random.key(seed)` folded with each element of the path (strings by a stable
hash), so no two streams of a run share randomness, whatever the numbers involved (arithmetic
on seeds, like `seed * 7919 + start`, repeats once start reaches 7919).
"""

from __future__ import annotations

import zlib

import jax


def key(seed: int, *path: int | str) -> jax.Array:
    """The key of stream `path` of run `seed`."""
    k = jax.random.key(seed)
    for part in path:
        k = jax.random.fold_in(k, zlib.crc32(part.encode()) if isinstance(part, str) else part)
    return k
