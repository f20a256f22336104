"""Accuracy of a policy on a task: sample (greedy by default), check with the task's checker."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence

import jax

from jaxrl_reason.data.batching import decode_completions, encode_prompt
from jaxrl_reason.data.tasks import Check, Problem, Task
from jaxrl_reason.sampling.sampler import Sampler, SamplingConfig
from jaxrl_reason.tokenizers import Tokenizer


@dataclasses.dataclass
class Rollout:
    """One checked completion. `prompt_ids` / `completion_ids` are the exact ids the policy saw
    and emitted (the stop token included iff `finished`): what training on it uses."""

    problem: Problem
    prompt: str
    completion: str
    check: Check
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    finished: bool


def rollouts(
    sampler: Sampler,
    params,
    task: Task,
    tok: Tokenizer,
    problems: Sequence[Problem],
    cfg: SamplingConfig,
    key: jax.Array | int = 0,
    hints: Sequence[str | None] | None = None,
    chunk: int = 1024,
) -> list[Rollout]:
    """cfg.n checked completions per problem (problem-major), sampled from `params` in chunks
    of rows; chunk c draws with `fold_in(key, c)`."""
    key = jax.random.key(key) if isinstance(key, int) else key
    hints = hints or [None] * len(problems)
    sampler.load(params)
    out: list[Rollout] = []
    per_chunk = max(1, chunk // cfg.n)
    for c, start in enumerate(range(0, len(problems), per_chunk)):
        probs = problems[start : start + per_chunk]
        prompts = [
            task.prompt(p, h) for p, h in zip(probs, hints[start : start + per_chunk], strict=True)
        ]
        ids = [encode_prompt(tok, p) for p in prompts]
        samples = sampler.generate(ids, cfg, jax.random.fold_in(key, c))
        texts = decode_completions(tok, samples)
        for r, (i, text) in enumerate(zip(samples.prompt_index, texts, strict=True)):
            out.append(Rollout(probs[i], prompts[i], text, task.check(probs[i], text),
                               tuple(ids[i]), tuple(samples.tokens[r, : samples.lengths[r]]),
                               bool(samples.finished[r])))
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
