"""A pool of sandboxed Python workers: the executor every program reward goes through.

Untrusted code (model-written programs, calculator expressions) runs in a fresh child forked
from a pre-started, pre-imported worker (see `_sandbox.py` for the confinement and
docs/sandbox.md for what is and is not guaranteed). The worker is a zygote that never sees a
run's data: this side writes the program into the child's pipe and reads the child's output
itself, enforcing the output cap and the wall clock. A crash, hang or attack in one run never
takes down the pool or the caller: a worker that dies or stops answering is replaced.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import select
import shutil
import signal
import socket
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

from jaxrl_reason.rewards._sandbox import (
    EXIT_BLOCKED,
    EXIT_MEMORY,
    EXIT_SETUP,
    LAYERS,
    REQUEST_HEADER,
    STATUS,
)

_WORKER = str(Path(__file__).with_name("_sandbox.py"))
# The only environment a worker (and so a program) sees: nothing of the caller's leaks in.
# PYTHONHASHSEED=0 makes str hashes, and so set/dict-of-set output, equal across workers.
# LD_BIND_NOW: symbols resolved once in the worker, not again (and copied pages) in each child.
_WORKER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "PYTHONUTF8": "1", "PYTHONDONTWRITEBYTECODE": "1", "LD_BIND_NOW": "1"}
_REPLY_GRACE_S = 10.0  # how long past a run's timeout a silent worker is given before replacement
_RUSAGE_TIMES = struct.Struct("<qqqq")  # ru_utime, ru_stime as (seconds, microseconds)
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
    if not (p.get("net_namespace") or p.get("seccomp")):  # Landlock stops TCP, not UDP
        gaps.append("programs can open network connections")
    if not (p.get("pid_namespace") or p.get("seccomp") or p.get("uid_drop")):
        gaps.append("programs can signal the caller's other processes")
    if not p.get("scratch_tmpfs"):
        gaps.append("the working directory is on the caller's disk: its total size and file "
                    "count are bounded only by the time limit")
    return gaps


# A layer a worker running as root can lose (its `protections["lost"]` says why): what that
# leaves open, and what gives it back.
_LOST = {
    "uid_per_worker": ("runs get no uid of their own, so there is no per-run RLIMIT_NPROC limit "
                       "on threads and processes (a run can start hundreds)",
                       "make /run or /dev/shm writable for root"),
    "uid_drop": ("runs keep the worker's uid, root",
                 "make this Python's files readable by others, or allow pivot_root"),
    "namespaces": ("no mount, network, IPC, UTS or PID namespace, no private root and no per-run "
                   "tmpfs", "let root unshare namespaces (CAP_SYS_ADMIN, and a seccomp profile "
                   "that allows unshare and mount)"),
    "pid_namespace": ("processes a run leaves behind are cleaned up by process group only",
                      "let root unshare a PID namespace"),
    "pivot_root": ("no private root: programs see the host's file system (Landlock, if active, "
                   "still limits them to reads of system files)",
                   "allow pivot_root and mount_setattr (Linux >= 5.12)"),
}


def lost_layers_warning(lost: dict[str, str]) -> str:
    """One message for every layer the workers lost: what it leaves open, why, what to do."""
    lines = [f"sandbox: {len(lost)} protection layer(s) lost on this machine "
             "(Executor.protections['lost'], docs/sandbox.md):"]
    for layer, why in lost.items():
        opens, fix = _LOST[layer]
        lines.append(f"- {layer}: {opens}.\n  Why: {why}.\n  Fix: {fix}.")
    return "\n".join(lines)


class _WorkerDied(Exception):
    pass


class _Worker:
    """One worker process, its control socket, and the pipes of the child waiting for the
    next run."""

    def __init__(self, cfg: dict):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-s", _WORKER, json.dumps({**cfg, "fd": theirs.fileno()})],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=_WORKER_ENV, cwd="/",
                pass_fds=(theirs.fileno(),), start_new_session=True)
        finally:
            theirs.close()
        self.sock = ours
        self.scratch = cfg["scratch"]
        self._child: tuple[int, list[int]] | None = None  # (run number, its pipe ends)
        try:
            hello = json.loads(self._recv(time.monotonic() + 60)[0])
        except (_WorkerDied, ValueError):
            self.close()
            raise RuntimeError("an executor worker failed to start (see stderr)") from None
        self.protections = hello["protections"]
        self._caller_cleans = hello["caller_cleans"]

    def run(self, request: bytes, timeout: float, cap: int) -> dict:
        """Hands `request` to the waiting child and supervises it: output cap, wall clock."""
        start = time.monotonic()
        seq, fds = self._take_child(start + _REPLY_GRACE_S)
        try:
            reason, status, out, err = self._supervise(seq, fds, request, start + timeout, cap)
        finally:
            for fd in fds:
                _close(fd)
        if self._caller_cleans:
            try:
                _empty_directory(self._caller_cleans)
            except OSError as e:  # the next run must not see what this one left
                raise _WorkerDied from e
        wait_status, rusage = status
        utime_s, utime_us, stime_s, stime_us = _RUSAGE_TIMES.unpack_from(rusage)
        cpu = utime_s + stime_s + (utime_us + stime_us) / 1e6
        return dict(status=_classify(reason, wait_status, cpu, int(timeout) + 1),
                    returncode=os.waitstatus_to_exitcode(wait_status),
                    stdout=out.decode("utf-8", "replace"),
                    stderr=_setup_note(wait_status) + err.decode("utf-8", "replace"),
                    truncated=reason == "output", seconds=time.monotonic() - start)

    def _supervise(self, seq: int, fds: list[int | None], request: bytes, deadline: float,
                   cap: int) -> tuple[str | None, tuple[int, bytes], bytearray, bytearray]:
        """Writes the request while reading the outputs until the worker reports the exit;
        asks for a kill at the deadline or past the cap. (reason, status, stdout, stderr)."""
        req_w, out_r, err_r = fds
        kill_deadline = deadline + _REPLY_GRACE_S
        bufs = {out_r: bytearray(), err_r: bytearray()}
        poller = select.poll()
        for fd in (out_r, err_r, self.sock.fileno()):
            poller.register(fd, select.POLLIN)
        os.set_blocking(req_w, False)
        pending = _write_some(req_w, memoryview(request))
        if pending:
            poller.register(req_w, select.POLLOUT)
        else:  # EOF after the stdin
            fds[0] = _close(req_w)
        reason, status = None, None
        while status is None:
            now = time.monotonic()
            if reason is None and now >= deadline:
                reason = "timeout"
                self._kill(seq)
            if now >= kill_deadline:
                raise _WorkerDied
            wait = (deadline if reason is None else kill_deadline) - now
            for fd, _ in poller.poll(max(wait, 0.0) * 1000):
                if fd == fds[0]:
                    pending = _write_some(fd, pending)
                    if not pending:
                        poller.unregister(fd)
                        fds[0] = _close(fd)
                elif fd in bufs:
                    if _read_into(fd, bufs[fd], cap, poller) is False and reason is None:
                        reason = "output"
                        self._kill(seq)
                else:
                    status = self._status(seq, kill_deadline)
        for fd in (out_r, err_r):  # what is left in the pipes, without waiting for more
            os.set_blocking(fd, False)
            more = reason != "output"
            while more:
                more = _read_into(fd, bufs[fd], cap, None)
                if more is False:
                    reason = "output"
        return reason, status, bufs[out_r], bufs[err_r]

    def _take_child(self, deadline: float) -> tuple[int, list[int]]:
        """The run number and pipe ends (request, stdout, stderr) of the child waiting."""
        if self._child is None:
            msg, fds = self._recv(deadline)
            if msg[:1] != b"R" or len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                raise _WorkerDied
            self._child = struct.unpack_from("<Q", msg, 1)[0], fds
        child, self._child = self._child, None
        return child

    def _status(self, seq: int, deadline: float) -> tuple[int, bytes]:
        """(wait status, the child's struct rusage) of run `seq`: the next message."""
        msg, fds = self._recv(deadline)
        for fd in fds:
            os.close(fd)
        if fds or len(msg) < STATUS.size + 4 or STATUS.unpack_from(msg) != (b"S", seq):
            raise _WorkerDied
        return struct.unpack_from("<i", msg, STATUS.size)[0], msg[STATUS.size + 4:]

    def _recv(self, deadline: float) -> tuple[bytes, list[int]]:
        """The worker's next message; usually already there, so select only when it is not."""
        try:
            try:
                msg, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 3, socket.MSG_DONTWAIT)
            except BlockingIOError:
                wait = max(0.0, deadline - time.monotonic())
                if not select.select([self.sock], [], [], wait)[0]:
                    raise _WorkerDied from None
                msg, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 3)
        except OSError as e:
            raise _WorkerDied from e
        if not msg:
            raise _WorkerDied
        return msg, fds

    def _kill(self, seq: int) -> None:
        try:
            self.sock.send(b"K" + struct.pack("<Q", seq))
        except OSError as e:
            raise _WorkerDied from e

    def close(self) -> None:
        """Hanging up ends the worker's loop; a worker that does not leave in time is killed."""
        self.sock.close()
        if self._child is not None:
            for fd in self._child[1]:
                os.close(fd)
            self._child = None
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def _write_some(fd: int, data: memoryview) -> memoryview:
    """Writes what the pipe takes now; closes nothing. A child that died unread ends it."""
    try:
        while data:
            data = data[os.write(fd, data):]
    except BlockingIOError:
        pass
    except BrokenPipeError:
        return data[:0]
    return data


def _read_into(fd: int, buf: bytearray, cap: int, poller) -> bool | None:
    """Reads one chunk. False: the cap was exceeded. None: EOF or nothing left to read."""
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    if not chunk:
        if poller is not None:
            poller.unregister(fd)
        return None
    buf += chunk
    if len(buf) > cap:
        del buf[cap:]
        if poller is not None:
            poller.unregister(fd)
        return False
    return True


def _classify(reason: str | None, status: int, cpu: float, cpu_limit: int) -> str:
    if reason == "timeout":
        return "timeout"
    if reason == "output":
        return "killed"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGSYS:
            return "blocked"
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= cpu_limit - 0.05):
            return "timeout"
        return "killed"
    code = os.WEXITSTATUS(status)
    return {0: "ok", EXIT_MEMORY: "memory", EXIT_BLOCKED: "blocked"}.get(code, "error")


def _setup_note(status: int) -> str:
    """The line that says a run never started because its confinement failed."""
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_SETUP:
        return "executor: the sandbox could not be applied, the program did not run\n"
    return ""


def _empty_directory(path: str) -> None:
    """Without a per-run tmpfs: removes what the run left in its working directory."""
    os.chmod(path, 0o700)
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, onerror=_force_remove)
        else:
            os.unlink(entry.path)


def _force_remove(func, path, _exc_info) -> None:
    """rmtree fallback when the program removed its own permissions (only without root)."""
    os.chmod(os.path.dirname(path), 0o700)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        shutil.rmtree(path)
    else:
        func(path)


class Executor:
    """Runs Python source in a sandbox; `run` for one program, `run_batch` for many at once.

    `memory_mb` caps the run's address space (the interpreter itself takes ~20 MB of it),
    `disk_mb` its private working directory (and the size of any file it writes),
    `max_output_bytes` each of stdout and stderr, `max_threads` the threads it may start.
    `workers` defaults to two per available core. `protections` records which layers the
    kernel allowed on this machine, and under "lost" (with a warning) those root would normally
    have but did not get, and why. `disable_layers` (names from `LAYERS`) forces layers off:
    for tests that check the remaining layers still hold, never for real use.
    """

    def __init__(self, workers: int | None = None, timeout_s: float = 5.0, memory_mb: int = 256,
                 max_output_bytes: int = 1 << 16, disk_mb: int = 16, max_threads: int = 16,
                 disable_layers: Sequence[str] = ()):
        if workers is None:  # two per core: one's child runs while the other does its IPC
            workers = 2 * len(os.sched_getaffinity(0))
        if (workers < 1 or timeout_s <= 0 or memory_mb < 64 or max_output_bytes < 1
                or disk_mb < 1 or max_threads < 1):
            raise ValueError("need workers >= 1, timeout_s > 0, memory_mb >= 64, "
                             "max_output_bytes >= 1, disk_mb >= 1, max_threads >= 1")
        unknown = sorted(set(disable_layers) - set(LAYERS))
        if unknown:
            raise ValueError(f"unknown sandbox layers {unknown}: the layers are {list(LAYERS)}")
        self.workers = workers
        self.timeout_s = timeout_s
        self._cap = max_output_bytes
        self._root = tempfile.mkdtemp(prefix="jaxrl-exec-")
        self._cfg = dict(memory_mb=memory_mb, disk_mb=disk_mb, max_threads=max_threads,
                         disable=sorted(set(disable_layers)))
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
        lost: dict[str, str] = {}
        for w in started:  # one warning for the pool, not one per worker or per run
            for layer, why in w.protections["lost"].items():
                lost.setdefault(layer, why)
        if lost:
            warnings.warn(lost_layers_warning(lost), stacklevel=2)
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
        source = code.encode("utf-8", "surrogatepass")
        request = (REQUEST_HEADER.pack(timeout, len(source)) + source
                   + stdin.encode("utf-8", "surrogatepass"))
        worker = self._idle.get()
        start = time.monotonic()
        try:
            reply = worker.run(request, timeout, self._cap)
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
