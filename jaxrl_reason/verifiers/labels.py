"""Outcome and process labels of sampled solutions, and how they agree (pure functions).

A solution's STEPS are the spans that `data.batching.step_ends` cuts at the step delimiter (a
newline for GSM8K-form rationales): the rationale lines, then the `#### answer` line. Labels:
- outcome (Cobbe et al.): 1 iff the checker accepts the final answer;
- exact step labels: the task's step checker on each rationale line; the answer line is right
  iff the final answer is (so a PRM judges the answer step too, as in Lightman et al.);
- Monte-Carlo labels (Math-Shepherd): from the prefix ending at step i, K continuations; hard
  label = any reaches the gold answer, soft label = the fraction that does.
Supervision of a PRM stops at the first wrong step (Lightman et al.): later steps are unlabeled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxrl_reason.data.tasks import Check

ANSWER_TAG = "####"


def supervised_steps(labels: Sequence[float]) -> np.ndarray:
    """[S] bool: the steps a PRM is trained on, every step up to AND including the first wrong
    one (label 0: a hard 0, or a soft label no continuation reached)."""
    labels = np.asarray(labels, np.float64)
    wrong = np.flatnonzero(labels <= 0)
    stop = wrong[0] + 1 if len(wrong) else len(labels)
    return np.arange(len(labels)) < stop


def answer_line_labels(step_texts: Sequence[str], check: Check) -> list[bool]:
    """The exact label of each step of a GSM8K-form solution.

    Step k before the answer line takes `check.steps[k]`: the checkers count every line, an
    empty one included, so verdict k is line k's (the RL step reward reads them the same way);
    a line past the problem's steps is wrong, and so is an empty line. The answer line, and
    anything after it, is right iff the final answer is. Needs a checker that judges steps
    (`check.steps`)."""
    if check.steps is None:
        raise ValueError("exact step labels need a task whose checker judges steps "
                         "(Check.steps is None); use Monte-Carlo labels instead")
    labels, answered = [], False
    for k, text in enumerate(step_texts):
        answered = answered or text.strip().startswith(ANSWER_TAG)
        if answered:
            labels.append(bool(check.correct))
        else:
            labels.append(bool(text.strip()) and k < len(check.steps) and bool(check.steps[k]))
    return labels


def monte_carlo_labels(hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hard, soft) labels [S] from hits [S, K] (continuation k from step i's prefix reached
    the gold answer): hard = any hit, soft = the fraction of hits."""
    hits = np.asarray(hits, bool)
    return hits.any(axis=1).astype(np.float64), hits.mean(axis=1)


def _mean(x: np.ndarray) -> float | None:
    """The mean, or None for an empty selection (JSON has no NaN)."""
    return float(x.mean()) if len(x) else None


def label_agreement(exact: Sequence[Sequence[bool]], hard: Sequence[Sequence[float]],
                    soft: Sequence[Sequence[float]]) -> dict[str, float | None]:
    """How Monte-Carlo labels agree with exact ones, over every step both label (Monte-Carlo
    labels may stop at their first wrong step: later entries are NaN or missing).

    hard_accuracy: hard == exact; hard_wrong_recall: exact-wrong steps the hard label calls
    wrong; hard_wrong_precision: hard-wrong steps that are exact-wrong; soft_accuracy: (soft >=
    0.5) == exact; soft_mae: mean |soft - exact|; steps: how many steps were compared."""
    e, h, s = [], [], []
    for ex, hd, sf in zip(exact, hard, soft, strict=True):
        for i in range(min(len(ex), len(hd))):
            if not np.isnan(hd[i]):
                e.append(float(ex[i]))
                h.append(float(hd[i]))
                s.append(float(sf[i]))
    if not e:
        return {"steps": 0}
    e, h, s = np.array(e), np.array(h), np.array(s)
    wrong, called_wrong = e == 0, h == 0
    return {
        "steps": len(e),
        "exact_wrong_fraction": float(wrong.mean()),
        "hard_accuracy": float((h == e).mean()),
        "hard_wrong_recall": _mean(called_wrong[wrong]),
        "hard_wrong_precision": _mean(wrong[called_wrong]),
        "soft_accuracy": float(((s >= 0.5) == (e == 1)).mean()),
        "soft_mae": float(np.abs(s - e).mean()),
    }


def step_accuracy(scores: Sequence[Sequence[float]], exact: Sequence[Sequence[bool]],
                  threshold: float = 0.5) -> dict[str, float | None]:
    """A PRM's step verdicts (score >= threshold) against exact labels, over the steps a PRM is
    trained to judge (up to and including the first wrong one): overall accuracy, accuracy on
    the wrong steps and on the right ones (most steps are right, so the overall figure alone
    flatters a PRM that calls everything right)."""
    pred, truth = [], []
    for sc, ex in zip(scores, exact, strict=True):
        keep = supervised_steps(np.asarray(ex, np.float64))
        pred += list(np.asarray(sc)[keep] >= threshold)
        truth += list(np.asarray(ex, bool)[keep])
    pred, truth = np.array(pred, bool), np.array(truth, bool)
    if not len(truth):
        return {"steps": 0}
    return {"steps": int(len(truth)), "accuracy": float((pred == truth).mean()),
            "wrong_step_accuracy": _mean(~pred[~truth]),
            "right_step_accuracy": _mean(pred[truth])}
