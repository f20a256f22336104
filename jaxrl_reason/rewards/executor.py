"""A pool of sandboxed Python workers: the executor every program reward goes through.

Untrusted code (model-written programs, calculator expressions) runs in a fresh child forked
from a pre-started, pre-imported worker (see `_sandbox.py` for the confinement and
docs/sandbox.md for what is and is not guaranteed). A crash, hang or attack in one run never
takes down the pool or the caller: a worker that dies or stops answering is replaced.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_WORKER = str(Path(__file__).with_name("_sandbox.py"))
# The only environment a worker (and so a program) sees: nothing of the caller's leaks in.
# PYTHONHASHSEED=0 makes str hashes, and so set/dict-of-set output, equal across workers.
_WORKER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "PYTHONUTF8": "1", "PYTHONDONTWRITEBYTECODE": "1"}
_REPLY_GRACE_S = 10.0  # how long past a run's timeout a silent worker is given before replacement
STATUSES = ("ok", "error", "timeout", "memory", "killed", "blocked")


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """Outcome of one run.

    status: "ok" (exit 0), "error" (exception / nonzero exit), "timeout" (wall or CPU limit),
    "memory" (address-space limit), "killed" (a signal, or stopped for exceeding the output
    limit: then `truncated`), "blocked" (a protection denied something the program tried).
    `returncode` is the exit code, or minus the signal number.
    """

    status: str
    stdout: str
    stderr: str
    returncode: int | None
    seconds: float
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def confinement_gaps(protections: dict[str, object]) -> list[str]:
    """What no active layer covers, from a worker's `protections` record."""
    p = protections
    gaps = []
    if not (p.get("pivot_root") or p.get("landlock_abi")):
        gaps.append("programs can read and write every file the caller's user can")
    if not (p.get("net_namespace") or p.get("seccomp") or p.get("landlock_abi", 0) >= 4):
        gaps.append("programs can open network connections")
    if not (p.get("pid_namespace") or p.get("seccomp") or p.get("uid_drop")):
        gaps.append("programs can signal the caller's other processes")
    return gaps


class _WorkerDied(Exception):
    pass


class _Worker:
    """One worker process and its length-prefixed JSON pipe."""

    def __init__(self, cfg: dict):
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-s", _WORKER, json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_WORKER_ENV, cwd="/",
            close_fds=True, start_new_session=True)
        self.scratch = cfg["scratch"]
        try:
            self.protections = self._recv(time.monotonic() + 60)["protections"]
        except _WorkerDied:
            self.close()
            raise RuntimeError("an executor worker failed to start (see stderr)") from None

    def call(self, request: dict, deadline: float) -> dict:
        data = json.dumps(request).encode()
        try:
            os.write(self.proc.stdin.fileno(), struct.pack("<I", len(data)) + data)
        except OSError as e:
            raise _WorkerDied from e
        return self._recv(deadline)

    def _recv(self, deadline: float) -> dict:
        head = self._read(4, deadline)
        return json.loads(self._read(struct.unpack("<I", head)[0], deadline))

    def _read(self, n: int, deadline: float) -> bytes:
        fd, data = self.proc.stdout.fileno(), b""
        while len(data) < n:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(fd, n - len(data)) if ready else b""
            if not chunk:
                raise _WorkerDied
            data += chunk
        return data

    def close(self) -> None:
        """EOF ends the worker's loop; a worker that does not leave in time is killed."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


class Executor:
    """Runs Python source in a sandbox; `run` for one program, `run_batch` for many at once.

    `memory_mb` caps the run's address space (the interpreter itself takes ~20 MB of it),
    `disk_mb` its private working directory (and the size of any file it writes),
    `max_output_bytes` each of stdout and stderr, `max_threads` the threads it may start.
    `workers` defaults to two per available core. `protections` records which layers the
    kernel allowed on this machine.
    """

    def __init__(self, workers: int | None = None, timeout_s: float = 5.0, memory_mb: int = 256,
                 max_output_bytes: int = 1 << 16, disk_mb: int = 16, max_threads: int = 16):
        if workers is None:  # two per core: one's child runs while the other does its IPC
            workers = 2 * len(os.sched_getaffinity(0))
        if workers < 1 or timeout_s <= 0 or memory_mb < 64 or max_output_bytes < 1:
            raise ValueError("need workers >= 1, timeout_s > 0, memory_mb >= 64, "
                             "max_output_bytes >= 1")
        self.workers = workers
        self.timeout_s = timeout_s
        self._root = tempfile.mkdtemp(prefix="jaxrl-exec-")
        self._cfg = dict(memory_mb=memory_mb, disk_mb=disk_mb, max_threads=max_threads,
                         max_output_bytes=max_output_bytes)
        self._lock = threading.Lock()
        self._count = 0
        self._closed = False
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._all: set[_Worker] = set()
        # Stops the workers even if the caller forgets close(); holds no reference to self.
        self._finalizer = weakref.finalize(self, _stop_all, self._all, self._lock, self._root)
        with ThreadPoolExecutor(workers) as pool:  # start in parallel: each takes ~0.1 s
            started = list(pool.map(lambda _: self._spawn(), range(workers)))
        for w in started:
            self._idle.put(w)
        self.protections: dict[str, object] = started[0].protections
        for gap in confinement_gaps(self.protections):
            warnings.warn(f"sandbox: {gap} on this machine (see docs/sandbox.md)", stacklevel=2)
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="executor")

    def _spawn(self) -> _Worker:
        with self._lock:
            self._count += 1
            scratch = os.path.join(self._root, f"w{self._count}")
        worker = _Worker({**self._cfg, "scratch": scratch})
        with self._lock:
            self._all.add(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.proc.kill()
        worker.close()

    def run(self, code: str, stdin: str = "", timeout_s: float | None = None) -> ExecResult:
        """Runs `code` as __main__ with `stdin`; blocks until a worker is free and it is done."""
        if self._closed:
            raise RuntimeError("Executor is closed")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        worker = self._idle.get()
        start = time.monotonic()
        try:
            reply = worker.call({"code": code, "stdin": stdin, "timeout_s": timeout},
                                start + timeout + _REPLY_GRACE_S)
        except _WorkerDied:
            self._retire(worker)
            worker = self._spawn()
            return ExecResult("killed", "", "executor: the worker died or stopped answering",
                              None, time.monotonic() - start)
        finally:
            self._idle.put(worker)
        return ExecResult(**reply)

    def run_batch(self, codes: Sequence[str], stdin: str | Sequence[str] = "",
                  timeout_s: float | None = None) -> list[ExecResult]:
        """Runs all `codes` across the pool; results in the order of `codes`."""
        stdins = [stdin] * len(codes) if isinstance(stdin, str) else list(stdin)
        if len(stdins) != len(codes):
            raise ValueError(f"{len(codes)} programs but {len(stdins)} stdins")
        return list(self._threads.map(self.run, codes, stdins, [timeout_s] * len(codes)))

    def close(self) -> None:
        """Stops every worker and removes their scratch directories."""
        if self._closed:
            return
        self._closed = True
        self._threads.shutdown(wait=True)
        self._finalizer()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stop_all(workers: set[_Worker], lock: threading.Lock, root: str) -> None:
    with lock:
        stopping = list(workers)
        workers.clear()
    for w in stopping:
        w.close()
    shutil.rmtree(root, ignore_errors=True)
