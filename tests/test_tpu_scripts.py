"""tpu/tpu.py: the exact gcloud command lines, quoting that survives the shells, dry runs.

The launch/stop/logs scripts are run for real under a local bash with a fake $HOME and a fake
venv python, after the round trip the real thing takes: printed line -> shlex.split -> remote shell.
"""

import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(rel: str):
    path = REPO / rel
    spec = importlib.util.spec_from_file_location(f"_{path.stem}_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


tpu = _load("tpu/tpu.py")
T = tpu.Tpu("my-tpu", "us-central2-b")
GIN_PARAMS = [
    "task.name = 'a b'",
    'star.prompt = "it\'s = $HOME `ls` ;|&"',
    "train.lr=1e-3",
]


def _dry(capsys, *argv: str) -> list[str]:
    assert tpu.main([*argv, "--dry-run"]) == 0
    return capsys.readouterr().out.splitlines()


def _remote_script(line: str) -> str:
    """What the worker's shell receives: the --command value after the local shell splits it."""
    (command,) = [a for a in shlex.split(line) if a.startswith("--command=")]
    return command.removeprefix("--command=")


def test_create_and_delete_commands():
    q = tpu.Tpu("q", "us-west4-a", "proj")
    assert shlex.join(tpu.create_cmd(T, "v4-8", "tpu-ubuntu2204-base")) == (
        "gcloud compute tpus tpu-vm create my-tpu --zone=us-central2-b "
        "--accelerator-type=v4-8 --version=tpu-ubuntu2204-base"
    )
    cmd = tpu.create_cmd(q, "v5litepod-8", "v2-alpha-tpuv5-lite", spot=True, queued=True)
    assert shlex.join(cmd) == (
        "gcloud compute tpus queued-resources create q --zone=us-west4-a --project=proj "
        "--node-id=q --accelerator-type=v5litepod-8 --runtime-version=v2-alpha-tpuv5-lite --spot"
    )
    assert tpu.create_cmd(T, "v4-8", "rt", internal_ips=True)[-1] == "--internal-ips"
    assert tpu.create_cmd(q, "v4-8", "rt", queued=True, internal_ips=True)[-1] == "--internal-ips"
    assert shlex.join(tpu.delete_cmd(T)) == (
        "gcloud compute tpus tpu-vm delete my-tpu --zone=us-central2-b --quiet"
    )
    assert shlex.join(tpu.delete_cmd(q, queued=True)) == (
        "gcloud compute tpus queued-resources delete q --zone=us-west4-a --project=proj "
        "--force --quiet"
    )


@pytest.mark.parametrize(
    "accel, runtime",
    [
        ("v4-8", "tpu-ubuntu2204-base"),
        ("v4-32", "tpu-ubuntu2204-base"),
        ("v5litepod-8", "v2-alpha-tpuv5-lite"),
        ("v5p-8", "v2-alpha-tpuv5"),
        ("v6e-8", "v2-alpha-tpuv6e"),
    ],
)
def test_default_runtime(accel, runtime):
    assert tpu.default_runtime(accel) == runtime


def test_unknown_accelerator_needs_version(capsys):
    with pytest.raises(ValueError, match="pass --version"):
        tpu.default_runtime("v9-8")
    out = _dry(capsys, "create", "t", "--zone=z", "--accelerator-type=v9-8", "--version=my-rt")
    assert out == [
        "gcloud compute tpus tpu-vm create t --zone=z --accelerator-type=v9-8 --version=my-rt"
    ]


def test_ssh_and_scp_commands():
    assert tpu.ssh_cmd(T, "ls -l", worker="1") == [
        *"gcloud compute tpus tpu-vm ssh my-tpu --zone=us-central2-b --worker=1".split(),
        "--command=ls -l",
    ]
    assert tpu.scp_cmd(T, "/tmp/x y", "data") == [
        *"gcloud compute tpus tpu-vm scp".split(),
        "/tmp/x y",
        *"my-tpu:data --zone=us-central2-b --worker=all --recurse".split(),
    ]
    internal = tpu.Tpu("my-tpu", "us-central2-b", internal_ip=True)
    assert tpu.ssh_cmd(internal, "ls")[-2:] == ["--internal-ip", "--command=ls"]
    assert tpu.scp_cmd(internal, "x", "y")[-2:] == ["--internal-ip", "--recurse"]


def test_internal_ip_flags_reach_every_gcloud_line(capsys):
    base = ["my-tpu", "--zone=z"]
    (create,) = _dry(capsys, "create", *base, "--accelerator-type=v4-8", "--internal-ips")
    assert "--internal-ips" in shlex.split(create)
    lines = _dry(capsys, "setup", *base, "--local", "--internal-ip")[1:]  # after the comment
    lines += _dry(capsys, "launch", *base, "--job=star", "--workdir=w", "--internal-ip")
    lines += _dry(capsys, "copy", *base, "a", "b", "--internal-ip")
    lines += _dry(capsys, "logs", *base, "--run=r", "--internal-ip")
    lines += _dry(capsys, "stop", *base, "--run=r", "--internal-ip")
    gcloud = [shlex.split(line) for line in lines if not line.startswith("#")]
    assert len(gcloud) == 7 and all("--internal-ip" in words for words in gcloud)
    (plain,) = _dry(capsys, "stop", *base, "--run=r")
    assert "--internal-ip" not in shlex.split(plain)


def test_dry_run_prints_and_executes_nothing(capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("dry run must not execute anything")

    monkeypatch.setattr(tpu.subprocess, "run", boom)
    monkeypatch.setattr(tpu.shutil, "which", lambda _: None)  # no gcloud needed either
    base = ["my-tpu", "--zone=us-central2-b"]
    assert _dry(capsys, "create", *base, "--accelerator-type=v4-8") == [
        shlex.join(tpu.create_cmd(T, "v4-8", "tpu-ubuntu2204-base"))
    ]
    queued = _dry(capsys, "create", *base, "--accelerator-type=v4-8", "--queued", "--poll-s=5")
    assert queued == [
        shlex.join(tpu.create_cmd(T, "v4-8", "tpu-ubuntu2204-base", queued=True)),
        "gcloud compute tpus queued-resources describe my-tpu --zone=us-central2-b "
        "'--format=value(state.state)'",
        "# repeated every 5 s until the state is ACTIVE",
    ]
    no_wait = ["--accelerator-type=v4-8", "--queued", "--no-wait"]
    assert _dry(capsys, "create", *base, *no_wait) == queued[:1]
    assert _dry(capsys, "wait", *base) == [
        queued[1],
        "# repeated every 30 s until the state is ACTIVE",
    ]
    out = _dry(capsys, "setup", *base, "--local")  # would pack with git: patched out above
    assert out[0].startswith("# would pack")
    assert shlex.split(out[1])[3:5] == ["tpu-vm", "scp"]
    assert "tar -xzf" in _remote_script(out[2])
    (line,) = _dry(capsys, "setup", *base, "--git=https://example.com/r.git", "--ref=v1.0")
    assert "fetch origin v1.0" in _remote_script(line)
    assert _dry(capsys, "delete", *base) == [shlex.join(tpu.delete_cmd(T))]


def test_launch_line_round_trips_to_job_argv(capsys):
    gin = [f"--gin_param={p}" for p in GIN_PARAMS]
    argv = ["launch", "my-tpu", "--zone=us-central2-b", "--job=star", "--workdir=gs://b/r1"]
    check, note, line = _dry(capsys, *argv, "--gin_file=configs/a.gin", *gin)
    ssh_all = "gcloud compute tpus tpu-vm ssh my-tpu --zone=us-central2-b --worker=all".split()
    assert shlex.split(check)[:8] == ssh_all and shlex.split(line)[:8] == ssh_all
    assert _remote_script(check) == tpu.preflight_script()  # every worker checked first ...
    assert note == f"# stop here if any worker printed {tpu.REFUSED}"  # ... then started
    expected = tpu.job_argv("star", ["configs/a.gin"], GIN_PARAMS, "gs://b/r1")
    assert expected[3:6] == [f"--gin_param={p}" for p in GIN_PARAMS]
    assert shlex.join(expected) in _remote_script(line)
    assert "env JAXRL_REASON_DISTRIBUTED=1 " in _remote_script(line)
    assert "r1.log" in _remote_script(line)  # run name defaults to the workdir's last component


def _fake_home(tmp_path: Path) -> Path:
    """$HOME with the repo dir and a venv python that records argv, cwd and env, then waits."""
    home = tmp_path / "home"
    (home / tpu.REMOTE_REPO).mkdir(parents=True)
    python = home / tpu.REMOTE_VENV / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, time\n"
        "rec = {'argv': sys.argv[1:], 'cwd': os.getcwd(), 'msg': os.environ.get('MSG'),\n"
        "       'distributed': os.environ.get('JAXRL_REASON_DISTRIBUTED')}\n"
        "json.dump(rec, open(os.path.join(os.environ['HOME'], 'record.json'), 'w'))\n"
        "print('hello from the fake job', flush=True)\n"
        "time.sleep(60)\n"
    )
    python.chmod(0o755)
    return home


def _bash(script: str, home: Path) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}
    return subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )


def _wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child of ours lingers as a zombie until reaped by its (detached) parent.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


NEEDS_BASH = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("find") is None,
    reason="needs bash and find to play the worker's shell",
)


@NEEDS_BASH
def test_launch_logs_stop_on_a_fake_worker(capsys, tmp_path):
    home = _fake_home(tmp_path)
    gin = [f"--gin_param={p}" for p in GIN_PARAMS]
    flags = ["my-tpu", "--zone=z", "--run=r1"]
    env = ["--env=MSG=a b 'c'", "--env=XLA_FLAGS=--x=1"]
    check, _, line = _dry(capsys, "launch", *flags, "--job=star", "--workdir=gs://b/w", *gin, *env)
    pid_file = home / tpu.REMOTE_LOGS / "r1.pid"
    pid = None
    try:
        assert _bash(_remote_script(check), home).returncode == 0  # nothing runs yet
        assert _bash(_remote_script(line), home).returncode == 0  # returns while the job runs
        _wait_for(lambda: (home / "record.json").exists() and pid_file.exists())
        pid = int(pid_file.read_text())
        time.sleep(0.2)  # let the fake job finish writing its record
        rec = json.loads((home / "record.json").read_text())
        assert rec["argv"] == ["-m", "jaxrl_reason.star", *gin, "--workdir=gs://b/w"]
        assert rec["cwd"] == str(home / tpu.REMOTE_REPO)
        assert rec["msg"] == "a b 'c'"
        assert rec["distributed"] == "1"  # distributed.maybe_initialize starts jax.distributed

        again = _bash(_remote_script(check), home)  # any live run refuses a new launch
        assert again.returncode == 1
        assert (
            f"{tpu.REFUSED} on " in again.stdout
            and f"run r1 is running (pid {pid})" in again.stdout
        )

        (logs,) = _dry(capsys, "logs", *flags, "--no-follow", "--worker=2")
        assert "--worker=2" in shlex.split(logs)
        _wait_for(lambda: "hello from the fake job" in _bash(_remote_script(logs), home).stdout)

        (stop,) = _dry(capsys, "stop", *flags)
        assert _remote_script(stop) == tpu.stop_script("r1")  # libtpu's real lockfile path
        assert tpu.LIBTPU_LOCKFILE == "/tmp/libtpu_lockfile"
        lockfile = tmp_path / "libtpu_lockfile"  # stands in for it here
        lockfile.touch()
        stop_here = tpu.stop_script(
            "r1", devices=[str(tmp_path / "accel*")], lockfile=str(lockfile)
        )
        assert _bash(stop_here, home).returncode == 0
        assert not _alive(pid) and not pid_file.exists()
        assert not lockfile.exists()  # else the next launch fails with "TPU already in use"
        assert _bash(stop_here, home).returncode == 0  # stopping twice is fine
        assert _bash(_remote_script(check), home).returncode == 0  # free again
    finally:
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def fake_tpu(tmp_path):
    """A 'TPU device' file and a lockfile under tmp_path; `hold()` starts a process that keeps
    the device open, as a job using the TPU does."""
    device, lockfile, holders = tmp_path / "accel0", tmp_path / "libtpu_lockfile", []
    device.touch()

    def hold() -> int:
        code = "import sys, time; f = open(sys.argv[1]); print('open', flush=True); time.sleep(60)"
        p = subprocess.Popen([sys.executable, "-c", code, str(device)], stdout=subprocess.PIPE)
        holders.append(p)
        assert p.stdout.readline() == b"open\n"
        return p.pid

    yield SimpleNamespace(devices=[str(tmp_path / "accel*")], lockfile=lockfile, hold=hold)
    for p in holders:
        p.kill()
        p.wait()


@NEEDS_BASH
def test_preflight_refuses_while_another_process_holds_the_tpu(tmp_path, fake_tpu):
    home = _fake_home(tmp_path)
    fake_tpu.lockfile.touch()
    pid = fake_tpu.hold()
    out = _bash(tpu.preflight_script(fake_tpu.devices, str(fake_tpu.lockfile)), home)
    assert out.returncode == 1
    assert f"{tpu.REFUSED} on " in out.stdout and f"the TPU is held by pid(s) {pid}" in out.stdout
    assert fake_tpu.lockfile.exists()  # the holder's lock stays


@NEEDS_BASH
def test_preflight_clears_a_stale_lockfile(tmp_path, fake_tpu):
    home = _fake_home(tmp_path)
    fake_tpu.lockfile.touch()  # a crashed run left it; nobody holds the TPU
    out = _bash(tpu.preflight_script(fake_tpu.devices, str(fake_tpu.lockfile)), home)
    assert out.returncode == 0 and "removed the stale" in out.stdout
    assert not fake_tpu.lockfile.exists()


@NEEDS_BASH
def test_stop_keeps_the_lockfile_of_a_process_still_holding_the_tpu(tmp_path, fake_tpu):
    home = _fake_home(tmp_path)
    (home / tpu.REMOTE_LOGS).mkdir()
    (home / tpu.REMOTE_LOGS / "r1.pid").write_text("999999999")  # the run itself is gone
    fake_tpu.lockfile.touch()
    fake_tpu.hold()  # ... but something else took the TPU
    stop = tpu.stop_script("r1", devices=fake_tpu.devices, lockfile=str(fake_tpu.lockfile))
    assert _bash(stop, home).returncode == 0
    assert fake_tpu.lockfile.exists()


def test_launch_starts_nowhere_when_one_worker_refuses(monkeypatch, capsys):
    """gcloud may exit 0 although one worker's command failed: the refusal line decides."""
    ran = []

    def fake_run(cmd, **kwargs):
        ran.append(cmd)
        out = "SSH: Attempting to connect to worker 0...\n"
        if "preflight" in cmd[-1]:
            out += f"{tpu.REFUSED} on w-1: run r is running (pid 7); stop it first\n"
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr="")

    monkeypatch.setattr(tpu.shutil, "which", lambda _: "/usr/bin/gcloud")
    monkeypatch.setattr(tpu.subprocess, "run", fake_run)
    check = tpu.CheckAll(["gcloud", "ssh", "--command=preflight"])
    assert tpu.execute([check, ["gcloud", "ssh", "--command=start"]], dry_run=False) == 1
    assert ran == [check.argv]
    assert "not started on any worker (1 refused" in capsys.readouterr().err
    ran.clear()
    fine = tpu.CheckAll(["gcloud", "ssh", "--command=all free"])
    assert tpu.execute([fine, ["gcloud", "ssh", "--command=start"]], dry_run=False) == 0
    assert ran == [fine.argv, ["gcloud", "ssh", "--command=start"]]


def _fake_describe(monkeypatch, states: list[str], rc: int = 0):
    """gcloud ... describe --format=value(state.state) answering `states` in turn."""
    calls, sleeps = [], []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(
            cmd,
            rc,
            stdout=states[len(calls) - 1] + "\n",
            stderr="ERROR: (gcloud) NOT_FOUND\n" if rc else "",
        )

    monkeypatch.setattr(tpu.subprocess, "run", fake_run)
    monkeypatch.setattr(tpu.time, "sleep", sleeps.append)
    return calls, sleeps


def test_queued_create_waits_until_active(monkeypatch, capsys):
    states = [
        "ACCEPTED",
        "WAITING_FOR_RESOURCES",
        "WAITING_FOR_RESOURCES",
        "PROVISIONING",
        "ACTIVE",
    ]
    calls, sleeps = _fake_describe(monkeypatch, states)
    assert tpu.WaitUntilActive(T, poll_s=7).run() == 0
    assert calls == [tpu.queued_state_cmd(T)] * 5 and sleeps == [7] * 4
    err = capsys.readouterr().err
    assert [line.split(": ")[1].split()[0] for line in err.splitlines()] == [
        "ACCEPTED",
        "WAITING_FOR_RESOURCES",
        "PROVISIONING",
        "ACTIVE",
    ]  # each state once, when it changes


@pytest.mark.parametrize("dead", ["FAILED", "SUSPENDED"])
def test_queued_wait_fails_clearly_when_the_request_cannot_succeed(monkeypatch, capsys, dead):
    calls, _ = _fake_describe(monkeypatch, ["WAITING_FOR_RESOURCES", dead, "ACTIVE"])
    assert tpu.WaitUntilActive(T, poll_s=1).run() == 1
    assert len(calls) == 2  # stops polling
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert f"is {dead}, it will not become ACTIVE" in error and "delete --queued" in error


def test_queued_wait_passes_gcloud_errors_on(monkeypatch, capsys):
    _fake_describe(monkeypatch, [""], rc=1)
    assert tpu.WaitUntilActive(T).run() == 1
    assert "NOT_FOUND" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_checkout_script_follows_tags_branches_and_commits(tmp_path):
    origin, home = tmp_path / "origin", tmp_path / "home"
    home.mkdir()

    def git(*args: str) -> str:
        ident = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
        cmd = ["git", *ident, "-C", str(origin), *args]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()

    origin.mkdir()
    git("init", "-q")
    for version in ("one", "two"):
        (origin / "v.txt").write_text(version)
        git("add", "v.txt")
        git("commit", "-q", "-m", version)
        if version == "one":
            git("tag", "v1")
            first = git("rev-parse", "HEAD")
    checkout = home / tpu.REMOTE_REPO / "v.txt"
    for ref, want in [("v1", "one"), ("main", "two"), (first, "one")]:
        result = _bash(tpu.git_checkout_script(str(origin), ref), home)
        assert result.returncode == 0, result.stderr
        assert checkout.read_text() == want


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_setup_git_after_setup_local_checks_out_in_place(tmp_path):
    origin, home, local = tmp_path / "origin", tmp_path / "home", tmp_path / "local"
    for d in (origin, home, local):
        d.mkdir()
    ident = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    (origin / "v.txt").write_text("from git")
    for args in (["init", "-q"], ["add", "v.txt"], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", *ident, "-C", str(origin), *args], check=True, capture_output=True)
    (local / "v.txt").write_text("from the tar")
    (local / "only_local.py").write_text("x = 1")
    with tarfile.open(home / tpu.REMOTE_TARBALL, "w:gz") as tar:  # what `setup --local` ships
        for f in local.iterdir():
            tar.add(f, arcname=f.name)
    assert _bash(tpu.unpack_script(), home).returncode == 0
    repo = home / tpu.REMOTE_REPO
    assert (repo / "v.txt").read_text() == "from the tar" and not (repo / ".git").exists()

    result = _bash(tpu.git_checkout_script(str(origin), "main"), home)
    assert result.returncode == 0, result.stderr
    assert (repo / "v.txt").read_text() == "from git"
    assert (repo / "only_local.py").exists()  # the tar's extra files stay, untracked


def test_pack_source_ships_the_working_tree_only(tmp_path):
    inside = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--is-inside-work-tree"], capture_output=True
    )
    if shutil.which("git") is None or inside.returncode:
        pytest.skip("needs git and a git checkout of the repo")
    out = tmp_path / "src.tar.gz"
    files = tpu.pack_source(REPO, out)
    assert {"pyproject.toml", "tpu/tpu.py", "tests/test_tpu_scripts.py"} <= set(files)
    assert not [f for f in files if f.startswith((".venv/", ".git/")) or "__pycache__" in f]
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == files


def test_execute_runs_in_order_and_stops_at_first_failure(monkeypatch):
    ran = []

    def fake_run(cmd, **_):
        ran.append(cmd)
        return subprocess.CompletedProcess(cmd, 3 if cmd[1] == "b" else 0)

    monkeypatch.setattr(tpu.shutil, "which", lambda _: "/usr/bin/gcloud")
    monkeypatch.setattr(tpu.subprocess, "run", fake_run)
    assert tpu.execute([["gcloud", "a"], ["gcloud", "b"], ["gcloud", "c"]], dry_run=False) == 3
    assert ran == [["gcloud", "a"], ["gcloud", "b"]]


def test_missing_gcloud_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(tpu.shutil, "which", lambda _: None)
    with pytest.raises(SystemExit, match="gcloud not found"):
        tpu.main(["delete", "t", "--zone=z"])


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["create", "t", "--accelerator-type=v4-8"], "--zone"),
        (["create", "t", "--zone=z"], "--accelerator-type"),
        (["create", "--zone=z", "--accelerator-type=v4-8"], "name"),
        (["setup", "t", "--zone=z"], "--local --git"),
        (["setup", "t", "--zone=z", "--local", "--git=u"], "not allowed with"),
        (["setup", "t", "--zone=z", "--local", "--ref=v1"], "--ref goes with --git"),
        (["create", "t", "--zone=z", "--accelerator-type=v4-8", "--no-wait"], "goes with --queued"),
        (["wait", "t"], "--zone"),
        (["launch", "t", "--zone=z", "--job=star"], "--workdir"),
        (["launch", "t", "--zone=z", "--workdir=w"], "--job"),
        (["launch", "t", "--zone=z", "--job=../x", "--workdir=w"], "module name"),
        (["launch", "t", "--zone=z", "--job=star", "--workdir=w", "--env=NOEQUALS"], "KEY=VALUE"),
        (["launch", "t", "--zone=z", "--job=star", "--workdir=w", "--run=a/b"], "run name"),
        (["launch", "t", "--zone=z", "--job=star", "--workdir=/"], "run name"),
        (["logs", "t", "--zone=z"], "--run"),
        (["stop", "t", "--zone=z", "--run=x;rm"], "run name"),
        (["reboot", "t", "--zone=z"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_with_usage(argv, complaint, capsys):
    with pytest.raises(SystemExit) as exc:
        tpu.main([*argv, "--dry-run"])
    assert exc.value.code == 2
    assert complaint in capsys.readouterr().err
