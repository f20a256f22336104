"""Shared pieces of the benchmarks: named model sizes, flags, hardware peaks and timing.

jax is imported only inside functions: `--devices` must set XLA_FLAGS before jax starts.
Importing this module puts its checkout's root first on sys.path, so a script measures the
package beside it, not whichever checkout the virtualenv's editable install points at.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_LLAMA = dict(vocab_size=32_000, max_len=2048)

# ModelConfig kwargs of each named size; parameter counts are for the tied embeddings used here.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=128, d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=32,
                 d_ff=512, max_len=512),  # 1.0M
    "small": dict(vocab_size=8192, d_model=256, n_layers=6, n_heads=8, n_kv_heads=4, head_dim=32,
                  d_ff=1024, max_len=1024),  # 8.0M
    "100m": dict(_LLAMA, d_model=768, n_layers=12, n_heads=12, n_kv_heads=12, head_dim=64,
                 d_ff=2048),  # 110M
    "350m": dict(_LLAMA, d_model=1024, n_layers=24, n_heads=16, n_kv_heads=16, head_dim=64,
                 d_ff=2816),  # 341M
    "1b": dict(_LLAMA, d_model=2048, n_layers=22, n_heads=32, n_kv_heads=4, head_dim=64,
               d_ff=5632),  # 1.03B, TinyLlama's shape
}

# Per chip: dense bf16 TFLOP/s and memory GB/s from the vendors' data sheets (H100 = SXM).
# Matched as substrings of jax's device_kind, most specific first.
PEAKS: dict[str, tuple[float, float]] = {
    "H200": (989.0, 4800.0),
    "H100": (989.0, 3350.0),
    "TPU v6 lite": (918.0, 1640.0),
    "TPU v5 lite": (197.0, 819.0),
    "TPU v5": (459.0, 2765.0),
    "TPU v4": (275.0, 1228.0),
}


@dataclasses.dataclass(frozen=True)
class Hardware:
    platform: str
    device_kind: str
    n_devices: int
    n_chips: int  # devices whose peaks add up; fake CPU devices share one host
    dtype: str
    peak_tflops: float  # per chip
    peak_gbps: float  # per chip
    peak_source: str


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps; the first compiles")
    parser.add_argument("--dtype", default=None,
                        help="compute dtype; default bfloat16 on GPU/TPU, float32 on CPU")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="per-chip peak; default from device_kind, measured on CPU")
    parser.add_argument("--peak_gbps", type=float, default=None,
                        help="per-chip memory bandwidth; default from device_kind, measured on CPU")
    parser.add_argument("--devices", type=int, default=0,
                        help="use this many fake CPU devices (sets XLA_FLAGS, JAX_PLATFORMS=cpu)")
    parser.add_argument("--mesh", type=lambda s: tuple(int(x) for x in s.split(",")),
                        default=(-1, 1, 1),
                        help="data,fsdp,tensor sizes (one may be -1); write --mesh=-1,2,1")


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parses flags and, for --devices, configures jax before anything imports it."""
    args = parser.parse_args()
    if len(args.mesh) != 3:
        parser.error(f"--mesh takes data,fsdp,tensor, got {args.mesh}")
    if args.devices:
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={args.devices}")
    return args


def model_config(size: str, **overrides: Any):
    from jaxrl_reason.models.transformer import ModelConfig

    return ModelConfig(**{**SIZES[size], **overrides})


def time_calls(fn: Callable[[], Any], n: int, cpu: list[float] | None = None) -> list[float]:
    """Wall time of each of n calls; fn must block until its results are ready. With `cpu`,
    also appends each call's CPU seconds of this process (all threads): on a shared machine wall
    time includes other jobs' turns on the cores, CPU time only this process's own work."""
    times = []
    for _ in range(n):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
    return times


def timed_phases(obj: Any, phases: dict[str, str],
                 ready: Callable[[], Any] | None = None) -> dict[str, list[float]]:
    """Replaces obj's (jitted) callables, {attribute: phase}, with wrappers that block on their
    outputs (and on `ready()` where given: e.g. the weights a call updates in place) and append
    their wall and CPU seconds to the returned {phase: [wall s], phase + "_cpu": [CPU s]}
    (clear its lists to drop warm-up calls). Several attributes may share a phase."""
    import jax

    times: dict[str, list[float]] = {}
    for phase in phases.values():
        times[phase], times[phase + "_cpu"] = [], []

    def timed(fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            c0, t0 = time.process_time(), time.perf_counter()
            out = jax.block_until_ready(fn(*args, **kwargs))
            if ready is not None:
                jax.block_until_ready(ready())
            times[phase].append(time.perf_counter() - t0)
            times[phase + "_cpu"].append(time.process_time() - c0)
            return out
        return wrapper

    for attribute, phase in phases.items():
        setattr(obj, attribute, timed(getattr(obj, attribute), phase))
    return times


def best_time(fn: Callable[[], Any], repeats: int = 5) -> float:
    fn()  # compile
    return min(time_calls(fn, repeats))


def measure_cpu_peaks(dtype: str) -> tuple[float, float]:
    """(TFLOP/s of a 1024^3 matmul in `dtype`, GB/s of summing 256 MiB): what this host
    actually reaches, since CPU data sheets say little about a shared VM."""
    import jax
    import jax.numpy as jnp

    n = 1024
    a = jnp.ones((n, n), dtype)
    matmul = jax.jit(lambda x: x @ x)
    tflops = 2 * n**3 / best_time(lambda: matmul(a).block_until_ready()) / 1e12
    x = jnp.ones((64 * 2**20,), jnp.float32)
    total = jax.jit(jnp.sum)
    gbps = x.nbytes / best_time(lambda: total(x).block_until_ready()) / 1e9
    return tflops, gbps


def hardware(args: argparse.Namespace) -> Hardware:
    import jax

    dev = jax.devices()[0]
    platform, kind = dev.platform, dev.device_kind
    dtype = args.dtype or ("float32" if platform == "cpu" else "bfloat16")
    tflops, gbps, source = args.peak_tflops, args.peak_gbps, "flags"
    if tflops is None or gbps is None:
        if platform == "cpu":
            measured, source = measure_cpu_peaks(dtype), f"measured ({dtype} matmul, f32 sum)"
        else:
            match = next((v for k, v in PEAKS.items() if k in kind), None)
            if match is None:
                raise SystemExit(f"no known peaks for device_kind {kind!r}: "
                                 "pass --peak_tflops and --peak_gbps")
            measured, source = match, f"data sheet ({kind})"
        tflops = tflops if tflops is not None else measured[0]
        gbps = gbps if gbps is not None else measured[1]
    n = jax.device_count()
    return Hardware(platform, kind, n, 1 if platform == "cpu" else n, dtype, tflops, gbps, source)


def make_mesh(args: argparse.Namespace):
    from jaxrl_reason.parallel import make_mesh as _make_mesh

    return _make_mesh(*args.mesh)


def summarize(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times),
            "min_s": min(times)}


# ---- against another library's code, run by its own interpreter (scripts/bench_vs_tunix.py,
# scripts/bench_grpo_step.py) ----------------------------------------------------------------
SHAPE_FLAGS = ("layers", "d_model", "heads", "kv_heads", "head_dim", "d_ff", "vocab")


def tunix_parser(doc: str) -> argparse.ArgumentParser:
    """The flags every ours-against-tunix benchmark takes: tunix's python, the decoder shape,
    the prompt and generation lengths."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tunix_python", required=True,
                        help="python of a virtualenv with google-tunix installed")
    add_shape_flags(parser)
    parser.add_argument("--prompt_len", type=int, default=64)
    parser.add_argument("--gen_len", type=int, default=64)
    return parser


def add_shape_flags(parser: argparse.ArgumentParser) -> None:
    """The decoder shape both sides build (tunix's Llama3 and our Transformer), float32."""
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d_model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv_heads", type=int, default=2)
    parser.add_argument("--head_dim", type=int, default=64)
    parser.add_argument("--d_ff", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=8192)


def our_model_config(args: argparse.Namespace, max_len: int):
    """Our ModelConfig of the --layers ... --vocab shape."""
    from jaxrl_reason.models.transformer import ModelConfig

    return ModelConfig(vocab_size=args.vocab, d_model=args.d_model, n_layers=args.layers,
                       n_heads=args.heads, n_kv_heads=args.kv_heads, head_dim=args.head_dim,
                       d_ff=args.d_ff, max_len=max_len)


def shape_line(args: argparse.Namespace) -> str:
    return (f"{args.layers} layers, d_model {args.d_model}, heads {args.heads}/{args.kv_heads} x "
            f"{args.head_dim}, d_ff {args.d_ff}, vocab {args.vocab}, float32")


def check_python(parser: argparse.ArgumentParser, python: str) -> None:
    if not os.access(python, os.X_OK):
        parser.error(f"--tunix_python={python}: not an executable")


class SideProcess:
    """A script run by another interpreter (e.g. a virtualenv with google-tunix), held open:
    one JSON line in, one JSON line out per request. Its stderr goes to a temporary log whose
    tail is shown if it dies. The first request (`spec`) is answered once it is ready."""

    def __init__(self, python: str, script: Path, spec: dict[str, Any]):
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"{script.stem}_", suffix=".log")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.proc = subprocess.Popen([python, str(script)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.info = self.ask(spec)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            tail = "".join(self.log.readlines()[-15:])
            raise SystemExit(f"the side process exited (code {self.proc.wait()}):\n{tail}")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=120)
        self.log.close()


def load_average() -> float:
    return os.getloadavg()[0]


def median_min_max(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def report(lines: list[str], summary: dict[str, Any]) -> None:
    """Human-readable lines, then the whole result as one JSON line (last line of stdout)."""
    print("\n".join(lines))
    print(json.dumps(summary, sort_keys=True))
