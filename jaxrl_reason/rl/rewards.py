"""Rewards by name, composable with weights, and the two ways of combining them.

A reward reads a `Rollouts` batch (host side: problems, exact ids, decoded text, the task's
checks) and returns either one value per row (kind "outcome") or one value per STEP of each
row (kind "step": an array aligned with the row's `step_ends`, NaN where a step gets no
reward). No reward re-tokenizes text or imports jax (a PRM's scores come from the verifier).

Combining (`combine`): "sum" adds the weighted rewards; "normalize_each" (GDPO, Liu et al.
2026) first normalizes each reward within its group (outcome rewards over the group's rows,
step rewards over all the group's steps), then adds them, so a reward with a large spread
cannot drown one with a small spread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import gin
import numpy as np

from jaxrl_reason.data.batching import Example
from jaxrl_reason.data.tasks import ExecutorTask, Problem
from jaxrl_reason.errors import UserError, require, typed
from jaxrl_reason.named import Named
from jaxrl_reason.rewards import programs as program_checks
from jaxrl_reason.rollouts import Rollouts


class Reward(Protocol):
    kind: str  # "outcome" or "step"

    def __call__(self, rollouts: Rollouts) -> Any: ...


REWARDS: Named[Callable[[], Reward]] = Named("reward")
register = REWARDS.register


@register("outcome")
@gin.configurable("outcome_reward")
class OutcomeReward:
    """The task's checker: `correct` if the final answer is right, else `wrong`."""

    kind = "outcome"

    @typed
    def __init__(self, correct: float = 1.0, wrong: float = 0.0):
        self.correct, self.wrong = correct, wrong

    def __call__(self, rollouts: Rollouts) -> np.ndarray:
        return np.array([self.correct if c.correct else self.wrong for c in rollouts.checks])


def execution_calls(problem: Problem, answer: str) -> list[tuple[str, str, str]] | None:
    """(program, input, expected output) runs that judge `answer` to a program task: the hidden
    pairs for induction (the answer is a program; None if it uses a banned construct), one
    run for abduction (the answer is an input), none for deduction (the answer is an output,
    compared by value)."""
    kind = problem.meta.get("task_type")
    if kind == "deduction":
        return []
    if kind == "induction":
        if program_checks.banned_reason(answer):
            return None
        return [(answer, i, o) for i, o in problem.meta["hidden"]]
    if kind == "abduction":
        return [(problem.meta["program"], answer, problem.meta["output"])]
    raise UserError(f"the executor reward needs a program task (data.programs), got a problem "
                    f"of task type {kind!r}")


@register("executor")
@gin.configurable("executor_reward")
class ExecutorReward:
    """Execution results for program tasks, batched through the sandbox (`rewards.executor`):
    the fraction of the problem's runs the answer passes (partial credit over an induction's
    hidden pairs; 0 for a program with a banned construct), 1/0 for a deduction compared by
    value, `malformed` when the answer does not parse. All runs of a batch go through one
    `run_batch`."""

    kind = "outcome"

    @typed
    def __init__(self, malformed: float = 0.0, timeout_s: float | None = None):
        self.malformed, self.timeout_s = malformed, timeout_s

    def __call__(self, rollouts: Rollouts) -> np.ndarray:
        task = rollouts.task
        if not isinstance(task, ExecutorTask):
            raise UserError(f"the executor reward needs a program task with a sandbox, got "
                            f"{type(task).__name__}")
        answers = [task.parse(p, c) for p, c in zip(rollouts.problems, rollouts.completions,
                                                     strict=True)]
        per_row = [None if a is None else execution_calls(p, a)
                   for p, a in zip(rollouts.problems, answers, strict=True)]
        calls = [(prog, inp) for runs in per_row if runs for prog, inp, _ in runs]
        outs = iter(program_checks.run_calls(task.executor, calls, self.timeout_s)
                    if calls else [])
        values = []
        for p, a, runs in zip(rollouts.problems, answers, per_row, strict=True):
            if a is None:
                values.append(self.malformed)
            elif runs is None:
                values.append(0.0)
            elif not runs:
                values.append(float(program_checks.check_deduction(p.meta["output"], a)))
            else:
                passed = [o is not None and program_checks.outputs_equal(o, want)
                          for o, (_, _, want) in zip([next(outs) for _ in runs], runs,
                                                     strict=True)]
                values.append(float(np.mean(passed)))
        return np.array(values)


def labels_on_steps(labels: Sequence[bool] | None, n_ends: int) -> np.ndarray:
    """One value per step end from a checker's per-step verdicts: label j goes to end j; ends
    past the labels (the answer line, stray lines) get NaN (no step reward); labels past the
    last end (steps the completion never wrote) are dropped: their lines do not exist, and the
    outcome already pays for the missing work."""
    out = np.full(n_ends, np.nan)
    if labels:
        k = min(len(labels), n_ends)
        out[:k] = np.asarray(labels[:k], np.float64)
    return out


@register("step_labels")
@gin.configurable("step_label_reward")
class StepLabelReward:
    """Exact step-checker labels (`Check.steps`, e.g. ChainTask / AdditionTask): `correct` for
    a right step, `wrong` for a wrong one, at the step's last token."""

    kind = "step"

    @typed
    def __init__(self, correct: float = 1.0, wrong: float = 0.0):
        self.correct, self.wrong = correct, wrong

    def __call__(self, rollouts: Rollouts) -> list[np.ndarray]:
        out = []
        for check, ends in zip(rollouts.checks, rollouts.step_ends, strict=True):
            if check.steps is None:
                raise UserError(f"the step_labels reward needs a task with a step checker; "
                                f"{rollouts.task.name} gives no Check.steps")
            lab = labels_on_steps(check.steps, len(ends))
            out.append(np.where(np.isnan(lab), np.nan,
                                np.where(lab > 0, self.correct, self.wrong)))
        return out


class Verifier(Protocol):
    """The part of `verifiers.scoring.Verifier` the PRM reward uses."""

    kind: str

    def step_scores(self, examples: Sequence[Example], step_ends: Sequence[Sequence[int]]
                    ) -> list[np.ndarray]: ...


@register("prm")
@gin.configurable("prm_reward")
class PRMReward:
    """Per-step scores of a trained process verifier, P(step correct) at each step end. The
    verifier is restored from `workdir` (the verifier job's run) unless one is given."""

    kind = "step"

    def __init__(self, workdir: str | None = None, step: int | None = None,
                 verifier: Verifier | None = None):
        if verifier is None:
            require(workdir is not None, "prm_reward.workdir", workdir,
                    "must name a verifier run (the prm reward needs a trained PRM)")
            from jaxrl_reason.verifiers.scoring import load_verifier  # the verifier job's

            verifier = load_verifier(workdir, step)
        self.verifier = verifier

    def __call__(self, rollouts: Rollouts) -> list[np.ndarray]:
        examples = [Example(tuple(p), tuple(c)) for p, c in
                    zip(rollouts.prompt_ids, rollouts.completion_ids, strict=True)]
        scores = self.verifier.step_scores(examples, rollouts.step_ends)
        out = []
        for s, ends in zip(scores, rollouts.step_ends, strict=True):
            s = np.asarray(s, np.float64)
            if s.shape != (len(ends),):
                raise ValueError(f"the verifier gave {s.shape} scores for {len(ends)} steps")
            out.append(s)
        return out


@register("format")
@gin.configurable("format_reward")
class FormatReward:
    """`good` when the completion stopped by itself and its answer parses, else `bad` (a
    penalty by default)."""

    kind = "outcome"

    @typed
    def __init__(self, good: float = 0.0, bad: float = -1.0):
        self.good, self.bad = good, bad

    def __call__(self, rollouts: Rollouts) -> np.ndarray:
        ok = [f and c.answer is not None for f, c in zip(rollouts.finished, rollouts.checks,
                                                         strict=True)]
        return np.where(ok, self.good, self.bad).astype(np.float64)


def overlong_penalty(length: int, max_length: int, cache: int) -> float:
    """DAPO's soft overlong punishment, in TOKENS: 0 up to max_length - cache, then a linear
    ramp down to -1 at max_length, -1 beyond."""
    if length <= max_length - cache:
        return 0.0
    if length <= max_length:
        return (max_length - cache - length) / cache
    return -1.0


@register("overlong")
@gin.configurable("overlong_reward")
class OverlongReward:
    """DAPO's soft overlong penalty over completion tokens (tunix counts characters); the
    maximum length defaults to the generation budget, so a truncated row gets -1."""

    kind = "outcome"

    @typed
    def __init__(self, cache: int = 16, max_length: int | None = None):
        require(cache >= 1, "overlong_reward.cache", cache, "must be >= 1")
        self.cache, self.max_length = cache, max_length

    def __call__(self, rollouts: Rollouts) -> np.ndarray:
        limit = self.max_length or rollouts.max_new_tokens
        require(self.cache < limit, "overlong_reward.cache", self.cache,
                f"must be below the maximum length {limit}")
        return np.array([overlong_penalty(len(c), limit, self.cache)
                         for c in rollouts.completion_ids])


def build(weights: dict[str, float]) -> list[tuple[str, Reward, float]]:
    """(name, reward, weight) for each named reward (gin supplies their settings)."""
    require(bool(weights), "rl_learner.rewards", weights, "must name at least one reward")
    unknown = sorted(set(weights) - set(REWARDS))
    require(not unknown, "rl_learner.rewards", weights,
            f"names unknown rewards {unknown}: one of {sorted(REWARDS)}")
    return [(name, REWARDS[name](), float(w)) for name, w in weights.items()]


@dataclasses.dataclass
class Combined:
    """The combined rewards: outcome [N], per-row step values (aligned with step_ends, NaN =
    none), and each reward's raw values (for metrics)."""

    outcome: np.ndarray
    steps: list[np.ndarray]
    raw: dict[str, Any]

    def take(self, rows: Sequence[int]) -> Combined:
        rows = [int(r) for r in rows]
        raw = {k: [v[r] for r in rows] if isinstance(v, list) else np.asarray(v)[rows]
               for k, v in self.raw.items()}
        return Combined(self.outcome[rows], [self.steps[r] for r in rows], raw)

    @staticmethod
    def concat(parts: Sequence[Combined]) -> Combined:
        raw = {}
        for k in parts[0].raw:
            vals = [p.raw[k] for p in parts]
            raw[k] = ([x for v in vals for x in v] if isinstance(vals[0], list)
                      else np.concatenate(vals))
        return Combined(np.concatenate([p.outcome for p in parts]),
                        [x for p in parts for x in p.steps], raw)

    def scores(self) -> np.ndarray:
        """[N] each row's total: outcome plus its step values."""
        return self.outcome + np.array([np.nansum(v) for v in self.steps])


def _normalize(values: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return (values - values.mean()) / (std + eps)


def _normalize_steps(steps: list[np.ndarray], group: np.ndarray) -> list[np.ndarray]:
    out = [s.copy() for s in steps]
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        pool = np.concatenate([steps[i][~np.isnan(steps[i])] for i in rows])
        if len(pool) == 0:
            continue
        mean, std = pool.mean(), pool.std(ddof=1) if len(pool) > 1 else 0.0
        for i in rows:
            out[i] = (steps[i] - mean) / (std + 1e-6)
    return out


def combine(rollouts: Rollouts, rewards: Sequence[tuple[str, Reward, float]],
            mode: Literal["sum", "normalize_each"] = "sum") -> Combined:
    """Weighted sum of the rewards, raw ("sum") or each normalized within its group first
    ("normalize_each", GDPO)."""
    n = len(rollouts)
    outcome = np.zeros(n)
    steps = [np.full(len(e), np.nan) for e in rollouts.step_ends]
    raw: dict[str, Any] = {}
    for name, reward, weight in rewards:
        values = reward(rollouts)
        raw[name] = values
        if reward.kind == "outcome":
            values = np.asarray(values, np.float64)
            if mode == "normalize_each":
                values = values.copy()
                for g in np.unique(rollouts.group):
                    rows = rollouts.group == g
                    values[rows] = _normalize(values[rows])
            outcome += weight * values
        else:
            if mode == "normalize_each":
                values = _normalize_steps(values, rollouts.group)
            steps = [np.where(np.isnan(v), s, np.nan_to_num(s) + weight * v)
                     for s, v in zip(steps, values, strict=True)]
    return Combined(outcome, steps, raw)


def reward_metrics(combined: Combined) -> dict[str, float]:
    """Mean and std of each reward (a step reward's per-row mean over its steps)."""
    out = {}
    for name, values in combined.raw.items():
        if isinstance(values, list):
            values = np.array([np.nanmean(v) if np.any(~np.isnan(v)) else np.nan
                               for v in values])
        values = np.asarray(values, np.float64)
        values = values[~np.isnan(values)]
        if len(values):
            out[f"reward/{name}_mean"] = float(values.mean())
            out[f"reward/{name}_std"] = float(values.std())
    return out
