"""Shared wiring for every `python -m jaxrl_reason.<job>`: flags, gin, workdir, distributed start.

Errors a user can cause (a bad gin binding, a config value of the wrong type or range, a missing
file) end the job with exit code 2 and one `error:` line naming what to fix, never a traceback.
Only process 0 writes the workdir's config.gin.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence

import gin
from absl import app, flags, logging

from jaxrl_reason import distributed, files
from jaxrl_reason.errors import UserError

FLAGS = flags.FLAGS
CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
flags.DEFINE_multi_string("gin_file", [], "Gin config files (later ones override earlier ones).")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings, e.g. --gin_param='train.steps = 100'.")
flags.DEFINE_string(
    "workdir", None, "Run directory: config, metrics, checkpoints. Re-use it to resume. "
    "A gs:// path works with gcsfs installed."
)
flags.DEFINE_integer("step", None, "Read-only jobs (evaluate, sample, export): the checkpoint "
                     "step to read (default: the latest).")
flags.DEFINE_string("coordinator_address", None,
                    "Multi-process runs: host:port of process 0's coordinator (else detected: "
                    "TPU VM slices, SLURM, Open MPI).")
flags.DEFINE_integer("num_processes", None, "Multi-process runs: how many processes.")
flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's index.")


# With fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=N) on a small machine,
# XLA:CPU's thread pool is sized by the core count and the devices' collectives can deadlock;
# XLA reads NPROC when the CPU client starts (lazily, after this import).
if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
    os.environ.setdefault("NPROC", "16")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


# Bindings that runs of earlier versions wrote into their config.gin and that no longer exist
# (the trainer's loss is a function its job hands it; the verifier job's second models are
# explicit arguments): dropped when a run's config is read back, so every run stays readable.
RETIRED = re.compile(r"^(\w+/)?(Trainer\.loss|verifier_loss\.lm_weight|"
                     r"train_verifier\.large_policy)\s*=.*\n?", re.M)


def parse_gin(files_: Sequence[str], params: Sequence[str], run_config: str | None = None
              ) -> None:
    """Parses a run's own config.gin (`run_config`, its retired bindings dropped), then gin
    files and bindings, turning gin's errors into one line that names the culprit."""
    for f in files_:
        if not os.path.exists(f):
            raise UserError(f"--gin_file={f}: no such file (paths are relative to {os.getcwd()})")
    try:
        if run_config is not None:
            gin.parse_config(RETIRED.sub("", files.path(run_config).read_text()))
        gin.parse_config_files_and_bindings(files_, params, finalize_config=False)
    except (ValueError, SyntaxError, TypeError) as e:
        raise UserError(
            f"bad gin config ({_first_line(e)}); check {run_config or ''} --gin_file "
            f"{list(files_)} and --gin_param {list(params)}"
        ) from None


def write_operative_config(workdir: str, text: str | None = None) -> None:
    """Saves workdir/config.gin atomically: `text`, or the bindings actually used so far (gin's
    operative config, which also records the defaults a job read)."""
    files.write_atomic(files.path(workdir) / "config.gin",
                       gin.operative_config_str() if text is None else text)


def run(
    job: Callable[[str], object],
    require_workdir: bool = True,
    default_gin_file: str | None = None,
    use_workdir_config: bool = False,
) -> None:
    """absl entry point: parse gin, prepare the workdir, run `job(workdir)`, report user errors.

    `default_gin_file` is the job's embedded default (a file of configs/), used when no
    --gin_file is given. With `use_workdir_config` (read-only jobs: sample, evaluate, search)
    the run's own workdir/config.gin comes first, so the model is rebuilt exactly as trained;
    --gin_file/--gin_param override."""

    def main(argv):
        if not FLAGS["verbosity"].present:  # orbax logs every save at INFO: keep the bar readable
            logging.set_verbosity(logging.WARNING)
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        try:
            if require_workdir and not FLAGS.workdir:
                raise UserError("--workdir is required (it holds checkpoints; re-use it to resume)")
            default = [os.path.join(CONFIGS_DIR, default_gin_file)] if default_gin_file else []
            gin_files, run_config = FLAGS.gin_file or default, None
            if use_workdir_config:
                run_config = os.path.join(FLAGS.workdir, "config.gin")
                if not files.path(run_config).exists():
                    raise UserError(
                        f"no checkpoint to read: {run_config} not found (not a training run)"
                    )
                gin_files = list(FLAGS.gin_file)
            parse_gin(gin_files, FLAGS.gin_param, run_config)
            distributed.maybe_initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                                         FLAGS.process_id)
            writes_config = bool(FLAGS.workdir) and not use_workdir_config
            if writes_config:  # every parsed binding now, so a killed run can still be sampled
                write_operative_config(FLAGS.workdir, gin.config_str())
            try:
                job(FLAGS.workdir)
            except RuntimeError as e:  # gin's "Required bindings for `f` not provided ..."
                if not str(e).startswith("Required bindings"):
                    raise
                raise UserError(f"{_first_line(e)}: pass a --gin_file that binds them") from None
            if writes_config:
                write_operative_config(FLAGS.workdir)
        except (UserError, FileNotFoundError) as e:
            logging.error("%s", e)
            print(f"error: {_first_line(e)}", file=sys.stderr)
            sys.exit(2)

    app.run(main)
