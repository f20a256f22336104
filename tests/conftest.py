"""Test-wide setup that must happen before jax is imported: 8 fake CPU devices, fast compiles
and JAX's persistent compilation cache (so a re-run skips most compiling). Subprocesses
inherit the environment part."""

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JAX_CACHE = Path(os.environ.get("JAX_COMPILATION_CACHE_DIR", REPO / ".jax_cache"))

_DEVICES_FLAG = "--xla_force_host_platform_device_count"
if _DEVICES_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_DEVICES_FLAG}=8".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA:CPU sizes its intra-op thread pool by NPROC (default: the core count). Collectives of the
# 8 fake devices can block in that pool, and with fewer threads than devices they deadlock
# ("Expected 8 threads to join the rendezvous"), which aborts the process on a 2-core machine.
os.environ.setdefault("NPROC", "16")
# Test programs are tiny and run a few steps: compiling dominates, and XLA's optimizations
# triple it. Tests that train for long turn them back on (see `optimized_compiles`).
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "true")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

from jaxrl_reason.models.transformer import ModelConfig, Transformer  # noqa: E402

jax.config.update("jax_compilation_cache_dir", str(JAX_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)

# One tiny model shared by the model, sampler and sharding tests, so its programs compile once.
TINY = ModelConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                   d_ff=64, max_len=64, value_head=True)


@functools.cache
def graphdef(cfg: ModelConfig) -> nnx.GraphDef:
    return nnx.split(nnx.eval_shape(lambda: Transformer(cfg, nnx.Rngs(0))), nnx.Param)[0]


@functools.cache
def init_params(cfg: ModelConfig, seed: int = 0) -> nnx.State:
    """Params of `cfg`, initialised under jit (eager init compiles op by op: slow on CPU)."""
    init = jax.jit(lambda key: nnx.state(Transformer(cfg, nnx.Rngs(params=key)), nnx.Param))
    return init(jax.random.key(seed))


@functools.cache
def _apply(cfg: ModelConfig):
    return jax.jit(lambda params, *args, **kw: nnx.merge(graphdef(cfg), params)(*args, **kw))


def forward(params, tokens, cfg: ModelConfig = TINY, **kw):
    """The model's uncached (logits, values) under jit."""
    return _apply(cfg)(params, jnp.asarray(tokens), **kw)


def job_command(module: str, workdir: Path | None, *gin_params: str,
                gin_file: str | None = "configs/sft_addition.gin") -> list[str]:
    """`python -m <module>` with the tests' compilation cache and the given gin bindings."""
    cmd = [sys.executable, "-m", module]
    if gin_file:
        cmd.append(f"--gin_file={gin_file}")
    if workdir is not None:
        cmd.append(f"--workdir={workdir}")
    params = (f"compilation_cache.directory='{JAX_CACHE}'", *gin_params)
    return cmd + [f"--gin_param={p}" for p in params]


def run_job(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs a job from the repo root (configs/ paths are relative to it), no stdin, as CI does."""
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def kill_when(cmd: list[str], ready: Callable[[], bool], what: str,
              env: dict | None = None) -> None:
    """Starts a job and SIGKILLs it the moment `ready()` holds (polled every 2 ms); fails if the
    job ends first."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait(timeout=30) == -signal.SIGKILL, f"the job ended before it was {what}"


def checkpoint_saved(ckpts: Path) -> Callable[[], bool]:
    """True once a checkpoint is complete (orbax names a finished one by its step)."""
    return lambda: ckpts.is_dir() and any(d.isdigit() for d in os.listdir(ckpts))


@pytest.fixture(autouse=True)
def fresh_gin_config():
    """No test sees another's gin bindings (configurables read them wherever they are built)."""
    import gin

    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture
def optimized_compiles():
    """Full XLA optimization for programs compiled inside the test (a long training run)."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(scope="session")
def devices() -> list[jax.Device]:
    devs = jax.devices()
    if len(devs) < 8:
        pytest.skip(f"needs 8 devices (XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}), got {len(devs)}")
    return devs


@pytest.fixture(scope="module")
def program_executor():
    """The sandboxed executor the program-task tests run their checks in (one per module)."""
    from jaxrl_reason.rewards.executor import Executor

    with Executor(workers=2, timeout_s=2.0, memory_mb=128) as executor:
        yield executor


def deterministic_metrics(workdir, timing: tuple[str, ...] | None = None) -> list[dict]:
    """A run's metrics.jsonl without the wall-clock figures (keys starting with `timing`,
    default the rl job's): what is equal between identical runs."""
    from jaxrl_reason.rl.loop import TIMING_PREFIXES
    from jaxrl_reason.training.metrics import read_metrics

    timing = TIMING_PREFIXES if timing is None else timing
    return [{k: v for k, v in r.items() if not k.startswith(timing)}
            for r in read_metrics(str(workdir))]
