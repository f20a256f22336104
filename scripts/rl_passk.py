"""ProRL's claim at our scale: pass@k (k = 1..64) of the SFT policy against the RL policy, per
difficulty, sampled at the rollout temperature. Prints one table per policy and the change,
and plots pass@k against k for each difficulty.

    python scripts/rl_passk.py --gin_file=configs/rl_prorl_addition.gin --policy_dir=runs/sft_add \
        --policy_step=300 --workdir=runs/prorl_add --difficulties 2 3 4 --per_difficulty 40 \
        --plot docs/figures/rl_passk.png
"""

from __future__ import annotations

import argparse
import json
import os

import gin
import jax

from jaxrl_reason import cli, common, registry  # noqa: F401  (registers every configurable)
from jaxrl_reason.plots import plt, save
from jaxrl_reason.rl.learner import LearnerConfig
from jaxrl_reason.rl.validation import sampled_pass_at_k
from jaxrl_reason.training.checkpoints import Checkpointer

KS = (1, 2, 4, 8, 16, 32, 64)


def restore(s: common.Setup, workdir: str, step: int | None = None):
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        fill = s.trainer.init_params(0) if s.model_cfg.value_head else None
        return ckpt.restore_params(s.trainer.abstract_state["params"], step, fill)
    finally:
        ckpt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gin_file", action="append", required=True)
    parser.add_argument("--gin_param", action="append", default=[])
    parser.add_argument("--policy_dir", required=True, help="the SFT run")
    parser.add_argument("--policy_step", type=int, default=None,
                        help="the SFT checkpoint RL started from (default: the latest)")
    parser.add_argument("--workdir", required=True, help="the RL run (its latest checkpoint)")
    parser.add_argument("--difficulties", type=int, nargs="+", default=[3, 4, 5, 6])
    parser.add_argument("--per_difficulty", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    cli.parse_gin(args.gin_file, args.gin_param)
    common.inherit_model(args.policy_dir)
    s = common.build()
    task = gin.query_parameter("rl.task").scoped_configurable_fn()
    cfg = LearnerConfig()
    out = {}
    for name, workdir, at in (("sft", args.policy_dir, args.policy_step),
                              ("rl", args.workdir, None)):
        params, step = restore(s, workdir, at)
        out[name] = {"step": step}
        for d in args.difficulties:
            problems = task.problems_of_length(d, args.per_difficulty, args.seed, "test")
            got = sampled_pass_at_k(s.sampler, params, task, s.tok, problems, KS,
                                    cfg.temperature, cfg.max_new_tokens,
                                    jax.random.key(args.seed + d))
            out[name][d] = {k: got[f"pass@{k}"] for k in KS}
    print("| difficulty | policy | " + " | ".join(f"pass@{k}" for k in KS) + " |")
    print("|" + " --- |" * (len(KS) + 2))
    for d in args.difficulties:
        for name in ("sft", "rl"):
            print(f"| {d} | {name} | " + " | ".join(f"{out[name][d][k]:.3f}" for k in KS)
                  + " |")
        print(f"| {d} | change | " + " | ".join(
            f"{out['rl'][d][k] - out['sft'][d][k]:+.3f}" for k in KS) + " |")
    print(json.dumps({n: {str(d): v for d, v in o.items()} for n, o in out.items()}))
    if args.plot:
        fig, axes = plt.subplots(1, len(args.difficulties), figsize=(3.2 * len(args.difficulties),
                                                                     3.2), sharey=True)
        for ax, d in zip(axes, args.difficulties, strict=True):
            for name, style in (("sft", "o--"), ("rl", "o-")):
                ax.plot(KS, [out[name][d][k] for k in KS], style, label=name, markersize=3)
            ax.set_xscale("log", base=2)
            ax.set_title(f"difficulty {d}")
            ax.set_xlabel("k")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("pass@k")
        axes[0].legend()
        fig.tight_layout()
        save(fig, args.plot)


if __name__ == "__main__":
    main()
