"""The base model of Absolute Zero self-play, measured (docs/azr.md): greedy solve rate per
task type on the hand-written seeds' test split (and on fresh generated programs), and how
often proposals sampled from `proposal_prompt` parse and are valid by execution.

    python scripts/azr_base.py --workdir=runs/azr_sft [--step=N] [--proposals 64]

Reads the run's config.gin (model, tokenizer, its ProgramTask); prints one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import random

import gin

from jaxrl_reason import cli, common, registry, rollouts  # noqa: F401  (registers configurables)
from jaxrl_reason.data.batching import encode_example, encode_prompt
from jaxrl_reason.data.program_generator import generate_seeds
from jaxrl_reason.data.programs import TASK_TYPES, ProgramTask, Seed, seed_programs
from jaxrl_reason.data.tasks import Problem
from jaxrl_reason.rewards.programs import validate_programs
from jaxrl_reason.sampling.sampler import SamplingConfig

# Answer budgets: deduction/abduction write a literal, induction a whole program.
NEW_TOKENS = {"deduction": 128, "abduction": 128, "induction": 384}


def solve_rates(s: common.Setup, params, task: ProgramTask, problems: list[Problem]) -> dict:
    """Greedy solve rate and well-formed rate per task type."""
    out = {}
    for task_type in TASK_TYPES:
        group = [p for p in problems if p.meta["task_type"] == task_type]
        if not group:
            continue
        longest = max(len(encode_prompt(s.tok, task.prompt(p))) for p in group)
        cfg = SamplingConfig(max_new_tokens=min(NEW_TOKENS[task_type], s.sampler.room(longest)),
                             temperature=0.0)
        results = rollouts.sample_and_check(s.sampler, params, task, s.tok, group, cfg)
        out[task_type] = {"n": len(results),
                          "solved": sum(r.check.correct for r in results) / len(results),
                          "well_formed": sum(r.check.answer is not None for r in results)
                          / len(results)}
    return out


def train_loss(s: common.Setup, params, task: ProgramTask, seed: int, count: int) -> dict:
    """Mean per-token loss (negative log-likelihood of the gold target) on the run's first
    `count` training problems, per kind: one number less noisy than the logged batch losses."""
    problems = list(itertools.islice(task.problems("train", seed), count))
    examples = [encode_example(s.tok, task.prompt(p), task.target(p)) for p in problems]
    sums: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for p, lp in zip(problems, s.completion_logprobs(params, examples, rows=32), strict=True):
        for key in ("all", f"{p.meta.get('role', 'solve')}/{p.meta['task_type']}"):
            sums[key][0] -= float(lp.sum())
            sums[key][1] += len(lp)
    return {k: round(total / n, 4) for k, (total, n) in sorted(sums.items())}


def proposals(s: common.Setup, params, task: ProgramTask, pool: list[Seed], count: int,
              temperature: float, seed: int, known: set[str]) -> dict:
    """`count` proposals (deduction and abduction alternating), each prompted with
    `task.references` programs drawn from `pool`: how many parse, are valid by execution,
    copy a reference, or repeat a known (training) program."""
    rng = random.Random(seed)
    problems, refs = [], []
    for k in range(count):
        task_type = ("deduction", "abduction")[k % 2]
        chosen = rng.sample(pool, min(task.references, len(pool)))
        refs.append({r.program for r in chosen})
        problems.append(Problem(task.proposal_prompt(task_type, chosen), "", meta={
            "task_type": task_type, "role": "propose", "program": "", "message": ""}))
    longest = max(len(encode_prompt(s.tok, p.question)) for p in problems)
    cfg = SamplingConfig(max_new_tokens=min(400, s.sampler.room(longest)),
                         temperature=temperature)
    results = rollouts.sample_and_check(s.sampler, params, task, s.tok, problems, cfg, key=seed)
    parsed = [task.parse_proposal(r.problem.meta["task_type"], r.completion) for r in results]
    readable = [(p, r) for p, r in zip(parsed, refs, strict=True) if p is not None]
    verdicts = validate_programs(task.executor, [(p.program, p.inputs) for p, _ in readable])
    valid = [p for (p, _), v in zip(readable, verdicts, strict=True) if v.valid]
    copies = sum(p.program.strip() in {r.strip() for r in ref}
                 for (p, ref), v in zip(readable, verdicts, strict=True) if v.valid)
    reasons = collections.Counter(v.reason.split(":")[0] for v in verdicts if not v.valid)
    return {"n": count, "parsed": len(readable) / count, "valid": len(valid) / count,
            "valid_copy_of_a_reference": copies / count,
            "valid_known_program": sum(p.program.strip() in known for p in valid) / count,
            "valid_distinct_programs": len({p.program for p in valid}),
            "invalid_reasons": dict(reasons.most_common(4)),
            "examples": [r.completion for r in results[:3]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--step", type=int, default=None)
    parser.add_argument("--gin_param", action="append", default=[])
    parser.add_argument("--proposals", type=int, default=64, help="per reference pool")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--generated_eval", type=int, default=30,
                        help="fresh generated programs (another generator seed) to solve")
    parser.add_argument("--loss_examples", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cli.parse_gin([], args.gin_param, os.path.join(args.workdir, "config.gin"))
    s = common.build()
    params, step = common.restore_params(s, args.workdir, args.step)
    task = common.run_task(args.workdir)
    if not isinstance(task, ProgramTask):
        raise SystemExit(f"{args.workdir} did not train on a ProgramTask")
    try:
        train_seed = gin.query_parameter("sft.seed")
    except ValueError:  # not bound: the job's default
        train_seed = 0
    known = {p.program.strip() for p in task.generated_programs(train_seed)}
    known |= {p.program.strip() for p in task.seeds}
    fresh = generate_seeds(task.executor, args.generated_eval, seed=10_000 + args.seed)
    rng = random.Random(args.seed)
    fresh_problems = [task.make_problem(t, g, rng, None if t == "induction" else 0)
                      for g in fresh for t in TASK_TYPES]
    out = {"workdir": args.workdir, "step": step,
           "train_loss": train_loss(s, params, task, train_seed, args.loss_examples),
           "seed_test_split": solve_rates(s, params, task, list(task.problems("test", 0))),
           "fresh_generated": solve_rates(s, params, task, fresh_problems),
           "proposals_seed_references": proposals(s, params, task, seed_programs(),
                                                  args.proposals, args.temperature,
                                                  args.seed, known),
           "proposals_generated_references": proposals(s, params, task, fresh,
                                                       args.proposals, args.temperature,
                                                       args.seed + 1, known)}
    task.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
