"""Validation of a policy during RL: greedy accuracy and pass@k, per difficulty.

pass@k is the unbiased estimator of Chen et al. 2021 from n >= k samples of which c are
correct: 1 - C(n - c, k) / C(n, k), averaged over problems.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import jax
import numpy as np

from jaxrl_reason.algorithms import evaluation
from jaxrl_reason.data.tasks import Problem, Task
from jaxrl_reason.sampling.sampler import Sampler, SamplingConfig
from jaxrl_reason.tokenizers import Tokenizer


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples, drawn without replacement from the n, is correct)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_ks(correct: Sequence[Sequence[bool]], ks: Sequence[int]) -> dict[int, float]:
    """{k: mean pass@k} over problems, from each problem's per-sample verdicts."""
    return {k: float(np.mean([pass_at_k(len(c), int(sum(c)), k) for c in correct]))
            for k in ks}


def greedy_accuracy(sampler: Sampler, params, task: Task, tok: Tokenizer,
                    problems: Sequence[Problem], max_new_tokens: int) -> dict[str, float]:
    """{"acc": ..., "acc/<difficulty>": ...} of greedy decoding."""
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    return evaluation.accuracy_by_difficulty(
        evaluation.rollouts(sampler, params, task, tok, problems, cfg))


def sampled_pass_at_k(sampler: Sampler, params, task: Task, tok: Tokenizer,
                      problems: Sequence[Problem], ks: Sequence[int], temperature: float,
                      max_new_tokens: int, key: jax.Array, n: int | None = None
                      ) -> dict[str, float]:
    """{"pass@k": ..., "pass@k/<difficulty>": ...} from n = max(ks) samples per problem."""
    n = n or max(ks)
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, n=n)
    results = evaluation.rollouts(sampler, params, task, tok, problems, cfg, key)
    verdicts = [[r.check.correct for r in results[i * n:(i + 1) * n]]
                for i in range(len(problems))]
    out = {f"pass@{k}": v for k, v in pass_at_ks(verdicts, ks).items()}
    by: dict[int, list[list[bool]]] = defaultdict(list)
    for p, v in zip(problems, verdicts, strict=True):
        by[p.difficulty].append(v)
    for d in sorted(by):
        out.update({f"pass@{k}/{d}": v for k, v in pass_at_ks(by[d], ks).items()})
    return out
