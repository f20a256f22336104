"""Sample, decode, check: every job's rollouts, kept as the sampler's exact ids.

`sample_and_check` gives one `Rollout` per completion (evaluation, STaR, verifier data);
`from_samples` gives the columnar `Rollouts` of prompt groups that rewards read and the RL
learner trains on. Nothing is re-tokenized: prompt and completion ids, the sampler's own
log-probs of each completion token, whether the row stopped by itself, the task's check, and
the end of each step (`data.batching.step_ends` over the step delimiter, e.g. the newline
ending a line).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Collection, Sequence

import jax
import numpy as np

from jaxrl_reason.data.batching import Example, encode_prompt, make_batch, step_ends
from jaxrl_reason.data.tasks import BatchCheckTask, Check, Problem, Task
from jaxrl_reason.sampling.sampler import Sampler, Samples, SamplingConfig
from jaxrl_reason.tokenizers import Tokenizer


def decode_completions(tok: Tokenizer, samples: Samples) -> list[str]:
    """Texts of sampled completions (stop token and padding removed), for checkers and people."""
    return [tok.decode(row[:n]) for row, n in zip(samples.tokens, samples.lengths, strict=True)]


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


def sample_and_check(
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
        checks = check_all(task, [probs[i] for i in samples.prompt_index], texts)
        for r, (i, text) in enumerate(zip(samples.prompt_index, texts, strict=True)):
            out.append(Rollout(probs[i], prompts[i], text, checks[r],
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
    if isinstance(task, BatchCheckTask):
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


def batch_from_samples(
    prompts: Sequence[Sequence[int]],
    samples: Samples,
    pad_id: int,
    seq_len: int | None = None,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """The training batch of sampled rows, built from the sampler's own ids: `make_batch`'s
    fields plus `old_logprobs` (the sampler's log-probs, at the completion tokens), `finished`
    [B] and `prompt_index` [B]. `seq_len` defaults to the longest row."""
    examples = [
        Example(tuple(prompts[i]), tuple(samples.tokens[r, : samples.lengths[r]]))
        for r, i in enumerate(samples.prompt_index)
    ]
    seq_len = seq_len or max(len(e) for e in examples)
    batch = make_batch(examples, seq_len, pad_id, batch_size)
    old = np.zeros(batch["tokens"].shape, np.float32)
    for r, ex in enumerate(examples):
        p = len(ex.prompt)
        old[r, p : len(ex)] = samples.logprobs[r, : samples.lengths[r]]
    b = batch["tokens"].shape[0]
    finished = np.zeros((b,), bool)
    finished[: len(examples)] = samples.finished
    index = np.full((b,), -1, np.int32)
    index[: len(examples)] = samples.prompt_index
    return {**batch, "old_logprobs": old, "finished": finished, "prompt_index": index}
