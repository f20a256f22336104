"""Test-time search strategies, registered by name; each reports accuracy AND its cost.

A strategy is `fn(ctx, n, verifier) -> Outcome`: per held-out problem, whether the answer it
chose is right and how many tokens the policy generated to choose it (averaged over the
repeats the strategy makes). Sampling-based strategies share one pool of samples per problem
(`Pool`: `search.groups` x N_max, sampled once, batched on the sampler): at budget n they run
on the pool's size // n disjoint groups of n samples and average, so every n (N_max included)
is measured on several fresh sets of samples and the cost is the tokens of the n samples
used.

  pass@1_greedy            one greedy solution (n unused)
  pass@1                   one sample at the pool's temperature (n unused: the pool's mean)
  majority                 majority vote over n samples
  best_of_n                the verifier's best-scored of n samples
  weighted                 weighted vote over n samples by verifier score
  beam, lookahead          PRM-guided beam / lookahead search with n rows (search.beam)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from jaxrl_reason.search import selection

Strategy = Callable[..., "Outcome"]
STRATEGIES: dict[str, Strategy] = {}
POOL_STRATEGIES: set[str] = set()  # run on the shared sample pool (any n up to N_max)
GUIDED: set[str] = set()  # need a verifier: written "name:<verifier>"


@dataclasses.dataclass
class Outcome:
    """Per problem: accuracy of the chosen answers, and generated tokens spent [P]."""

    correct: np.ndarray
    tokens: np.ndarray


@dataclasses.dataclass
class Pool:
    """N samples per problem: answers [P][N], correct [P, N], generated tokens [P, N] (the stop
    token included) and, per scorer name (verifiers and baselines), a solution score [P, N]."""

    answers: list[list[str | None]]
    correct: np.ndarray
    tokens: np.ndarray
    scores: dict[str, np.ndarray]

    @property
    def size(self) -> int:
        return self.correct.shape[1]


def register(name: str, pool: bool = False, guided: bool = False):
    def wrap(fn: Strategy) -> Strategy:
        STRATEGIES[name] = fn
        if pool:
            POOL_STRATEGIES.add(name)
        if guided:
            GUIDED.add(name)
        return fn

    return wrap


def pool_outcome(pool: Pool, n: int, select: Callable, scores: np.ndarray | None) -> Outcome:
    """`select(answers, scores) -> index` on each of the N_max // n disjoint groups of n
    samples of every problem; accuracy and tokens averaged over the groups."""
    if not 1 <= n <= pool.size:
        raise ValueError(f"budget n={n} must be in [1, {pool.size}] (the pool's samples)")
    groups = pool.size // n
    correct = np.zeros(len(pool.answers))
    tokens = np.zeros(len(pool.answers))
    for p, answers in enumerate(pool.answers):
        for g in range(groups):
            cols = slice(g * n, (g + 1) * n)
            pick = select(answers[cols], None if scores is None else scores[p, cols])
            correct[p] += pool.correct[p, cols][pick]
            tokens[p] += pool.tokens[p, cols].sum()
    return Outcome(correct / groups, tokens / groups)


@register("pass@1", pool=True)
def pass_at_1(ctx, n: int, verifier: str | None = None) -> Outcome:
    return pool_outcome(ctx.pool(), 1, lambda answers, scores: 0, None)


@register("majority", pool=True)
def majority(ctx, n: int, verifier: str | None = None) -> Outcome:
    return pool_outcome(ctx.pool(), n, selection.majority_vote, None)


def _need_verifier(strategy: str, verifier: str | None) -> str:
    if verifier is None:
        raise ValueError(f"strategy {strategy!r} needs a verifier: write it as "
                         f"'{strategy}:<verifier name>'")
    return verifier


@register("best_of_n", pool=True, guided=True)
def best_of_n(ctx, n: int, verifier: str | None = None) -> Outcome:
    scores = ctx.pool().scores[_need_verifier("best_of_n", verifier)]
    return pool_outcome(ctx.pool(), n, selection.best_of_n, scores)


@register("weighted", pool=True, guided=True)
def weighted(ctx, n: int, verifier: str | None = None) -> Outcome:
    scores = ctx.pool().scores[_need_verifier("weighted", verifier)]
    return pool_outcome(ctx.pool(), n, selection.weighted_vote, scores)


@register("pass@1_greedy")
def pass_at_1_greedy(ctx, n: int, verifier: str | None = None) -> Outcome:
    return ctx.greedy()


@register("beam", guided=True)
def beam(ctx, n: int, verifier: str | None = None) -> Outcome:
    return ctx.beam(n, _need_verifier("beam", verifier), lookahead=0)


@register("lookahead", guided=True)
def lookahead(ctx, n: int, verifier: str | None = None) -> Outcome:
    return ctx.beam(n, _need_verifier("lookahead", verifier), lookahead=ctx.lookahead)


def parse_method(method: str) -> tuple[str, str | None]:
    """"best_of_n:prm" -> ("best_of_n", "prm"); "majority" -> ("majority", None). A strategy
    that needs a verifier and names none is refused here, before anything is sampled."""
    name, _, verifier = method.partition(":")
    if name not in STRATEGIES:
        raise ValueError(f"unknown search strategy {name!r} in {method!r}; known: "
                         f"{sorted(STRATEGIES)}")
    if name in GUIDED:
        _need_verifier(name, verifier or None)
    return name, verifier or None
