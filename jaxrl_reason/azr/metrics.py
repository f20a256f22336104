"""What a self-play step reports (docs/azr.md), and the executor's share of the step:
a self-play run can stall in ways a reward curve hides (no valid proposal, a buffer of one
program copied over and over), so each is measured on its own."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from jaxrl_reason.azr.buffers import Buffer
from jaxrl_reason.azr.roles import REJECTIONS, SUB_BATCHES, Judged, ast_nodes, bucket
from jaxrl_reason.data.programs import TASK_TYPES
from jaxrl_reason.rewards.executor import ExecResult, Executor


class MeteredExecutor:
    """An `Executor` that counts the programs it runs and the wall seconds its batches take
    (all the program checks go through `run_batch`)."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self.runs, self.seconds = 0, 0.0

    def run_batch(self, codes: Sequence[str], stdin: str | Sequence[str] = "",
                  timeout_s: float | None = None) -> list[ExecResult]:
        t0 = time.perf_counter()
        out = self.executor.run_batch(codes, stdin, timeout_s)
        self.seconds += time.perf_counter() - t0
        self.runs += len(codes)
        return out

    def reset(self) -> None:
        self.runs, self.seconds = 0, 0.0

    def close(self) -> None:
        self.executor.close()


def _put_mean(out: dict[str, float], name: str, values: Sequence[float]) -> None:
    """out[name] = the mean of `values`; nothing when there are none (no NaN in the log)."""
    if values:
        out[name] = float(np.mean(values))


def proposal_metrics(judged: Sequence[Judged], learn: Mapping[int, tuple[float, float]],
                     references: Sequence[int]) -> dict[str, float]:
    """Validity per task type, the share of every proposal rejected per reason, the size of
    the new valid programs (deduction and abduction: induction's come from a buffer), and
    learnability (with the solver's solve rate behind it) over the valid ones; `learn` maps a
    row to (learnability, solve rate)."""
    out: dict[str, float] = {}
    reasons = [bucket(j.reason) for j in judged if not j.valid]
    for name in REJECTIONS:
        out[f"propose/rejected/{name}"] = reasons.count(name) / len(judged)
    for t in TASK_TYPES:
        rows = [i for i, j in enumerate(judged) if j.task_type == t]
        out[f"propose/valid/{t}"] = float(np.mean([judged[i].valid for i in rows]))
        _put_mean(out, f"propose/learnability/{t}", [learn[i][0] for i in rows if i in learn])
    out["propose/valid"] = float(np.mean([j.valid for j in judged]))
    _put_mean(out, "propose/learnability", [x[0] for x in learn.values()])
    _put_mean(out, "propose/solve_rate", [x[1] for x in learn.values()])
    new = [j.triple.program for j in judged if j.valid and j.task_type != "induction"]
    _put_mean(out, "new/program_chars", [len(p) for p in new])
    _put_mean(out, "new/ast_nodes", [ast_nodes(p) for p in new])
    out["new/programs"] = float(len(new))
    out["propose/references_mean"] = float(np.mean(references)) if references else 0.0
    return out


def buffer_metrics(buffers: Mapping[str, Buffer]) -> dict[str, float]:
    out = {}
    for t, b in buffers.items():
        out[f"buffer/{t}/size"] = float(len(b))
        out[f"buffer/{t}/distinct"] = float(b.distinct_programs())
    return out


def accuracy_by_type(task_types: Sequence[str], correct: Sequence[bool], prefix: str
                     ) -> dict[str, float]:
    """`prefix` overall and `prefix/<task type>`: the share of rows solved."""
    out = {prefix: float(np.mean(correct))}
    for t in TASK_TYPES:
        _put_mean(out, f"{prefix}/{t}", [c for x, c in zip(task_types, correct, strict=True)
                                         if x == t])
    return out


def reward_metrics(groups: np.ndarray, rewards: np.ndarray) -> dict[str, float]:
    """The mean reward of each (role, task type) sub-batch: reward/<role>/<task type>."""
    return {f"reward/{role}/{t}": float(rewards[groups == g].mean())
            for g, (role, t) in enumerate(SUB_BATCHES) if (groups == g).any()}
