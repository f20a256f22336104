"""Executions per second of the sandboxed executor, next to an unsandboxed process pool.

    .venv/bin/python scripts/bench_executor.py [--workers N] [--runs 1000] [--repeat 3]

Prints the active protections, then for a trivial program and an AZR-sized one (a ~20-line
function with loops over small lists, called on an input, printing the repr of its output):
runs/s of the executor (batched over the pool) and of the kind of pool the Absolute Zero code
uses, a `pebble.ProcessPool` whose workers `exec` each program in-process with stdout captured
(no isolation at all; `pip install pebble` to measure it, the package never needs it), and the
ratio. Then the latency of one run on an idle pool, and the wall time of 4 runs of 0.3-0.5 s on
2 workers. Each figure is measured `--repeat` times, the two pools taking turns, and printed as
min-max: other work on the machine depresses them (the load average is printed).
"""

import argparse
import contextlib
import io
import os
import statistics
import time

from jaxrl_reason.rewards.executor import Executor

try:
    from pebble import ProcessPool
except ImportError:  # the comparison is optional
    ProcessPool = None

TRIVIAL = "print(1)"
AZR_SIZED = '''
def f(xs, k):
    windows = []
    for i in range(len(xs) - k + 1):
        window = xs[i:i + k]
        windows.append(sum(window) / k)
    peaks = []
    for i in range(1, len(xs) - 1):
        if xs[i] > xs[i - 1] and xs[i] > xs[i + 1]:
            peaks.append((i, xs[i]))
    counts = {}
    for x in xs:
        counts[x % 3] = counts.get(x % 3, 0) + 1
    ordered = sorted(xs, key=lambda v: (-counts[v % 3], v))
    best = max(windows) if windows else None
    return {"best": best, "peaks": peaks, "counts": counts, "ordered": ordered[:5]}

print(repr(f([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9], 3)))
'''


def exec_unsandboxed(code: str) -> str:
    """What an unsandboxed pool worker does per program: exec in a fresh namespace."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"__name__": "__main__"})
    return out.getvalue()


def sandboxed_rate(ex: Executor, code: str, runs: int) -> float:
    ex.run_batch([code] * (2 * ex.workers))  # warm every worker
    start = time.perf_counter()
    results = ex.run_batch([code] * runs)
    elapsed = time.perf_counter() - start
    bad = [r for r in results if not r.ok]
    if bad:
        raise RuntimeError(f"{len(bad)} runs failed, e.g. {bad[0]}")
    return runs / elapsed


def unsandboxed_rate(pool, code: str, runs: int, expected: str) -> float:
    list(pool.map(exec_unsandboxed, [code] * 50, timeout=5).result())  # warm
    start = time.perf_counter()
    outs = list(pool.map(exec_unsandboxed, [code] * runs, timeout=5).result())
    elapsed = time.perf_counter() - start
    if any(out != expected for out in outs):
        raise RuntimeError("the unsandboxed pool printed something else")
    return runs / elapsed


def latency_ms(run_one, n: int = 50) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        run_one()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def span(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return format(lo, fmt) if len(values) == 1 else f"{lo:{fmt}}-{hi:{fmt}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=None, help="default: 2 per core")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    programs = {"trivial print(1)": TRIVIAL, "AZR-sized program": AZR_SIZED}
    with contextlib.ExitStack() as stack:
        ex = stack.enter_context(Executor(workers=args.workers))
        pool = stack.enter_context(ProcessPool(max_workers=ex.workers)) if ProcessPool else None
        print(f"protections: {ex.protections}")
        print(f"cores: {len(os.sched_getaffinity(0))}, workers: {ex.workers} in each pool")
        expected = {name: exec_unsandboxed(code) for name, code in programs.items()}
        ours = {name: [] for name in programs} | {"latency": []}
        theirs = {name: [] for name in programs} | {"latency": []}
        loads = []
        for _ in range(args.repeat):
            loads.append(os.getloadavg()[0])
            for name, code in programs.items():
                ours[name].append(sandboxed_rate(ex, code, args.runs))
                if pool:
                    theirs[name].append(unsandboxed_rate(pool, code, args.runs, expected[name]))
            ours["latency"].append(latency_ms(lambda: ex.run(TRIVIAL)))
            if pool:
                theirs["latency"].append(latency_ms(
                    lambda: pool.schedule(exec_unsandboxed, (TRIVIAL,)).result()))
        print(f"load average (1 min) while measuring: {span(loads, '.2f')} "
              "(other work depresses the figures)")
        other = "unsandboxed pebble pool" if pool else "(pip install pebble to compare)"
        print(f"{'':>20}  {'sandboxed':>16}  {other:>24}  ratio (median)")
        for name in programs:
            line = f"{name:>20}  {span(ours[name], '.0f'):>9} runs/s"
            if pool:
                ratio = statistics.median(ours[name]) / statistics.median(theirs[name])
                line += f"  {span(theirs[name], '.0f'):>17} runs/s  {ratio:.2f}"
            print(line)
        line = f"{'one run, idle pool':>20}  {span(ours['latency'], '.2f'):>12} ms"
        if pool:
            line += f"  {span(theirs['latency'], '.2f'):>20} ms"
        print(line)
    with Executor(workers=2) as ex:
        codes = [f"import time; time.sleep({0.5 if i % 2 else 0.3})" for i in range(4)]
        start = time.perf_counter()
        ex.run_batch(codes)
        print(f"4 runs of 0.3-0.5 s on 2 workers: {time.perf_counter() - start:.2f} s "
              "(0.8 s if the pool runs them 2 at a time)")


if __name__ == "__main__":
    main()
