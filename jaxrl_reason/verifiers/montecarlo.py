"""Math-Shepherd process labels: no step checker, only the policy and the answer check.

From the prefix that ends at step i of a solution, the policy (the "completer") samples K
continuations; each is checked against the gold answer. Hard label = any continuation reaches
it, soft label = the fraction that does. The last step's prefix is the whole solution, so its
label is the solution's own outcome (no sampling). Rounds go step by step over all solutions
at once (one batched `generate` per chunk, each distinct prefix prefilled once and its cache
rows broadcast to the K continuations); with `stop_at_wrong` a solution leaves once a step's
hard label is 0, since a PRM is not trained past its first wrong step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from jaxrl_reason.data.tasks import Problem, Task
from jaxrl_reason.sampling.sampler import Sampler, SamplingConfig
from jaxrl_reason.tokenizers import Tokenizer
from jaxrl_reason.verifiers.labels import monte_carlo_labels
from jaxrl_reason.verifiers.solutions import Solution


@dataclasses.dataclass
class MonteCarloState:
    """Labels so far ([S] per solution, NaN where not labeled yet), the next step index to
    label, and the tokens generated so far (the cost of the labels)."""

    hard: list[list[float]]
    soft: list[list[float]]
    next_step: int = 0
    tokens: int = 0

    @classmethod
    def empty(cls, solutions: Sequence[Solution]) -> MonteCarloState:
        nan = lambda s: [float("nan")] * len(s.step_ends)
        return cls([nan(s) for s in solutions], [nan(s) for s in solutions])

    def done(self, solutions: Sequence[Solution]) -> bool:
        return self.next_step >= max((len(s.step_ends) for s in solutions), default=0)


def needs_label(hard: Sequence[float], step: int, stop_at_wrong: bool) -> bool:
    """Whether step `step` of a solution is labeled in its round: it exists, and (with
    `stop_at_wrong`) every earlier step's hard label is 1."""
    return step < len(hard) and (not stop_at_wrong or all(h == 1 for h in hard[:step]))


def label_round(
    sampler: Sampler,
    task: Task,
    tok: Tokenizer,
    problems: Sequence[Problem],
    solutions: Sequence[Solution],
    state: MonteCarloState,
    k: int,
    cfg: SamplingConfig,
    key: jax.Array,
    stop_at_wrong: bool = True,
    chunk_rows: int = 1024,
) -> MonteCarloState:
    """Labels step `state.next_step` of every solution that needs it, in place; the sampler
    must hold the completer's weights (`sampler.load`). Chunk c draws with fold_in(key, c)."""
    j = state.next_step
    todo = [i for i, s in enumerate(solutions) if needs_label(state.hard[i], j, stop_at_wrong)]
    last = [i for i in todo if j == len(solutions[i].step_ends) - 1]
    for i in last:  # the prefix is the whole solution: its label is the outcome
        state.hard[i][j] = state.soft[i][j] = float(solutions[i].correct)
    sample = [i for i in todo if j < len(solutions[i].step_ends) - 1]
    per_chunk = max(1, chunk_rows // k)
    for c, start in enumerate(range(0, len(sample), per_chunk)):
        part = sample[start : start + per_chunk]
        prefixes = [solutions[i].completion[: solutions[i].step_ends[j] + 1] for i in part]
        prompts = [[*solutions[i].prompt, *prefix] for i, prefix in zip(part, prefixes,
                                                                          strict=True)]
        room = sampler.room(max(len(p) for p in prompts))
        run = dataclasses.replace(cfg, n=k, max_new_tokens=min(cfg.max_new_tokens, room))
        out = sampler.generate(prompts, run, jax.random.fold_in(key, c))
        state.tokens += int(out.lengths.sum())
        hits = np.zeros((len(part), k), bool)
        for r, q in enumerate(out.prompt_index):
            text = tok.decode([*prefixes[q], *out.tokens[r, : out.lengths[r]]])
            hits[q, r % k] = task.check(problems[solutions[part[q]].problem], text).correct
        hard, soft = monte_carlo_labels(hits)
        for q, i in enumerate(part):
            state.hard[i][j], state.soft[i][j] = float(hard[q]), float(soft[q])
    state.next_step = j + 1
    return state
