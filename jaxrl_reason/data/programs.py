"""Absolute Zero program tasks over (program p, input i, output o) triples.

Three solver tasks (meta["task_type"]): deduction (p, i -> o), abduction (p, o -> any i with
p(i) == o) and induction (a message and half of the I/O pairs -> a program that passes the
hidden half). Self-play also needs the proposer's side: `proposal_prompt` asks for a new
program (with an input, or inputs and a message), `parse_proposal` reads it back; validity
and every check are decided by execution in jaxrl_reason.rewards.programs.

For a base model (docs/azr.md), `generated` adds programs from data/program_generator.py to
the training pool, and `propose` makes part of the training problems proposer problems (meta
"role": "propose") whose gold target is a training program; the test split is always the
hand-written seeds' test programs.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Iterator, Sequence

import gin

from jaxrl_reason.data.program_seeds import SEEDS
from jaxrl_reason.data.tasks import Check, Problem, hashed_split
from jaxrl_reason.errors import UserError
from jaxrl_reason.rewards import programs as checks
from jaxrl_reason.rewards.executor import Executor

TASK_TYPES = ("deduction", "abduction", "induction")
TEST_BUCKETS = 5  # one seed program in TEST_BUCKETS is a test program

INSTRUCTIONS = {
    "deduction": "Given a Python program defining f and an input (the arguments of f), "
                 "predict the output: repr(f(input)).",
    "abduction": "Given a Python program defining f and an output, find an input (the "
                 "arguments of f, as Python literals) for which repr(f(input)) equals it.",
    "induction": "Given a description of a function f and some input/output examples, write "
                 "a Python program defining f. It is checked on further hidden examples.",
}
PROPOSE = {
    "deduction": "Write a new Python program defining f, different from the references, and "
                 "an input for it, so that predicting its output takes careful reasoning.",
    "abduction": "Write a new Python program defining f, different from the references, and "
                 "an input for it, so that recovering an input from its output is a puzzle.",
    "induction": "Write {n} diverse inputs for the program below and a message describing "
                 "what f does, so that f can be inferred from half of the examples.",
}
PROPOSAL_RULES = ("f must be deterministic and fast; no imports of os, sys, random, time or "
                  "similar, no eval, exec, open or __import__. An input is the argument list "
                  "of f as Python literals, e.g. [1, 2], 'ab'.")


@dataclasses.dataclass(frozen=True)
class Seed:
    """A program with its message and executed (input, output) pairs: one triple per pair."""

    message: str
    program: str
    io: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class Proposal:
    """What a proposer wrote: a program and its inputs (induction also a message)."""

    program: str
    inputs: tuple[str, ...]
    message: str = ""


def seed_programs() -> list[Seed]:
    """The hand-written seed set (jaxrl_reason/data/program_seeds.py)."""
    return [Seed(m, p.rstrip("\n"), tuple(io)) for m, p, io in SEEDS]


def split_of(program: str) -> str:
    """'test' or 'train', from a stable hash of the program text (no validation split: the
    seed set is small)."""
    return hashed_split(program, TEST_BUCKETS, valid=False)


def _tag(name: str, body: str) -> str:
    return f"<{name}>\n{body}\n</{name}>" if "\n" in body else f"<{name}>{body}</{name}>"


@gin.configurable(denylist=["seeds", "executor"])
class ProgramTask:
    """The Task protocol over program triples; checks run in a sandboxed `Executor` (created
    on first use unless one is given, and then owned: `close()` stops it).

    For a base model: `generated` programs from the generator (seeded with the `problems`
    seed, outputs by execution) join the training pool; a `propose` fraction of training
    problems asks for a new program given `references` training programs (or, for induction,
    for a message and inputs), with a training program as the gold target; `compact` prompts
    name the task instead of spelling out the instructions (shorter sequences for small
    char-level models; the tags carry everything); `max_chars` skips training problems whose
    prompt + target is longer (a batch must hold them whole). The test split never changes:
    every pair of the hand-written seeds' test programs."""

    name = "programs"

    def __init__(self, task_types: Sequence[str] = TASK_TYPES, seeds: Sequence[Seed] | None = None,
                 executor: Executor | None = None, answer_tags: tuple[str, str] = (
                     "<answer>", "</answer>"), timeout_s: float = 5.0, generated: int = 0,
                 propose: float = 0.0, references: int = 2, compact: bool = False,
                 max_chars: int | None = None):
        unknown = set(task_types) - set(TASK_TYPES)
        if unknown or not task_types:
            raise ValueError(f"task_types must be a non-empty subset of {TASK_TYPES}: {unknown}")
        if generated < 0 or not 0.0 <= propose <= 1.0 or references < 0:
            raise UserError(f"ProgramTask needs generated >= 0, 0 <= propose <= 1 and "
                            f"references >= 0, got {generated}, {propose}, {references}")
        self.task_types = tuple(task_types)
        self.seeds = list(seed_programs() if seeds is None else seeds)
        self.open_tag, self.close_tag = answer_tags
        self.timeout_s = timeout_s
        self.generated, self.propose, self.references = generated, propose, references
        self.compact, self.max_chars = compact, max_chars
        self._generated: dict[int, list[Seed]] = {}
        self._executor = executor
        self._owns_executor = executor is None

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = Executor(timeout_s=self.timeout_s)
        return self._executor

    def close(self) -> None:
        if self._owns_executor and self._executor is not None:
            self._executor.close()
            self._executor = None

    # ---- problems ---------------------------------------------------------------------
    def generated_programs(self, seed: int) -> list[Seed]:
        """The `generated` programs of `seed` (run once in the executor, then cached), less
        any that equals a hand-written seed."""
        if seed not in self._generated:
            from jaxrl_reason.data.program_generator import generate_seeds  # imports Seed
            known = {s.program for s in self.seeds}
            made = generate_seeds(self.executor, self.generated, seed) if self.generated else []
            self._generated[seed] = [s for s in made if s.program not in known]
        return self._generated[seed]

    def problems(self, split: str, seed: int) -> Iterator[Problem]:
        """Train: an endless random stream over the seeds' train split plus the generated
        programs. Test: every pair of every test seed program under every task type (one
        induction problem per program), in a fixed order."""
        if split not in ("train", "test"):
            raise UserError(f"ProgramTask has no {split!r} split (only 'train' and 'test': its "
                            f"{len(self.seeds)} seed programs are too few to hold one out)")
        pool = [s for s in self.seeds if split_of(s.program) == split]
        if split == "train":
            pool += self.generated_programs(seed)
        if not pool:
            raise ValueError(f"no seed program falls in the {split} split")
        rng = random.Random(seed)
        if split == "test":
            for s in pool:
                for task_type in self.task_types:
                    count = 1 if task_type == "induction" else len(s.io)
                    for index in range(count):
                        yield self.make_problem(task_type, s, rng, index)
            return
        while True:
            s = rng.choice(pool)
            if self.propose and rng.random() < self.propose:
                others = [r for r in rng.sample(pool, min(len(pool), self.references + 1))
                          if r is not s][: self.references]
                problem = self.make_proposal(rng.choice(self.task_types), s, others, rng)
            else:
                problem = self.make_problem(rng.choice(self.task_types), s, rng)
            if self.max_chars is None or (len(self.prompt(problem)) + len(self.target(problem))
                                          <= self.max_chars):
                yield problem

    def make_problem(self, task_type: str, seed: Seed, rng: random.Random,
                     index: int | None = None) -> Problem:
        """One problem from `seed`: the pair `index` (random if None) for deduction and
        abduction; a random half of the pairs shown for induction (needs 2+ pairs)."""
        meta = {"task_type": task_type, "program": seed.program, "message": seed.message}
        if task_type == "induction":
            if len(seed.io) < 2:
                raise ValueError("induction needs at least 2 (input, output) pairs")
            pairs = list(seed.io)
            rng.shuffle(pairs)
            shown, hidden = pairs[: len(pairs) // 2], pairs[len(pairs) // 2:]
            examples = "\n".join(_tag("example", _tag("input", i) + _tag("output", o))
                                 for i, o in shown)
            question = f"{_tag('message', seed.message)}\n{examples}"
            return Problem(question, seed.program, meta={**meta, "shown": shown,
                                                         "hidden": hidden})
        i, o = seed.io[rng.randrange(len(seed.io)) if index is None else index]
        meta.update(input=i, output=o)
        if task_type == "deduction":
            return Problem(f"{_tag('program', seed.program)}\n{_tag('input', i)}", o, meta=meta)
        if task_type == "abduction":
            return Problem(f"{_tag('program', seed.program)}\n{_tag('output', o)}", i, meta=meta)
        raise ValueError(f"unknown task type {task_type!r}")

    def make_proposal(self, task_type: str, seed: Seed, references: Sequence[Seed],
                      rng: random.Random) -> Problem:
        """A proposer problem whose gold answer is `seed`: its program and one input given
        `references` (deduction, abduction), or its message and inputs (induction)."""
        meta = {"task_type": task_type, "role": "propose", "program": seed.program,
                "message": seed.message}
        if task_type == "induction":
            prompt = self.proposal_prompt(task_type, (), seed, n_inputs=len(seed.io))
            answer = "\n".join([_tag("message", seed.message),
                                *(_tag("input", i) for i, _ in seed.io)])
        else:
            prompt = self.proposal_prompt(task_type, references)
            answer = f"{_tag('program', seed.program)}\n{_tag('input', rng.choice(seed.io)[0])}"
        return Problem(prompt, answer, meta=meta)

    # ---- text -------------------------------------------------------------------------
    def prompt(self, problem: Problem, hint: str | None = None) -> str:
        """The solver prompt (a proposer problem's question is its whole prompt)."""
        if problem.meta.get("role") == "propose":
            return problem.question
        task_type = problem.meta["task_type"]
        hint_line = f"The correct answer is: {hint}\n" if hint is not None else ""
        if self.compact:
            return f"{task_type}\n{problem.question}\n{hint_line}"
        return (f"{INSTRUCTIONS[task_type]}\n{problem.question}\n{hint_line}"
                f"Reason step by step, then give the final answer inside "
                f"{self.open_tag}{self.close_tag}.\n")

    def target(self, problem: Problem, rationale: str | None = None) -> str:
        rationale = rationale if rationale is not None else problem.rationale
        head = f"{rationale.strip()}\n" if rationale else ""
        if problem.meta.get("role") == "propose":
            return f"{head}{problem.answer}"
        return f"{head}{self.open_tag}{problem.answer}{self.close_tag}"

    # ---- checking ---------------------------------------------------------------------
    def parse(self, problem: Problem, completion: str) -> str | None:
        """The answer if it is well formed for the task type, else None (-1 in AZR). For a
        proposer problem: the proposed program (induction: the message)."""
        if problem.meta.get("role") == "propose":
            proposal = self._proposal(problem, completion)
            return None if proposal is None else proposal.message or proposal.program
        answer = checks.extract_tagged(completion, self.open_tag, self.close_tag)
        if not answer:
            return None
        task_type = problem.meta["task_type"]
        if task_type == "abduction":
            return answer if checks.parse_input(answer) is not None else None
        if task_type == "induction":
            return checks.parse_program(answer)
        return answer

    def check(self, problem: Problem, completion: str) -> Check:
        return self.check_batch([problem], [completion])[0]

    def check_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Check]:
        """Checks many completions with one executor batch per task type."""
        answers = [self.parse(p, c) for p, c in zip(problems, completions, strict=True)]
        correct = [False] * len(problems)
        by_type: dict[str, list[int]] = {}
        for k, (p, a) in enumerate(zip(problems, answers, strict=True)):
            if a is not None:
                role = "propose" if p.meta.get("role") == "propose" else p.meta["task_type"]
                by_type.setdefault(role, []).append(k)
        if ks := by_type.get("propose"):  # a proposal is right when it is valid by execution
            proposals = [self._proposal(problems[k], completions[k]) for k in ks]
            verdicts = checks.validate_programs(
                self.executor, [(q.program, q.inputs) for q in proposals if q])
            for k, verdict in zip(ks, verdicts, strict=True):
                correct[k] = verdict.valid
        for k in by_type.get("deduction", []):
            correct[k] = checks.check_deduction(problems[k].meta["output"], answers[k])
        if ks := by_type.get("abduction"):
            items = [(problems[k].meta["program"], problems[k].meta["output"], answers[k])
                     for k in ks]
            for k, ok in zip(ks, checks.check_abductions(self.executor, items), strict=True):
                correct[k] = ok
        if ks := by_type.get("induction"):
            items = [(answers[k], problems[k].meta["hidden"]) for k in ks]
            for k, ok in zip(ks, checks.check_inductions(self.executor, items), strict=True):
                correct[k] = ok
        return [Check(a, c) for a, c in zip(answers, correct, strict=True)]

    # ---- proposing (self-play) --------------------------------------------------------
    def proposal_prompt(self, task_type: str, references: Sequence[Seed],
                        program: Seed | None = None, n_inputs: int = 6) -> str:
        """Asks for a new task conditioned on K reference triples (deduction/abduction: a
        program and an input) or, for induction, for inputs and a message for `program`.
        `compact`: the role and task's name instead of the instructions."""
        if task_type == "induction":
            if program is None:
                raise ValueError("an induction proposal is written for a given program")
            if self.compact:
                return f"propose induction {n_inputs}\n{_tag('program', program.program)}\n"
            return (f"{PROPOSE['induction'].format(n=n_inputs)} {PROPOSAL_RULES}\n"
                    f"{_tag('program', program.program)}\n"
                    f"Answer as <message>...</message> then {n_inputs} <input>...</input>.\n")
        refs = "\n".join(f"{_tag('program', s.program)}\n{_tag('input', s.io[0][0])}\n"
                         f"{_tag('output', s.io[0][1])}" for s in references)
        if self.compact:
            return f"propose {task_type}\n{refs}\n" if refs else f"propose {task_type}\n"
        return (f"{PROPOSE[task_type]} {PROPOSAL_RULES}\nReferences:\n{refs}\n"
                "Answer as <program>...</program> then <input>...</input>.\n")

    def parse_proposal(self, task_type: str, completion: str,
                       program: Seed | None = None) -> Proposal | None:
        """The proposal in `completion`, or None if malformed (AZR's -1)."""
        inputs = tuple(s.strip() for s in re.findall(r"<input>(.*?)</input>", completion,
                                                     flags=re.DOTALL))
        if task_type == "induction":
            message = checks.extract_tagged(completion, "<message>", "</message>")
            if program is None or not message or len(inputs) < 2:
                return None
            return Proposal(program.program, inputs, message)
        code = checks.extract_tagged(completion, "<program>", "</program>")
        if not code or len(inputs) != 1:
            return None
        return Proposal(checks.strip_code_fence(code), inputs)

    def _proposal(self, problem: Problem, completion: str) -> Proposal | None:
        task_type = problem.meta["task_type"]
        program = Seed(problem.meta["message"], problem.meta["program"], ())
        return self.parse_proposal(task_type, completion,
                                   program if task_type == "induction" else None)
