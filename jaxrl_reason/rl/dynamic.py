"""DAPO's dynamic sampling: keep only groups whose rewards differ, and sample more prompts until
the batch is full (or a cap on sampling rounds is reached).

A group whose completions all got the same rewards has zero advantage under every group
estimator: it spends compute and, under token-mean aggregation, dilutes the others' gradient.
Pure host logic: the sampling itself is a callback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from jaxrl_reason.rl.rewards import Combined
from jaxrl_reason.rollouts import Rollouts


def informative_groups(combined: Combined, group: np.ndarray) -> np.ndarray:
    """The group ids (sorted) whose rows do not all carry identical rewards (outcome and
    every step value, NaN equal to NaN)."""
    keep = []
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        first = rows[0]
        same = all(combined.outcome[r] == combined.outcome[first]
                   and np.array_equal(combined.steps[r], combined.steps[first], equal_nan=True)
                   for r in rows[1:])
        if not same:
            keep.append(g)
    return np.asarray(keep, int)


@dataclasses.dataclass
class Collected:
    """The kept rollouts (whole groups, group ids renumbered 0..), their combined rewards, and
    bookkeeping: sampling rounds used, groups drawn, groups whose rewards were all equal."""

    rollouts: Rollouts
    combined: Combined
    rounds: int
    groups_sampled: int
    groups_uniform: int
    all_rollouts: list[Rollouts]


def collect(sample: Callable[[int, int], tuple[Rollouts, Combined]], groups: int,
            enabled: bool, max_rounds: int) -> Collected:
    """Calls `sample(round, n)` for n prompt groups until `groups` informative groups are kept
    (every group when not `enabled`), for at most `max_rounds` rounds; keeps at most `groups`."""
    kept_r: list[Rollouts] = []
    kept_c: list[Combined] = []
    seen: list[Rollouts] = []
    have = sampled = uniform = rounds = 0
    while have < groups and rounds < (max_rounds if enabled else 1):
        rollouts, combined = sample(rounds, groups - have)
        rounds += 1
        seen.append(rollouts)
        ids = np.unique(rollouts.group)
        sampled += len(ids)
        good = informative_groups(combined, rollouts.group)
        uniform += len(ids) - len(good)
        chosen = (good if enabled else ids)[: groups - have]
        rows = np.flatnonzero(np.isin(rollouts.group, chosen))
        if len(rows):
            part = rollouts.take(rows)
            # renumber the kept groups after the ones already kept
            _, part.group = np.unique(part.group, return_inverse=True)
            part.group = part.group + have
            kept_r.append(part)
            kept_c.append(combined.take(rows))
        have += len(chosen)
    if not kept_r:
        return Collected(seen[-1].take([]), Combined(np.zeros(0), [], {}), rounds, sampled,
                         uniform, seen)
    return Collected(Rollouts.concat(kept_r), Combined.concat(kept_c), rounds, sampled,
                     uniform, seen)
