#!/usr/bin/env python3
"""Run one job over the cartesian product of gin bindings, one workdir per point.

  python scripts/sweep.py --job star --gin_file configs/star_addition.gin \\
      --grid 'star.temperature=[0.5, 1.0]' --grid 'train.learning_rate=[1e-3, 3e-3]' \\
      --workdir_root runs/sweep1 --print        # or --run

Grid values are gin literals (numbers, 'strings', True/False/None, lists, @references, %MACROS)
passed through verbatim. The first --grid varies slowest. Each run's workdir is named from its
bindings, so re-running the same sweep reuses the same workdirs and every job RESUMES (finished runs
see their final step and exit quickly); there is deliberately no separate done-marker.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence

Binding = tuple[str, str]  # (gin key, gin literal as written)

_KEY = re.compile(r"[A-Za-z_][\w.]*(?:/[A-Za-z_][\w.]*)*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")  # '=' and ',' are kept for separating bindings
MAX_NAME = 120


def split_gin_list(text: str) -> list[str]:
    """Top-level elements of a gin list literal, each kept verbatim: '[1, (2, 3), "a,b"]'."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError(f"grid values must be a [list], got {text!r}")
    items, depth, quote, escaped, start = [], 0, "", False, 1
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0 and i != len(text) - 1:
                raise ValueError(f"unbalanced brackets in {text!r}")
        elif ch == "," and depth == 1:
            items.append(text[start:i].strip())
            start = i + 1
    if quote or depth:
        raise ValueError(f"unterminated string or bracket in {text!r}")
    items.append(text[start:-1].strip())
    if len(items) > 1 and not items[-1]:  # a trailing comma, as Python and gin allow
        items.pop()
    if not all(items):
        raise ValueError(f"empty value in grid {text!r}")
    return items


def parse_grid(spec: str) -> tuple[str, list[str]]:
    """'scope/fn.param=[v1, v2]' -> ('scope/fn.param', ['v1', 'v2'])."""
    key, sep, values = spec.partition("=")
    key = key.strip()
    if not sep or not _KEY.fullmatch(key):
        raise ValueError(f"--grid takes KEY=[v1, v2, ...] with a gin key, got {spec!r}")
    items = split_gin_list(values)
    if len(set(items)) != len(items):
        raise ValueError(f"duplicate values in --grid {spec!r}")
    return key, items


def expand(grids: Sequence[tuple[str, list[str]]]) -> list[list[Binding]]:
    """Cartesian product in the order given: the first grid varies slowest."""
    keys = [k for k, _ in grids]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a key appears in more than one --grid: {keys}")
    return [list(p) for p in itertools.product(*[[(k, v) for v in vs] for k, vs in grids])]


def run_names(points: Sequence[Sequence[Binding]]) -> list[str]:
    """Readable, filesystem-safe, unique names: 'temperature=0.5,learning_rate=1e-3'.

    A short hash of the exact bindings is appended when making a value safe changed it (quotes,
    brackets, @) or the name was cut, so distinct bindings never share a workdir.
    """
    keys = [k for k, _ in points[0]] if points else []
    labels = {k: k.rsplit(".", 1)[-1] for k in keys}
    if len(set(labels.values())) != len(keys):  # e.g. policy/train.lr and verifier/train.lr
        labels = {k: _UNSAFE.sub("_", k) for k in keys}
    names = []
    for point in points:
        slugs = [_UNSAFE.sub("_", v).strip("_") or "_" for _, v in point]
        name = ",".join(f"{labels[k]}={s}" for (k, _), s in zip(point, slugs, strict=True))
        if len(name) > MAX_NAME or any(s != v for (_, v), s in zip(point, slugs, strict=True)):
            digest = hashlib.sha1(repr(list(point)).encode()).hexdigest()[:8]
            name = f"{name[:MAX_NAME]}-{digest}"
        names.append(name)
    if len(set(names)) != len(names):
        raise ValueError(f"grid values give clashing workdir names: {names}")
    return names


def sweep_commands(
    module: str,
    gin_files: Sequence[str],
    gin_params: Sequence[str],
    grids: Sequence[tuple[str, list[str]]],
    workdir_root: str,
    python: str = sys.executable,
) -> list[tuple[str, list[str]]]:
    """(run name, argv) per point; grid bindings come after the fixed ones, so they win."""
    points = expand(grids)
    root = workdir_root.rstrip("/")  # plain string join keeps gs:// intact
    runs = []
    for name, point in zip(run_names(points), points, strict=True):
        argv = [python, "-m", module, *(f"--gin_file={f}" for f in gin_files)]
        argv += [f"--gin_param={p}" for p in gin_params]
        argv += [f"--gin_param={k} = {v}" for k, v in point]
        runs.append((name, [*argv, f"--workdir={root}/{name}"]))
    return runs


def run_all(runs: Sequence[tuple[str, list[str]]], keep_going: bool = False) -> int:
    """Run one after another with output streaming through; 1 if any run failed."""
    ok, failed = 0, []
    for i, (name, argv) in enumerate(runs, 1):
        print(f"[sweep {i}/{len(runs)}] {shlex.join(argv)}", file=sys.stderr, flush=True)
        rc = subprocess.run(argv).returncode
        ok += rc == 0
        if rc:
            failed.append(name)
            print(f"[sweep] {name} failed with exit code {rc}", file=sys.stderr, flush=True)
            if not keep_going:
                break
    print(f"[sweep] {ok} ok, {len(failed)} failed {failed}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--job", help="runs python -m jaxrl_reason.<job>")
    which.add_argument("--module", help="any python module instead, e.g. for a fake job")
    parser.add_argument("--gin_file", action="append", default=[], help="repeatable")
    parser.add_argument("--gin_param", action="append", default=[], help="fixed for all runs")
    parser.add_argument("--grid", action="append", required=True, help="KEY=[v1, v2]; repeatable")
    parser.add_argument("--workdir_root", required=True, help="run workdirs go under it")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the runs")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--print", action="store_true", help="print one shell command per run")
    mode.add_argument("--run", action="store_true", help="run them here, one after another")
    parser.add_argument("--keep_going", action="store_true", help="--run: continue after failure")
    args = parser.parse_args(argv)
    if args.job is not None and not re.fullmatch(r"[a-z_][a-z0-9_]*", args.job):
        parser.error(f"--job must be a module name under jaxrl_reason, got {args.job!r}")
    module = args.module or f"jaxrl_reason.{args.job}"
    try:
        grids = [parse_grid(g) for g in args.grid]
        runs = sweep_commands(
            module, args.gin_file, args.gin_param, grids, args.workdir_root, args.python
        )
    except ValueError as e:
        parser.error(str(e))
    if args.print:
        for _, cmd in runs:
            print(shlex.join(cmd))
        return 0
    return run_all(runs, args.keep_going)


if __name__ == "__main__":
    sys.exit(main())
