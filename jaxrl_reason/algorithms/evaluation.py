"""Accuracy of a policy on a task: sample (greedy by default), check with the task's checker."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence

from jaxrl_reason.data.batching import decode_completions, encode_prompt
from jaxrl_reason.data.tasks import Check, Problem, Task
from jaxrl_reason.sampling.sampler import Sampler, SamplingConfig
from jaxrl_reason.tokenizers import Tokenizer


@dataclasses.dataclass
class Rollout:
    problem: Problem
    prompt: str
    completion: str
    check: Check


def rollouts(
    sampler: Sampler,
    params,
    task: Task,
    tok: Tokenizer,
    problems: Sequence[Problem],
    cfg: SamplingConfig,
    seed: int = 0,
    hints: Sequence[str | None] | None = None,
    chunk: int = 1024,
) -> list[Rollout]:
    """cfg.n checked completions per problem (problem-major), sampled in chunks of rows."""
    hints = hints or [None] * len(problems)
    out: list[Rollout] = []
    per_chunk = max(1, chunk // cfg.n)
    for start in range(0, len(problems), per_chunk):
        probs = problems[start : start + per_chunk]
        prompts = [
            task.prompt(p, h) for p, h in zip(probs, hints[start : start + per_chunk], strict=True)
        ]
        samples = sampler.generate(
            params, [encode_prompt(tok, p) for p in prompts], cfg, seed=seed * 7919 + start
        )
        texts = decode_completions(tok, samples.tokens, samples.lengths)
        for i, text in zip(samples.prompt_index, texts, strict=True):
            out.append(Rollout(probs[i], prompts[i], text, task.check(probs[i], text)))
    return out


def accuracy_by_difficulty(results: Sequence[Rollout]) -> dict[str, float]:
    """{"acc": overall, "acc/<difficulty>": per difficulty} exact-match accuracy."""
    groups: dict[int, list[bool]] = defaultdict(list)
    for r in results:
        groups[r.problem.difficulty].append(r.check.correct)
    out = {"acc": sum(r.check.correct for r in results) / max(len(results), 1)}
    for d in sorted(groups):
        out[f"acc/{d}"] = sum(groups[d]) / len(groups[d])
    return out
