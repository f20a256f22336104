"""Why a STaR run stalls at a length: sampled accuracy and the first wrong scratch line.

    python scripts/star_probe.py --workdir=runs/star [--checkpoints=base] [--digits 3 4]

Reads the run's config.gin and a checkpoint directory of it (`base` = the model before any
iteration, `checkpoints` = the latest), samples `--samples` completions of `--problems`
training problems per length at each temperature, and prints per-sample accuracy, pass@k,
how many scratch lines the samples wrote and where their first wrong line is.
"""

from __future__ import annotations

import argparse
import collections
import os

import numpy as np

from jaxrl_reason import cli, common, registry, rollouts  # noqa: F401  (registry: gin names)
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.training.checkpoints import read_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--checkpoints", default="base", help="base or checkpoints")
    parser.add_argument("--digits", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.7, 1.0, 1.3])
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()
    cli.parse_gin([], [], run_config=os.path.join(args.workdir, "config.gin"))
    task = common.run_task(args.workdir)
    s = common.build()
    params, step = read_params(os.path.join(args.workdir, args.checkpoints),
                               s.trainer.abstract_state["params"])
    print(f"{args.workdir}/{args.checkpoints} step {step}")
    for d in args.digits:
        problems = task.problems_of_length(d, args.problems, 7, "train")
        for t in args.temperatures:
            cfg = SamplingConfig(max_new_tokens=64, temperature=t, n=args.samples)
            got = rollouts.sample_and_check(s.sampler, params, task, s.tok, problems, cfg, 1)
            right = np.array([r.check.correct for r in got]).reshape(-1, args.samples)
            lines = collections.Counter(len(r.check.steps or []) for r in got)
            first = collections.Counter(
                r.check.steps.index(False) + 1 if r.check.steps and False in r.check.steps
                else 0 for r in got)
            print(f"{d} digits T={t}: per-sample {right.mean():.4f}, pass@{args.samples} "
                  f"{right.any(1).mean():.3f}; lines written {sorted(lines.items())}; first "
                  f"wrong line (0 = none) {sorted(first.items())}", flush=True)


if __name__ == "__main__":
    main()
