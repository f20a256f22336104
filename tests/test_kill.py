"""A real SIGKILL, twice per run: once while a checkpoint is being written (orbax's temporary
directory is on disk) and once during collection (STaR's sampling, self-improvement's
labeling). Re-running the same command after each kill ends exactly where an uninterrupted run
ends: same metrics, same final parameters. The uninterrupted run goes alongside."""

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import REPO, job_command, kill_when, run_job

from jaxrl_reason.training.checkpoints import Checkpointer
from jaxrl_reason.training.metrics import read_metrics

MODEL = ("ModelConfig.d_model = 32", "ModelConfig.n_layers = 1", "ModelConfig.n_heads = 2",
         "ModelConfig.n_kv_heads = 1", "ModelConfig.head_dim = 16", "ModelConfig.d_ff = 64",
         "make_optimizer.schedule = 'constant'", "make_optimizer.warmup_steps = 1")
STAR = ("star.num_seed_examples = 32", "star.base_steps = 20", "star.iterations = 1",
        "star.num_problems = 64", "star.first_steps = 10", "star.steps_add = 0",
        "star.batch_size = 16", "star.max_len = 64", "star.max_new_tokens = 32",
        "star.eval_per_difficulty = 8", "star.difficulties = (1, 2)", "star.ckpt_every = 5",
        "task/AdditionTask.max_digits = 2", "seed/AdditionTask.max_digits = 1",
        "ModelConfig.max_len = 96", *MODEL)
SELF_IMPROVE = ("self_improve.rounds = 1", "self_improve.steps_round0 = 20",
                "self_improve.steps_per_round = 10", "self_improve.num_gold = 256",
                "self_improve.label_inputs = 64", "self_improve.labels_per_round = 0",
                "self_improve.max_label_passes = 1", "self_improve.num_models = 2",
                "self_improve.vote_threshold = 2", "self_improve.batch_size = 16",
                "self_improve.max_len = 32", "self_improve.max_new_tokens = 12",
                "self_improve.eval_per_length = 8", "self_improve.ckpt_every = 5",
                "AdditionTask.max_digits = 2", "ModelConfig.max_len = 64", *MODEL)


def saving(ckpts: Path) -> Callable[[], bool]:
    """True while orbax writes a checkpoint: its temporary directory exists."""
    return lambda: ckpts.is_dir() and any("tmp" in d for d in os.listdir(ckpts))



def records(workdir: Path, name: str = "metrics.jsonl") -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("time", "seconds")}
            for r in read_metrics(str(workdir), name)]


def final_arrays(directory: Path) -> list[np.ndarray]:
    ckpt = Checkpointer(directory)
    out = ckpt._mgr.restore(ckpt.latest_step())  # untyped: raw arrays, for comparison only
    ckpt.close()
    return [np.asarray(x) for x in jax.tree.leaves(out["state"]["params"])]


@pytest.mark.parametrize("job, params, collecting, ckpt_dirs", [
    ("jaxrl_reason.star", STAR,
     lambda w: bool(records(w)) and not (w / "iteration_001/kept.jsonl").exists(),
     ["checkpoints"]),
    ("jaxrl_reason.self_improve", SELF_IMPROVE,
     lambda w: bool(records(w)) and not (w / "labels/round_001.json").exists(),
     ["checkpoints/model_0", "checkpoints/model_1"]),
], ids=["star", "self_improve"])
def test_sigkill_during_a_save_and_during_collection_resumes_to_the_same_run(
        tmp_path, job, params, collecting, ckpt_dirs):
    gin_file = None  # each job's embedded default config, shrunk by the bindings above
    whole = subprocess.Popen(job_command(job, tmp_path / "whole", *params, gin_file=gin_file),
                             cwd=REPO, stdin=subprocess.DEVNULL, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    workdir = tmp_path / "killed"
    cmd = job_command(job, workdir, *params, gin_file=gin_file)
    kill_when(cmd, saving(workdir / ckpt_dirs[0]), "killed mid-save")
    kill_when(cmd, lambda: collecting(workdir), "killed while collecting")
    resumed = run_job(cmd, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err[-3000:]
    assert records(workdir) == records(tmp_path / "whole") and len(records(workdir)) >= 2
    assert records(workdir, "train_metrics.jsonl") == records(tmp_path / "whole",
                                                               "train_metrics.jsonl")
    for d in ckpt_dirs:
        for a, b in zip(final_arrays(workdir / d), final_arrays(tmp_path / "whole" / d),
                        strict=True):
            np.testing.assert_array_equal(a, b)
