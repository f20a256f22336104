#!/usr/bin/env python3
"""Does a tiny model trained on gold addition of lengths lo..hi solve longer additions?

  python scripts/probe_length_generalization.py --scratchpad columns --reverse --lo 1 --hi 2
  python scripts/probe_length_generalization.py --gin_param="ModelConfig.position_encoding='none'"

Trains on 3000 gold problems per length (the model and optimizer of
configs/star_strong_base_addition.gin: RoPE, cosine schedule), then prints one JSON line: greedy
accuracy and pass@4 at temperature 0.7 per operand length 1..hi+3 on held-out operand pairs.
This is the question STaR and self-improvement on lengths hinge on: with no correct sample beyond
the seed lengths, neither the answer filter nor rationalization has anything to keep.
"""

from __future__ import annotations

import argparse
import json
import time

import gin

from jaxrl_reason import (
    common,
    registry,  # noqa: F401  (gin configurables)
    rollouts,
)
from jaxrl_reason.cli import CONFIGS_DIR
from jaxrl_reason.data.addition import AdditionTask
from jaxrl_reason.data.batching import ExampleStream, encode_example
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.training.loop import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scratchpad", default="columns", choices=["columns", "nye", "none"])
    parser.add_argument("--reverse", action="store_true")
    parser.add_argument("--lo", type=int, default=1)
    parser.add_argument("--hi", type=int, default=2)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--per_length", type=int, default=3000, help="training problems")
    parser.add_argument("--eval", type=int, default=100, help="test problems per length")
    parser.add_argument("--gin_param", action="append", default=[])
    args = parser.parse_args()

    gin.parse_config_files_and_bindings(
        [f"{CONFIGS_DIR}/star_strong_base_addition.gin"],
        ["ModelConfig.max_len = 192", *args.gin_param])
    task = AdditionTask(args.lo, args.hi, scratchpad=args.scratchpad, reverse=args.reverse)
    s = common.build()
    train = [p for n in range(args.lo, args.hi + 1)
             for p in task.problems_of_length(n, args.per_length, seed=1, split="train")]
    data = ExampleStream([encode_example(s.tok, task.prompt(p), task.target(p)) for p in train],
                         64, 128, s.tok.pad_id)
    t0 = time.time()
    state = fit(s.trainer, s.trainer.init(0), data, args.steps, desc="train", log_every=100)
    out = {"scratchpad": args.scratchpad, "reverse": args.reverse, "lengths": [args.lo, args.hi],
           "steps": args.steps, "train_seconds": round(time.time() - t0)}
    lengths = range(1, args.hi + 4)
    problems = [p for n in lengths for p in task.problems_of_length(n, args.eval, seed=2)]
    for name, cfg in [("greedy", SamplingConfig(max_new_tokens=96, temperature=0.0)),
                      ("pass@4", SamplingConfig(max_new_tokens=96, temperature=0.7, n=4))]:
        results = rollouts.sample_and_check(s.sampler, state["params"], task, s.tok, problems, cfg)
        solved = [any(r.check.correct for r in results[i : i + cfg.n])
                  for i in range(0, len(results), cfg.n)]
        for n in lengths:
            hits = [ok for ok, p in zip(solved, problems, strict=True) if p.difficulty == n]
            out[f"{name}/{n}"] = round(sum(hits) / len(hits), 2)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
