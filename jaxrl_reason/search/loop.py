"""The search job: held-out accuracy against test-time compute (ALGORITHMS.md 3, 4, 9).

Reads a train_verifier workdir (its policy, its verifiers, the large policy) and writes
workdir/search/: scaling.json and scaling.png (accuracy against N, one line per method,
log-x), tokens.png (accuracy against generated tokens: beam and lookahead against best-of-N),
convincing_wrong.jsonl (the verifiers' best-scored wrong solutions, for a person to read) and
a table on stdout. Problems are the task's TEST split, which no verifier trained on.

Two baseline scorers stand beside the verifiers in the pool strategies (`best_of_n:loglik`,
`weighted:random`; beam search needs a trained verifier): "random", a uniform score keyed on
the solution's text, and "loglik", the policy's own per-token probability of its completion
(exp of the mean log-prob: in (0, 1], so a weighted vote adds probabilities, not negative
logs). scaling.json's "ranking" holds each scorer's within-problem AUC and each PRM's
same-step accuracy (verifiers.ranking): where best-of-N's
gains come from, measured on the pool itself.

Every expensive piece is cached in workdir/search as it is made (the sample pool chunk by
chunk, each verifier's scores, each beam run chunk by chunk), so a killed run resumes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Sequence
from typing import Literal

import gin
import jax
import numpy as np

from jaxrl_reason import common, files, rng, rollouts
from jaxrl_reason.data.batching import encode_prompt
from jaxrl_reason.data.tasks import Problem, Task
from jaxrl_reason.errors import UserError, require, typed
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.search import plots
from jaxrl_reason.search.beam import beam_search
from jaxrl_reason.search.selection import best_of_n, weighted_vote
from jaxrl_reason.search.strategies import (
    POOL_STRATEGIES,
    STRATEGIES,
    Outcome,
    Pool,
    parse_method,
)
from jaxrl_reason.verifiers import ranking
from jaxrl_reason.verifiers.labels import step_accuracy
from jaxrl_reason.verifiers.loop import Policy, policy, sample_solutions
from jaxrl_reason.verifiers.scoring import Verifier, aggregate, load_verifier
from jaxrl_reason.verifiers.solutions import Solution, step_delimiters

BASELINES = ("random", "loglik")  # scorers that are no verifier: search.methods name them alike


class SearchContext:
    """What strategies run on: the policy, the verifiers, the held-out problems, and the
    cached pieces (sample pool and its scores, greedy answers, beam runs) under `out`."""

    def __init__(self, out: str, pol: Policy, task: Task, problems: Sequence[Problem],
                 verifiers: dict[str, Verifier], *, max_n: int, groups: int, temperature: float,
                 max_new_tokens: int, beam_width: int, lookahead: int, step_tokens: int,
                 max_depth: int, aggregate: str, beam_final: str, seed: int,
                 chunk_rows: int = 1024):
        self.out, self.pol, self.task, self.problems = out, pol, task, list(problems)
        self.verifiers, self.beam_width = verifiers, beam_width
        self.size = max_n * groups  # samples per problem in the pool
        self.lookahead, self.step_tokens, self.max_depth = lookahead, step_tokens, max_depth
        self.aggregate, self.beam_final, self.seed = aggregate, beam_final, seed
        self.chunk_rows = chunk_rows
        self.sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature)
        self.prompts = [encode_prompt(pol.setup.tok, task.prompt(p)) for p in self.problems]
        self._pool: Pool | None = None
        self.solutions: list[Solution] = []

    # ---- the shared sample pool ---------------------------------------------------------
    def pool(self) -> Pool:
        if self._pool is None:
            cfg = dataclasses.replace(self.sampling, n=self.size)
            self.solutions = sample_solutions(os.path.join(self.out, f"pool_{self.size}"),
                                              self.pol,
                                              self.task, self.problems, cfg,
                                              rng.key(self.seed, "pool"), self.chunk_rows)
            shape = (len(self.problems), self.size)
            answers = [[s.answer for s in self.solutions[p * self.size:(p + 1) * self.size]]
                       for p in range(len(self.problems))]
            correct = np.array([s.correct for s in self.solutions]).reshape(shape)
            tokens = np.array([len(s.completion) for s in self.solutions]).reshape(shape)
            scores = {name: np.asarray(self.scores(name)["solution"]).reshape(shape)
                      for name in (*self.verifiers, *BASELINES)}
            self._pool = Pool(answers, correct, tokens, scores)
        return self._pool

    def scores(self, name: str) -> dict:
        """A verifier's scores of every pool solution (cached): "solution" (ORM: last token;
        PRM: step scores aggregated by `aggregate`) and, per solution, "steps"."""
        path = files.path(self.out) / f"scores_{self.size}" / f"{name}.json"
        if not path.exists() and name in BASELINES:
            solution = (ranking.text_hash_scores([s.completion for s in self.solutions],
                                                 self.seed) if name == "random"
                        else self.loglik())
            files.write_json(path, {"solution": [float(x) for x in solution],
                                    "steps": [[] for _ in self.solutions]})
        if not path.exists():
            v = self.verifiers[name]
            examples = [s.example for s in self.solutions]
            steps = v.step_scores(examples, [s.step_ends for s in self.solutions])
            if v.kind == "orm":
                solution = v.outcome_scores(examples)
            else:
                solution = np.array([aggregate(s, self.aggregate) for s in steps])
            files.write_json(path, {"solution": [float(x) for x in solution],
                                    "steps": [[float(x) for x in s] for s in steps]})
        return files.read_json(path)

    def loglik(self) -> np.ndarray:
        """Each pool solution's geometric-mean token probability, exp(mean log-prob over its
        completion tokens, the stop token included), under the policy at temperature 1."""
        lps = self.pol.setup.completion_logprobs(self.pol.params,
                                                 [s.example for s in self.solutions])
        return np.exp([lp.sum() / max(len(lp), 1) for lp in lps])

    # ---- generative strategies -----------------------------------------------------------
    def greedy(self, pol: Policy | None = None, name: str = "greedy") -> Outcome:
        path = files.path(self.out) / f"{name}.json"
        if not path.exists():
            pol = pol or self.pol
            cfg = dataclasses.replace(self.sampling, temperature=0.0)
            results = rollouts.sample_and_check(pol.setup.sampler, pol.params, self.task,
                                          pol.setup.tok, self.problems, cfg)
            files.write_json(path, {"correct": [float(r.check.correct) for r in results],
                                    "tokens": [len(r.completion_ids) for r in results]})
        row = files.read_json(path)
        return Outcome(np.asarray(row["correct"]), np.asarray(row["tokens"], np.float64))

    def beam(self, n: int, verifier: str, lookahead: int) -> Outcome:
        """Beam (lookahead 0) or lookahead search with n rows per problem, guided by
        `verifier`; the final answer by weighted vote (Snell et al.) or best-of-N over each
        problem's final candidates. Cached chunk by chunk."""
        v = self.verifiers[verifier]
        kind = f"lookahead{lookahead}" if lookahead else "beam"
        directory = files.path(self.out) / "beam" / f"{kind}_{verifier}_n{n}"
        per_chunk = max(1, self.chunk_rows // n)
        correct, tokens = [], []
        select = weighted_vote if self.beam_final == "weighted" else best_of_n
        key = rng.key(self.seed, "beam", kind, verifier, n)
        starts = range(0, len(self.problems), per_chunk)
        bar = common.progress(len(starts), directory.name)
        for c, start in enumerate(starts):
            path = directory / f"chunk_{c:04d}.json"
            if not path.exists():
                self.pol.setup.sampler.load(self.pol.params)
                result = beam_search(
                    self.pol.setup.sampler, v.last_scores, self.prompts[start:start + per_chunk],
                    n, self.beam_width, self.sampling, jax.random.fold_in(key, c),
                    step_delimiters(self.pol.setup.tok), self.step_tokens, self.max_depth,
                    lookahead, self.aggregate)
                rows = {"correct": [], "tokens": [int(t) for t in result.tokens]}
                for p, candidates in enumerate(result.pools):
                    problem = self.problems[start + p]
                    checks = [self.task.check(problem, self.pol.setup.tok.decode(c.tokens))
                              for c in candidates]
                    if not checks:
                        rows["correct"].append(0.0)
                        continue
                    scores = [aggregate(c.step_scores, self.aggregate) for c in candidates]
                    pick = select([ch.answer for ch in checks], scores)
                    rows["correct"].append(float(checks[pick].correct))
                files.write_json(path, rows)
            row = files.read_json(path)
            correct += row["correct"]
            tokens += row["tokens"]
            bar.update()
        bar.close()
        return Outcome(np.asarray(correct), np.asarray(tokens, np.float64))


def budgets(max_n: int) -> list[int]:
    """1, 2, 4, ... up to max_n."""
    return [2**i for i in range(max_n.bit_length()) if 2**i <= max_n]


def convincing_wrong(ctx: SearchContext, limit: int) -> list[dict]:
    """Per verifier, its `limit` best-scored WRONG pool solutions, with their steps' scores
    and exact labels: what fools it (Lightman et al.'s convincing wrong answers)."""
    tok = ctx.pol.setup.tok
    rows = []
    for name in ctx.verifiers:
        scored = ctx.scores(name)
        wrong = [i for i, s in enumerate(ctx.solutions) if not s.correct]
        wrong.sort(key=lambda i: -scored["solution"][i])
        for i in wrong[:limit]:
            s = ctx.solutions[i]
            problem = ctx.problems[s.problem]
            rows.append({"verifier": name, "score": round(scored["solution"][i], 4),
                         "prompt": tok.decode(s.prompt[1:]), "completion": tok.decode(
                             s.completion), "gold": problem.answer, "answer": s.answer,
                         "step_scores": [round(x, 3) for x in scored["steps"][i]],
                         "exact_steps": None if s.exact is None else list(s.exact)})
    return rows


def _bound(binding: str):
    """A binding of the run's config (None when unbound)."""
    try:
        return gin.query_parameter(binding)
    except ValueError:
        return None


def _run_task() -> Task:
    try:
        return gin.query_parameter("train_verifier.task").scoped_configurable_fn()
    except ValueError:
        raise UserError("no task: bind search.task or point --workdir at a train_verifier "
                        "run") from None


def table(results: dict[str, dict[int, dict]], ns: Sequence[int]) -> str:
    """Accuracy (and generated tokens per problem) per method and budget."""
    width = max(len(m) for m in results) + 2
    lines = [f"{'method':<{width}}" + "".join(f"{f'N={n}':>14}" for n in ns)]
    for method, by_n in results.items():
        cells = [f"{by_n[n]['accuracy']:.3f} ({by_n[n]['tokens']:.0f})" if n in by_n else "-"
                 for n in ns]
        lines.append(f"{method:<{width}}" + "".join(f"{c:>14}" for c in cells))
    return "\n".join(lines) + "\n(accuracy on held-out problems, generated tokens per problem)"


@gin.configurable(denylist=["workdir"])
@typed
def search(
    workdir: str,
    task: Task | None = None,
    num_problems: int = 200,
    max_n: int = 64,
    groups: int = 2,
    temperature: float = 0.7,
    max_new_tokens: int = 96,
    methods: tuple[str, ...] = ("pass@1_greedy", "pass@1", "majority", "best_of_n:random",
                                "best_of_n:loglik", "best_of_n:orm",
                                "best_of_n:prm", "best_of_n:prm_mc", "weighted:orm",
                                "weighted:prm", "beam:prm", "lookahead:prm"),
    beam_budgets: tuple[int, ...] = (4, 16, 64),
    lookahead_budgets: tuple[int, ...] | None = None,
    beam_width: int = 4,
    lookahead: int = 1,
    step_tokens: int = 24,
    max_depth: int = 16,
    aggregate: Literal["product", "min", "last"] = "product",
    beam_final: Literal["weighted", "best"] = "weighted",
    large_policy: bool = True,
    large_samples: int = 8,
    convincing: int = 25,
    seed: int = 0,
    out: str = "search",
) -> dict:
    """Runs every method at every budget (pool methods at 1, 2, 4, ... max_n; beam and
    lookahead at `beam_budgets`, or lookahead at `lookahead_budgets` when given: it costs
    about k + 1 times beam's tokens) on `num_problems` held-out problems. The pool holds
    `groups` x max_n samples per problem, so even the largest budget is averaged over
    `groups` disjoint sets of samples."""
    require(max_n >= 1, "search.max_n", max_n, "must be >= 1")
    require(groups >= 1, "search.groups", groups, "must be >= 1")
    require(num_problems >= 1, "search.num_problems", num_problems, "must be >= 1")
    require(beam_width >= 1, "search.beam_width", beam_width, "must be >= 1")
    try:
        parsed = [parse_method(m) for m in methods]
    except ValueError as e:
        raise UserError(f"search.methods: {e}") from None
    task = task or _run_task()
    pol = policy(workdir, _bound("train_verifier.policy_workdir"), train=False)
    names = sorted({v for _, v in parsed if v and v not in BASELINES})
    for method, (name, verifier) in zip(methods, parsed, strict=True):
        require(name in POOL_STRATEGIES or verifier not in BASELINES, "search.methods",
                method, f"must guide {name} with a trained verifier, not a baseline scorer")
    verifiers = {name: load_verifier(os.path.join(workdir, "verifiers", name),
                                     mesh=pol.setup.trainer.mesh) for name in _exist(workdir,
                                                                                    names)}
    untrained = [n for n, v in verifiers.items() if v.kind == "prm" and not v.meta.every_step]
    require(aggregate != "last" or not untrained, "search.aggregate", aggregate,
            f"cannot be 'last' for PRMs {untrained}: trained to the first wrong step only, they "
            "never learned to score a wrong answer line (train with train_verifier.aggregate = "
            "'last')")
    problems = list(itertools.islice(task.problems("test", seed), num_problems))
    outdir = os.path.join(workdir, out)
    ctx = SearchContext(outdir, pol, task, problems, verifiers, max_n=max_n, groups=groups,
                        temperature=temperature, max_new_tokens=max_new_tokens,
                        beam_width=beam_width, lookahead=lookahead, step_tokens=step_tokens,
                        max_depth=max_depth, aggregate=aggregate, beam_final=beam_final,
                        seed=seed)
    ns = budgets(max_n)
    timer = common.Timer(outdir)
    with timer.stage("pool_and_scores"):
        ctx.pool()
    results: dict[str, dict[int, dict]] = {}
    for method, (name, verifier) in zip(methods, parsed, strict=True):
        todo = (ns if name in POOL_STRATEGIES else beam_budgets if name == "beam" else
                lookahead_budgets or beam_budgets if name == "lookahead" else [1])
        for n in todo:
            with timer.stage(method if name in POOL_STRATEGIES else f"{method}@{n}"):
                got = STRATEGIES[name](ctx, n, verifier)
            results.setdefault(method, {})[n] = {
                "accuracy": float(got.correct.mean()), "tokens": float(got.tokens.mean()),
                "accuracy_se": float(got.correct.std(ddof=1) / np.sqrt(len(got.correct)))
                if len(got.correct) > 1 else float("nan")}
    reference = {"policy_params": pol.setup.model_cfg.num_params()}
    if large_policy:
        with timer.stage("large_policy"):
            require((files.path(workdir) / "policy_large" / "model.json").exists(),
                    "search.large_policy", large_policy, "must be False: the run trained no "
                    "large policy (its train_verifier.large_model was None)")
            large = policy(workdir, large={}, train=False)  # its shape: its model.json
            reference["large_params"] = large.setup.model_cfg.num_params()
            reference["large_pass@1_greedy"] = float(
                ctx.greedy(large, "large_greedy").correct.mean())
            reference["large_pass@1"] = _sampled_pass_at_1(ctx, large, large_samples)
    prms = [n for n, v in verifiers.items() if v.kind == "prm"]
    summary = {
        "num_problems": num_problems, "max_n": max_n, "groups": groups, "seed": seed,
        "temperature": temperature,
        "aggregate": aggregate, "beam_width": beam_width, "lookahead": lookahead,
        "methods": {m: {"n": sorted(r), "accuracy": [r[n]["accuracy"] for n in sorted(r)],
                        "accuracy_se": [r[n]["accuracy_se"] for n in sorted(r)],
                        "tokens": [r[n]["tokens"] for n in sorted(r)]}
                    for m, r in results.items()},
        "ranking": ranking_report(ctx),
        "reference": reference,
        "seconds": timer.seconds,
        "step_accuracy": {n: step_accuracy(ctx.scores(n)["steps"],
                                           [s.exact for s in ctx.solutions]) for n in prms
                          if all(s.exact is not None for s in ctx.solutions)},
    }
    files.write_json(os.path.join(outdir, "scaling.json"), summary)
    files.write_jsonl(os.path.join(outdir, "convincing_wrong.jsonl"),
                      convincing_wrong(ctx, convincing))
    plots.scaling_plot(summary, os.path.join(outdir, "scaling.png"))
    plots.tokens_plot(summary, os.path.join(outdir, "tokens.png"))
    files.write_atomic(os.path.join(outdir, "config.gin"), gin.operative_config_str())
    print(table(results, ns))
    print(json.dumps({"reference": reference, "step_accuracy": summary["step_accuracy"],
                      "ranking": summary["ranking"]}))
    return summary


def ranking_report(ctx: SearchContext) -> dict[str, dict[str, float]]:
    """Per scorer (verifiers and baselines) on the pool: within-problem AUC; per PRM also the
    same-step accuracy against the exact step labels."""
    pool, out = ctx.pool(), {}
    exact = [s.exact for s in ctx.solutions]
    for name, scores in pool.scores.items():
        out[name] = ranking.within_problem_auc(scores, pool.correct)
        verifier = ctx.verifiers.get(name)
        if verifier is not None and verifier.kind == "prm" and any(e is not None for e in exact):
            step = ranking.same_step_accuracy([s.problem for s in ctx.solutions],
                                              ctx.scores(name)["steps"], exact)
            out[name].update(same_step_accuracy=step["accuracy"], same_step_pairs=step["pairs"])
    return out


def _exist(workdir: str, names: Sequence[str]) -> list[str]:
    missing = [n for n in names if not (files.path(workdir) / "verifiers" / n).exists()]
    if missing:
        raise UserError(f"search.methods use verifiers {missing} that {workdir}/verifiers/ "
                        f"lacks; train them (train_verifier.verifiers) or drop those methods")
    return list(names)


def _sampled_pass_at_1(ctx: SearchContext, pol: Policy, n: int) -> float:
    """Mean correctness of n samples per problem at the pool's temperature (cached)."""
    path = files.path(ctx.out) / "large_sampled.json"
    if not path.exists():
        cfg = dataclasses.replace(ctx.sampling, n=n)
        results = rollouts.sample_and_check(pol.setup.sampler, pol.params, ctx.task, pol.setup.tok,
                                      ctx.problems, cfg, rng.key(ctx.seed, "large"))
        files.write_json(path, {"accuracy": float(np.mean([r.check.correct for r in results]))})
    return files.read_json(path)["accuracy"]

