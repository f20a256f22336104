"""RPT's reward (Dong et al. 2025, ALGORITHMS.md section 8): a committed continuation earns 1
iff its UTF-8 bytes are a prefix of the true continuation's bytes AND end exactly where one of
the true tokens ends.

The true continuation is given as its tokens' bytes (`token_bytes` of the tokenizer), so the
boundaries are their cumulative byte lengths: a prediction with the right bytes that stops
inside a token earns 0, as does an empty one. A prediction is text, so it never ends inside a
multi-byte character; a byte-fallback token that holds part of one ends no character and is a
boundary no prediction can reach.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def byte_boundaries(truth: Sequence[bytes]) -> list[int]:
    """The cumulative byte length after each true token: where a prediction may end."""
    return list(itertools.accumulate(len(b) for b in truth))


def prefix_match(prediction: str, truth: Sequence[bytes]) -> bool:
    """Whether `prediction` is a non-empty byte prefix of the true tokens `truth` that ends on
    one of their boundaries."""
    got = prediction.encode("utf-8")
    return (len(got) > 0 and b"".join(truth).startswith(got)
            and len(got) in byte_boundaries(truth))
