"""Real multi-process runs on one machine: 2 processes x 4 fake CPU devices (jax.distributed
with a local coordinator, gloo collectives) train and sample exactly as 1 process x 8 devices:
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


def test_two_processes_train_and_sample_like_one(tmp_path):
    one, two = run(tmp_path, 1), run(tmp_path, 2)
    assert one.keys() == two.keys()
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-6)
    for k in one:
        if k.startswith("p"):
            np.testing.assert_allclose(two[k], one[k], atol=1e-6, rtol=1e-6, err_msg=k)
    np.testing.assert_array_equal(two["tokens"], one["tokens"])
    np.testing.assert_array_equal(two["lengths"], one["lengths"])
    np.testing.assert_allclose(two["logprobs"], one["logprobs"], atol=1e-5)
    assert len({tuple(t) for t in one["tokens"]}) > 1
