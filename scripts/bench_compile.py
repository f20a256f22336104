#!/usr/bin/env python3
"""XLA compile seconds and program counts per STaR iteration, persistent compilation cache off.

  python scripts/bench_compile.py                          # this checkout's package
  python scripts/bench_compile.py --checkout ../old-tree   # another checkout of the repo

Runs the STaR job in-process (the checkout's `star.loop.star`, with the gin file and
bindings a CLI run would get) on a shrunk config (`SHRINK`, then --gin_param on top), with
`compilation_cache.directory=None` so every program really compiles. A jax.monitoring listener
records each XLA compilation ("/jax/core/compile/backend_compile_duration", named by the jitted
function) with its wall-clock end; each is attributed to the STaR iteration whose metrics.jsonl
record (they carry a "time") is the first written after it. Iteration 0 is the base model's
training and evaluation; iteration n >= 1 is its sampling, rationalization, fine-tuning and
evaluation. Tracing and lowering time is not counted. Prints one line per iteration (compile
seconds, programs, and the train step apart), then the whole result as one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
TRAIN_STEP = "jit(_train_step)"

# A STaR run of configs/star_addition.gin cut to a few minutes on a shared 2-core CPU: the
# programs it compiles are those of the full run (same model, batch and buckets), fewer steps.
SHRINK = (
    "star.num_seed_examples = 200",
    "star.base_steps = 30",
    "star.iterations = 3",
    "star.num_problems = 96",
    "star.first_steps = 10",
    "star.steps_add = 5",
    "star.eval_per_difficulty = 12",
    "star.ckpt_every = 1000",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parents[1],
                        help="repository root whose jaxrl_reason package runs (default: this one)")
    parser.add_argument("--gin_file", type=Path, default=None,
                        help="default: CHECKOUT/configs/star_addition.gin")
    parser.add_argument("--gin_param", action="append", default=[],
                        help="extra binding, after SHRINK (repeatable)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="run directory (default: a new temporary one); must not hold a run")
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    gin_file = args.gin_file or checkout / "configs" / "star_addition.gin"
    if not (checkout / "jaxrl_reason" / "star" / "loop.py").is_file():
        parser.error(f"--checkout={checkout}: no jaxrl_reason/star/loop.py there")
    if not gin_file.is_file():
        parser.error(f"--gin_file={gin_file}: no such file")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_compile_"))
    if (workdir / "metrics.jsonl").exists():
        parser.error(f"--workdir={workdir} already holds a run (it would resume, not compile)")

    sys.path.insert(0, str(checkout))
    import gin
    import jax
    from absl import logging

    import jaxrl_reason
    from jaxrl_reason import registry  # noqa: F401  (registers every configurable with gin)
    from jaxrl_reason.star import loop as star

    logging.set_verbosity(logging.WARNING)
    events: list[tuple[float, float, str]] = []  # (wall-clock end, seconds, function)

    def listener(event: str, duration: float, **kw) -> None:
        if event == BACKEND_COMPILE:
            events.append((time.time(), duration, str(kw.get("fun_name"))))

    bindings = [*SHRINK, *args.gin_param, "compilation_cache.directory = None"]
    gin.parse_config_files_and_bindings([str(gin_file)], bindings)
    jax.monitoring.register_event_duration_secs_listener(listener)
    t0 = time.time()
    star.star(str(workdir))
    wall = time.time() - t0
    jax.monitoring.unregister_event_duration_listener(listener)

    records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    ends = [(r["iteration"], r["time"]) for r in records]
    per: dict[str, list[tuple[float, str]]] = collections.defaultdict(list)
    for end, seconds, name in events:
        label = next((str(n) for n, t in ends if end <= t), "after")
        per[label].append((seconds, name))

    rows, lines = [], [f"package: {os.path.dirname(jaxrl_reason.__file__)}   gin: {gin_file}",
                       f"bindings: {'; '.join(bindings)}",
                       "iteration  compile s  programs  train-step compiles (s)  top programs"]
    for label in [str(n) for n, _ in ends] + (["after"] if "after" in per else []):
        got = per.get(label, [])
        by_name: dict[str, list[float]] = collections.defaultdict(list)
        for seconds, name in got:
            by_name[name].append(seconds)
        train = by_name.get(TRAIN_STEP, [])
        top = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:3]
        rows.append({"iteration": label, "compile_s": sum(s for s, _ in got),
                     "programs": len(got), "train_step_compiles": len(train),
                     "train_step_s": sum(train),
                     "by_function": {k: [len(v), sum(v)] for k, v in by_name.items()}})
        lines.append(f"{label:>9}  {rows[-1]['compile_s']:9.1f}  {len(got):8d}  "
                     f"{len(train):8d} ({sum(train):5.1f})          "
                     + ", ".join(f"{k} x{len(v)} {sum(v):.1f}s" for k, v in top))
    total = sum(s for _, s, _ in events)
    lines.append(f"total: {total:.1f} s compiling in {len(events)} programs; run {wall:.0f} s "
                 f"wall; workdir {workdir}")
    print("\n".join(lines))
    print(json.dumps({"bench": "compile", "package": os.path.dirname(jaxrl_reason.__file__),
                      "bindings": bindings, "iterations": rows, "compile_s": total,
                      "programs": len(events), "wall_s": wall}, sort_keys=True))


if __name__ == "__main__":
    main()
