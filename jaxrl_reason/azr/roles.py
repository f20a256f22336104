"""The two roles of Absolute Zero over the three task types: what a proposer is asked, how its
proposal is judged (by execution, never by the model), what it is rewarded, and what the
solver is asked.

Validity (ALGORITHMS.md section 7): the proposal parses out of the completion, the program
parses, defines exactly one function (f), uses no banned construct (`banned_reason`: AST,
dotted imports too), takes literal inputs, runs within the time limit and is deterministic
(`validate_programs`: two runs, identical output). Two more rules keep a run sound: the
triple's prompts must fit the model's context (else it could never be asked), and a program
equal to a held-out test program is refused (the test split must never enter a buffer).
"""

from __future__ import annotations

import ast
import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence

from jaxrl_reason.azr.buffers import Buffer
from jaxrl_reason.data.programs import TASK_TYPES, ProgramTask, Proposal, Seed
from jaxrl_reason.data.tasks import Problem
from jaxrl_reason.rewards import programs as checks
from jaxrl_reason.rewards.executor import Executor

ROLES = ("propose", "solve")
# The six sub-batches of a step, in row order; a row's RL group is its sub-batch's index, so
# the trr_pp estimator whitens each (role, task type) pair on its own.
SUB_BATCHES = tuple((role, t) for role in ROLES for t in TASK_TYPES)
LEARNABILITY = {"paper": 0.0, "authors": -0.5}  # the reward of a task solved always or never
# Rejection buckets, each from the reasons `banned_reason` / `validate_programs` give (by
# their opening words) and this module's own.
BUCKETS = {
    "syntax": ("does not parse",),
    "not_one_function": ("defines no top-level f", "defines more than one function"),
    "banned": ("imports", "relative import", "renames", "uses", "reaches"),
    "bad_input": ("no inputs", "input is not a literal"),
    "error_or_timeout": ("fails, times out",),
    "nondeterministic": ("nondeterministic",),
    "too_long": ("does not fit",),
    "held_out": ("equals a held-out",),
}
REJECTIONS = ("malformed", *BUCKETS, "other")
OK = "ok"
MALFORMED = "malformed: no proposal in the completion"

Fits = Callable[[str], bool]  # whether a prompt leaves room for a completion in the context


def group_of(role: str, task_type: str) -> int:
    return SUB_BATCHES.index((role, task_type))


def bucket(reason: str) -> str:
    """The rejection bucket of a reason (`malformed`, one of BUCKETS, or `other`)."""
    if reason == MALFORMED:
        return "malformed"
    return next((name for name, starts in BUCKETS.items() if reason.startswith(starts)),
                "other")


def normalized(program: str) -> str:
    """The program's AST, so that formatting does not make two programs differ."""
    try:
        return ast.dump(ast.parse(program))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return program


def static_reason(program: str) -> str | None:
    """`banned_reason`, then AZR's one-function rule (helpers inside f are fine)."""
    reason = checks.banned_reason(program)
    if reason is None and sum(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                              for n in ast.parse(program).body) != 1:
        return "defines more than one function"
    return reason


def ast_nodes(program: str) -> int:
    return sum(1 for _ in ast.walk(ast.parse(program)))


# ---- what each role is asked ---------------------------------------------------------------
def proposer_problems(task: ProgramTask, buffers: Mapping[str, Buffer], task_type: str, b: int,
                      k: int, rng: random.Random, fits: Fits, n_inputs: int) -> list[Problem]:
    """b proposer prompts. Deduction / abduction: a new program and input given k references
    drawn from the task's buffer without replacement (the last ones dropped while the prompt
    does not fit). Induction: inputs and a message for a program drawn from the deduction and
    abduction buffers (AZR's choice)."""
    out = []
    for _ in range(b):
        meta = {"task_type": task_type, "role": "propose", "program": "", "message": ""}
        if task_type == "induction":
            program = rng.choice(buffers["deduction"].entries + buffers["abduction"].entries)
            program = program.triple
            prompt = task.proposal_prompt(task_type, (), program, n_inputs)
            meta.update(program=program.program, message=program.message, references=0)
        else:
            refs = buffers[task_type].draw(k, rng)
            prompt = task.proposal_prompt(task_type, refs)
            while not fits(prompt) and refs:
                refs = refs[:-1]
                prompt = task.proposal_prompt(task_type, refs)
            meta["references"] = len(refs)
        out.append(Problem(prompt, "", meta=meta))
    return out


def admissible(task: ProgramTask, task_type: str, triple: Seed, fits: Fits, n_inputs: int
               ) -> bool:
    """Whether every prompt the triple can appear in fits the context: its solver problem
    (induction: with every pair shown, the longest case) and, for a program that induction
    proposers may be given, their prompt. References are dropped until a prompt fits."""
    if task_type == "induction":
        widest = Seed(triple.message, triple.program, triple.io + triple.io)  # half = all
        return fits(task.prompt(task.make_problem(task_type, widest, random.Random(0))))
    return all(fits(task.prompt(task.make_problem(task_type, triple, random.Random(0), i)))
               for i in range(len(triple.io))) and fits(
        task.proposal_prompt("induction", (), triple, n_inputs))


# ---- judging proposals ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Judged:
    """A proposer row's verdict: the parsed proposal (None: malformed), why it was rejected
    (OK when valid) and, when valid, the triple with its executed outputs."""

    task_type: str
    proposal: Proposal | None
    reason: str
    triple: Seed | None = None

    @property
    def well_formed(self) -> bool:
        return self.proposal is not None

    @property
    def valid(self) -> bool:
        return self.triple is not None


def judge(task: ProgramTask, executor: Executor, problems: Sequence[Problem],
          completions: Sequence[str], fits: Fits, held_out: set[str], n_inputs: int
          ) -> list[Judged]:
    """Each proposer completion parsed and validated, every execution in one batch."""
    parsed: list[Proposal | None] = []
    for p, c in zip(problems, completions, strict=True):
        t = p.meta["task_type"]
        program = Seed(p.meta["message"], p.meta["program"], ()) if t == "induction" else None
        parsed.append(task.parse_proposal(t, c, program))
    reasons = [MALFORMED if q is None else static_reason(q.program) for q in parsed]
    for i, q in enumerate(parsed):
        if reasons[i] is None and normalized(q.program) in held_out:
            reasons[i] = "equals a held-out test program"
    todo = [i for i, r in enumerate(reasons) if r is None]
    verdicts = checks.validate_programs(
        executor, [(parsed[i].program, parsed[i].inputs) for i in todo])
    out = [Judged(p.meta["task_type"], q, r or OK) for p, q, r in zip(problems, parsed, reasons,
                                                                     strict=True)]
    for i, v in zip(todo, verdicts, strict=True):
        t, q = out[i].task_type, parsed[i]
        if not v.valid:
            out[i] = Judged(t, q, v.reason)
            continue
        triple = Seed(q.message, q.program, tuple(zip(q.inputs, v.outputs, strict=True)))
        if admissible(task, t, triple, fits, n_inputs):
            out[i] = Judged(t, q, OK, triple)
        else:
            out[i] = Judged(t, q, "does not fit the model's context")
    return out


def admit(buffers: Mapping[str, Buffer], judged: Sequence[Judged], step: int) -> None:
    """The valid proposals' triples join their task type's buffer; nothing else ever does."""
    for t, buffer in buffers.items():
        buffer.add([j.triple for j in judged if j.valid and j.task_type == t], step)


# ---- rewards -------------------------------------------------------------------------------
def learnability(solved: Sequence[bool], variant: str) -> float:
    """1 - the solver's solve rate over its samples; a task solved always or never earns
    LEARNABILITY[variant]: 0 in the paper, -0.5 in the authors' code."""
    rate = sum(map(bool, solved)) / len(solved)
    return LEARNABILITY[variant] if rate in (0.0, 1.0) else checks.learnability_reward(solved)


def proposer_reward(judged: Judged, learn: float) -> float:
    """`learn` (the learnability) for a valid proposal, -0.5 for a well-formed invalid one,
    -1 for a malformed one."""
    return checks.format_aware_reward(learn, judged.valid, judged.well_formed)


def solver_reward(answer: str | None, correct: bool) -> float:
    """1 for an answer right by execution, -0.5 for a well-formed wrong one, -1 for none."""
    return checks.format_aware_reward(checks.solver_reward(correct), correct, answer is not None)
