"""distributed.maybe_initialize: each way of deciding, with JAX's real cluster detection.

The environments are faked where they live: SLURM and Open MPI by their environment variables,
a Cloud TPU VM by a metadata server on 127.0.0.1 (JAX reads $GCE_METADATA_IP) and the flag JAX
sets at import when it finds TPU chips. Only jax.distributed.initialize is replaced, to record
what it would be given; the last test starts two real processes that compute together.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jax
import pytest
from conftest import REPO
from jax._src.clusters import cloud_tpu_cluster

from jaxrl_reason import distributed

CLUSTER_ENV_PREFIXES = ("SLURM_", "OMPI_", "MEGASCALE_", "TPU_", "JAX_", "JAXRL_REASON_")
CLUSTER_ENV_NAMES = ("KUBERNETES_SERVICE_HOST", "GCE_METADATA_IP")


@pytest.fixture(autouse=True)
def bare_machine(monkeypatch):
    """No launcher variables, whatever the machine running the tests has set."""
    for name in list(os.environ):
        if name.startswith(CLUSTER_ENV_PREFIXES) or name in CLUSTER_ENV_NAMES:
            if name not in ("JAX_PLATFORMS", "JAX_DISABLE_MOST_OPTIMIZATIONS"):
                monkeypatch.delenv(name)


@pytest.fixture
def initialize_calls(monkeypatch):
    """Records jax.distributed.initialize's arguments instead of starting anything."""
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *args: calls.append(args))
    return calls


class _Metadata(BaseHTTPRequestHandler):
    attributes: dict[str, str] = {}
    asked: list[str] = []

    def do_GET(self):
        key = self.path.removeprefix("/computeMetadata/v1/instance/attributes/")
        self.asked.append(key)
        ok = self.headers.get("Metadata-Flavor") == "Google" and key in self.attributes
        body = self.attributes[key].encode() if ok else b"not found"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def tpu_vm(monkeypatch):
    """A Cloud TPU VM: JAX found chips at import, and a metadata server answers.

    Returns a function that sets the slice's workers and this host's worker number."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", True)
    monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(_Metadata, "asked", [])

    def slice_of(endpoints: str, worker: int) -> list[str]:
        monkeypatch.setattr(
            _Metadata,
            "attributes",
            {
                "agent-worker-number": str(worker),
                "worker-network-endpoints": endpoints,
                "tpu-env": f"ACCELERATOR_TYPE: 'v4-32'\nWORKER_ID: '{worker}'\n",
            },
        )
        return _Metadata.asked

    yield slice_of
    server.shutdown()
    server.server_close()


def test_an_ordinary_machine_is_a_no_op_without_network(monkeypatch, initialize_calls):
    if cloud_tpu_cluster.running_in_cloud_tpu_vm:
        pytest.skip("this machine is a Cloud TPU VM")

    def no_network(key):
        raise AssertionError(f"metadata[{key!r}] asked off a TPU VM")

    monkeypatch.setattr(cloud_tpu_cluster, "get_metadata", no_network)  # JAX's only way in
    start = time.monotonic()
    assert distributed.maybe_initialize() is False
    assert time.monotonic() - start < 0.5
    assert initialize_calls == []


def test_single_host_tpu_slice_does_not_initialize(tpu_vm, initialize_calls):
    asked = tpu_vm("10.1.0.7", worker=0)
    assert distributed.maybe_initialize() is False
    assert initialize_calls == []
    assert "worker-network-endpoints" in asked  # decided from the metadata, not skipped


@pytest.mark.parametrize(
    "endpoints",
    [
        "10.1.0.2,10.1.0.3,10.1.0.4,10.1.0.5",  # current format: one address per worker
        "w0:0:10.1.0.2,w1:1:10.1.0.3,w2:2:10.1.0.4,w3:3:10.1.0.5",  # older name:id:ip triples
    ],
)
def test_four_host_tpu_slice_initializes_with_worker_zero_as_coordinator(
    tpu_vm, initialize_calls, endpoints
):
    tpu_vm(endpoints, worker=2)
    assert distributed.maybe_initialize() is True
    assert initialize_calls == [("10.1.0.2:8482", 4, 2)]


def test_launch_switch_initializes_even_a_single_host_slice(tpu_vm, initialize_calls, monkeypatch):
    tpu_vm("10.1.0.7", worker=0)
    monkeypatch.setenv("JAXRL_REASON_DISTRIBUTED", "1")
    assert distributed.maybe_initialize() is True
    assert initialize_calls == [("10.1.0.7:8482", 1, 0)]


def test_tpu_vm_told_to_skip_the_metadata_server_is_one_process(
    tpu_vm, initialize_calls, monkeypatch
):
    asked = tpu_vm("10.1.0.2,10.1.0.3", worker=1)
    monkeypatch.setenv("TPU_SKIP_MDS_QUERY", "1")  # JAX's own switch: no chips here
    assert distributed.maybe_initialize() is False
    assert asked == [] and initialize_calls == []


def _slurm(monkeypatch, ntasks: int, procid: int) -> None:
    for name, value in {
        "SLURM_JOB_ID": "1234",
        "SLURM_STEP_NODELIST": "node[003-006]",
        "SLURM_NTASKS": str(ntasks),
        "SLURM_PROCID": str(procid),
        "SLURM_LOCALID": "0",
    }.items():
        monkeypatch.setenv(name, value)


def test_slurm_job_of_four_tasks_initializes(monkeypatch, initialize_calls):
    _slurm(monkeypatch, ntasks=4, procid=1)
    assert distributed.maybe_initialize() is True
    # First node of the step; the port JAX derives from the job id: 1234 % 4096 + 61440.
    assert initialize_calls == [("node003:62674", 4, 1)]


def test_slurm_job_of_one_task_does_not(monkeypatch, initialize_calls):
    _slurm(monkeypatch, ntasks=1, procid=0)
    assert distributed.maybe_initialize() is False
    assert initialize_calls == []


def test_open_mpi_initializes_at_the_launchers_address(monkeypatch, initialize_calls):
    monkeypatch.setenv("OMPI_MCA_orte_hnp_uri", "1531576320.0;tcp://10.96.0.1,10.148.0.1:34911")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1")
    assert distributed.maybe_initialize() is True
    # Port: (job id // 4096) % 4096 + 61440 with job id 1531576320.
    assert initialize_calls == [("10.96.0.1:62624", 2, 1)]


def test_explicit_coordinates_win_over_a_detected_cluster(monkeypatch, initialize_calls):
    _slurm(monkeypatch, ntasks=4, procid=1)
    assert distributed.maybe_initialize("10.0.0.9:1234", 2, 0) is True
    assert initialize_calls == [("10.0.0.9:1234", 2, 0)]


def test_explicit_coordinates_from_the_environment(monkeypatch, initialize_calls):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.9:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "3")
    monkeypatch.setenv("JAX_PROCESS_ID", "2")
    assert distributed.maybe_initialize() is True
    assert initialize_calls == [("10.0.0.9:1234", 3, 2)]


def test_a_coordinator_address_alone_takes_the_rest_from_the_cluster(monkeypatch, initialize_calls):
    _slurm(monkeypatch, ntasks=4, procid=3)
    assert distributed.maybe_initialize("10.0.0.9:1234") is True
    assert initialize_calls == [("10.0.0.9:1234", 4, 3)]


def test_one_explicit_process_is_a_no_op(initialize_calls):
    assert distributed.maybe_initialize(num_processes=1) is False
    assert initialize_calls == []


def test_switch_off_wins_over_a_detected_cluster(monkeypatch, initialize_calls):
    _slurm(monkeypatch, ntasks=4, procid=1)
    monkeypatch.setenv("JAXRL_REASON_DISTRIBUTED", "0")
    assert distributed.maybe_initialize() is False
    assert initialize_calls == []


@pytest.mark.parametrize(
    "args, env, complaint",
    [
        (("10.0.0.9:1234",), {}, "lacks the process count, process id: pass --coordinator_"),
        ((None, 4, 1), {}, "lacks the coordinator address"),
        (("10.0.0.9", 2, 0), {}, "needs a port"),
        (("10.0.0.9:1234", 2, 2), {}, "process id 2 is not in 0..1"),
        (("10.0.0.9:1234", 0, 0), {}, "process count must be >= 1"),
        ((), {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES must be an integer, got 'two'"),
        ((), {"JAXRL_REASON_DISTRIBUTED": "yes"}, "must be 0 or 1"),
    ],
)
def test_incomplete_or_contradictory_settings_are_one_line_errors(
    monkeypatch, initialize_calls, args, env, complaint
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(distributed.DistributedError, match=complaint) as e:
        distributed.maybe_initialize(*args)
    assert "\n" not in str(e.value) and initialize_calls == []


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLUSTER_ENV_PREFIXES)}
    return {**env, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO), **extra}


def test_switch_on_with_nothing_to_detect_is_an_error():
    """The real jax.distributed.initialize (in a fresh process: this one's backend is up): its
    detection finds nothing and it fails before starting anything."""
    code = "from jaxrl_reason import distributed; distributed.maybe_initialize()"
    env = _child_env(JAXRL_REASON_DISTRIBUTED="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 1
    (last,) = out.stderr.strip().splitlines()[-1:]
    assert last.startswith("jaxrl_reason.distributed.DistributedError: cannot start jax.")
    assert "--coordinator_address" in last


CHILD = """
import json, sys
import jax
import numpy as np
# As older JAX releases had it: no CPU collectives unless maybe_initialize picks gloo.
jax.config.update("jax_cpu_collectives_implementation", None)
from jaxrl_reason import distributed
pid = int(sys.argv[2])
started = distributed.maybe_initialize(sys.argv[1], 2, pid)
import jax.numpy as jnp
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
mesh = Mesh(np.array(jax.devices()), ("d",))
rows = jax.make_array_from_process_local_data(
    NamedSharding(mesh, P("d")), np.arange(2, dtype=np.float32) + 2 * pid)  # [0 1] | [2 3]
total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, P()))(rows)
gathered = multihost_utils.process_allgather(np.array([10 * pid]))
print("RESULT", json.dumps({
    "started": started, "processes": jax.process_count(), "index": jax.process_index(),
    "devices": jax.device_count(), "local_devices": jax.local_device_count(),
    "sum": float(total), "gathered": np.asarray(gathered).ravel().tolist()}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_real_processes_compute_together():
    """2 processes x 2 CPU devices: one 4-device system, a cross-process sum and allgather."""
    env = _child_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    address = f"127.0.0.1:{_free_port()}"
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, address, str(i)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for i in range(2)
        ]
    except OSError as e:
        pytest.skip(f"this platform cannot start subprocesses: {e}")
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=180)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"process {i}:\n{out[-3000:]}"
    results = [
        json.loads(line.removeprefix("RESULT "))
        for out in outputs
        for line in out.splitlines()
        if line.startswith("RESULT ")
    ]
    for i, r in enumerate(results):
        assert r == {
            "started": True,
            "processes": 2,
            "index": i,
            "devices": 4,
            "local_devices": 2,
            "sum": 6.0,
            "gathered": [0, 10],
        }
