"""Executions per second of the sandboxed executor, with every protection the kernel allows.

    .venv/bin/python scripts/bench_executor.py [--workers N] [--runs 1000]

Prints the active protections, then runs/s for a trivial program and for an AZR-sized one
(a ~20-line function with loops over small lists, called on an input, printing the repr of
its output), batched over the pool, and the latency of one run on an idle pool.
"""

import argparse
import os
import statistics
import time

from jaxrl_reason.rewards.executor import Executor

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


def rate(ex: Executor, code: str, runs: int) -> float:
    ex.run_batch([code] * (2 * ex.workers))  # warm every worker
    start = time.perf_counter()
    results = ex.run_batch([code] * runs)
    elapsed = time.perf_counter() - start
    bad = [r for r in results if not r.ok]
    if bad:
        raise RuntimeError(f"{len(bad)} runs failed, e.g. {bad[0]}")
    return runs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=None, help="default: 2 per core")
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    with Executor(workers=args.workers) as ex:
        print(f"protections: {ex.protections}")
        print(f"cores: {len(os.sched_getaffinity(0))}, workers: {ex.workers}, "
              f"load average: {os.getloadavg()[0]:.2f} (other work depresses the figures)")
        for name, code in (("trivial print(1)", TRIVIAL), ("AZR-sized program", AZR_SIZED)):
            print(f"{name:>20}: {rate(ex, code, args.runs):7.1f} runs/s")
        latencies = []
        for _ in range(50):
            start = time.perf_counter()
            ex.run(TRIVIAL)
            latencies.append(time.perf_counter() - start)
        print(f"{'one run, idle pool':>20}: {1e3 * statistics.median(latencies):7.2f} ms median")


if __name__ == "__main__":
    main()
