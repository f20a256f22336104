#!/usr/bin/env python3
"""Cloud TPU VMs for jaxrl_reason: create, setup, copy, launch, logs, stop, delete.

Every subcommand builds gcloud argv lists with small pure functions (so `--dry-run` and the tests
see exactly what would run), then runs them one after another. Commands that touch the VMs use
`--worker=all`: every host of a pod slice runs the same thing at the same time, and each job calls
`jax.distributed.initialize()` itself, which reads the slice topology from the TPU environment.
See tpu/README.md for the end-to-end walk-through.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
GCLOUD_TPUS = ("gcloud", "compute", "tpus")
# Paths on the workers, relative to $HOME (where ssh commands start).
REMOTE_REPO = "jaxrl_reason"
REMOTE_VENV = "jaxrl_venv"
REMOTE_LOGS = "jaxrl_logs"
REMOTE_TARBALL = "jaxrl_src.tar.gz"
# jax>=0.7 needs Python>=3.11; the TPU images ship Ubuntu 22.04's 3.10, so uv fetches a newer one.
PYTHON_VERSION = "3.12"
# JAX runtime images per accelerator family (https://cloud.google.com/tpu/docs/runtimes).
RUNTIMES = {
    "v6e": "v2-alpha-tpuv6e",
    "v5p": "v2-alpha-tpuv5",
    "v5litepod": "v2-alpha-tpuv5-lite",
    "v4": "tpu-ubuntu2204-base",
    "v3": "tpu-ubuntu2204-base",
    "v2": "tpu-ubuntu2204-base",
}
_JOB = re.compile(r"[a-z_][a-z0-9_]*")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.DOTALL)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Tpu:
    """Which TPU VM (or queued-resource node) the commands address."""

    name: str
    zone: str
    project: str | None = None

    def flags(self) -> list[str]:
        return [f"--zone={self.zone}"] + ([f"--project={self.project}"] if self.project else [])


def default_runtime(accelerator_type: str) -> str:
    """The JAX runtime image for e.g. 'v4-8' or 'v5litepod-8'; pass --version for anything else."""
    family = accelerator_type.rsplit("-", 1)[0]
    if family not in RUNTIMES:
        raise ValueError(
            f"no default runtime for accelerator type {accelerator_type!r}; pass --version "
            f"(known families: {', '.join(RUNTIMES)})"
        )
    return RUNTIMES[family]


def _gcloud(group: str, verb: str, tpu: Tpu, *args: str) -> list[str]:
    return [*GCLOUD_TPUS, group, verb, tpu.name, *tpu.flags(), *args]


def create_cmd(
    tpu: Tpu, accelerator_type: str, version: str, spot: bool = False, queued: bool = False
) -> list[str]:
    """Queued resources wait for capacity instead of failing; the node gets the same name."""
    accel, spot_flag = f"--accelerator-type={accelerator_type}", ["--spot"] if spot else []
    if queued:
        node, runtime = f"--node-id={tpu.name}", f"--runtime-version={version}"
        return _gcloud("queued-resources", "create", tpu, node, accel, runtime, *spot_flag)
    return _gcloud("tpu-vm", "create", tpu, accel, f"--version={version}", *spot_flag)


def delete_cmd(tpu: Tpu, queued: bool = False) -> list[str]:
    if queued:  # --force deletes the node first, then the queued resource.
        return _gcloud("queued-resources", "delete", tpu, "--force", "--quiet")
    return _gcloud("tpu-vm", "delete", tpu, "--quiet")


def ssh_cmd(tpu: Tpu, command: str, worker: str = "all") -> list[str]:
    """`command` is one string that the remote login shell interprets."""
    return _gcloud("tpu-vm", "ssh", tpu, f"--worker={worker}", f"--command={command}")


def scp_cmd(tpu: Tpu, src: str, dest: str, worker: str = "all") -> list[str]:
    """Copy a local file or folder to `dest` (relative to $HOME) on the workers."""
    where = [*tpu.flags(), f"--worker={worker}", "--recurse"]
    return [*GCLOUD_TPUS, "tpu-vm", "scp", src, f"{tpu.name}:{dest}", *where]


def home(path: str) -> str:
    """A shell word for a path under $HOME on a worker: quoted, yet $HOME still expands."""
    return '"$HOME"/' + shlex.quote(path)


def git_checkout_script(url: str, ref: str) -> str:
    """Clone once, then check out `ref` (branch, tag or commit) detached, discarding local edits."""
    repo = home(REMOTE_REPO)
    return (
        f"if [ ! -d {repo}/.git ]; then git clone {shlex.quote(url)} {repo}; fi && "
        f"git -C {repo} fetch origin {shlex.quote(ref)} && "
        f"git -C {repo} checkout --force FETCH_HEAD"
    )


def unpack_script() -> str:
    repo, tarball = home(REMOTE_REPO), home(REMOTE_TARBALL)
    return f"mkdir -p {repo} && tar -xzf {tarball} -C {repo} && rm -f {tarball}"


def install_script() -> str:
    """uv builds a Python>=3.11 venv (idempotent) and installs the package with its TPU extra."""
    repo, venv = home(REMOTE_REPO), home(REMOTE_VENV)
    return (
        "python3 -m pip install --user --upgrade uv && "
        f"(test -x {venv}/bin/python || python3 -m uv venv --python {PYTHON_VERSION} {venv}) && "
        f"cd {repo} && python3 -m uv pip install --python {venv}/bin/python -e '.[tpu]'"
    )


def setup_cmds(tpu: Tpu, git_url: str | None, ref: str, tarball: str | None) -> list[list[str]]:
    """Ship the code (a git ref, or a tarball of the local working tree), then install it."""
    if (git_url is None) == (tarball is None):
        raise ValueError("pass exactly one of a git url or a local tarball")
    if git_url is not None:
        return [ssh_cmd(tpu, f"{git_checkout_script(git_url, ref)} && {install_script()}")]
    return [
        scp_cmd(tpu, tarball, REMOTE_TARBALL),
        ssh_cmd(tpu, f"{unpack_script()} && {install_script()}"),
    ]


def pack_source(root: Path, out: Path) -> list[str]:
    """Tar tracked and untracked-but-not-ignored files, so .venv/ and runs/ stay behind."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    files = sorted({f for f in listed if f and (root / f).is_file()})  # skips deleted files
    with tarfile.open(out, "w:gz") as tar:
        for f in files:
            tar.add(root / f, arcname=f)
    return files


def job_argv(
    job: str, gin_files: Sequence[str], gin_params: Sequence[str], workdir: str
) -> list[str]:
    """Arguments after `python`: the same on every worker."""
    if not _JOB.fullmatch(job):
        raise ValueError(f"job must be a module name under jaxrl_reason, got {job!r}")
    return [
        "-m",
        f"jaxrl_reason.{job}",
        *(f"--gin_file={f}" for f in gin_files),
        *(f"--gin_param={p}" for p in gin_params),
        f"--workdir={workdir}",
    ]


def run_name(workdir: str) -> str:
    """Default run name: the workdir's last path component, made filesystem-safe."""
    name = _UNSAFE.sub("_", workdir.rstrip("/").rsplit("/", 1)[-1]).strip("_")
    if not name:
        raise ValueError(f"cannot derive a run name from workdir {workdir!r}; pass --run")
    return name


def _check_run(run: str) -> str:
    if not run or _UNSAFE.search(run):
        raise ValueError(f"run name {run!r} may only hold letters, digits, '.', '_' and '-'")
    return run


def launch_script(run: str, args: Sequence[str], env: Sequence[str] = ()) -> str:
    """Start the job detached (nohup, stdin closed) so ssh returns; log and pid go to files."""
    _check_run(run)
    for e in env:
        if not _ENV.fullmatch(e):
            raise ValueError(f"--env takes KEY=VALUE, got {e!r}")
    log, pid = home(f"{REMOTE_LOGS}/{run}.log"), home(f"{REMOTE_LOGS}/{run}.pid")
    env_words = shlex.join(["env", *env]) + " " if env else ""
    command = f"{env_words}{home(REMOTE_VENV + '/bin/python')} {shlex.join(args)}"
    return (
        f'if [ -f {pid} ] && kill -0 "$(cat {pid})" 2>/dev/null; then '
        f"echo 'run {run} is already running here; stop it first' >&2; exit 1; fi; "
        f"mkdir -p {home(REMOTE_LOGS)} && cd {home(REMOTE_REPO)} || exit 1; "
        f"nohup {command} >> {log} 2>&1 < /dev/null & echo $! > {pid}"
    )


def logs_script(run: str, lines: int = 100, follow: bool = True) -> str:
    log = home(f"{REMOTE_LOGS}/{_check_run(run)}.log")
    return f"tail -n {int(lines)} {'-F ' if follow else ''}{log}"


def stop_script(run: str, grace_s: int = 30) -> str:
    """SIGTERM, wait up to grace_s for the TPU to be released, then SIGKILL."""
    pid = home(f"{REMOTE_LOGS}/{_check_run(run)}.pid")
    return (
        f'if [ -f {pid} ]; then p="$(cat {pid})"; kill "$p" 2>/dev/null; '
        f'for _ in $(seq {int(grace_s)}); do kill -0 "$p" 2>/dev/null || break; sleep 1; done; '
        f'kill -0 "$p" 2>/dev/null && kill -9 "$p"; rm -f {pid}; fi; true'
    )


def execute(cmds: Sequence[Sequence[str]], dry_run: bool) -> int:
    """Print the commands (dry run) or run them in order, stopping at the first failure."""
    if dry_run:
        for cmd in cmds:
            print(shlex.join(cmd))
        return 0
    if shutil.which(cmds[0][0]) is None:
        raise SystemExit(
            f"{cmds[0][0]} not found on PATH: install the Google Cloud CLI "
            "(https://cloud.google.com/sdk/docs/install) or use --dry-run"
        )
    for cmd in cmds:
        print("+", shlex.join(cmd), file=sys.stderr, flush=True)
        rc = subprocess.run(list(cmd)).returncode
        if rc:
            return rc
    return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("name", help="TPU VM name (also the queued resource's name)")
    common.add_argument("--zone", required=True, help="e.g. us-central2-b (v4), us-west4-a (v5e)")
    common.add_argument("--project", help="GCP project; defaults to gcloud's core/project")
    common.add_argument("--dry-run", action="store_true", help="print gcloud commands, run nothing")

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("create", parents=[common], help="create a TPU VM or pod slice")
    p.add_argument("--accelerator-type", required=True, help="e.g. v4-8, v5litepod-8, v4-32")
    p.add_argument("--version", help="runtime image; default from the accelerator family")
    p.add_argument("--spot", action="store_true", help="Spot capacity: cheaper, preemptible")
    p.add_argument("--queued", action="store_true", help="queue for capacity (queued resource)")

    p = sub.add_parser("setup", parents=[common], help="ship the code and install it everywhere")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--local", action="store_true", help="tar and scp this working tree")
    src.add_argument("--git", metavar="URL", help="git clone URL on every worker")
    p.add_argument("--ref", help="with --git: branch, tag or commit (default: main)")

    p = sub.add_parser("copy", parents=[common], help="scp a file or folder to every worker")
    p.add_argument("src", help="local path")
    p.add_argument("dest", help="path on the workers, relative to $HOME")

    p = sub.add_parser("launch", parents=[common], help="start a job on every worker at once")
    p.add_argument("--job", required=True, help="module under jaxrl_reason: sft, star, ...")
    p.add_argument("--gin_file", action="append", default=[], help="repo-relative; repeatable")
    p.add_argument("--gin_param", action="append", default=[], help="gin binding; repeatable")
    p.add_argument("--workdir", required=True, help="shared by all workers: use gs://bucket/...")
    p.add_argument("--run", help="name for the log/pid files; default: workdir's last component")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the job; repeatable")

    p = sub.add_parser("logs", parents=[common], help="tail a run's log on one worker")
    p.add_argument("--run", required=True, help="run name printed by launch")
    p.add_argument("--worker", default="0", help="worker index, or 'all'")
    p.add_argument("--lines", type=int, default=100)
    p.add_argument("--no-follow", action="store_true", help="print and return instead of -F")

    p = sub.add_parser("stop", parents=[common], help="stop a run on every worker")
    p.add_argument("--run", required=True, help="run name printed by launch")

    p = sub.add_parser("delete", parents=[common], help="delete the TPU VM")
    p.add_argument("--queued", action="store_true", help="it was created with create --queued")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    tpu = Tpu(args.name, args.zone, args.project)
    try:
        if args.command == "create":
            version = args.version or default_runtime(args.accelerator_type)
            cmds = [create_cmd(tpu, args.accelerator_type, version, args.spot, args.queued)]
        elif args.command == "setup":
            tarball = None
            if args.local and args.ref:
                raise ValueError("--ref goes with --git; --local ships the working tree as it is")
            if args.local:
                tarball = str(Path(tempfile.gettempdir()) / f"jaxrl_src_{tpu.name}.tar.gz")
                if args.dry_run:
                    print(f"# would pack the working tree of {REPO_ROOT} into {tarball}")
                else:
                    files = pack_source(REPO_ROOT, Path(tarball))
                    print(f"packed {len(files)} files into {tarball}", file=sys.stderr)
            cmds = setup_cmds(tpu, args.git, args.ref or "main", tarball)
        elif args.command == "copy":
            cmds = [scp_cmd(tpu, args.src, args.dest)]
        elif args.command == "launch":
            run = args.run or run_name(args.workdir)
            job = job_argv(args.job, args.gin_file, args.gin_param, args.workdir)
            cmds = [ssh_cmd(tpu, launch_script(run, job, args.env))]
            where = f"{tpu.name} --zone={tpu.zone}"
            print(
                f"run {run}: tpu/tpu.py logs {where} --run={run}  |  "
                f"tpu/tpu.py stop {where} --run={run}",
                file=sys.stderr,
            )
        elif args.command == "logs":
            script = logs_script(args.run, args.lines, follow=not args.no_follow)
            cmds = [ssh_cmd(tpu, script, worker=args.worker)]
        elif args.command == "stop":
            cmds = [ssh_cmd(tpu, stop_script(args.run))]
        else:
            cmds = [delete_cmd(tpu, args.queued)]
    except ValueError as e:
        parser.error(str(e))
    try:
        return execute(cmds, args.dry_run)
    except KeyboardInterrupt:  # ctrl-c out of `logs -F` is the normal way to stop watching
        return 130


if __name__ == "__main__":
    sys.exit(main())
