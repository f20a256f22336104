"""How good a policy is: greedy accuracy and sampled pass@k, per difficulty, with standard
errors over problems.

RL optimizes the SAMPLED reward, so sampled pass@1 (at the rollout temperature) is its headline
metric, greedy accuracy beside it. pass@k is the unbiased estimator of Chen et al. 2021 from
n >= k samples of which c are correct: 1 - C(n - c, k) / C(n, k), averaged over problems; its
standard error is that of the mean of the per-problem estimates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import jax
import numpy as np

from jaxrl_reason import rollouts
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


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """The mean and its standard error (sample std with ddof 1 / sqrt(n); 0 for n < 2)."""
    v = np.asarray(values, np.float64)
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return float(v.mean()), se


def policy_report(sampler: Sampler, params, task: Task, tok: Tokenizer,
                  problems: Sequence[Problem], max_new_tokens: int, temperature: float,
                  samples: int, ks: Sequence[int], key: jax.Array) -> dict[str, float]:
    """Greedy accuracy and sampled pass@k (each k <= `samples`, from `samples` completions per
    problem at `temperature`), each with its standard error (`*_se`), overall and per
    difficulty (`acc/<d>`, `pass@k/<d>`)."""
    greedy = rollouts.sample_and_check(sampler, params, task, tok, problems,
                                 SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0))
    drawn = rollouts.sample_and_check(sampler, params, task, tok, problems,
                                SamplingConfig(max_new_tokens=max_new_tokens,
                                               temperature=temperature, n=samples), key)
    per: dict[str, list[float]] = defaultdict(list)
    for i, (p, g) in enumerate(zip(problems, greedy, strict=True)):
        c = sum(r.check.correct for r in drawn[i * samples:(i + 1) * samples])
        values = {"acc": float(g.check.correct),
                  **{f"pass@{k}": pass_at_k(samples, c, k) for k in ks if k <= samples}}
        for name, v in values.items():
            per[name].append(v)
            per[f"{name}/{p.difficulty}"].append(v)
    out = {}
    for name in sorted(per):
        out[name], se = mean_and_se(per[name])
        if "/" not in name:
            out[f"{name}_se"] = se
    return out


def sampled_pass_at_k(sampler: Sampler, params, task: Task, tok: Tokenizer,
                      problems: Sequence[Problem], ks: Sequence[int], temperature: float,
                      max_new_tokens: int, key: jax.Array, n: int | None = None
                      ) -> dict[str, float]:
    """{"pass@k": ..., "pass@k/<difficulty>": ...} from n = max(ks) samples per problem."""
    n = n or max(ks)
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, n=n)
    results = rollouts.sample_and_check(sampler, params, task, tok, problems, cfg, key)
    verdicts = [[r.check.correct for r in results[i * n:(i + 1) * n]]
                for i in range(len(problems))]
    out = {f"pass@{k}": v for k, v in pass_at_ks(verdicts, ks).items()}
    by: dict[int, list[list[bool]]] = defaultdict(list)
    for p, v in zip(problems, verdicts, strict=True):
        by[p.difficulty].append(v)
    for d in sorted(by):
        out.update({f"pass@{k}/{d}": v for k, v in pass_at_ks(by[d], ks).items()})
    return out
