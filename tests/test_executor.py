"""Adversarial tests of the sandboxed executor: every attack is contained, gets the right
status, and leaves the pool answering correctly."""

import os
import signal
import socket
import textwrap
import time

import pytest

from jaxrl_reason.rewards.executor import STATUSES, ExecResult, Executor, confinement_gaps

TIMEOUT = 0.5  # seconds, for the runs that are meant to hang
CAP = 4096  # output cap in bytes


@pytest.fixture(scope="module")
def ex():
    with Executor(workers=2, timeout_s=5.0, memory_mb=128, max_output_bytes=CAP) as executor:
        yield executor


def run(ex: Executor, code: str, **kw) -> ExecResult:
    """Runs `code`, then checks the pool still answers correctly on every worker."""
    result = ex.run(textwrap.dedent(code), **kw)
    assert result.status in STATUSES
    for after in ex.run_batch(["print(1+1)"] * 4):
        assert (after.status, after.stdout) == ("ok", "2\n"), after
    return result


def needs(ex: Executor, *layers: str) -> None:
    """Skips attacks that would hit the test process itself when a layer is missing."""
    if not any(ex.protections.get(layer) for layer in layers):
        pytest.skip(f"none of {layers} is available on this machine: {ex.protections}")


def test_ok_with_stdin(ex):
    r = run(ex, "print(input()[::-1]); import sys; print(sys.stdin.read().split())",
            stdin="abc\nd e\n")
    assert (r.status, r.stdout, r.returncode) == ("ok", "cba\n['d', 'e']\n", 0)
    assert 0 < r.seconds < 5


def test_errors_report_the_program_traceback_only(ex):
    r = run(ex, "def f():\n    raise ValueError('boom')\nf()")
    assert r.status == "error" and r.returncode == 1
    assert "ValueError: boom" in r.stderr and '"<program>", line 2' in r.stderr
    assert "_sandbox" not in r.stderr
    assert run(ex, "def (:").status == "error"
    assert run(ex, "import sys; sys.exit(3)").returncode == 3


def test_infinite_loop_times_out(ex):
    r = run(ex, "while True:\n    pass", timeout_s=TIMEOUT)
    assert r.status == "timeout"
    assert TIMEOUT <= r.seconds < TIMEOUT + 2


def test_sleeping_past_the_wall_clock(ex):
    r = run(ex, "import time; print('started', flush=True); time.sleep(60)", timeout_s=TIMEOUT)
    assert r.status == "timeout" and r.stdout == "started\n" and r.seconds < TIMEOUT + 2


def test_ignoring_signals_does_not_help(ex):
    r = run(ex, """
        import signal
        for s in (signal.SIGTERM, signal.SIGALRM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        signal.alarm(1)
        while True:
            pass
        """, timeout_s=TIMEOUT)
    assert r.status == "timeout"


def test_limits_cannot_be_raised_back(ex):
    r = run(ex, """
        import resource
        for lim in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NPROC):
            try:
                resource.setrlimit(lim, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            except (ValueError, OSError):
                pass
        x = bytearray(1 << 30)
        """)
    assert r.status in ("blocked", "memory")


def test_memory_bombs(ex):
    assert run(ex, "x = bytearray(10**10)").status == "memory"
    r = run(ex, "xs = []\nwhile True:\n    xs.append(bytearray(1 << 20))")
    assert r.status == "memory" and r.seconds < 5
    assert run(ex, "x = 'a' * (10**9)").status == "memory"


def test_fork_bomb_is_contained(ex):
    r = run(ex, "import os\nwhile True:\n    os.fork()", timeout_s=2)
    assert r.status in ("blocked", "error", "timeout") and r.seconds < 4


def test_background_children_do_not_outlive_the_run(ex):
    marker = "1234.5678"  # an argument no other process on the machine has
    run(ex, f"""
        import subprocess, os
        try:
            subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
        except Exception:
            pass
        if os.fork() == 0:
            os.setsid()
            os.execvp("sleep", ["sleep", "{marker}"])
        """)
    time.sleep(0.2)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert marker.encode() not in f.read(), f"pid {pid} survived its run"
        except OSError:
            pass


def test_huge_outputs_are_truncated(ex):
    r = run(ex, "while True:\n    print('x' * 1000)")
    assert r.status == "killed" and r.truncated and len(r.stdout) == CAP and r.seconds < 4
    r = run(ex, "import sys; sys.stderr.write('e' * 10**7)")
    assert r.truncated and len(r.stderr) == CAP
    r = run(ex, "print('y' * 100)")
    assert not r.truncated and r.stdout == "y" * 100 + "\n"


def test_deep_recursion(ex):
    r = run(ex, "def f(n):\n    return f(n + 1)\nf(0)")
    assert r.status == "error" and "RecursionError" in r.stderr
    # Past the interpreter's guard: the C stack overflows (SIGSEGV) inside hash().
    r = run(ex, "import sys\nsys.setrecursionlimit(10**8)\nx = ()\nfor _ in range(300000):\n"
                "    x = (x,)\nhash(x)")
    assert (r.status, r.returncode) == ("killed", -signal.SIGSEGV)


def test_private_working_directory_is_wiped(ex):
    r = run(ex, "import os; open('f.txt', 'w').write('x'); os.mkdir('d'); print(os.listdir('.'))")
    assert r.status == "ok" and sorted(eval(r.stdout)) == ["d", "f.txt"]
    assert [run(ex, "import os; print(os.listdir('.'))").stdout] * 2 == ["[]\n"] * 2
    r = run(ex, "open('big', 'wb').write(b'x' * (20 << 20))")  # over disk_mb (16)
    assert r.status == "error" and ("too large" in r.stderr or "No space" in r.stderr)


def test_files_outside_the_directory_are_untouchable(ex, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("keep me")
    for attack in (f"open({str(secret)!r}, 'w').write('pwned')",
                   f"import os; os.remove({str(secret)!r})",
                   f"import os; os.rename({str(secret)!r}, 'stolen')",
                   f"print(open({str(secret)!r}).read())",
                   f"open({str(tmp_path / 'new.txt')!r}, 'w').write('x')",
                   "import os, sys; open(os.path.join(os.path.dirname(os.__file__), 'x.py'), 'w')"):
        r = run(ex, attack)
        assert r.status in ("blocked", "error"), (attack, r)
        assert "keep me" not in r.stdout
    assert secret.read_text() == "keep me"
    assert os.listdir(tmp_path) == ["secret.txt"]


def test_network_is_unreachable(ex):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        for attack in (f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)",
                       f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                       f".sendto(b'x', ('127.0.0.1', {port}))",
                       "import socket; print(socket.gethostbyname('example.com'))"):
            r = run(ex, attack)
            assert r.status in ("blocked", "error"), (attack, r)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_killing_the_parent_or_everyone_fails(ex):
    needs(ex, "seccomp", "pid_namespace")
    for attack in ("import os; os.kill(os.getppid(), 9)",
                   "import os; os.killpg(os.getpgid(os.getppid()), 9)",
                   "import os; os.kill(-1, 9)",
                   "import os; os.kill(0, 9)",
                   "import os, signal; os.kill(1, signal.SIGKILL); os.kill(os.getppid(), 15)"):
        r = run(ex, attack)
        assert r.status != "ok", (attack, r)
    os.kill(os.getpid(), 0)  # still here


def test_ctypes_tricks(ex):
    needs(ex, "seccomp")
    libc = "import ctypes; libc = ctypes.CDLL(None); "
    assert run(ex, libc + "libc.syscall(62, -1, 9)").status == "blocked"  # raw kill(-1)
    assert run(ex, libc + "libc.syscall(57); print('forked')").status == "blocked"
    assert run(ex, libc + "libc.syscall(41, 2, 1, 0)").status == "blocked"  # raw socket()
    assert run(ex, "import ctypes; ctypes.string_at(0)").status == "killed"  # SIGSEGV


def test_memory_and_objects_outside_the_limits_are_refused(ex):
    needs(ex, "seccomp")
    for attack in ("import os; os.memfd_create('x')",
                   "import ctypes; print(ctypes.CDLL(None).shmget(0, 1 << 20, 0o1666))",
                   "import ctypes; ctypes.CDLL(None).syscall(425, 8, 0)"):  # io_uring_setup
        assert run(ex, attack).status == "blocked", attack


def test_environment_secrets_are_not_inherited(monkeypatch):
    secret = "hunter2-7c1f9e"
    monkeypatch.setenv("JAXRL_TEST_SECRET", secret)
    with Executor(workers=1, timeout_s=5.0) as ex:
        r = ex.run("""
import os, glob
print(dict(os.environ))
for path in ['/proc/self/environ', '/proc/1/environ'] + glob.glob('/proc/*/environ'):
    try:
        print(open(path, 'rb').read())
    except OSError as e:
        print(path, e)
""")
    assert r.status in ("ok", "blocked", "error")
    assert "PATH" in r.stdout and secret not in r.stdout + r.stderr


def test_no_inherited_file_descriptors(ex):
    r = run(ex, """
        import os
        open_fds = []
        for fd in range(3, 1024):
            try:
                os.fstat(fd)
                open_fds.append(fd)
            except OSError:
                pass
        print(open_fds)
        """)
    assert r.stdout == "[]\n"


def test_threads_work(ex):
    r = run(ex, "import threading\nt = threading.Thread(target=print, args=('t',))\n"
                "t.start(); t.join()")
    assert (r.status, r.stdout) == ("ok", "t\n")


def test_string_hashes_agree_across_workers(ex):
    outs = {r.stdout for r in ex.run_batch(["print(hash('abc'), list({'x', 'y', 'z'}))"] * 6)}
    assert len(outs) == 1


def test_run_batch_is_parallel_and_keeps_order(ex):
    codes = [f"import time; time.sleep({0.5 if i % 2 else 0.3}); print({i})" for i in range(4)]
    start = time.monotonic()
    results = ex.run_batch(codes)
    elapsed = time.monotonic() - start
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(4)]
    assert elapsed < 1.5, f"4 runs of 0.3-0.5 s on 2 workers took {elapsed:.2f} s"
    stdins = ex.run_batch(["print(input())"] * 3, stdin=["a", "b", "c"])
    assert [r.stdout for r in stdins] == ["a\n", "b\n", "c\n"]


def test_a_dead_worker_is_replaced(ex):
    worker = ex._idle.get()
    ex._idle.put(worker)
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait()
    results = ex.run_batch(["print(1+1)"] * 4)
    assert all(r.stdout == "2\n" for r in results if r.status == "ok")
    assert sum(r.status == "killed" for r in results) == 1
    run(ex, "pass")


def test_missing_layers_are_reported():
    assert len(confinement_gaps({"seccomp": False, "landlock_abi": 0})) == 3
    assert confinement_gaps({"seccomp": True, "landlock_abi": 7}) == []
    assert confinement_gaps({"pivot_root": True, "net_namespace": True, "pid_namespace": True,
                             "seccomp": False, "landlock_abi": 0}) == []


def test_closed_executor_refuses_work():
    ex = Executor(workers=1)
    pids = [w.proc.pid for w in ex._all]
    ex.close()
    with pytest.raises(RuntimeError):
        ex.run("print(1)")
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
