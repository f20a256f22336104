"""Active learning for PRMs (Lightman et al. 2023, section 4.2): label convincing wrong answers.

Each round, the current verifier scores the solutions not yet in its training set, and the next
batch of labels goes mostly to the most convincing WRONG-answer solutions (high score, wrong
final answer: what fools the verifier now), the rest to the most convincing remaining ones.
Lightman et al. use 80% / 20%.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def convincing_wrong_first(scores: Sequence[float], correct: Sequence[bool], count: int,
                           wrong_fraction: float = 0.8) -> list[int]:
    """Indices of `count` candidates: round(count * wrong_fraction) of the best-scored wrong
    ones, then the best-scored of all the others (fewer wrong ones: more of the others)."""
    scores, correct = np.asarray(scores, np.float64), np.asarray(correct, bool)
    by_score = np.argsort(-scores, kind="stable")
    wrong = [int(i) for i in by_score if not correct[i]][: int(round(count * wrong_fraction))]
    taken = set(wrong)
    rest = [int(i) for i in by_score if int(i) not in taken][: count - len(wrong)]
    return wrong + rest
