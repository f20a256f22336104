#!/usr/bin/env python3
"""One GRPO step of our learner against one of tunix's GRPOLearner, same model, batch and
group, on CPU, in one run: step time and the share of each phase.

  python scripts/bench_grpo_step.py --tunix_python /path/to/tunix-venv/bin/python

tunix is never a dependency of ours: it lives in its own virtualenv (docs/benchmarks.md says how
to make one) and its half (scripts/_bench_grpo_tunix_side.py) runs as a subprocess of that
venv's interpreter, held open so the sides take turns: each round times --steps GRPO steps of
one side, then of the other, the order flipping every round (a change in machine load hits both
alike). Warm-up steps (the first compiles) are not timed.

Both sides: the same decoder shape with random weights (tunix's Llama3 and our Transformer are
the same architecture), float32, one CPU device; --prompts distinct prompts of --prompt_len
random ids (the same ids on both sides) x --group samples each at --temperature, --gen_len new
tokens with no stop token (every row decodes all of them); the same trivial reward, 1 when the
first generated id is even (a checker of a fixed answer, so groups have mixed rewards and the
updates are real); GRPO advantages, clipped ratio (eps 0.2), token-mean loss, KL coefficient
--beta (0: no reference pass), --num_iterations passes (mu) over one mini-batch of all rows;
AdamW (b1 0.9, b2 0.98, weight decay 0.01, clip 1.0) at a constant --lr.

A step is everything one training step does after the previous one, and its phases are the
calls each side makes, each timed until its outputs are ready (wall and CPU seconds):
  ours   what `jaxrl_reason.rl` does per step (bookkeeping aside): `Sampler.load` (load: the
         sampler's decode-layout copy of the new weights), `Sampler.generate` (sample),
         `rollouts.from_samples` + `rewards.combine` (score: decode, check, step ends), then
         `Learner.step`: `Trainer.logprobs` (logprobs: pi_old, recomputed on every step, and the
         reference's when beta > 0) and `Trainer.train_step` (update), the same spans as the
         learner's own time/logprobs and time/update less their host work;
  tunix  what `GRPOLearner.train` does between drawing two batches: `RLCluster.generate`
         (sample), `_compute_rewards` (score), its log-prob passes (logprobs: the old
         policy's only when num_iterations > 1, the reference's when beta > 0) and
         `update_actor` (update, until the actor's weights are ready).
"other" is the step less its phases (batch building, advantages, metrics). CPU seconds are
those of each side's own process (all threads), which other jobs on a shared machine do not
inflate as they do wall time. Prints one line per round, the ratio of step times (ours / tunix:
the goal is <= 0.5) as median and min-max over rounds, each side's phases (median seconds and
share of the step, wall and CPU), and the whole result as one JSON line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import _bench_common as common
from _bench_grpo_tunix_side import first_id_is_even

TUNIX_SIDE = Path(__file__).resolve().parent / "_bench_grpo_tunix_side.py"
OURS_PHASES = ("load", "sample", "score", "logprobs", "update")
TUNIX_PHASES = ("sample", "score", "logprobs", "update")


def parse() -> argparse.Namespace:
    parser = common.tunix_parser(__doc__)
    parser.add_argument("--prompts", type=int, default=8, help="distinct prompts per step (B)")
    parser.add_argument("--group", type=int, default=8, help="samples per prompt (G)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--num_iterations", type=int, default=1, help="mu: passes per step")
    parser.add_argument("--beta", type=float, default=0.0, help="KL coefficient (0 = none)")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--rounds", type=int, default=3, help="alternating turns of each side")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per side per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps; the first compiles")
    args = parser.parse_args()
    common.check_python(parser, args.tunix_python)
    if min(args.rounds, args.steps, args.warmup, args.gen_len, args.prompt_len, args.prompts,
           args.num_iterations) < 1 or args.group < 2 or args.temperature <= 0:
        parser.error("sizes and counts must be >= 1, --group >= 2, --temperature > 0")
    return args


class IdTokenizer:
    """Our Tokenizer protocol over bare ids: text is space-separated ids, as on tunix's side."""

    pad_id, bos_id, eos_id, stop_ids = 0, 0, 0, ()

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in text.split()]

    def decode(self, ids) -> str:
        return " ".join(str(int(t)) for t in ids)


class FirstIdEven:
    """The task the benchmark's rollouts are checked against (the prompts are given as ids)."""

    name = "first_id_even"

    def check(self, problem, completion: str):
        from jaxrl_reason.data.tasks import Check

        correct = first_id_is_even(completion) == 1.0
        return Check(answer=completion.split()[0] if completion else None, correct=correct)


class Ours:
    """Our learner's step, as `jaxrl_reason.rl` runs it."""

    def __init__(self, args: argparse.Namespace, prompts: list[list[int]]):
        import jax

        from jaxrl_reason import parallel, rng
        from jaxrl_reason.data.tasks import Problem
        from jaxrl_reason.rl import rewards as rewards_lib
        from jaxrl_reason.rl.learner import Learner, LearnerConfig
        from jaxrl_reason.rl.objective import RLLoss
        from jaxrl_reason.rollouts import from_samples
        from jaxrl_reason.sampling.sampler import Sampler
        from jaxrl_reason.training.optim import make_optimizer
        from jaxrl_reason.training.trainer import Trainer

        cfg = common.our_model_config(args, args.prompt_len + args.gen_len + 16)
        mesh = parallel.make_mesh(devices=jax.devices()[:1])
        banned = (0,)  # pad: no side should generate it (tunix reads id 0 as padding)
        trainer = Trainer(cfg, make_optimizer(learning_rate=args.lr, warmup_steps=0,
                                              schedule="constant"),
                          mesh, loss=RLLoss(kl_coef=args.beta), reference=args.beta > 0,
                          banned_ids=banned)
        self.sampler = Sampler(cfg, stop_tokens=[], mesh=mesh, pad_id=0, banned_ids=banned)
        self.cfg = LearnerConfig(prompts_per_step=args.prompts, group_size=args.group,
                                 temperature=args.temperature, max_new_tokens=args.gen_len,
                                 num_iterations=args.num_iterations, mask_truncated=False,
                                 rewards={"outcome": 1.0})  # the checker alone, as tunix's
        self.learner = Learner(self.cfg, trainer, 0)
        self.rewards = rewards_lib.build(self.cfg.rewards)
        self.task, self.tok = FirstIdEven(), IdTokenizer(args.vocab)
        self.problems = [Problem(question=str(i), answer="") for i in range(len(prompts))]
        self.prompts, self.seed, self.step_index = prompts, 0, 0
        self.state = trainer.init(self.seed)
        total = (args.warmup + args.rounds * args.steps) * self.learner.updates_per_step
        self.rates = trainer.optimizer.learning_rates(total)
        self.combine, self.from_samples, self.key = rewards_lib.combine, from_samples, rng.key
        self.times = common.timed_phases(self.sampler, {"load": "load", "generate": "sample"})
        self.times.update(common.timed_phases(trainer, {"logprobs": "logprobs",
                                                        "values": "logprobs",
                                                        "train_step": "update"}))
        self.times.update({"score": [], "score_cpu": []})
        self.run(args.warmup)

    def _step(self) -> None:
        self.step_index += 1
        self.sampler.load(self.state["params"])
        samples = self.sampler.generate(self.prompts, self.cfg.sampling(),
                                        self.key(self.seed, self.step_index, "sample", 0))
        t0, c0 = time.perf_counter(), time.process_time()
        ro = self.from_samples(self.task, self.tok, self.problems, self.prompts, samples,
                               self.sampler.stop, (), self.cfg.max_new_tokens)
        combined = self.combine(ro, self.rewards, self.cfg.reward_combine)
        self.times["score"].append(time.perf_counter() - t0)
        self.times["score_cpu"].append(time.process_time() - c0)
        self.state, _ = self.learner.step(self.state, ro, combined, self.rates,
                                          self.step_index, self.seed)

    def run(self, steps: int) -> dict[str, list[float]]:
        for times in self.times.values():
            times.clear()
        cpu: list[float] = []
        wall = common.time_calls(self._step, steps, cpu)
        return {"step": wall, "step_cpu": cpu, **{k: list(v) for k, v in self.times.items()}}


class Tunix:
    """tunix's GRPOLearner in a subprocess of its own interpreter."""

    def __init__(self, args: argparse.Namespace, prompts: list[list[int]]):
        spec = {k: getattr(args, k) for k in (
            *common.SHAPE_FLAGS, "prompt_len", "gen_len", "temperature", "group",
            "num_iterations", "beta", "lr", "warmup")}
        self.side = common.SideProcess(args.tunix_python, TUNIX_SIDE,
                                       {**spec, "prompts": prompts})
        self.info = self.side.info

    def run(self, steps: int) -> dict[str, list[float]]:
        return self.side.ask({"steps": steps})

    def close(self) -> None:
        self.side.close()


def per_step(times: dict[str, list[float]], phases: tuple[str, ...]) -> list[dict[str, float]]:
    """Each step's wall and CPU seconds by phase (a phase called several times per step
    summed), with "other" = the step less its phases."""
    n = len(times["step"])
    steps = []
    for i in range(n):
        row = {}
        for kind in ("", "_cpu"):
            row["step" + kind] = times["step" + kind][i]
            for phase in phases:
                calls = times.get(phase + kind, [])
                per = len(calls) // n
                row[phase + kind] = sum(calls[i * per: (i + 1) * per])
            row["other" + kind] = row["step" + kind] - sum(row[p + kind] for p in phases)
        steps.append(row)
    return steps


def describe(name: str, steps: list[dict[str, float]], phases: tuple[str, ...]
             ) -> tuple[str, dict[str, float]]:
    """One line: median step, then each phase's median seconds and its share of the summed
    step time, wall (and CPU)."""
    med = {k: statistics.median(s[k] for s in steps) for k in steps[0]}
    total = {kind: sum(s["step" + kind] for s in steps) for kind in ("", "_cpu")}
    share = {p + kind: sum(s[p + kind] for s in steps) / total[kind]
             for p in (*phases, "other") for kind in ("", "_cpu")}
    parts = [f"{p} {med[p]:.2f} s {100 * share[p]:.0f}% (CPU {med[p + '_cpu']:.2f} s "
             f"{100 * share[p + '_cpu']:.0f}%)" for p in (*phases, "other")]
    return (f"{name:5s} step {med['step']:.2f} s, CPU {med['step_cpu']:.2f} s (medians of "
            f"{len(steps)}): " + ", ".join(parts)), {"median_s": med, "share": share}


def main() -> None:
    args = parse()
    import numpy as np

    prompts = np.random.default_rng(0).integers(
        1, args.vocab, (args.prompts, args.prompt_len)).tolist()
    tunix = Tunix(args, prompts)  # compiles while ours does, in another process
    ours = Ours(args, prompts)
    sides = {"ours": (ours, OURS_PHASES), "tunix": (tunix, TUNIX_PHASES)}
    rounds, all_steps = [], {"ours": [], "tunix": []}
    try:
        for r in range(args.rounds):
            order = ["ours", "tunix"][:: 1 if r % 2 == 0 else -1]
            got = {"load_before": common.load_average()}
            for name in order:
                side, phases = sides[name]
                steps = per_step(side.run(args.steps), phases)
                all_steps[name] += steps
                got[name] = {"step_s": statistics.median(s["step"] for s in steps),
                             "step_cpu_s": statistics.median(s["step_cpu"] for s in steps),
                             "steps": steps}
            got["load_after"] = common.load_average()
            got["ratio"] = got["ours"]["step_s"] / got["tunix"]["step_s"]
            got["cpu_ratio"] = got["ours"]["step_cpu_s"] / got["tunix"]["step_cpu_s"]
            rounds.append(got)
            o, t = got["ours"], got["tunix"]
            print(f"round {r + 1} ({order[0]} first, load {got['load_before']:.1f}->"
                  f"{got['load_after']:.1f}): step ours {o['step_s']:.2f} s "
                  f"({o['step_cpu_s']:.2f} CPU s) tunix {t['step_s']:.2f} s "
                  f"({t['step_cpu_s']:.2f} CPU s): ours / tunix = {got['ratio']:.2f} "
                  f"(CPU {got['cpu_ratio']:.2f})", flush=True)
    finally:
        tunix.close()
    ratios = [g["ratio"] for g in rounds]
    cpu_ratios = [g["cpu_ratio"] for g in rounds]
    summary = {"bench": "grpo_step", "shape": {k: getattr(args, k) for k in (
        *common.SHAPE_FLAGS, "prompts", "group", "prompt_len", "gen_len", "temperature",
        "num_iterations", "beta", "lr")}, "steps": args.steps, "tunix": tunix.info,
        "rounds": rounds, "ratio": common.median_min_max(ratios),
        "cpu_ratio": common.median_min_max(cpu_ratios)}
    report = [f"{common.shape_line(args)}; {args.prompts} prompts x {args.group} = "
              f"{args.prompts * args.group} rows, prompt {args.prompt_len} + gen "
              f"{args.gen_len}, temperature {args.temperature}, mu {args.num_iterations}, "
              f"beta {args.beta}"]
    for name, phases in (("ours", OURS_PHASES), ("tunix", TUNIX_PHASES)):
        line, summary[name] = describe(name, all_steps[name], phases)
        report.append(line)
    report.append(f"step time, ours / tunix: {statistics.median(ratios):.2f} (min "
                  f"{min(ratios):.2f}, max {max(ratios):.2f} over {len(ratios)} rounds; goal "
                  f"<= 0.5); in CPU seconds {statistics.median(cpu_ratios):.2f} "
                  f"({min(cpu_ratios):.2f}-{max(cpu_ratios):.2f})")
    common.report(report, summary)


if __name__ == "__main__":
    sys.exit(main())
