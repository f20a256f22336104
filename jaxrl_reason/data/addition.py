"""n-digit addition with a character-level scratchpad, checked step by step.

Scratchpads (`scratchpad=`):
- "columns": one line per column, least significant first, with its digits, carry in and sum:
  prompt "624+259\\n", target "4+9+0=13\\n2+5+1=08\\n6+2+0=08\\nA:883\\n";
- "nye": the STaR paper's (Nye et al.) format, operands shrinking line by line:
  target "624+259,C0\\n62+25,3C1\\n6+2,83C0\\n,883C0\\nA:883\\n";
- "none": the answer alone, "A:883\\n".
With `reverse=True` (length generalization, Lee et al. 2025) every number in the prompt and
answer is written least significant digit first: prompt "426+952\\n", answer line "A:388".
With `mixed_lengths=True` the shorter operand has 1..n digits (in either order): a model
shown only equal lengths finds a column's digits by where the operand starts, and that lookup
breaks at a length it never saw (docs/star.md).
With `random_offset=k` each prompt starts with 0..k spaces (drawn per problem): a model
without position encodings then cannot find a digit by its distance from the start of the
text, and must find it from the operand's own start (docs/star.md).
With `pad_answer=True` (Lee et al. 2025's format) the answer always has one digit more than the
longer operand, zero-padded: "A:3880". Its length is then fixed by the operands, so a model that
stops early or drops a digit writes a label the length filter can see.

Train, validation and test problems are disjoint by construction: an operand pair's split is
a stable hash of the unordered pair (`tasks.hashed_split`), so no seed or digit length can leak
a test or validation problem into training.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import gin

from jaxrl_reason.data.tasks import (
    Check,
    Problem,
    hashed_split,
    problem_stream,
    problems_of_length,
)
from jaxrl_reason.errors import UserError
from jaxrl_reason.rewards.answers import parse_answer_line
from jaxrl_reason.rewards.steps import addition_columns, addition_scratchpad, scratch_steps

SCRATCHPADS = {"columns": addition_columns, "nye": addition_scratchpad, "none": lambda a, b: []}


def split_of(a: int, b: int) -> str:
    """'train', 'valid' or 'test' for the pair, the same for a+b and b+a."""
    lo, hi = sorted((a, b))
    return hashed_split(f"{lo}+{hi}")


def sample_operand(rng: random.Random, n: int) -> int:
    """A uniform n-digit number (leading digit nonzero when n > 1)."""
    return rng.randint(0 if n == 1 else 10 ** (n - 1), 10**n - 1)


@gin.configurable
class AdditionTask:
    """Addition of two operands drawn uniformly in a range of digit counts: the same count
    for both, or with `mixed_lengths` the longer one's count with the other's anywhere up to
    it."""

    name = "addition"

    def __init__(
        self,
        min_digits: int = 1,
        max_digits: int = 5,
        scratchpad: str = "columns",
        reverse: bool = False,
        pad_answer: bool = False,
        test_size: int = 1000,
        mixed_lengths: bool = False,
        random_offset: int = 0,
    ):
        if not 1 <= min_digits <= max_digits:
            raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
        if scratchpad not in SCRATCHPADS:
            raise ValueError(
                f"AdditionTask.scratchpad must be one of {sorted(SCRATCHPADS)}, got {scratchpad!r}"
            )
        if scratchpad == "nye" and reverse:
            raise ValueError("AdditionTask: reverse=True does not apply to the 'nye' scratchpad")
        self.min_digits = min_digits
        self.max_digits = max_digits
        self.scratchpad = scratchpad
        self.reverse = reverse
        self.pad_answer = pad_answer
        self.test_size = test_size
        self.mixed_lengths = mixed_lengths
        if random_offset < 0:
            raise ValueError(f"AdditionTask.random_offset must be >= 0, got {random_offset}")
        self.random_offset = random_offset

    def problem(self, a: int, b: int, offset: int = 0) -> Problem:
        """The problem a+b; its difficulty is the longer operand's digit count. The answer is
        the sum as written (zero-padded to the longer operand's length + 1 with `pad_answer`);
        `offset` spaces start its prompt."""
        sa, sb = str(a), str(b)
        lines = SCRATCHPADS[self.scratchpad](sa, sb)
        rationale = "".join(ln + "\n" for ln in lines)
        width = max(len(sa), len(sb)) + 1 if self.pad_answer else 0
        return Problem(
            question=f"{a}+{b}",
            answer=str(a + b).zfill(width),
            rationale=rationale,
            difficulty=max(len(sa), len(sb)),
            meta={"a": a, "b": b, **({"offset": offset} if offset else {})},
        )

    def from_question(self, question: str) -> Problem:
        """ "a+b" as a person writes it (most significant digit first), whatever `reverse`."""
        a, plus, b = question.strip().partition("+")
        if not (plus and a.strip().isdigit() and b.strip().isdigit()):
            raise UserError(f"addition questions look like '4821+977', got {question!r}")
        return self.problem(int(a), int(b))

    def _sample(self, rng: random.Random, n: int, split: str) -> Problem:
        while True:  # rejection keeps the splits disjoint; ~10% or ~80% acceptance
            a = sample_operand(rng, n)
            b = sample_operand(rng, rng.randint(1, n) if self.mixed_lengths else n)
            if self.mixed_lengths and rng.random() < 0.5:
                a, b = b, a
            if split_of(a, b) == split:
                offset = rng.randint(0, self.random_offset) if self.random_offset else 0
                return self.problem(a, b, offset)

    def problems(self, split: str, seed: int) -> Iterator[Problem]:
        """Endless for "train", `test_size` problems for "valid" and "test"; deterministic in
        (seed, split)."""
        return problem_stream(self._sample, "addition", (self.min_digits, self.max_digits), split,
                              seed, self.test_size)

    def problems_of_length(
        self, n: int, count: int, seed: int, split: str = "test"
    ) -> list[Problem]:
        """`count` problems with n-digit operands, for accuracy per digit length."""
        return problems_of_length(self._sample, "addition", n, count, seed, split)

    def _write(self, number: str) -> str:
        return number[::-1] if self.reverse else number

    def prompt(self, problem: Problem, hint: str | None = None) -> str:
        """ "a+b\\n", or "a+b H<answer>\\n" when rationalizing with the gold answer as hint."""
        a, b = (self._write(str(problem.meta[k])) for k in ("a", "b"))
        shown = "" if hint is None else f" H{self._write(hint)}"
        return f"{' ' * problem.meta.get('offset', 0)}{a}+{b}{shown}\n"

    def target(self, problem: Problem, rationale: str | None = None) -> str:
        """Scratch lines (gold unless `rationale` given; none without scratchpad), "A:<ans>"."""
        text = problem.rationale if rationale is None else rationale
        text = text if self.scratchpad != "none" else ""
        if text and not text.endswith("\n"):
            text += "\n"
        return f"{text}A:{self._write(problem.answer)}\n"

    def check(self, problem: Problem, completion: str) -> Check:
        """Exact answer match; with a scratchpad, one verdict per scratch line."""
        answer = parse_answer_line(completion)
        if answer is not None:
            answer = self._write(answer)
        steps = None
        if self.scratchpad != "none":
            gold = SCRATCHPADS[self.scratchpad](str(problem.meta["a"]), str(problem.meta["b"]))
            steps = scratch_steps(gold, completion)
        return Check(answer=answer, correct=answer == problem.answer, steps=steps)
