"""Sampled solutions with their labels: the records verifier training and search share.

A `Solution` keeps the exact ids the policy saw and emitted, where its steps end (indices into
the completion ids, `data.batching.step_ends`) and one label per step, so nothing is
re-tokenized from text. Problems are referred to by index into the job's deterministic
problem list, so a record is plain JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxrl_reason.data.batching import Example, step_ends
from jaxrl_reason.errors import UserError
from jaxrl_reason.rollouts import Rollout
from jaxrl_reason.tokenizers import Tokenizer
from jaxrl_reason.verifiers.labels import answer_line_labels


@dataclasses.dataclass
class Solution:
    """One sampled solution. `exact` holds the task's exact label of each step (None when the
    task has no step checker); `mc_hard` / `mc_soft` the Monte-Carlo ones (NaN: not labeled,
    past the first wrong step)."""

    problem: int
    prompt: tuple[int, ...]
    completion: tuple[int, ...]
    finished: bool
    answer: str | None
    correct: bool
    step_ends: tuple[int, ...]
    exact: tuple[bool, ...] | None = None
    mc_hard: tuple[float, ...] | None = None
    mc_soft: tuple[float, ...] | None = None

    @property
    def example(self) -> Example:
        return Example(self.prompt, self.completion)

    def labels(self, source: str) -> np.ndarray:
        """[S] float labels from `source`: "exact", "mc_hard" or "mc_soft"."""
        values = getattr(self, source)
        if values is None:
            raise UserError(f"solutions carry no {source!r} step labels (run the labeling "
                            f"stage that makes them, or pick another label source)")
        return np.asarray(values, np.float64)

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, row: dict) -> Solution:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in row.items()})


def step_delimiters(tok: Tokenizer, delimiter: str = "\n") -> tuple[int, ...]:
    """The token id that ends a step (one token: a newline for the char tokenizer)."""
    ids = tok.encode(delimiter)
    if len(ids) != 1:
        raise UserError(f"the step delimiter {delimiter!r} is {len(ids)} tokens for this "
                        f"tokenizer; steps need a one-token delimiter")
    return tuple(ids)


def step_texts(tok: Tokenizer, completion: Sequence[int], ends: Sequence[int]) -> list[str]:
    """The text of each step: the ids after the previous step's end up to this one's (none for
    a completion that ends no step, e.g. cut off before its first delimiter)."""
    starts = [0, *(e + 1 for e in ends)][: len(ends)]
    return [tok.decode(completion[a : b + 1]) for a, b in zip(starts, ends, strict=True)]


def from_rollouts(rollouts: Sequence[Rollout], problem_index: Sequence[int], tok: Tokenizer,
                  delimiters: Sequence[int]) -> list[Solution]:
    """Labels each checked rollout: outcome, step ends, and exact step labels where the task's
    checker judges steps."""
    out = []
    for r, p in zip(rollouts, problem_index, strict=True):
        ends = step_ends(r.completion_ids, delimiters, stop_ids=(tok.eos_id,))
        exact = None
        if r.check.steps is not None:
            exact = tuple(answer_line_labels(step_texts(tok, r.completion_ids, ends), r.check))
        out.append(Solution(int(p), tuple(r.prompt_ids), tuple(int(t) for t in r.completion_ids),
                            bool(r.finished), r.check.answer, bool(r.check.correct), tuple(ends),
                            exact))
    return out
