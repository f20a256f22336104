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


def test_dry_run_prints_and_executes_nothing(capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("dry run must not execute anything")

    monkeypatch.setattr(tpu.subprocess, "run", boom)
    monkeypatch.setattr(tpu.shutil, "which", lambda _: None)  # no gcloud needed either
    base = ["my-tpu", "--zone=us-central2-b"]
    assert _dry(capsys, "create", *base, "--accelerator-type=v4-8") == [
        shlex.join(tpu.create_cmd(T, "v4-8", "tpu-ubuntu2204-base"))
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
    (line,) = _dry(capsys, *argv, "--gin_file=configs/a.gin", *gin)
    words = shlex.split(line)
    assert (
        words[:8]
        == "gcloud compute tpus tpu-vm ssh my-tpu --zone=us-central2-b --worker=all".split()
    )
    expected = tpu.job_argv("star", ["configs/a.gin"], GIN_PARAMS, "gs://b/r1")
    assert expected[3:6] == [f"--gin_param={p}" for p in GIN_PARAMS]
    assert shlex.join(expected) in _remote_script(line)
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
        "rec = {'argv': sys.argv[1:], 'cwd': os.getcwd(), 'msg': os.environ.get('MSG')}\n"
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


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash to play the worker's shell")
def test_launch_logs_stop_on_a_fake_worker(capsys, tmp_path):
    home = _fake_home(tmp_path)
    gin = [f"--gin_param={p}" for p in GIN_PARAMS]
    flags = ["my-tpu", "--zone=z", "--run=r1"]
    env = ["--env=MSG=a b 'c'", "--env=XLA_FLAGS=--x=1"]
    (line,) = _dry(capsys, "launch", *flags, "--job=star", "--workdir=gs://b/w", *gin, *env)
    pid_file = home / tpu.REMOTE_LOGS / "r1.pid"
    pid = None
    try:
        assert _bash(_remote_script(line), home).returncode == 0  # returns while the job runs
        _wait_for(lambda: (home / "record.json").exists() and pid_file.exists())
        pid = int(pid_file.read_text())
        time.sleep(0.2)  # let the fake job finish writing its record
        rec = json.loads((home / "record.json").read_text())
        assert rec["argv"] == ["-m", "jaxrl_reason.star", *gin, "--workdir=gs://b/w"]
        assert rec["cwd"] == str(home / tpu.REMOTE_REPO)
        assert rec["msg"] == "a b 'c'"

        again = _bash(_remote_script(line), home)
        assert again.returncode == 1 and "already running" in again.stderr

        (logs,) = _dry(capsys, "logs", *flags, "--no-follow", "--worker=2")
        assert "--worker=2" in shlex.split(logs)
        _wait_for(lambda: "hello from the fake job" in _bash(_remote_script(logs), home).stdout)

        (stop,) = _dry(capsys, "stop", *flags)
        assert _bash(_remote_script(stop), home).returncode == 0
        assert not _alive(pid) and not pid_file.exists()
        assert _bash(_remote_script(stop), home).returncode == 0  # stopping twice is fine
    finally:
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)


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
