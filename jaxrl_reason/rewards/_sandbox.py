"""The inside of the executor: one pool worker, run as `python -S -s _sandbox.py CONFIG_JSON`.

The worker is a zygote that never holds any run's data. It confines itself once (namespaces, a
minimal read-only root, a Landlock ruleset, a uid of its own) and then loops: fork a fresh child,
hand the caller that child's three pipe ends over the control socket, wait for the child, report
its exit status. The caller writes the program and its stdin straight into the child's pipe and
reads the child's stdout and stderr itself, so neither ever enters the memory that later children
are forked from. The child confines itself further (rlimits, uid, Landlock) before its request
arrives, then sets its CPU limit and seccomp filter and execs the code in-process: a run costs a
fork, not an interpreter start, and the fork happens while the caller is busy elsewhere.

Every protection is tried and recorded; what the kernel refuses is skipped and reported, never
faked, and a protection the worker found working that then fails in a child aborts that run.
Stdlib only, and no package imports: this file runs as a script.
"""

import ctypes
import errno
import fcntl
import gc
import json
import os
import resource
import select
import signal
import socket
import stat
import struct
import sys
import traceback
import types
from collections.abc import Sequence

# Imported by the worker so programs start warm: what short puzzle programs use.
PREIMPORTED = ("bisect", "collections", "copy", "fractions", "functools", "heapq", "itertools",
               "math", "operator", "re", "string")
# Layers a test may force off (config key "disable"); never an environment variable.
LAYERS = ("namespaces", "pivot_root", "pid_namespace", "landlock", "seccomp")
NOBODY = 65534
# Worker uids come from systemd's unused range 1879048192-2147352575, one per live worker on the
# machine, claimed with a lock file: the kernel counts RLIMIT_NPROC per uid.
UID_BASE, UID_COUNT = 0x70000000, 1 << 16
# Where the lock directory may be made, in order (/run is read-only in some hardened containers).
# Every worker tries the same list, so all lock in the first that takes a lock file; each is a
# root-owned system directory in which no other user can rename or remove root's entries.
UID_LOCK_PARENTS = ("/run", "/dev/shm", "/var/lock", "/tmp")
UID_LOCK_DIR = "jaxrl-executor-uids"
INODES_PER_MB = 256  # files + directories the per-run tmpfs holds per MB of disk_mb
SIGPENDING = 64  # queued signals (and POSIX timers) per run
EXIT_MEMORY = 213  # child exit code: MemoryError escaped the program
EXIT_BLOCKED = 214  # child exit code: a protection denied an operation (EACCES/EPERM/EROFS)
EXIT_SETUP = 215  # child exit code: the sandbox could not be applied; the program never ran
REQUEST_HEADER = struct.Struct("<dI")  # timeout_s, length of the code; then code, then stdin
STATUS = struct.Struct("<cQ")  # b"S", run number; then the wait status and the struct rusage
RUSAGE_SIZE = 144

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
# Resolved now, in the worker: a lookup in each child would cost it ~1 ms.
_prctl, _unshare, _setns, _wait4 = _libc.prctl, _libc.unshare, _libc.setns, _libc.wait4
# libc's fork, not os.fork: the worker has one thread and no at-fork hooks, and CPython's
# after-fork bookkeeping costs each child ~25 page copies (~0.1 ms).
_fork = _libc.fork

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET, CLONE_THREAD = 0x20000000, 0x40000000, 0x00010000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, AT_RECURSIVE, AT_FDCWD, MNT_DETACH = 1, 2, 0x8000, -100, 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS = 1, 4, 22, 38
SECCOMP_MODE_FILTER = 2

# x86_64 syscall numbers; elsewhere the seccomp layer and pivot_root are off (and reported
# off). The Landlock and mount_setattr numbers are the same on every architecture.
SYS_PIVOT_ROOT, SYS_MOUNT_SETATTR, SYS_LL_CREATE, SYS_LL_ADD, SYS_LL_RESTRICT = (
    155, 442, 444, 445, 446)
AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_DENY = (  # the process dies with SIGSYS -> status "blocked"
    41, 42, 43, 49, 50, 53, 288,  # socket connect accept bind listen socketpair accept4
    57, 58, 59, 322,  # fork vfork execve execveat
    101, 310, 311, 312, 424, 438, 440,  # ptrace process_vm_rw kcmp pidfd_send_signal/getfd/madvise
    155, 161, 165, 166, 272, 308, 428, 429, 430, 431, 432, 442,  # mounts chroot unshare setns
    160,  # setrlimit
    248, 249, 250, 298, 321, 323, 425, 426, 427,  # keys perf bpf userfaultfd io_uring
    133, 259, 303, 304,  # mknod mknodat name_to_handle_at open_by_handle_at
    29, 64, 68, 240,  # shmget semget msgget mq_open: IPC objects outlive the process
    319, 447,  # memfd_create memfd_secret: memory outside the address-space limit
    253, 294, 300,  # inotify_init(1) fanotify_init: per-inode kernel objects without a file cap
    103, 153, 159, *range(163, 186), 227, 246, 256, 279, 305, 313,  # administration surfaces
    # (163-185 includes obsolete numbers that fail with ENOSYS anyway: one range, one check)
)
SECCOMP_SELF_SIGNAL = (62, 200, 234, 129, 297)  # kill tkill tgkill rt_(tg)sigqueueinfo
SYS_CLONE, SYS_CLONE3, SYS_PRLIMIT64, SYS_FCNTL = 56, 435, 302, 72
# fcntl commands that multiply kernel objects: byte-range locks (one per range) and pipe growth.
FCNTL_DENY = (6, 7, 37, 38, 1031)  # F_SETLK F_SETLKW F_OFD_SETLK F_OFD_SETLKW F_SETPIPE_SZ

# Landlock rights by ABI version (handled = everything the running kernel knows about).
LL_READ = 1 | 4 | 8  # EXECUTE | READ_FILE | READ_DIR
LL_FILE = {1: 1 | 2 | 4, 3: 1 | 2 | 4 | 1 << 14, 5: 1 | 2 | 4 | 1 << 14 | 1 << 15}
LL_ALL = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}

# Run once in the worker before it freezes its heap: the first compile() and traceback in a
# process initialize lazily (~3.5 ms), which every child would otherwise pay again.
WARM_UP = '''
class _Point:
    def __init__(self, x):
        self.x = x
def _f(xs, k=2):
    table = {i: [x * k for x in xs if x % 2] for i in range(3)}
    try:
        raise ValueError(f"{len(table)!r} {sorted(xs, key=lambda v: -v)}")
    except ValueError as e:
        return repr(e), _Point(table).x, {*xs} - {1}, "%s %d" % (1.5, 2)
print(_f([3, 1, 2]), sum(range(10)), tuple(map(str, range(3))))
def _fail():
    return 1 // 0
_fail()
'''


def _errcheck(ret: int) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _syscall(nr: int, *args) -> int:
    conv = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return _errcheck(_libc.syscall(ctypes.c_long(nr), *conv))


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    enc = lambda s: None if s is None else os.fsencode(s)
    _errcheck(_libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)))


def _by_abi(table: dict[int, int], abi: int) -> int:
    return table[max(k for k in table if k <= abi)]


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    if jt > 255 or jf > 255:
        raise ValueError("seccomp program: jump too far")
    return struct.pack("HBBI", code, jt, jf, k)


_LD, _JEQ, _JGT, _JGE, _JSET, _RET = 0x20, 0x15, 0x25, 0x35, 0x45, 0x06
_KILL, _ALLOW, _ENOSYS = 0x80000000, 0x7FFF0000, 0x00050000 | errno.ENOSYS


def _arg_lo(i: int) -> int:
    return 16 + 8 * i


def _intervals(rules: dict[int, list[bytes]]) -> list[tuple[int, int, list[bytes]]]:
    """Consecutive syscall numbers with the same plain action merged: (first, last, block)."""
    out: list[tuple[int, int, list[bytes]]] = []
    for nr in sorted(rules):
        if out and out[-1][1] == nr - 1 and out[-1][2] == rules[nr] and len(rules[nr]) == 1:
            out[-1] = (out[-1][0], nr, rules[nr])
        else:
            out.append((nr, nr, rules[nr]))
    return out


def _search_tree(intervals: list[tuple[int, int, list[bytes]]]) -> list[bytes]:
    """Binary search over sorted syscall intervals: each syscall runs ~12 instructions, and
    the program is short, so installing it (the kernel checks, converts, compiles it and
    emulates it once per syscall number for its cache) costs each child little."""
    if len(intervals) <= 3:
        out = []
        for lo, hi, block in intervals:
            if lo == hi:
                out += [_bpf(_JEQ, lo, 0, len(block)), *block]
            else:  # nr > hi: on to the next interval; nr < lo: in the allowed gap before it
                out += [_bpf(_JGT, hi, len(block) + 1, 0), _bpf(_JGE, lo, 0, len(block)), *block]
        return [*out, _bpf(_RET, _ALLOW)]
    mid = len(intervals) // 2
    left, right = _search_tree(intervals[:mid]), _search_tree(intervals[mid:])
    return [_bpf(_JGE, intervals[mid][0], len(left), 0), *left, *right]


def seccomp_program(self_pid: int) -> bytes:
    """BPF: kill on denied syscalls, on signals to anyone but `self_pid`, on forks (clone
    without CLONE_THREAD), on raising rlimits, on lock and pipe-size fcntls; clone3 -> ENOSYS
    (libc falls back to clone)."""
    rules = {nr: [_bpf(_RET, _KILL)] for nr in SECCOMP_DENY}
    rules[SYS_CLONE3] = [_bpf(_RET, _ENOSYS)]
    rules[SYS_CLONE] = [_bpf(_LD, _arg_lo(0)), _bpf(_JSET, CLONE_THREAD, 0, 1),
                        _bpf(_RET, _ALLOW), _bpf(_RET, _KILL)]
    for nr in SECCOMP_SELF_SIGNAL:
        rules[nr] = [_bpf(_LD, _arg_lo(0)), _bpf(_JEQ, self_pid, 0, 1), _bpf(_RET, _ALLOW),
                     _bpf(_RET, _KILL)]
    rules[SYS_PRLIMIT64] = [_bpf(_LD, _arg_lo(2)), _bpf(_JEQ, 0, 0, 3), _bpf(_LD, _arg_lo(2) + 4),
                            _bpf(_JEQ, 0, 0, 1), _bpf(_RET, _ALLOW), _bpf(_RET, _KILL)]
    fcntl_rule = [_bpf(_LD, _arg_lo(1))]
    for i, cmd in enumerate(FCNTL_DENY):
        fcntl_rule.append(_bpf(_JEQ, cmd, len(FCNTL_DENY) - i, 0))
    rules[SYS_FCNTL] = [*fcntl_rule, _bpf(_RET, _ALLOW), _bpf(_RET, _KILL)]
    head = [_bpf(_LD, 4), _bpf(_JEQ, AUDIT_ARCH_X86_64, 1, 0), _bpf(_RET, _KILL),
            _bpf(_LD, 0), _bpf(_JGE, 0x40000000, 0, 1), _bpf(_RET, _KILL)]  # no x32 ABI
    return b"".join(head + _search_tree(_intervals(rules)))


class SeccompFilter:
    """A BPF program laid out for prctl once, so a child only makes the call."""

    def __init__(self, program: bytes):
        self._buf = ctypes.create_string_buffer(program, len(program))
        prog = struct.pack("HxxxxxxP", len(program) // 8, ctypes.addressof(self._buf))
        self._fprog = ctypes.c_char_p(prog)

    def install(self) -> None:
        _errcheck(_prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self._fprog, 0, 0))


def _why(e: OSError) -> str:
    return e.strerror or str(e)


def _private_lock_dir(parent: str) -> int:
    """An fd of `parent`/UID_LOCK_DIR, made if missing. The locks mean something only where no
    other user can have made that directory or can swap it for another one: so a root-owned
    0700 directory, not a symlink, in a root-owned parent that others cannot write to or that
    has the sticky bit."""
    pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.fstat(pfd)
        if st.st_uid != 0 or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
            raise OSError(f"other users can replace what is in {parent}")
        try:
            os.mkdir(UID_LOCK_DIR, 0o700, dir_fd=pfd)
        except FileExistsError:
            pass
        fd = os.open(UID_LOCK_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=pfd)
    finally:
        os.close(pfd)
    st = os.fstat(fd)
    if st.st_uid != 0 or st.st_mode & 0o077:
        os.close(fd)
        raise OSError("not a private root-owned directory")
    return fd


def _lock_file(dfd: int, uid: int) -> int:
    return os.open(str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                   dir_fd=dfd)


def claim_worker_uid(parents: Sequence[str]) -> tuple[int, int, str]:
    """A uid no other live worker on this machine runs as: (uid, the lock's fd, kept open for
    the worker's life, the lock directory). The locks live in the first of `parents` where a
    private lock directory can be had and takes a lock file (a read-only one takes none). An
    error once that directory is chosen ends the claim: locking elsewhere could hand out a uid
    a worker locked there. OSError, saying why for each candidate, when no uid can be had."""
    why_not = []
    for parent in parents:
        lock_dir = os.path.join(parent, UID_LOCK_DIR)
        try:
            dfd = _private_lock_dir(parent)
        except OSError as e:
            why_not.append(f"{lock_dir}: {_why(e)}")
            continue
        try:
            fd = _lock_file(dfd, UID_BASE)
        except OSError as e:
            os.close(dfd)
            why_not.append(f"{lock_dir}: {_why(e)}")
            continue
        try:
            for uid in range(UID_BASE, UID_BASE + UID_COUNT):
                fd = fd if uid == UID_BASE else _lock_file(dfd, uid)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    os.close(fd)
                    if isinstance(e, BlockingIOError):  # held by a live worker
                        continue
                    raise
                return uid, fd, lock_dir
            raise OSError(f"all {UID_COUNT} uids are held by live workers")
        except OSError as e:
            raise OSError(f"{lock_dir}: {_why(e)}") from e
        finally:
            os.close(dfd)
    raise OSError("; ".join(why_not))


class Sandbox:
    """Worker-level confinement, applied once, and the loop that forks one child per run."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.disabled = set(cfg.get("disable", ()))
        self.protections: dict[str, object] = {"disabled": sorted(self.disabled)}
        # Layers root could have had that this worker lost, and why: the caller warns of them.
        self.lost: dict[str, str] = {}
        self.scratch = os.path.join(cfg["scratch"], "run")  # the run's working directory
        os.makedirs(self.scratch, mode=0o700, exist_ok=True)
        self.read_paths = self._read_paths()
        self.pidns_fd: int | None = None
        root = os.geteuid() == 0
        claimed = self._claim_uid() if root else None  # before pivot_root hides its directory
        if root and "namespaces" not in self.disabled:
            self._namespaces()
        for name in ("mount", "net", "ipc", "uts", "pid"):
            self.protections.setdefault(f"{name}_namespace", False)
        self.protections.setdefault("pivot_root", False)
        readable = root and self._others_can_read()  # else a uid of its own cannot run Python
        if root and not readable:
            self.lost["uid_drop"] = "a uid that owns nothing cannot read this Python's files"
        if claimed and not readable:
            os.close(claimed[1])
            claimed = None
        self.uid = claimed[0] if claimed else NOBODY if readable else None
        self.uid_lock = claimed[1] if claimed else None  # held open for the worker's life
        self.protections["uid_drop"] = self.uid is not None
        self.protections["uid_per_worker"] = claimed is not None
        self.protections["uid_lock_dir"] = claimed[2] if claimed else None
        self.tmpfs = bool(self.protections["mount_namespace"])
        self.inodes = INODES_PER_MB * cfg["disk_mb"]
        self.protections["scratch_tmpfs"] = self.tmpfs
        self.protections["inode_limit"] = self.inodes if self.tmpfs else None
        if self.uid is not None and not self.tmpfs:
            os.chown(self.scratch, self.uid, self.uid)
        self.landlock_abi, self.ruleset = (0, None) if "landlock" in self.disabled else (
            self._landlock())
        self.protections["landlock_abi"] = self.landlock_abi
        self.seccomp = ("seccomp" not in self.disabled and os.uname().machine == "x86_64"
                        and self._probe_seccomp())
        # Inside a PID namespace every run is PID 1, so one filter serves them all.
        self.filter = SeccompFilter(seccomp_program(1)) if self.pidns_fd is not None else None
        limits = dict(AS=cfg["memory_mb"] << 20, FSIZE=cfg["disk_mb"] << 20, NOFILE=64, CORE=0,
                      MSGQUEUE=0, MEMLOCK=0, SIGPENDING=SIGPENDING)
        if claimed:  # counted per uid: only meaningful for a uid no other run shares
            limits["NPROC"] = cfg["max_threads"]
        self.limits = [(getattr(resource, f"RLIMIT_{k}"), v) for k, v in limits.items()]
        self.protections["rlimits"] = ["CPU", *limits]  # CPU: from each run's timeout
        self.setsid = self.pidns_fd is None  # else the namespace, not a session, holds the run
        # The child's last confinement calls with their ctypes arguments made here (making them
        # in each child would cost it ~30 page copies): die with the worker, not dumpable,
        # Landlock.
        ulong = lambda *v: tuple(map(ctypes.c_ulong, v))
        self.child_calls = [(_prctl, ulong(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)),
                            (_prctl, ulong(PR_SET_DUMPABLE, 0, 0, 0, 0))]
        if self.ruleset is not None:
            self.child_calls.append((_libc.syscall, ulong(SYS_LL_RESTRICT, self.ruleset, 0)))
        self.protections["seccomp"] = self.seccomp
        self.protections["lost"] = self.lost
        # Scratch the caller must empty after each run (no per-run tmpfs to throw away).
        self.caller_cleans = None if self.tmpfs else self.scratch
        owner = "" if self.uid is None else f",uid={self.uid},gid={self.uid}"
        self._tmpfs = (b"tmpfs", os.fsencode(self.scratch), b"tmpfs",
                       ctypes.c_ulong(MS_NOSUID | MS_NODEV | MS_NOEXEC),
                       f"size={cfg['disk_mb']}m,nr_inodes={self.inodes},mode=0700{owner}".encode())

    # ---- once per worker ----------------------------------------------------------------
    def _claim_uid(self) -> tuple[int, int, str] | None:
        try:
            return claim_worker_uid(self.cfg.get("uid_lock_parents", UID_LOCK_PARENTS))
        except OSError as e:
            self.lost["uid_per_worker"] = f"no usable lock directory: {e}"
            return None

    @staticmethod
    def _read_paths() -> list[str]:
        """What a program may read: the stdlib, system libraries and their loader cache."""
        paths = [p for p in sys.path if os.path.isdir(p)]
        paths += ["/usr", "/lib", "/lib64", "/lib32", "/etc/ld.so.cache", "/etc/localtime"]
        return sorted({p for p in paths if os.path.lexists(p)})

    def _others_can_read(self) -> bool:
        """A uid that owns nothing can run Python only if `others` can reach the stdlib."""
        for path in self.read_paths:
            parts = os.path.realpath(path).split("/")
            for i in range(1, len(parts) + 1):
                st = os.stat("/".join(parts[:i]) or "/")
                need = 0o005 if os.path.isdir("/".join(parts[:i]) or "/") else 0o004
                if st.st_mode & need != need:
                    return False
        return True

    def _namespaces(self) -> None:
        try:
            _errcheck(_unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS))
            _mount(None, "/", None, MS_REC | MS_PRIVATE)
        except OSError as e:
            self.lost["namespaces"] = f"unshare: {_why(e)}"
            return
        for name in ("mount", "net", "ipc", "uts"):
            self.protections[f"{name}_namespace"] = True
        if "pid_namespace" not in self.disabled:
            try:
                self.pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
                self._enter_new_pidns()
                self._leave_new_pidns()
                self.protections["pid_namespace"] = True
            except OSError as e:
                self.pidns_fd = None
                self.lost["pid_namespace"] = f"a new PID namespace: {_why(e)}"
        if "pivot_root" in self.disabled or os.uname().machine != "x86_64":
            return  # called by its x86_64 number: off elsewhere, like seccomp
        new_root = os.path.join(self.cfg["scratch"], "root")
        try:
            self._pivot_root(new_root)
            self.protections["pivot_root"] = True
        except OSError as e:
            self.lost["pivot_root"] = str(e)
            _libc.umount2(os.fsencode(new_root), MNT_DETACH)

    def _enter_new_pidns(self) -> None:
        """The next fork becomes PID 1 of a fresh PID namespace; its exit kills all it made."""
        if self.pidns_fd is not None:
            _errcheck(_unshare(CLONE_NEWPID))

    def _leave_new_pidns(self) -> None:
        if self.pidns_fd is not None:
            _errcheck(_setns(self.pidns_fd, CLONE_NEWPID))

    def _pivot_root(self, new: str) -> None:
        """Replaces / with a tmpfs of read-only binds of `read_paths`, 4 devices, a private /tmp."""
        os.makedirs(new, exist_ok=True)
        _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
        binds = [(p, p) for p in self.read_paths]
        binds += [(f"/dev/{d}", f"/dev/{d}") for d in ("null", "zero", "urandom", "random")]
        for src, dst in binds:
            target = new + dst
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            if os.path.islink(src):
                os.symlink(os.readlink(src), target)
                continue
            if os.path.isdir(src):
                os.makedirs(target, mode=0o755, exist_ok=True)
            else:
                open(target, "w").close()
            _mount(src, target, None, MS_BIND | MS_REC)
        os.makedirs(new + "/tmp/run", exist_ok=True)
        attr = struct.pack("QQQQ", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
        _syscall(SYS_MOUNT_SETATTR, AT_FDCWD, os.fsencode(new), AT_RECURSIVE, attr, len(attr))
        os.chdir(new)
        _syscall(SYS_PIVOT_ROOT, b".", b".")
        _errcheck(_libc.umount2(b".", MNT_DETACH))
        os.chdir("/")
        self.scratch = "/tmp/run"  # a fresh tmpfs per run: see _fresh_scratch

    def _landlock(self) -> tuple[int, int | None]:
        """A ruleset allowing reads of `read_paths`, everything in the scratch dir, and nothing
        else on the file system; no TCP bind/connect; no signals or abstract sockets outward."""
        try:
            abi = _syscall(SYS_LL_CREATE, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
        except OSError:
            return 0, None
        handled = _by_abi(LL_ALL, abi)
        attr = struct.pack("QQQ", handled, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)
        size = 8 if abi < 4 else 16 if abi < 6 else 24
        fd = _syscall(SYS_LL_CREATE, attr, size, 0)
        file_rights = _by_abi(LL_FILE, abi)
        rules = [(p, LL_READ) for p in self.read_paths]
        rules += [("/dev/null", 4 | 2), ("/dev/zero", 4), ("/dev/urandom", 4), ("/dev/random", 4)]
        # Rules bind to inodes, and a rule on a mount point is hidden by what is mounted on it:
        # the per-run tmpfs is covered by the rule on its parent (read-only or root-owned).
        rules.append((os.path.dirname(self.scratch) if self.tmpfs else self.scratch, handled))
        for path, rights in rules:
            if not os.path.exists(path):
                continue
            if not os.path.isdir(path):
                rights &= file_rights
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = struct.pack("=Qi", rights, pfd)
                _syscall(SYS_LL_ADD, fd, 1, rule, 0)  # LANDLOCK_RULE_PATH_BENEATH
            finally:
                os.close(pfd)
        return abi, fd

    @staticmethod
    def _probe_seccomp() -> bool:
        pid = os.fork()
        if pid == 0:
            try:
                _errcheck(_prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
                SeccompFilter(seccomp_program(os.getpid())).install()
                os._exit(0)
            finally:
                os._exit(1)
        return os.waitpid(pid, 0)[1] == 0

    # ---- per run ------------------------------------------------------------------------
    def serve(self, sock: socket.socket) -> None:
        """Forks the child for run 1, 2, ... until the caller hangs up. Nothing of a run (its
        request, output, exit status) is ever a Python object here: the status travels in a
        buffer that is zeroed once sent."""
        status = ctypes.create_string_buffer(STATUS.size + 4 + RUSAGE_SIZE)
        wstatus = ctypes.c_void_p(ctypes.addressof(status) + STATUS.size)
        rusage = ctypes.c_void_p(ctypes.addressof(status) + STATUS.size + 4)
        self._inherited_limits()
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        seq = 0
        while True:
            seq += 1
            if self.tmpfs:
                self._fresh_scratch()
            os.chdir(self.scratch)  # the child's cwd
            pid, fds = self._fork_child()
            pidfd = os.pidfd_open(pid)
            try:
                sock.sendmsg([b"R" + struct.pack("<Q", seq)],
                             [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("3i", *fds))])
            except OSError:
                pass  # the caller is gone: _wait sees it
            finally:
                for fd in fds:
                    os.close(fd)
            caller_alive = self._wait(poller, pidfd, sock, seq)
            os.close(pidfd)
            self._kill(pid)  # before reaping, so the pid cannot have been reused
            _errcheck(_wait4(pid, wstatus, 0, rusage))
            if not caller_alive:
                return
            STATUS.pack_into(status, 0, b"S", seq)
            try:
                sock.sendmsg([status])
            except OSError:
                return
            finally:
                ctypes.memset(ctypes.addressof(status), 0, len(status))

    def _inherited_limits(self) -> None:
        """What every child would set the same way is set here once and inherited: the
        rlimits but CPU (soft = hard; the child cannot raise them once it drops root) and
        no_new_privs (this process never execs)."""
        for which, value in self.limits:
            resource.setrlimit(which, (value, value))
        _errcheck(_prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))

    def _fork_child(self) -> tuple[int, list[int]]:
        """The child for the next run, and the caller's ends of its pipes (request, stdout,
        stderr)."""
        req_r, req_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self._enter_new_pidns()
        try:
            pid = _errcheck(_fork())
            if pid == 0:
                try:
                    for fd in (req_w, out_r, err_r):
                        os.close(fd)
                    self._child(req_r, out_w, err_w)
                finally:
                    os._exit(EXIT_SETUP)
        finally:
            self._leave_new_pidns()
        for fd in (req_r, out_w, err_w):
            os.close(fd)
        return pid, [req_w, out_r, err_r]

    @staticmethod
    def _wait(poller: select.poll, pidfd: int, sock: socket.socket, seq: int) -> bool:
        """Until the child exits or the caller asks to kill it; False if the caller hung up."""
        poller.register(pidfd, select.POLLIN)
        kill = b"K" + struct.pack("<Q", seq)
        while True:
            for fd, _ in poller.poll():
                if fd == pidfd:
                    poller.unregister(pidfd)
                    return True
                try:
                    msg = sock.recv(16)
                except OSError:
                    return False
                if not msg:
                    return False
                if msg == kill:  # a kill for an earlier run arrived late: ignored
                    poller.unregister(pidfd)
                    return True

    def _child(self, req_r: int, out_w: int, err_w: int) -> None:
        """Runs in the fresh child: confine, read the request, exec it. Never returns."""
        try:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            if self.setsid:
                os.setsid()
            if self.uid is not None:
                os.setgroups([])
                os.setresgid(self.uid, self.uid, self.uid)
                os.setresuid(self.uid, self.uid, self.uid)
            for call, args in self.child_calls:  # PDEATHSIG after setuid (which clears it)
                _errcheck(call(*args))
            head = _read_exact(req_r, REQUEST_HEADER.size)
            if head is None:  # no request will come: the caller closed the pool
                os._exit(EXIT_SETUP)
            timeout, code_len = REQUEST_HEADER.unpack(head)
            cpu = int(timeout) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
            code = (_read_exact(req_r, code_len) or b"").decode("utf-8", "surrogatepass")
            os.dup2(req_r, 0)  # what follows the code in the pipe is the program's stdin
            os.closerange(3, 1 << 16)
            main = types.ModuleType("__main__")
            sys.modules["__main__"] = main
            if self.seccomp:
                (self.filter or SeccompFilter(seccomp_program(os.getpid()))).install()
        except BaseException as e:  # fail closed: a protection that worked before must hold
            os.write(2, f"sandbox setup failed: {e!r}\n".encode())
            os._exit(EXIT_SETUP)
        os._exit(_exec_program(code, main))

    def _kill(self, pid: int) -> None:
        """PID 1 of the run's namespace (its exit kills the rest), else its session's group."""
        for kill in (os.kill, os.killpg) if self.setsid else (os.kill,):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def _fresh_scratch(self) -> None:
        """A new tmpfs of `disk_mb` and `disk_mb * INODES_PER_MB` inodes for the next run,
        owned by the run's uid; the old one, whatever the program left in it, is detached."""
        _libc.umount2(self._tmpfs[1], MNT_DETACH)  # EINVAL the first time
        _errcheck(_libc.mount(*self._tmpfs))


def _exec_program(code: str, main: types.ModuleType) -> int:
    """Runs the program as __main__; returns the exit code to report."""
    # Every child starts from the same worker heap, so id()/address-based values would repeat
    # from run to run and pass for deterministic; a random allocation pattern (of the common
    # object kinds, which have their own free lists, and of every small size) exposes them.
    n = [b % 64 for b in os.urandom(6)]
    jitter = ([{} for _ in range(n[0])], [[] for _ in range(n[1])], [i + 0.5 for i in range(n[2])],
              [(i,) for i in range(n[3])], [object() for _ in range(n[4])],
              [bytes(b) for b in os.urandom(4 * n[5])])
    rc = 0
    try:
        try:
            exec(compile(code, "<program>", "exec"), main.__dict__)
        except MemoryError:
            return EXIT_MEMORY
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                rc = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                rc = 1
        except BaseException as e:
            traceback.print_exception(type(e), e, e.__traceback__.tb_next)  # from the program
            denied = isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM,
                                                            errno.EROFS)
            rc = EXIT_BLOCKED if denied else 1
        sys.stdout.flush()
        sys.stderr.flush()
    except MemoryError:
        return EXIT_MEMORY
    except BaseException:
        return rc or 1
    del jitter
    return rc


def _read_exact(fd: int, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _warm_up() -> None:
    """Compiles, runs and formats the failure of a fixed program (no run's data), output
    discarded: see WARM_UP."""
    try:
        exec(compile(WARM_UP, "<program>", "exec"), {"__name__": "__warm_up__"})
    except ZeroDivisionError as e:
        traceback.format_exception(type(e), e, e.__traceback__.tb_next)
    sys.stdout.flush()


def main() -> None:
    """Protocol on the control socket: one JSON hello (the active protections), then per run
    an "R" message with the child's pipe ends and an "S" message with its exit status; the
    caller may send "K" to have a run killed."""
    del sys.path[0]  # the script's own directory: programs must not import package files
    cfg = json.loads(sys.argv[1])
    os.umask(0o022)
    sock = socket.socket(fileno=cfg["fd"])
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    for name in PREIMPORTED:
        __import__(name)
    sandbox = Sandbox(cfg)
    # What every child inherits: made once here rather than in each child (each page a child
    # writes costs it a copy). The environment is the caller-scrubbed one plus these.
    os.environ.update(HOME=sandbox.scratch, TMPDIR=sandbox.scratch)
    sys.argv = ["<program>"]
    sys.stdin = open(0, encoding="utf-8", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    _warm_up()
    gc.collect()
    gc.freeze()  # children then never scan (and so never copy) the worker's objects
    sock.send(json.dumps({"protections": sandbox.protections,
                             "caller_cleans": sandbox.caller_cleans}).encode())
    sandbox.serve(sock)


if __name__ == "__main__":
    main()
