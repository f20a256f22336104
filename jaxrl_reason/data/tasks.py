"""The task interface every algorithm consumes: problems in, checked completions out.

A task owns its prompt format, so the same algorithm code runs on addition, GSM8K or
program triples. Checking never uses a model: it is an exact checker (answer equality,
a calculator, the sandboxed executor).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem. `rationale` is the gold worked solution where the task has one."""

    question: str
    answer: str
    rationale: str | None = None
    difficulty: int = 0
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Check:
    """Verdict on one completion.

    `steps` holds one bool per rationale step (the process labels) where the task can
    judge steps, else None. `answer` is the parsed final answer (None if unparseable).
    """

    answer: str | None
    correct: bool
    steps: list[bool] | None = None


class Task(Protocol):
    """What a task provides. Prompts and targets are plain text; tokenizing is not its job."""

    name: str

    def problems(self, split: str, seed: int) -> Iterator[Problem]:
        """An endless (train) or finite (test) stream of problems, deterministic in `seed`."""
        ...

    def prompt(self, problem: Problem, hint: str | None = None) -> str:
        """The model input. `hint` (a gold answer) is shown only when rationalizing."""
        ...

    def target(self, problem: Problem, rationale: str | None = None) -> str:
        """The completion to train on: `rationale` (or the gold one) plus the final answer."""
        ...

    def check(self, problem: Problem, completion: str) -> Check:
        """Parses and checks a completion; `steps` where the task has step labels."""
        ...
