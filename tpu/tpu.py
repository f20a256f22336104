#!/usr/bin/env python3
"""Cloud TPU VMs for jaxrl_reason: create, setup, copy, launch, logs, stop, delete.

Every subcommand builds gcloud argv lists with small pure functions (so `--dry-run` and the tests
see exactly what would run), then runs them one after another. Commands that touch the VMs use
`--worker=all`: every host of a pod slice runs the same thing at the same time. `launch` first
checks every worker and starts nothing unless all are free, and it sets JAXRL_REASON_DISTRIBUTED=1
so that each job starts jax.distributed from the slice's metadata (jaxrl_reason/distributed.py).
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
import time
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
# libtpu's lock: a process killed before it could clean up leaves it, and the next start on that
# VM then fails with "TPU already in use". The TPU itself is busy while a process holds one of its
# device files open (/dev/accel* on v2-v4, /dev/vfio/N on v5e and later).
LIBTPU_LOCKFILE = "/tmp/libtpu_lockfile"
TPU_DEVICES = ("/dev/accel*", "/dev/vfio/[0-9]*")
# Printed by a worker that refuses a launch: gcloud's exit status for --worker=all does not say
# reliably that one worker failed, so the check also reads the output.
REFUSED = "jaxrl-launch-refused"
# Queued-resource states (https://cloud.google.com/tpu/docs/reference/rest/v2/projects.locations.queuedResources).
QUEUED_READY = "ACTIVE"
QUEUED_DEAD = ("FAILED", "SUSPENDING", "SUSPENDED", "DELETING")
# The job's jaxrl_reason.distributed.maybe_initialize starts jax.distributed with this set (and
# fails loudly if it cannot find the slice), whether the slice has one host or many.
DISTRIBUTED_ENV = "JAXRL_REASON_DISTRIBUTED=1"
_JOB = re.compile(r"[a-z_][a-z0-9_]*")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.DOTALL)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Tpu:
    """Which TPU VM (or queued-resource node) the commands address."""

    name: str
    zone: str
    project: str | None = None
    internal_ip: bool = False  # ssh/scp to the workers' internal addresses (same VPC, VPN)

    def flags(self) -> list[str]:
        return [f"--zone={self.zone}"] + ([f"--project={self.project}"] if self.project else [])

    def reach_flags(self) -> list[str]:
        return ["--internal-ip"] if self.internal_ip else []


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
    tpu: Tpu,
    accelerator_type: str,
    version: str,
    spot: bool = False,
    queued: bool = False,
    internal_ips: bool = False,
) -> list[str]:
    """Queued resources wait for capacity instead of failing; the node gets the same name.
    `internal_ips`: the workers get no external address (for projects that forbid them)."""
    accel = f"--accelerator-type={accelerator_type}"
    extra = (["--spot"] if spot else []) + (["--internal-ips"] if internal_ips else [])
    if queued:
        node, runtime = f"--node-id={tpu.name}", f"--runtime-version={version}"
        return _gcloud("queued-resources", "create", tpu, node, accel, runtime, *extra)
    return _gcloud("tpu-vm", "create", tpu, accel, f"--version={version}", *extra)


def queued_state_cmd(tpu: Tpu) -> list[str]:
    """Prints the queued resource's state alone, e.g. WAITING_FOR_RESOURCES or ACTIVE."""
    return _gcloud("queued-resources", "describe", tpu, "--format=value(state.state)")


@dataclass(frozen=True)
class WaitUntilActive:
    """Polls a queued resource until it is ACTIVE (its node is up): `create --queued` returns
    while the request still waits for capacity. FAILED, SUSPENDED and the like end the wait."""

    tpu: Tpu
    poll_s: float = 30.0

    @property
    def argv(self) -> list[str]:
        return queued_state_cmd(self.tpu)

    @property
    def note(self) -> str:
        return f"repeated every {self.poll_s:g} s until the state is {QUEUED_READY}"

    def run(self) -> int:
        start, last = time.monotonic(), None
        while True:
            result = subprocess.run(self.argv, capture_output=True, text=True)
            if result.returncode:
                sys.stderr.write(result.stderr)
                return result.returncode
            state = result.stdout.strip() or "UNKNOWN"
            waited = f"{(time.monotonic() - start) / 60:.0f} min"
            if state != last:
                print(f"queued resource {self.tpu.name}: {state} ({waited})", file=sys.stderr)
                last = state
            if state == QUEUED_READY:
                return 0
            if state in QUEUED_DEAD:
                print(
                    f"error: queued resource {self.tpu.name} is {state}, it will not become "
                    f"{QUEUED_READY}; see `gcloud compute tpus queued-resources describe "
                    f"{self.tpu.name} --zone={self.tpu.zone}`, then delete it with "
                    "`tpu/tpu.py delete --queued` and create again",
                    file=sys.stderr,
                )
                return 1
            time.sleep(self.poll_s)


def delete_cmd(tpu: Tpu, queued: bool = False) -> list[str]:
    if queued:  # --force deletes the node first, then the queued resource.
        return _gcloud("queued-resources", "delete", tpu, "--force", "--quiet")
    return _gcloud("tpu-vm", "delete", tpu, "--quiet")


def ssh_cmd(tpu: Tpu, command: str, worker: str = "all") -> list[str]:
    """`command` is one string that the remote login shell interprets."""
    where = [f"--worker={worker}", *tpu.reach_flags()]
    return _gcloud("tpu-vm", "ssh", tpu, *where, f"--command={command}")


def scp_cmd(tpu: Tpu, src: str, dest: str, worker: str = "all") -> list[str]:
    """Copy a local file or folder to `dest` (relative to $HOME) on the workers."""
    where = [*tpu.flags(), f"--worker={worker}", *tpu.reach_flags(), "--recurse"]
    return [*GCLOUD_TPUS, "tpu-vm", "scp", src, f"{tpu.name}:{dest}", *where]


@dataclass(frozen=True)
class CheckAll:
    """An ssh --worker=all command that fails as a whole when any worker prints REFUSED (or
    gcloud exits non-zero), so that the next step starts on every worker or on none."""

    argv: list[str]
    note: str = f"stop here if any worker printed {REFUSED}"

    def run(self) -> int:
        result = subprocess.run(self.argv, capture_output=True, text=True)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        refusals = [
            line for line in (result.stdout + result.stderr).splitlines() if REFUSED in line
        ]
        if refusals or result.returncode:
            print(
                f"error: not started on any worker ({len(refusals)} refused, gcloud exit "
                f"status {result.returncode})",
                file=sys.stderr,
            )
            return result.returncode or 1
        return 0


def home(path: str) -> str:
    """A shell word for a path under $HOME on a worker: quoted, yet $HOME still expands."""
    return '"$HOME"/' + shlex.quote(path)


def git_checkout_script(url: str, ref: str) -> str:
    """Check out `ref` (branch, tag or commit) detached from `url`, discarding local edits.

    The repository is made in place (`git init`, not `git clone`), so a folder that an earlier
    `setup --local` unpacked becomes a checkout: tracked files are overwritten, the tar's other
    files stay as untracked ones. The remote is re-pointed, so a new URL takes effect."""
    repo, url = home(REMOTE_REPO), shlex.quote(url)
    return (
        f"mkdir -p {repo} && "
        f"(test -d {repo}/.git || git -C {repo} init -q) && "
        f"(git -C {repo} remote set-url origin {url} 2>/dev/null || "
        f"git -C {repo} remote add origin {url}) && "
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


# Shell: whether pid $1 runs. A zombie does not: it has exited and released the TPU, and only
# waits for its parent to reap it.
_ALIVE = (
    'alive() { kill -0 "$1" 2>/dev/null && '
    '[ "$(sed -n "s/^State:[[:space:]]*//p" /proc/"$1"/status 2>/dev/null | cut -c1)" != Z ]; }'
)


def _tpu_holders(devices: Sequence[str]) -> str:
    """Shell: sets $holders to the pids that hold a TPU device file open (none: empty)."""
    names = " -o ".join(f"-lname {shlex.quote(d)}" for d in devices)
    return (
        f"holders=$(find /proc/[0-9]*/fd -maxdepth 1 \\( {names} \\) 2>/dev/null "
        "| cut -d/ -f3 | sort -u | tr '\\n' ' ')"
    )


def _remove_lockfile_if_free(lockfile: str) -> str:
    """Shell, after _tpu_holders: removes libtpu's lockfile when no process holds the TPU."""
    lock = shlex.quote(lockfile)
    return (
        f'if [ -e {lock} ] && [ -z "$holders" ]; then rm -f {lock} && '
        f'echo "removed the stale {lockfile} on $(hostname)"; fi'
    )


def preflight_script(devices: Sequence[str] = TPU_DEVICES, lockfile: str = LIBTPU_LOCKFILE) -> str:
    """Refuses (printing REFUSED, exit 1) while any launched run is alive or any process holds
    the TPU; otherwise clears a stale libtpu lockfile. Changes nothing else."""
    pids = home(f"{REMOTE_LOGS}/") + "*.pid"
    return (
        f"{_ALIVE}; "
        f'for f in {pids}; do [ -f "$f" ] || continue; p="$(cat "$f")"; '
        f'if alive "$p"; then echo "{REFUSED} on $(hostname): run '
        f'$(basename "$f" .pid) is running (pid $p); stop it first"; exit 1; fi; done; '
        f"{_tpu_holders(devices)}; "
        f'if [ -n "$holders" ]; then echo "{REFUSED} on $(hostname): the TPU is held by '
        f'pid(s) $holders"; exit 1; fi; '
        f"{_remove_lockfile_if_free(lockfile)}; true"
    )


def launch_script(run: str, args: Sequence[str], env: Sequence[str] = ()) -> str:
    """Start the job detached (nohup, stdin closed) so ssh returns; log and pid go to files.
    Run it after preflight_script has passed on every worker."""
    _check_run(run)
    for e in env:
        if not _ENV.fullmatch(e):
            raise ValueError(f"--env takes KEY=VALUE, got {e!r}")
    log, pid = home(f"{REMOTE_LOGS}/{run}.log"), home(f"{REMOTE_LOGS}/{run}.pid")
    env_words = shlex.join(["env", *env]) + " " if env else ""
    command = f"{env_words}{home(REMOTE_VENV + '/bin/python')} {shlex.join(args)}"
    return (
        f"mkdir -p {home(REMOTE_LOGS)} && cd {home(REMOTE_REPO)} || exit 1; "
        f"nohup {command} >> {log} 2>&1 < /dev/null & echo $! > {pid}"
    )


def logs_script(run: str, lines: int = 100, follow: bool = True) -> str:
    log = home(f"{REMOTE_LOGS}/{_check_run(run)}.log")
    return f"tail -n {int(lines)} {'-F ' if follow else ''}{log}"


def stop_script(
    run: str,
    grace_s: int = 30,
    devices: Sequence[str] = TPU_DEVICES,
    lockfile: str = LIBTPU_LOCKFILE,
) -> str:
    """SIGTERM, wait up to grace_s for the TPU to be released, then SIGKILL; once the process
    is gone, remove libtpu's lockfile (unless another process holds the TPU)."""
    pid = home(f"{REMOTE_LOGS}/{_check_run(run)}.pid")
    wait = 'alive "$p" || break; sleep 1'
    return (
        f"{_ALIVE}; "
        f'if [ -f {pid} ]; then p="$(cat {pid})"; kill "$p" 2>/dev/null; '
        f"for _ in $(seq {int(grace_s)}); do {wait}; done; "
        f'if alive "$p"; then kill -9 "$p"; for _ in $(seq 10); do {wait}; done; fi; '
        f'if alive "$p"; then echo "pid $p on $(hostname) survived SIGKILL" >&2; exit 1; fi; '
        f"rm -f {pid}; fi; {_tpu_holders(devices)}; {_remove_lockfile_if_free(lockfile)}; true"
    )


Step = Sequence[str] | WaitUntilActive | CheckAll  # a plain argv list runs as it is


def _argv(step: Step) -> Sequence[str]:
    return step if isinstance(step, Sequence) else step.argv


def execute(steps: Sequence[Step], dry_run: bool) -> int:
    """Print the commands (dry run) or run them in order, stopping at the first failure."""
    if dry_run:
        for step in steps:
            print(shlex.join(_argv(step)))
            if not isinstance(step, Sequence):
                print(f"# {step.note}")
        return 0
    if shutil.which(_argv(steps[0])[0]) is None:
        raise SystemExit(
            f"{_argv(steps[0])[0]} not found on PATH: install the Google Cloud CLI "
            "(https://cloud.google.com/sdk/docs/install) or use --dry-run"
        )
    for step in steps:
        print("+", shlex.join(_argv(step)), file=sys.stderr, flush=True)
        rc = subprocess.run(list(step)).returncode if isinstance(step, Sequence) else step.run()
        if rc:
            return rc
    return 0


def _wait_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--poll-s", type=float, default=30.0, help="seconds between state checks")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("name", help="TPU VM name (also the queued resource's name)")
    common.add_argument("--zone", required=True, help="e.g. us-central2-b (v4), us-west4-a (v5e)")
    common.add_argument("--project", help="GCP project; defaults to gcloud's core/project")
    common.add_argument("--dry-run", action="store_true", help="print gcloud commands, run nothing")
    # Commands that ssh/scp to the workers.
    vm = argparse.ArgumentParser(add_help=False, parents=[common])
    vm.add_argument(
        "--internal-ip",
        action="store_true",
        help="reach the workers by internal IP (from the same VPC, or over VPN/interconnect)",
    )

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("create", parents=[common], help="create a TPU VM or pod slice")
    p.add_argument("--accelerator-type", required=True, help="e.g. v4-8, v5litepod-8, v4-32")
    p.add_argument("--version", help="runtime image; default from the accelerator family")
    p.add_argument("--spot", action="store_true", help="Spot capacity: cheaper, preemptible")
    p.add_argument("--queued", action="store_true", help="queue for capacity (queued resource)")
    p.add_argument(
        "--internal-ips", action="store_true", help="no external IPs (then use --internal-ip)"
    )
    _wait_flags(p)
    p.add_argument("--no-wait", action="store_true", help="with --queued: return once queued")

    p = sub.add_parser("wait", parents=[common], help="wait until a queued resource is ACTIVE")
    _wait_flags(p)

    p = sub.add_parser("setup", parents=[vm], help="ship the code and install it everywhere")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--local", action="store_true", help="tar and scp this working tree")
    src.add_argument("--git", metavar="URL", help="git clone URL on every worker")
    p.add_argument("--ref", help="with --git: branch, tag or commit (default: main)")

    p = sub.add_parser("copy", parents=[vm], help="scp a file or folder to every worker")
    p.add_argument("src", help="local path")
    p.add_argument("dest", help="path on the workers, relative to $HOME")

    p = sub.add_parser("launch", parents=[vm], help="start a job on every worker at once")
    p.add_argument("--job", required=True, help="module under jaxrl_reason: sft, star, ...")
    p.add_argument("--gin_file", action="append", default=[], help="repo-relative; repeatable")
    p.add_argument("--gin_param", action="append", default=[], help="gin binding; repeatable")
    p.add_argument("--workdir", required=True, help="shared by all workers: use gs://bucket/...")
    p.add_argument("--run", help="name for the log/pid files; default: workdir's last component")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the job; repeatable")

    p = sub.add_parser("logs", parents=[vm], help="tail a run's log on one worker")
    p.add_argument("--run", required=True, help="run name printed by launch")
    p.add_argument("--worker", default="0", help="worker index, or 'all'")
    p.add_argument("--lines", type=int, default=100)
    p.add_argument("--no-follow", action="store_true", help="print and return instead of -F")

    p = sub.add_parser("stop", parents=[vm], help="stop a run on every worker")
    p.add_argument("--run", required=True, help="run name printed by launch")

    p = sub.add_parser("delete", parents=[common], help="delete the TPU VM")
    p.add_argument("--queued", action="store_true", help="it was created with create --queued")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    tpu = Tpu(args.name, args.zone, args.project, getattr(args, "internal_ip", False))
    try:
        if args.command == "create":
            if args.no_wait and not args.queued:
                raise ValueError("--no-wait goes with --queued (a plain create waits for the VM)")
            version = args.version or default_runtime(args.accelerator_type)
            cmds = [
                create_cmd(
                    tpu, args.accelerator_type, version, args.spot, args.queued, args.internal_ips
                )
            ]
            if args.queued and not args.no_wait:
                cmds.append(WaitUntilActive(tpu, args.poll_s))
        elif args.command == "wait":
            cmds = [WaitUntilActive(tpu, args.poll_s)]
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
            env = [DISTRIBUTED_ENV, *args.env]  # a later --env=JAXRL_REASON_DISTRIBUTED=0 wins
            cmds = [
                CheckAll(ssh_cmd(tpu, preflight_script())),
                ssh_cmd(tpu, launch_script(run, job, env)),
            ]
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
