"""Where a chain-arithmetic policy's sampled solutions go wrong: per operation (+, -, *), the
accuracy of the lines it writes from the true value (every line up to the first wrong one),
how many distinct arithmetic facts (value op operand) the problems hold, and how often each
fact recurs in a given number of RL training problems.

    python scripts/chain_errors.py --gin_file=configs/rl_chain.gin --policy_dir=runs/sft_chain \
        --problems 200 --samples 8 --train_problems 640
"""

from __future__ import annotations

import argparse
import itertools
import re
from collections import Counter

import gin
import jax

from jaxrl_reason import cli, common, registry, rollouts  # noqa: F401  (registers every configurable)
from jaxrl_reason.data.chain import intermediates
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.training.checkpoints import read_params

LINE = re.compile(r"<<(-?\d+)([+\-*])(\d+)=(-?\d+)>>")


def facts(problem) -> list[tuple[int, str, int]]:
    """(value before, op, operand) of each step of a problem."""
    start, ops = problem.meta["start"], problem.meta["ops"]
    values = [start, *intermediates(start, ops)]
    return [(values[k], op, y) for k, (op, y) in enumerate(ops)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gin_file", action="append", required=True)
    parser.add_argument("--gin_param", action="append", default=[])
    parser.add_argument("--policy_dir", required=True)
    parser.add_argument("--policy_step", type=int, default=None)
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--train_problems", type=int, default=640,
                        help="training problems an RL run sees (steps x prompts per step)")
    args = parser.parse_args()
    cli.parse_gin(args.gin_file, args.gin_param)
    common.inherit_model(args.policy_dir)
    s = common.build()
    task = gin.query_parameter("rl.task").scoped_configurable_fn()
    params, _ = read_params(f"{args.policy_dir}/checkpoints", s.trainer.abstract_state["params"],
                            args.policy_step)
    problems = list(itertools.islice(task.problems("valid", 1), args.problems))
    cfg = SamplingConfig(max_new_tokens=gin.query_parameter("rl_learner.max_new_tokens"),
                         temperature=1.0, n=args.samples)
    results = rollouts.sample_and_check(s.sampler, params, task, s.tok, problems, cfg,
                                  jax.random.key(0))
    right, total, first_wrong = Counter(), Counter(), Counter()
    for r in results:
        steps, lines = r.check.steps, r.completion.split("\n")
        wrong = [k for k, ok in enumerate(steps) if not ok]
        reached = facts(r.problem)[: (wrong[0] + 1) if wrong else None]
        for k, (_, op, _) in enumerate(reached):  # lines whose input is the true value
            total[op] += 1
            right[op] += bool(steps[k])
        if wrong and not r.check.correct:
            k = wrong[0]
            m = LINE.fullmatch(lines[k].strip()) if k < len(lines) else None
            first_wrong["malformed" if m is None else facts(r.problem)[k][1]] += 1
    print("accuracy of lines written from the true value, by operation (T = 1):",
          {op: f"{right[op] / total[op]:.3f} of {total[op]}" for op in sorted(total)})
    print("first wrong line of the wrong solutions, by operation:", dict(first_wrong))
    train = list(itertools.islice(task.problems("train", 0), args.train_problems))
    seen = Counter(f for p in train for f in facts(p))
    print(f"{args.train_problems} training problems: {sum(seen.values())} step facts, "
          f"{len(seen)} distinct, each seen {sum(seen.values()) / len(seen):.2f} times on "
          f"average; facts seen once: {sum(c == 1 for c in seen.values()) / len(seen):.2f}")
    held = [f for p in problems for f in facts(p)]
    print(f"validation step facts also in those training problems: "
          f"{sum(f in seen for f in held) / len(held):.2f}")


if __name__ == "__main__":
    main()
