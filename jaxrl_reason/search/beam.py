"""PRM-guided beam search and lookahead search (Snell et al. 2024, ALGORITHMS.md section 9).

Step-wise on the incremental sampler, for many problems at once: N rows per problem sample a
first step each (`extend` pauses every row at the step delimiter); the verifier scores each
new prefix; per problem the best N/M unfinished prefixes survive and each is duplicated M
times (`select` copies their cache rows), and the next `extend` samples M different next
steps from each. Rows that emit the stop token leave for the problem's final pool. With
lookahead k, a new step is scored by the verifier at the end of a greedy rollout of up to k
more steps from it (on a copy of the rows; the rollout is then dropped, its tokens counted).
Every token any `extend` generates counts toward the problem's cost, pruned rows and rollouts
included; verifier forward passes are not counted (as in Snell et al.).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import numpy as np

from jaxrl_reason.data.batching import Example
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.verifiers.scoring import aggregate

PrefixScorer = Callable[[Sequence[Example]], np.ndarray]  # P(correct) after the last token


@dataclasses.dataclass
class Candidate:
    """A (partial) solution: its generated ids and their sampler log-probs, the verifier's
    score of each of its steps, and whether it emitted the stop token."""

    problem: int
    tokens: list[int] = dataclasses.field(default_factory=list)
    logprobs: list[float] = dataclasses.field(default_factory=list)
    step_scores: list[float] = dataclasses.field(default_factory=list)
    finished: bool = False

    def copy(self) -> Candidate:
        return dataclasses.replace(self, tokens=list(self.tokens), logprobs=list(self.logprobs),
                                   step_scores=list(self.step_scores))


@dataclasses.dataclass
class BeamResult:
    """Per problem, the final pool of candidates, and the tokens generated for it."""

    pools: list[list[Candidate]]
    tokens: np.ndarray


def _text(c: Candidate, stop: Sequence[int]) -> list[int]:
    return [t for t in c.tokens if t not in stop]


def beam_search(
    sampler,
    score: PrefixScorer,
    prompts: Sequence[Sequence[int]],
    n: int,
    width: int,
    cfg: SamplingConfig,
    key: jax.Array,
    delimiters: Sequence[int],
    step_tokens: int = 24,
    max_depth: int = 16,
    lookahead: int = 0,
    how: str = "product",
) -> BeamResult:
    """Beam search with `n` rows per problem and `width` (M) expansions per kept beam (n // M
    beams kept, at least 1); `lookahead` = k > 0 is lookahead search. Candidates rank by
    `aggregate(step_scores, how)`. The sampler must hold the policy's weights. Cache room is
    cfg.max_new_tokens (+ k * step_tokens for the rollouts), capped by the context."""
    if n < 1 or width < 1:
        raise ValueError(f"beam_search: n={n} and width={width} must be >= 1")
    stop = tuple(sampler.stop)
    keep = max(1, n // width)
    longest = max(len(p) for p in prompts)
    slots = min(sampler.room(longest), cfg.max_new_tokens + lookahead * step_tokens)
    state = sampler.prefill(prompts, slots)
    rows = [Candidate(p) for p in range(len(prompts)) for _ in range(n)]
    state = sampler.select(state, [c.problem for c in rows])
    tokens = np.zeros(len(prompts), np.int64)
    pools: list[list[Candidate]] = [[] for _ in prompts]
    greedy = dataclasses.replace(cfg, temperature=0.0)
    for depth in range(max_depth):
        ext, state = sampler.extend(state, cfg, min(step_tokens, state.room),
                                    jax.random.fold_in(key, depth), stop_ids=delimiters)
        stepped = []
        for r, c in enumerate(rows):
            k = int(ext.lengths[r])
            c.tokens += [int(t) for t in ext.tokens[r, :k]]
            c.logprobs += [float(x) for x in ext.logprobs[r, :k]]
            c.finished = bool(ext.finished[r])
            tokens[c.problem] += k
            if any(t not in stop for t in ext.tokens[r, :k]):
                stepped.append(r)
        scores = np.zeros(len(rows))
        look = [r for r in stepped if not rows[r].finished] if lookahead else []
        direct = [r for r in stepped if r not in set(look)]
        if direct:
            scores[direct] = score([Example(tuple(prompts[rows[r].problem]),
                                            tuple(_text(rows[r], stop))) for r in direct])
        if look:
            scores[look] = _lookahead_scores(sampler, state, rows, look, prompts, score, greedy,
                                             lookahead, step_tokens, delimiters, tokens,
                                             jax.random.fold_in(key, 1 << 20 | depth))
        for r in stepped:
            rows[r].step_scores.append(float(scores[r]))
        last = depth == max_depth - 1 or state.room < 1
        children = []
        by_problem: dict[int, list[int]] = {}
        for r, c in enumerate(rows):
            by_problem.setdefault(c.problem, []).append(r)
        for mine in by_problem.values():
            p = rows[mine[0]].problem
            pools[p] += [rows[r] for r in mine if rows[r].finished]
            active = [r for r in mine if not rows[r].finished]
            if last:  # out of depth or room: unfinished candidates join the pool as they are
                pools[p] += [rows[r] for r in active]
                continue
            ranked = sorted(active, key=lambda r: -aggregate(rows[r].step_scores, how))
            children += [r for r in ranked[:keep] for _ in range(width)]
        if not children:
            break
        state = sampler.select(state, children)
        rows = [rows[r].copy() for r in children]
    return BeamResult(pools, tokens)


def _lookahead_scores(sampler, state, rows, look, prompts, score, greedy, k, step_tokens,
                      delimiters, tokens, key) -> np.ndarray:
    """The verifier's score at the end of a greedy rollout of up to k steps from each row in
    `look`, on a copy of those rows; the rollout's tokens count toward the cost."""
    copy = sampler.select(state, look)
    extra: list[list[int]] = [[] for _ in look]
    for i in range(k):
        if copy.room < 1:
            break
        ext, copy = sampler.extend(copy, greedy, min(step_tokens, copy.room),
                                   jax.random.fold_in(key, i), stop_ids=delimiters)
        for j, r in enumerate(look):
            m = int(ext.lengths[j])
            extra[j] += [int(t) for t in ext.tokens[j, :m]]
            tokens[rows[r].problem] += m
    stop = tuple(sampler.stop)
    return score([Example(tuple(prompts[rows[r].problem]),
                          tuple(_text(rows[r], stop) + [t for t in extra[j] if t not in stop]))
                  for j, r in enumerate(look)])
