"""Real multi-process runs on one machine: 2 processes x 4 fake CPU devices (jax.distributed
with a local coordinator, gloo collectives) train and sample as 1 process x 8 devices does:
host batches enter through make_array_from_process_local_data (each process places its own
rows), sampler outputs come back through a process allgather."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

WORKER = REPO / "tests" / "helpers" / "multiprocess_worker.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(tmp_path, num_processes: int) -> dict[str, np.ndarray]:
    out = tmp_path / f"np{num_processes}.npz"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "NPROC": "16",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={8 // num_processes}"}
    port = free_port()
    try:
        procs = [subprocess.Popen([sys.executable, str(WORKER), str(out), str(num_processes),
                                   str(i), str(port)], cwd=REPO, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
                 for i in range(num_processes)]
    except OSError as e:  # a platform that cannot start processes
        pytest.skip(f"cannot start worker processes: {e}")
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    return dict(np.load(out))


def update(run: dict[str, np.ndarray]) -> np.ndarray:
    """Every parameter's change over the two steps, flattened."""
    n = sum(k.startswith("init") for k in run)
    return np.concatenate([(run[f"p{i}"] - run[f"init{i}"]).ravel() for i in range(n)])


def test_two_processes_train_and_sample_like_one(tmp_path):
    """Float32 sums are equal only up to rounding, and two processes all-reduce the gradient in
    another order than one (which elements round which way depends on the CPU): losses and
    gradient norms agree to 1e-5, ~10x the worst case of reordering 8 partial sums; the initial
    params (no sums) to 1e-6. Adam divides each gradient by its own size, so a near-zero one's
    rounding becomes a visible part of a full-size step (~7e-6 on an AVX-512 CPU): compare the
    update (after - before) relative to its norm, not each parameter to 1e-6. This batch's
    nearest-to-zero gradients (|g| >= 70 eps * the sum of |per-device parts|) bound that at
    ~1e-4; one wrong row moves it by ~1e-1. Sampling reads the same initial params in both
    runs, so its tokens compare exactly."""
    one, two = run(tmp_path, 1), run(tmp_path, 2)
    assert one.keys() == two.keys()
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    np.testing.assert_allclose(two["grad_norms"], one["grad_norms"], rtol=1e-5)
    for k in one:
        if k.startswith("init"):
            np.testing.assert_allclose(two[k], one[k], rtol=1e-6, err_msg=k)
    want = update(one)
    rel = np.linalg.norm(update(two) - want) / np.linalg.norm(want)
    assert rel < 1e-3, f"the 2-process update differs by {rel:.2e} of its norm"
    np.testing.assert_array_equal(two["tokens"], one["tokens"])
    np.testing.assert_array_equal(two["lengths"], one["lengths"])
    np.testing.assert_allclose(two["logprobs"], one["logprobs"], atol=1e-5)
    assert len({tuple(t) for t in one["tokens"]}) > 1
