"""The task interface every algorithm consumes: problems in, checked completions out.

A task owns its prompt format, so the same algorithm code runs on addition, GSM8K or
program triples. Checking never uses a model: it is an exact checker (answer equality,
a calculator, the sandboxed executor).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable


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


@runtime_checkable
class Task(Protocol):
    """What a task provides. Prompts and targets are plain text; tokenizing is not its job.
    The optional capabilities below are Protocols too: code asks `isinstance(task, LengthTask)`
    and a task declares one by defining its method."""

    name: str

    def problems(self, split: str, seed: int) -> Iterator[Problem]:
        """An endless ("train") or finite ("valid", "test") stream of problems, deterministic
        in `seed`. "valid" is disjoint from both: decisions made during a run read it."""
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


@runtime_checkable
class LengthTask(Task, Protocol):
    """Problems by difficulty (digits, lines of the gold rationale): accuracy per length."""

    def problems_of_length(self, n: int, count: int, seed: int, split: str = "test"
                           ) -> list[Problem]:
        ...


@runtime_checkable
class BatchCheckTask(Task, Protocol):
    """Checks many completions at once (program tasks run their executions together); the
    verdicts equal `check`'s one by one."""

    def check_batch(self, problems: Sequence[Problem], completions: Sequence[str]
                    ) -> list[Check]:
        ...


@runtime_checkable
class QuestionTask(Task, Protocol):
    """Reads a question as a person types it ("4821+977"), so `sample` and
    `jaxrl_reason.load(...).format` can put it in the task's prompt format."""

    def from_question(self, question: str) -> Problem:
        ...


@runtime_checkable
class ExecutorTask(Task, Protocol):
    """Checks by running code: owns the sandboxed executor its checks run in and parses the
    answer to run out of a completion (the `executor` reward reuses both)."""

    @property
    def executor(self) -> Any:
        ...

    def parse(self, problem: Problem, completion: str) -> str | None:
        ...


Sampler = Callable[[random.Random, int, str], Problem]  # (rng, difficulty, split) -> a problem
SPLITS = ("train", "valid", "test")


def hashed_split(key: str, buckets: int = 10, valid: bool = True) -> str:
    """'test' for one key in `buckets`, 'valid' for another one in `buckets` (when `valid`),
    else 'train': a stable hash of the problem's text, so no seed or length can leak a test or
    validation problem into training."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    h = int.from_bytes(digest, "little") % buckets
    return "test" if h == 0 else "valid" if valid and h == 1 else "train"


def problem_stream(sample: Sampler, name: str, difficulties: tuple[int, int], split: str,
                   seed: int, test_size: int) -> Iterator[Problem]:
    """A generated task's `problems`: endless for "train", `test_size` problems for "valid"
    and "test", each of a difficulty drawn uniformly from the inclusive range; deterministic in
    (name, seed, split)."""
    if split not in SPLITS:
        raise ValueError(f"{name} split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"{name}-{seed}-{split}")
    count = 0
    while split == "train" or count < test_size:
        yield sample(rng, rng.randint(*difficulties), split)
        count += 1


def problems_of_length(sample: Sampler, name: str, n: int, count: int, seed: int,
                       split: str) -> list[Problem]:
    """A generated task's `problems_of_length`: `count` problems of difficulty n."""
    rng = random.Random(f"{name}-{seed}-{split}-len{n}")
    return [sample(rng, n, split) for _ in range(count)]
