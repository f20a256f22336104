"""What a verifier is trained on: value targets at chosen completion tokens, and their batches.

- ORM (Cobbe et al.): the outcome label at EVERY completion token (a token-level value
  function); question tokens carry no target.
- PRM (Lightman et al.): the step's label at the last token of each step, up to and including
  the first wrong step; later steps carry none. A PRM whose solution score is its LAST step's
  (`aggregate="last"`, Snell et al.) is supervised on every labeled step instead: stopping at
  the first wrong step would leave a wrong solution's answer line almost never labeled 0.
A batch is `data.batching.make_batch`'s plus `value_targets` and `value_mask` [B, T], aligned
with `tokens` like every per-token field: entry t is the prediction after reading token t.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxrl_reason.data.batching import Example, make_batch, round_up
from jaxrl_reason.errors import UserError
from jaxrl_reason.verifiers.labels import supervised_steps
from jaxrl_reason.verifiers.solutions import Solution


@dataclasses.dataclass(frozen=True)
class Target:
    """Targets `value` at completion positions `index` (indices into example.completion)."""

    example: Example
    index: tuple[int, ...]
    value: tuple[float, ...]


def orm_target(solution: Solution) -> Target:
    n = len(solution.completion)
    return Target(solution.example, tuple(range(n)), (float(solution.correct),) * n)


def prm_target(solution: Solution, labels: Sequence[float], every_step: bool = False
               ) -> Target | None:
    """Step labels at the step ends, supervision stopping at the first wrong step (on every
    step with `every_step`); labels that are missing (NaN) end it too. None when no step is
    labeled."""
    labels = np.asarray(labels, np.float64)
    known = np.flatnonzero(np.isnan(labels))
    labels = labels[: known[0]] if len(known) else labels
    keep = np.ones(len(labels), bool) if every_step else supervised_steps(labels)
    if not keep.any():
        return None
    ends = np.asarray(solution.step_ends)[: len(labels)][keep]
    return Target(solution.example, tuple(int(e) for e in ends),
                  tuple(float(v) for v in labels[keep]))


def targets_for(solutions: Sequence[Solution], kind: str, labels: str,
                every_step: bool = False) -> list[Target]:
    """ORM targets ("orm", labels "outcome") or PRM targets ("prm", labels "exact", "mc_hard"
    or "mc_soft"; on `every_step`) of every solution that has some."""
    if kind == "orm":
        return [orm_target(s) for s in solutions]
    out = [prm_target(s, s.labels(labels), every_step) for s in solutions]
    return [t for t in out if t is not None]


def target_batch(targets: Sequence[Target], seq_len: int, pad_id: int,
                 batch_size: int | None = None) -> dict[str, np.ndarray]:
    batch = make_batch([t.example for t in targets], seq_len, pad_id, batch_size)
    value = np.zeros(batch["tokens"].shape, np.float32)
    mask = np.zeros(batch["tokens"].shape, np.float32)
    for r, t in enumerate(targets):
        at = len(t.example.prompt) + np.asarray(t.index, np.int64)
        value[r, at], mask[r, at] = t.value, 1.0
    return {**batch, "value_targets": value, "value_mask": mask}


class TargetStream:
    """Endless, resumable batches of targets: epoch e is a permutation drawn from (seed, e);
    the state is the batch index, so a resumed stream yields an uninterrupted one's batches.
    Batch length is the longest row rounded up to `len_bucket` (few compiled shapes)."""

    def __init__(self, targets: Sequence[Target], batch_size: int, max_len: int, pad_id: int,
                 seed: int = 0, len_bucket: int = 16):
        if not targets:
            raise UserError("no verifier targets to train on (no sampled solution was labeled)")
        self.targets, self.batch_size, self.max_len = list(targets), batch_size, max_len
        self.pad_id, self.seed, self.len_bucket, self.index = pad_id, seed, len_bucket, 0
        self.per_epoch = max(1, len(self.targets) // batch_size)

    def get_state(self) -> dict:
        return {"index": self.index}

    def set_state(self, state: dict) -> None:
        self.index = int(state["index"])

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        epoch, i = divmod(self.index, self.per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.targets))
        order = np.resize(order, max(len(order), self.batch_size))  # tiny sets repeat
        part = [self.targets[j] for j in order[i * self.batch_size : (i + 1) * self.batch_size]]
        self.index += 1
        longest = max(len(t.example) for t in part)
        return target_batch(part, min(round_up(longest, self.len_bucket), self.max_len),
                            self.pad_id)
