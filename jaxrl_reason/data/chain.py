"""Chain arithmetic: GSM8K-shaped multi-step problems where verification matters.

A problem is a start value and 3-8 operations applied in order. The prompt states them
compactly ("7 +5 *3 -4\\n"); the worked solution computes one intermediate result per line in
GSM8K's calculator form, then the answer line:

    <<7+5=12>>
    <<12*3=36>>
    <<36-4=32>>
    #### 32

Every step can be judged exactly (`step_labels`): line k is right iff it applies operation k to
the TRUE value after k steps and states the right result, in any equivalent form (the operands
of + and * in either order, spaces around the symbols). So a line that copies a wrong earlier
value is wrong, and one that recovers the true value is right again: exactly when the gold answer
is still reachable from the prefix, which is what Monte-Carlo labels estimate (Math-Shepherd).
With `rationale_forms="swapped"` the gold rationales write the operands of + and * in either
order, drawn per line, so right solutions are not one string (a verifier then cannot rank by
the text alone); "varied" also spaces the symbols of about half the lines.
Train, validation and test problems are disjoint by construction: a problem's split is a stable
hash of its statement (`tasks.hashed_split`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import gin

from jaxrl_reason.data.tasks import (
    Check,
    Problem,
    hashed_split,
    problem_stream,
    problems_of_length,
)
from jaxrl_reason.errors import require, typed
from jaxrl_reason.rewards.answers import extract_answer, numbers_equal

_OPS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}
_LINE = re.compile(r"<<\s*(-?\d+)\s*([+\-*])\s*(-?\d+)\s*=\s*(-?\d+)\s*>>")
COMMUTATIVE = "+*"
FORMS = ("fixed", "swapped", "varied")


def intermediates(start: int, ops: tuple[tuple[str, int], ...]) -> list[int]:
    """[value after step 1, ..., value after the last step]."""
    values, x = [], start
    for op, y in ops:
        x = _OPS[op](x, y)
        values.append(x)
    return values


def line(x: int, op: str, y: int, z: int, swap: bool = False, spaced: bool = False) -> str:
    """One calculator line, `<<x op y=z>>`; `swap` writes the operands of + or * the other way
    round, `spaced` puts spaces around the symbols."""
    a, b = (y, x) if swap and op in COMMUTATIVE else (x, y)
    return f"<<{a} {op} {b} = {z}>>" if spaced else f"<<{a}{op}{b}={z}>>"


def step_labels(start: int, ops: tuple[tuple[str, int], ...], rationale: str) -> list[bool]:
    """One exact verdict per operation: line k (of the text before "####") is right iff it is
    `<<v op y=w>>` with v the true value before step k, (op, y) operation k, w = v op y (the
    operands of + and * in either order, any spaces around the symbols).
    Missing, blank or unparseable lines are wrong. Blank lines count as lines, so verdict k
    belongs to the k-th newline-ended step (`data.batching.step_ends`)."""
    lines = rationale.split("####", 1)[0].split("\n")
    truth = [start, *intermediates(start, ops)]
    verdicts = []
    for k, (op, y) in enumerate(ops):
        m = _LINE.fullmatch(lines[k].strip()) if k < len(lines) else None
        operands = None if m is None else (int(m[1]), int(m[3]))
        verdicts.append(m is not None and m[2] == op and int(m[4]) == truth[k + 1] and (
            operands == (truth[k], y) or (op in COMMUTATIVE and operands == (y, truth[k]))))
    return verdicts


@gin.configurable
class ChainTask:
    """Chains of `min_steps`..`max_steps` operations (+, -, *) on a start value; operands of
    1..`max_operand` (start: 1..`max_start`), every intermediate kept within 0..`max_value`
    so lines stay short. Difficulty = the number of steps."""

    name = "chain"

    @typed
    def __init__(self, min_steps: int = 3, max_steps: int = 8, max_start: int = 20,
                 max_operand: int = 9, max_value: int = 99, ops: str = "+-*",
                 test_size: int = 1000, rationale_forms: str = "fixed"):
        require(1 <= min_steps <= max_steps, "ChainTask.min_steps", min_steps,
                f"must be in [1, max_steps={max_steps}]")
        require(max_operand >= 1 and max_start >= 1, "ChainTask.max_operand", max_operand,
                "and max_start must be >= 1")
        require(max_value >= max(max_start, max_operand), "ChainTask.max_value", max_value,
                "must be >= max_start and max_operand")
        require(bool(ops) and set(ops) <= set(_OPS), "ChainTask.ops", ops,
                f"must be a non-empty string of {sorted(_OPS)}")
        self.min_steps, self.max_steps = min_steps, max_steps
        self.max_start, self.max_operand, self.max_value = max_start, max_operand, max_value
        require(rationale_forms in FORMS, "ChainTask.rationale_forms", rationale_forms,
                f"must be one of {FORMS}")
        self.ops, self.test_size, self.rationale_forms = ops, test_size, rationale_forms

    # ---- problems ---------------------------------------------------------------------------
    def problem(self, start: int, ops: tuple[tuple[str, int], ...],
                forms: tuple[tuple[bool, bool], ...] | None = None) -> Problem:
        """The problem; its gold rationale writes line k in form `forms[k]` = (swap, spaced)
        (default: all plain)."""
        values = intermediates(start, ops)
        forms = forms or ((False, False),) * len(ops)
        rationale = "".join(line(x, op, y, z, *form) + "\n"
                            for x, (op, y), z, form in zip([start, *values[:-1]], ops, values,
                                                           forms, strict=True))
        return Problem(question=self.statement(start, ops), answer=str(values[-1]),
                       rationale=rationale, difficulty=len(ops),
                       meta={"start": start, "ops": ops})

    @staticmethod
    def statement(start: int, ops: tuple[tuple[str, int], ...]) -> str:
        return f"{start} " + " ".join(f"{op}{y}" for op, y in ops)

    def _sample(self, rng: random.Random, steps: int, split: str) -> Problem:
        while True:  # rejection keeps the splits disjoint and values in range
            x = start = rng.randint(1, self.max_start)
            ops = []
            for _ in range(steps):
                choices = [(op, y) for op in self.ops for y in range(1, self.max_operand + 1)
                           if 0 <= _OPS[op](x, y) <= self.max_value]
                op, y = rng.choice(choices)  # x <= max_value, so "+1" or "-1" always fits
                ops.append((op, y))
                x = _OPS[op](x, y)
            ops = tuple(ops)
            if hashed_split(self.statement(start, ops)) == split:
                forms = None if self.rationale_forms == "fixed" else tuple(
                    (rng.random() < 0.5, self.rationale_forms == "varied" and rng.random() < 0.5)
                    for _ in ops)
                return self.problem(start, ops, forms)

    def problems(self, split: str, seed: int) -> Iterator[Problem]:
        """Endless for "train", `test_size` problems for "valid" and "test"; deterministic in
        (seed, split)."""
        return problem_stream(self._sample, "chain", (self.min_steps, self.max_steps), split, seed,
                              self.test_size)

    def problems_of_length(self, n: int, count: int, seed: int, split: str = "test"
                           ) -> list[Problem]:
        """`count` problems of exactly n steps."""
        return problems_of_length(self._sample, "chain", n, count, seed, split)

    # ---- text -------------------------------------------------------------------------------
    def prompt(self, problem: Problem, hint: str | None = None) -> str:
        """ "7 +5 *3 -4\\n", or "7 +5 *3 -4 H32\\n" when rationalizing with the gold answer."""
        return problem.question + ("" if hint is None else f" H{hint}") + "\n"

    def target(self, problem: Problem, rationale: str | None = None) -> str:
        text = problem.rationale if rationale is None else rationale
        if text and not text.endswith("\n"):
            text += "\n"
        return f"{text}#### {problem.answer}\n"

    def check(self, problem: Problem, completion: str) -> Check:
        """The answer after "####" (numeric equality), and one exact verdict per step."""
        answer = extract_answer(completion) if "####" in completion else None
        correct = answer is not None and numbers_equal(answer, problem.answer)
        steps = step_labels(problem.meta["start"], problem.meta["ops"], completion)
        return Check(answer=answer, correct=correct, steps=steps)
