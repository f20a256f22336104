"""Test-wide setup that must happen before jax is imported: 8 fake CPU devices, and JAX's
persistent compilation cache so a re-run skips most compiling. Subprocesses inherit both."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JAX_CACHE = REPO / ".jax_cache"

_DEVICES_FLAG = "--xla_force_host_platform_device_count"
if _DEVICES_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_DEVICES_FLAG}=8".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", str(JAX_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


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


def run_job(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs a job from the repo root (configs/ paths are relative to it), no stdin, as CI does."""
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def devices() -> list[jax.Device]:
    devs = jax.devices()
    if len(devs) < 8:
        pytest.skip(f"needs 8 devices (XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}), got {len(devs)}")
    return devs
