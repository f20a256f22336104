"""How well a scorer ranks the solutions of ONE problem: what best-of-N depends on (pure numpy).

A pooled AUC over all problems mostly measures difficulty (hard problems get low scores and
wrong answers alike); best-of-N only ever compares solutions of the same problem. So:
- `within_problem_auc`: per problem with right and wrong solutions, P(a right one scores above
  a wrong one) (ties count half), averaged over those problems, with its standard error;
- `same_step_accuracy`: for a PRM, at the same problem and step index, how often a right line
  scores above a wrong one (the step the PRM exists to judge);
- `text_hash_scores`: a baseline scorer with no information, a uniform number keyed on the
  solution's text (identical texts get identical scores, as any verifier would give them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def pairwise_auc(right: np.ndarray, wrong: np.ndarray) -> float:
    """P(score of a right solution > score of a wrong one), ties counting half."""
    right, wrong = np.asarray(right, np.float64), np.asarray(wrong, np.float64)
    above = (right[:, None] > wrong[None, :]).sum()
    ties = (right[:, None] == wrong[None, :]).sum()
    return float((above + 0.5 * ties) / (len(right) * len(wrong)))


def within_problem_auc(scores: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    """Mean over problems (rows) holding both right and wrong solutions of their AUC, its
    standard error over those problems, and how many there were."""
    aucs = [pairwise_auc(s[c], s[~c]) for s, c in zip(np.asarray(scores, np.float64),
                                                      np.asarray(correct, bool), strict=True)
            if c.any() and (~c).any()]
    if not aucs:
        return {"auc": float("nan"), "auc_se": float("nan"), "problems": 0}
    se = float(np.std(aucs, ddof=1) / np.sqrt(len(aucs))) if len(aucs) > 1 else float("nan")
    return {"auc": float(np.mean(aucs)), "auc_se": se, "problems": len(aucs)}


def same_step_accuracy(problem: Sequence[int], step_scores: Sequence[Sequence[float]],
                       labels: Sequence[Sequence[bool] | None]) -> dict[str, float]:
    """Over every (problem, step index k, right line, wrong line) where two solutions of one
    problem have step k labeled right and wrong: the fraction where the right line's score is
    higher (ties half), and how many such pairs. Only steps up to each solution's first wrong
    one count: past it the label says nothing about the line."""
    lines: dict[tuple[int, int], tuple[list[float], list[float]]] = {}
    for p, scores, labs in zip(problem, step_scores, labels, strict=True):
        if labs is None:
            continue
        for k, (score, ok) in enumerate(zip(scores, labs, strict=False)):
            lines.setdefault((int(p), k), ([], []))[0 if ok else 1].append(float(score))
            if not ok:
                break
    above = pairs = 0.0
    for right, wrong in lines.values():
        if right and wrong:
            n = len(right) * len(wrong)
            above += pairwise_auc(np.array(right), np.array(wrong)) * n
            pairs += n
    return {"accuracy": above / pairs if pairs else float("nan"), "pairs": int(pairs)}


def text_hash_scores(completions: Sequence[Sequence[int]], seed: int = 0) -> np.ndarray:
    """A uniform [0, 1) score per completion, a hash of its ids and `seed`."""
    out = np.empty(len(completions))
    for i, ids in enumerate(completions):
        digest = hashlib.blake2b(f"{seed}:{list(ids)}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") / 2.0**64
    return out
