"""Starts jax.distributed when this process is one of several, and only then.

Where the answer comes from, first match wins:

1. `JAXRL_REASON_DISTRIBUTED=0`: never (one process, whatever the environment says).
2. Explicit coordinates: the arguments (the CLI's --coordinator_address/--num_processes/
   --process_id) or the environment variables JAX_COORDINATOR_ADDRESS (read by JAX itself),
   JAX_NUM_PROCESSES and JAX_PROCESS_ID (orbax's multi-host launcher's names).
3. JAX's own cluster detection, limited to the environments that it can detect locally: Open MPI
   and SLURM (environment variables), and a Cloud TPU VM slice (GKE's environment variables, or
   the GCE metadata server's `worker-network-endpoints`). JAX consults the metadata server only
   when it found TPU chips and libtpu at import, so a laptop or CI machine sends no request.

A value the arguments do not give is filled in by the detected cluster. jax.distributed starts
when the resulting process count is above 1, or when `JAXRL_REASON_DISTRIBUTED=1`
(`tpu/tpu.py launch` sets it), which also turns "no cluster found" into an error instead of N
hosts each training alone into the same workdir.
"""

from __future__ import annotations

import dataclasses
import os

import jax
from absl import logging

# The same detection code that jax.distributed.initialize() runs (not public API, hence here only).
from jax._src import clusters

from jaxrl_reason.errors import UserError

ENV_SWITCH = "JAXRL_REASON_DISTRIBUTED"
ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
# In JAX's own order of preference. Kubernetes (API calls at detection) and mpi4py (opt-in in
# JAX) are not probed on every start: with JAXRL_REASON_DISTRIBUTED=1 and nothing found here,
# jax.distributed.initialize() runs its full detection, which includes them.
AUTO_DETECTED: tuple[type[clusters.ClusterEnv], ...] = (
    clusters.OmpiCluster,
    clusters.SlurmCluster,
    clusters.GkeTpuCluster,
    clusters.GceTpuCluster,
)
COORDINATOR_TIMEOUT_S = 300  # jax.distributed.initialize's default
FLAGS_HINT = (
    "pass --coordinator_address=HOST:PORT --num_processes=N --process_id=I "
    f"(or {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID})"
)


class DistributedError(UserError, ValueError):
    """The multi-process settings are incomplete or contradictory."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Whether to start jax.distributed, with what, and why (`source`, for the log).

    None coordinates with `initialize` set leave the detection to jax.distributed.initialize."""

    initialize: bool
    source: str
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def detected_cluster() -> type[clusters.ClusterEnv] | None:
    """The cluster environment JAX would use, among the locally detectable ones."""
    return next((env for env in AUTO_DETECTED if env.is_env_present()), None)


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(f"{name} must be an integer, got {raw!r}") from None


def plan(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Plan:
    """Decides without starting anything; touches the network only on a Cloud TPU VM."""
    switch = os.environ.get(ENV_SWITCH, "").strip()
    if switch not in ("", "0", "1"):
        raise DistributedError(f"{ENV_SWITCH} must be 0 or 1 (or unset), got {switch!r}")
    if switch == "0":
        return Plan(False, f"{ENV_SWITCH}=0")
    forced = switch == "1"
    coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR) or None
    if num_processes is None:
        num_processes = _env_int(ENV_NUM_PROCESSES)
    if process_id is None:
        process_id = _env_int(ENV_PROCESS_ID)
    given = (coordinator_address, num_processes, process_id)
    explicit = any(v is not None for v in given)
    cluster = None if None not in given else detected_cluster()
    source = " + ".join(
        ([f"{ENV_SWITCH}=1"] if forced else [])
        + (["explicit coordinates"] if explicit else [])
        + ([cluster.__name__] if cluster else [])
    )
    if cluster is not None and num_processes is None:
        num_processes = cluster.get_process_count()
    if num_processes is not None and num_processes < 1:
        raise DistributedError(f"the process count must be >= 1, got {num_processes}")
    if not forced and num_processes is None and not explicit:
        return Plan(False, "one process (no cluster detected)")
    if not forced and num_processes == 1:
        return Plan(False, f"one process ({source})")
    if forced and cluster is None and not explicit:
        return Plan(True, f"{source}, coordinates left to jax.distributed.initialize")
    if cluster is not None and process_id is None:
        process_id = cluster.get_process_id()
    if cluster is not None and coordinator_address is None:
        coordinator_address = cluster.get_coordinator_address(
            timeout_secs=COORDINATOR_TIMEOUT_S,
            override_coordinator_port=os.environ.get("JAX_COORDINATOR_PORT"),
        )
    named = {
        "coordinator address": coordinator_address,
        "process count": num_processes,
        "process id": process_id,
    }
    missing = [name for name, value in named.items() if value is None]
    if missing:
        raise DistributedError(
            f"multi-process run ({source}) lacks the {', '.join(missing)}: {FLAGS_HINT}"
        )
    if ":" not in coordinator_address:
        raise DistributedError(
            f"coordinator address {coordinator_address!r} needs a port: HOST:PORT"
        )
    if not 0 <= process_id < num_processes:
        raise DistributedError(
            f"process id {process_id} is not in 0..{num_processes - 1} (process count "
            f"{num_processes})"
        )
    return Plan(True, source, coordinator_address, num_processes, process_id)


def _ensure_cpu_collectives() -> None:
    """Cross-process computations on CPU need a collectives library: gloo, unless one was chosen.

    Older JAX releases left it unset (CPU processes then cannot compute together); it only affects
    the CPU client, so computations on GPU or TPU devices are unchanged."""
    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def maybe_initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Starts jax.distributed if there is more than one process to coordinate (see the module
    docstring); returns whether it is running. Call it before anything touches a JAX device."""
    if jax.distributed.is_initialized():
        return True
    p = plan(coordinator_address, num_processes, process_id)
    if not p.initialize:
        logging.info("jax.distributed not started: %s", p.source)
        return False
    _ensure_cpu_collectives()
    try:
        jax.distributed.initialize(p.coordinator_address, p.num_processes, p.process_id)
    except ValueError as e:  # JAX's own detection found nothing to fill the gaps
        raise DistributedError(
            f"cannot start jax.distributed ({p.source}): {e} {FLAGS_HINT}"
        ) from e
    # A warning so that it shows at the CLI's default verbosity: each host's log says who it is.
    logging.warning(
        "jax.distributed started (%s): process %d of %d, coordinator %s",
        p.source,
        jax.process_index(),
        jax.process_count(),
        p.coordinator_address or "detected by JAX",
    )
    return True
