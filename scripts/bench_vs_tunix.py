#!/usr/bin/env python3
"""Our sampler against tunix's, same decoder shape and batch, in one run: decode tokens/s ratio.

  python scripts/bench_vs_tunix.py --tunix_python /path/to/tunix-venv/bin/python

tunix is never a dependency of ours: it lives in its own virtualenv (docs/benchmarks.md says how
to make one), and its half (scripts/_bench_tunix_side.py) runs as a subprocess of that venv's
interpreter, held open so the two sides take turns: each round times --steps generate calls of
ours, then --steps of tunix's (the order flips every round, so a change in machine load hits
both sides alike). Both decode the same prompt ids, with no stop token, with random weights of
the same shape (tunix's Llama3 and our Transformer are the same architecture) in float32:
batch = --batch rows made of batch / n distinct prompts x n samples each. Ours is asked for n
samples per prompt (each prompt prefilled once); tunix's sampler has no such option, so it is
given each prompt n times, as a tunix user would. Both return per-token log-probs (RL needs
them) unless --no_logprobs.

Decode tokens/s = rows x gen_len / decode-loop time (each side's loop makes gen_len model
calls); generate tokens/s = rows x gen_len / whole generate call (prompt pass and host work
included). Each is also given per CPU second of the side's own process (all threads), which
other jobs on a shared machine do not inflate as they do wall time. Warm-up calls (the first
compiles) are not timed. Prints one line per round, the ratios (ours / tunix) as median and
min-max over rounds, and the whole result as one JSON line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import _bench_common as common

TUNIX_SIDE = Path(__file__).resolve().parent / "_bench_tunix_side.py"


def parse() -> argparse.Namespace:
    parser = common.tunix_parser(__doc__)
    parser.add_argument("--batch", type=int, default=64, help="rows (distinct prompts x n)")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt (divides --batch)")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--no_logprobs", action="store_true",
                        help="tunix skips its log-probs (ours always computes them)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating turns of each side")
    parser.add_argument("--steps", type=int, default=3, help="timed calls per side per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls; the first compiles")
    args = parser.parse_args()
    if args.batch % args.n:
        parser.error("--n must divide --batch")
    common.check_python(parser, args.tunix_python)
    if min(args.rounds, args.steps, args.gen_len, args.prompt_len) < 1:
        parser.error("--rounds, --steps, --gen_len and --prompt_len must be >= 1")
    return args


class Ours:
    """Our Sampler on the shape, timed like scripts/bench_sample.py."""

    def __init__(self, args: argparse.Namespace, prompts: list[list[int]]):
        import jax
        from flax import nnx

        from jaxrl_reason.models.transformer import Transformer
        from jaxrl_reason.sampling.sampler import Sampler, SamplingConfig

        cfg = common.our_model_config(args, args.prompt_len + args.gen_len + 16)
        self.sampler = Sampler(cfg, stop_tokens=[])
        make = lambda: nnx.state(Transformer(cfg, nnx.Rngs(params=0)), nnx.Param)
        self.sampler.load(jax.jit(make)())
        self.prompts = prompts
        self.cfg = SamplingConfig(max_new_tokens=args.gen_len, temperature=args.temperature,
                                  n=args.n)
        self.phases = common.timed_phases(
            self.sampler, {"_prefill": "prefill", "_select": "select", "_extend": "decode"})
        common.time_calls(self._generate, args.warmup)

    def _generate(self) -> None:
        out = self.sampler.generate(self.prompts, self.cfg)
        assert (out.lengths == self.cfg.max_new_tokens).all(), out.lengths

    def run(self, steps: int) -> dict[str, list[float]]:
        for times in self.phases.values():
            times.clear()
        cpu: list[float] = []
        whole = common.time_calls(self._generate, steps, cpu)
        return {**{k: list(v) for k, v in self.phases.items()}, "generate": whole,
                "generate_cpu": cpu}


class Tunix:
    """tunix's Sampler in a subprocess of its own interpreter, one JSON line per request."""

    def __init__(self, args: argparse.Namespace, rows: list[list[int]]):
        spec = {k: getattr(args, k) for k in (*common.SHAPE_FLAGS, "prompt_len", "gen_len",
                                              "temperature", "warmup")}
        self.side = common.SideProcess(args.tunix_python, TUNIX_SIDE, {
            **spec, "rows": rows, "logprobs": not args.no_logprobs})
        self.info = self.side.info

    def run(self, steps: int) -> dict[str, list[float]]:
        return self.side.ask({"steps": steps})

    def close(self) -> None:
        self.side.close()


KINDS = ("decode", "generate", "decode_cpu", "generate_cpu")


def rates(times: dict[str, list[float]], tokens: int) -> dict[str, float]:
    """Medians over a round's calls: seconds and tokens per second of each kind; prefill
    includes our select (the broadcast of each prompt's cache to its n rows)."""
    median = {k: statistics.median(times[k]) for k in KINDS}
    prefill = statistics.median(times["prefill"]) + (
        statistics.median(times["select"]) if times.get("select") else 0.0)
    return {"prefill_s": prefill, **{f"{k}_s": v for k, v in median.items()},
            **{f"{k}_tokens_per_s": tokens / v for k, v in median.items()}}


def main() -> None:
    args = parse()
    import numpy as np

    distinct = np.random.default_rng(0).integers(
        1, args.vocab, (args.batch // args.n, args.prompt_len)).tolist()
    rows = [p for p in distinct for _ in range(args.n)]  # prompt-major, as ours returns them
    tunix = Tunix(args, rows)  # compiles while ours does, in another process
    ours = Ours(args, distinct)
    tokens = args.batch * args.gen_len
    rounds, lines = [], []
    try:
        for r in range(args.rounds):
            order = [("ours", ours), ("tunix", tunix)][:: 1 if r % 2 == 0 else -1]
            got = {"load_before": os.getloadavg()[0]}
            for name, side in order:
                got[name] = rates(side.run(args.steps), tokens)
            got["load_after"] = os.getloadavg()[0]
            for kind in KINDS:
                key = f"{kind}_tokens_per_s"
                got[f"{kind}_ratio"] = got["ours"][key] / got["tunix"][key]
            rounds.append(got)
            o, t = got["ours"], got["tunix"]
            lines.append(
                f"round {r + 1} ({order[0][0]} first, load {got['load_before']:.1f}->"
                f"{got['load_after']:.1f}): decode tok/s ours {o['decode_tokens_per_s']:,.0f} "
                f"tunix {t['decode_tokens_per_s']:,.0f} = {got['decode_ratio']:.2f}x; generate "
                f"ours {o['generate_s'] * 1e3:.0f} ms (prefill {o['prefill_s'] * 1e3:.0f}) tunix "
                f"{t['generate_s'] * 1e3:.0f} ms (prefill {t['prefill_s'] * 1e3:.0f}) = "
                f"{got['generate_ratio']:.2f}x; in CPU time decode {got['decode_cpu_ratio']:.2f}x "
                f"generate {got['generate_cpu_ratio']:.2f}x")
            print(lines[-1], flush=True)
    finally:
        tunix.close()
    summary = {"bench": "vs_tunix", "shape": {k: getattr(args, k) for k in (
        "layers", "d_model", "heads", "kv_heads", "head_dim", "d_ff", "vocab", "batch", "n",
        "prompt_len", "gen_len", "temperature")}, "logprobs": not args.no_logprobs,
        "steps": args.steps, "tunix": tunix.info, "rounds": rounds}
    report = [f"{common.shape_line(args)}; batch "
              f"{args.batch} = {args.batch // args.n} prompts x {args.n}, prompt "
              f"{args.prompt_len} + gen {args.gen_len}, temperature {args.temperature}"]
    for kind in KINDS:
        ratios = [g[f"{kind}_ratio"] for g in rounds]
        summary[f"{kind}_ratio"] = {"median": statistics.median(ratios), "min": min(ratios),
                                    "max": max(ratios)}
        what = kind.replace("_cpu", " tokens per CPU s") if "cpu" in kind else f"{kind} tokens/s"
        report.append(f"{what}, ours / tunix: {statistics.median(ratios):.2f}x "
                      f"(min {min(ratios):.2f}, max {max(ratios):.2f} over {len(ratios)} rounds)")
    common.report(report, summary)


if __name__ == "__main__":
    sys.exit(main())
