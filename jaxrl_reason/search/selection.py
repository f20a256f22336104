"""Choosing one answer from N sampled solutions (pure functions over answers and scores).

Each returns the INDEX of a representative solution, so callers read its correctness, cost and
text alike. Answers are compared by `answer_key` (numbers by value: "32" and "32.0" are one
answer); an unparseable answer (None) never wins a vote unless nothing else was answered.
- majority vote (self-consistency): the most frequent answer;
- best-of-N: the highest-scored answered solution (Cobbe et al.; Lightman et al.);
- weighted vote: argmax_a sum_i 1(a_i = a) * score_i (Math-Shepherd; Snell et al.'s
  "best-of-N weighted"); the representative is that answer's best-scored solution.
Ties go to the answer (solution) seen first.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from jaxrl_reason.rewards.answers import normalize, parse_number


def answer_key(answer: str | None) -> Fraction | str | None:
    if answer is None:
        return None
    number = parse_number(answer)
    return number if number is not None else normalize(answer)


def _vote(answers: Sequence[str | None], weights: Sequence[float]) -> int:
    totals: dict = {}
    best: dict = {}
    for i, (a, w) in enumerate(zip(answers, weights, strict=True)):
        key = answer_key(a)
        totals[key] = totals.get(key, 0.0) + w
        if key not in best or weights[best[key]] < w:
            best[key] = i
    keys = [k for k in totals if k is not None] or [None]
    winner = max(keys, key=lambda k: totals[k])  # max keeps the first of equals
    return best[winner]


def majority_vote(answers: Sequence[str | None], scores: Sequence[float] | None = None) -> int:
    """The first solution with the most frequent answer (`scores` unused)."""
    return _vote(answers, [1.0] * len(answers))


def weighted_vote(answers: Sequence[str | None], scores: Sequence[float]) -> int:
    """The best-scored solution of the answer with the largest total score."""
    return _vote(answers, [float(s) for s in scores])


def best_of_n(answers: Sequence[str | None], scores: Sequence[float]) -> int:
    """The highest-scored solution with an answer (the first of equals); the highest-scored
    of all when none has one. A solution without an answer cannot be right, whatever its
    score."""
    scores = np.asarray(scores, np.float64)
    answered = np.array([a is not None for a in answers])
    return int(np.argmax(np.where(answered, scores, -np.inf) if answered.any() else scores))
