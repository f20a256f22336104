"""Compares RL runs from their workdirs: one table (validation accuracy at the start, the end
and its best, the steps and wall minutes to first reach a target accuracy; the TEST split's
greedy accuracy and sampled pass@k before and after, with the gain in standard errors; the
mean truncated fraction and all-equal group fraction; rollout tokens/s and the share of step
time spent sampling) and one plot of accuracy and reward against step.

    python scripts/rl_compare.py --run grpo=runs/grpo --run process=runs/process \
        --target 0.55 --plot docs/figures/rl_process.png

A label may name several workdirs (`--run grpo=runs/a,runs/b,runs/c`, one per seed): the
table then gives min-max over them and the plot draws each.
"""

from __future__ import annotations

import argparse

import numpy as np

from jaxrl_reason.rl.plots import compare_plot
from jaxrl_reason.training.metrics import read_metrics


def summary(records: list[dict], target: float | None) -> dict[str, float]:
    evals = [r for r in records if "acc" in r]
    steps = [r for r in records if r.get("step", 0) > 0]
    t0 = records[0]["time"]
    out = {"start": evals[0]["acc"], "end": evals[-1]["acc"],
           "best": max(r["acc"] for r in evals), "steps": steps[-1]["step"] if steps else 0,
           "minutes": (records[-1]["time"] - t0) / 60}
    if target is not None:
        hit = next((r for r in evals if r["acc"] >= target), None)
        out["steps_to_target"] = hit["step"] if hit else float("nan")
        out["minutes_to_target"] = (hit["time"] - t0) / 60 if hit else float("nan")
    tested = [r for r in records if "test/acc" in r]
    if len(tested) >= 2:
        first, last = tested[0], tested[-1]
        names = [k[5:] for k in last if k.startswith("test/") and "/" not in k[5:]
                 and not k.endswith("_se")]
        for name in sorted(names, key=lambda n: (n.partition("@")[0],
                                                 int(n.partition("@")[2] or 0))):
            out[f"test {name}"] = first[f"test/{name}"]
            out[f"-> {name}"] = last[f"test/{name}"]
            se = np.hypot(first[f"test/{name}_se"], last[f"test/{name}_se"])
            out[f"gain/SE {name}"] = (last[f"test/{name}"] - first[f"test/{name}"]) / se
    if steps:
        for key in ("truncated_frac", "zero_std_groups"):
            if key in steps[0]:
                out[key] = float(np.mean([r[key] for r in steps]))
        out["tokens_per_s"] = float(np.mean([r["rollout_tokens_per_s"] for r in steps]))
        out["sample_share"] = float(np.mean([r["sample_share"] for r in steps]))
    return out


def fmt(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    if np.isnan(lo) or np.isnan(hi):
        return "not reached" if all(np.isnan(v) for v in values) else \
            f"{np.nanmin(values):.3g}-{np.nanmax(values):.3g} (some not reached)"
    return f"{lo:.3g}" if lo == hi else f"{lo:.3g}-{hi:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, help="label=workdir[,workdir]")
    parser.add_argument("--target", type=float, default=None, help="accuracy to reach")
    parser.add_argument("--plot", default=None, help="PNG path for the curves")
    parser.add_argument("--x", default="step", choices=["step", "minutes"])
    parser.add_argument("--title", default="")
    parser.add_argument("--columns", nargs="+", default=None,
                        help="the table's columns, by name (default: all)")
    args = parser.parse_args()
    runs, table = {}, []
    for spec in args.run:
        label, _, dirs = spec.partition("=")
        sums = []
        for i, d in enumerate(dirs.split(",")):
            records = read_metrics(d)
            if not records:
                raise SystemExit(f"error: no metrics.jsonl records under {d}")
            runs[label if i == 0 else f"{label} ({i + 1})"] = records
            sums.append(summary(records, args.target))
        table.append((label, len(sums), {k: fmt([s.get(k, float("nan")) for s in sums])
                                         for k in sums[0]}))
    cols = args.columns or list(table[0][2])
    print("| run | seeds | " + " | ".join(cols) + " |")
    print("|" + " --- |" * (len(cols) + 2))
    for label, n, cells in table:
        print(f"| {label} | {n} | " + " | ".join(cells.get(c, "-") for c in cols) + " |")
    if args.plot:
        compare_plot(runs, args.plot, args.title, x=args.x)


if __name__ == "__main__":
    main()
