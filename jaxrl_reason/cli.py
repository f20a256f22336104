"""Shared wiring for every `python -m jaxrl_reason.<job>`: flags, gin, workdir, distributed start.

Errors a user can cause (a bad gin binding, a missing gin file) end the job with one line
naming what to fix instead of a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

import gin
from absl import app, flags, logging

from jaxrl_reason import parallel

FLAGS = flags.FLAGS
CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
flags.DEFINE_multi_string("gin_file", [], "Gin config files (later ones override earlier ones).")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings, e.g. --gin_param='train.steps = 100'.")
flags.DEFINE_string(
    "workdir", None, "Run directory: config, metrics, checkpoints. Re-use it to resume."
)


# With fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=N) on a small machine,
# XLA:CPU's thread pool is sized by the core count and the devices' collectives can deadlock;
# XLA reads NPROC when the CPU client starts (lazily, after this import).
if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
    os.environ.setdefault("NPROC", "16")


class UserError(Exception):
    """An error the user fixes by changing a flag, a binding or a path."""


def parse_gin(files: Sequence[str], params: Sequence[str]) -> None:
    """Parses gin files and bindings, turning gin's errors into one line that names the culprit."""
    for f in files:
        if not os.path.exists(f):
            raise UserError(f"--gin_file={f}: no such file (paths are relative to {os.getcwd()})")
    try:
        gin.parse_config_files_and_bindings(files, params, finalize_config=False)
    except (ValueError, SyntaxError, TypeError) as e:
        msg = str(e).strip().splitlines()[0]
        raise UserError(
            f"bad gin config ({msg}); check --gin_file {list(files)} and --gin_param {list(params)}"
        ) from None


def write_operative_config(workdir: str, text: str | None = None) -> None:
    """Saves workdir/config.gin atomically: `text`, or the bindings actually used so far (gin's
    operative config, which also records the defaults a job read)."""
    os.makedirs(workdir, exist_ok=True)
    tmp = os.path.join(workdir, "config.gin.tmp")
    with open(tmp, "w") as f:
        f.write(gin.operative_config_str() if text is None else text)
    os.replace(tmp, os.path.join(workdir, "config.gin"))


def run(
    job: Callable[[str], object],
    require_workdir: bool = True,
    default_gin_file: str | None = None,
    use_workdir_config: bool = False,
) -> None:
    """absl entry point: parse gin, prepare the workdir, run `job(workdir)`, report user errors.

    `default_gin_file` is the job's embedded default, used when no --gin_file is given. With
    `use_workdir_config` (read-only jobs: sample, evaluate) the run's own workdir/config.gin
    comes first, so the model is rebuilt exactly as trained; --gin_file/--gin_param override."""

    def main(argv):
        if not FLAGS["verbosity"].present:  # orbax logs every save at INFO: keep the bar readable
            logging.set_verbosity(logging.WARNING)
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        try:
            if require_workdir and not FLAGS.workdir:
                raise UserError("--workdir is required (it holds checkpoints; re-use it to resume)")
            files = FLAGS.gin_file or ([default_gin_file] if default_gin_file else [])
            if use_workdir_config:
                run_config = os.path.join(FLAGS.workdir, "config.gin")
                if not os.path.exists(run_config):
                    raise UserError(
                        f"no checkpoint to read: {run_config} not found (not a training run)"
                    )
                files = [run_config, *FLAGS.gin_file]
            parse_gin(files, FLAGS.gin_param)
            parallel.maybe_initialize_distributed()
            writes_config = bool(FLAGS.workdir) and not use_workdir_config
            if writes_config:  # every parsed binding now, so a killed run can still be sampled
                write_operative_config(FLAGS.workdir, gin.config_str())
            try:
                job(FLAGS.workdir)
            except RuntimeError as e:  # gin's "Required bindings for `f` not provided ..."
                if not str(e).startswith("Required bindings"):
                    raise
                msg = f"{str(e).splitlines()[0]}: pass a --gin_file that binds them"
                raise UserError(msg) from None
            if writes_config:
                write_operative_config(FLAGS.workdir)
        except (UserError, parallel.MeshError, FileNotFoundError) as e:
            logging.error("%s", e)
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    app.run(main)
