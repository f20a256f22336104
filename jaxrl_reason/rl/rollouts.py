"""Groups of checked completions on the host: what rewards read and the learner trains on.

Everything is kept as the sampler's exact ids (never re-tokenized): prompt and completion
ids, the sampler's own log-probs of each completion token, whether the row stopped by itself,
the task's check, and the end of each step (`data.batching.step_ends` over the step
delimiter, e.g. the newline ending a line).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

import jax
import numpy as np

from jaxrl_reason.data.batching import decode_completions, encode_prompt, step_ends
from jaxrl_reason.data.tasks import Check, Problem, Task
from jaxrl_reason.sampling.sampler import Sampler, Samples, SamplingConfig
from jaxrl_reason.tokenizers import Tokenizer


@dataclasses.dataclass
class Rollouts:
    """N checked completions. `step_ends[i]` indexes `completion_ids[i]`; `group[i]` is row
    i's prompt group; `logprobs[i]` the sampler's log-prob of each completion token."""

    task: Task
    problems: list[Problem]
    prompt_ids: list[tuple[int, ...]]
    completion_ids: list[tuple[int, ...]]
    completions: list[str]
    finished: np.ndarray
    checks: list[Check]
    step_ends: list[list[int]]
    group: np.ndarray
    logprobs: list[np.ndarray]
    max_new_tokens: int

    def __len__(self) -> int:
        return len(self.problems)

    def take(self, rows: Sequence[int]) -> Rollouts:
        """The rollouts of `rows`, in that order."""
        rows = [int(r) for r in rows]
        pick = lambda xs: [xs[r] for r in rows]  # noqa: E731
        return Rollouts(self.task, pick(self.problems), pick(self.prompt_ids),
                        pick(self.completion_ids), pick(self.completions),
                        self.finished[rows], pick(self.checks), pick(self.step_ends),
                        self.group[rows], pick(self.logprobs), self.max_new_tokens)

    @staticmethod
    def concat(parts: Sequence[Rollouts]) -> Rollouts:
        first = parts[0]
        cat = lambda name: [x for p in parts for x in getattr(p, name)]  # noqa: E731
        return Rollouts(first.task, cat("problems"), cat("prompt_ids"), cat("completion_ids"),
                        cat("completions"), np.concatenate([p.finished for p in parts]),
                        cat("checks"), cat("step_ends"),
                        np.concatenate([p.group for p in parts]), cat("logprobs"),
                        first.max_new_tokens)

    def tokens(self) -> int:
        """Completion tokens generated."""
        return sum(len(c) for c in self.completion_ids)


def check_all(task: Task, problems: Sequence[Problem], completions: Sequence[str]
              ) -> list[Check]:
    """The task's verdicts, in one batch where the task checks in batches (program tasks run
    their executions together)."""
    if hasattr(task, "check_batch"):
        return task.check_batch(list(problems), list(completions))
    return [task.check(p, c) for p, c in zip(problems, completions, strict=True)]


def from_samples(task: Task, tok: Tokenizer, problems: Sequence[Problem],
                 prompts: Sequence[Sequence[int]], samples: Samples, stop_ids: Collection[int],
                 delimiters: Collection[int], max_new_tokens: int) -> Rollouts:
    """The checked rollouts of `samples` (cfg.n completions per prompt, prompt-major) drawn for
    `prompts` (the encoded `problems`); group i = problem i."""
    texts = decode_completions(tok, samples)
    rows = [problems[i] for i in samples.prompt_index]
    completion_ids = [tuple(int(t) for t in samples.tokens[r, : samples.lengths[r]])
                      for r in range(len(rows))]
    return Rollouts(
        task=task, problems=rows,
        prompt_ids=[tuple(prompts[i]) for i in samples.prompt_index],
        completion_ids=completion_ids, completions=texts,
        finished=np.asarray(samples.finished, bool), checks=check_all(task, rows, texts),
        step_ends=[step_ends(c, delimiters, stop_ids) for c in completion_ids],
        group=np.asarray(samples.prompt_index, int),
        logprobs=[np.asarray(samples.logprobs[r, : samples.lengths[r]], np.float32)
                  for r in range(len(rows))],
        max_new_tokens=max_new_tokens)


def sample_groups(sampler: Sampler, task: Task, tok: Tokenizer, problems: Sequence[Problem],
                  cfg: SamplingConfig, key: jax.Array, delimiters: Collection[int]) -> Rollouts:
    """cfg.n checked completions of each problem from the sampler's loaded weights."""
    prompts = [encode_prompt(tok, task.prompt(p)) for p in problems]
    samples = sampler.generate(prompts, cfg, key)
    return from_samples(task, tok, problems, prompts, samples, sampler.stop, delimiters,
                        cfg.max_new_tokens)
