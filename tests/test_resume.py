"""A run that dies and is started again on the same workdir ends exactly where an
uninterrupted run ends: same metrics.jsonl, same final params, bit for bit."""

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest
from conftest import REPO, job_command, run_job

from jaxrl_reason import parallel
from jaxrl_reason.algorithms import evaluation
from jaxrl_reason.data.addition import AdditionTask
from jaxrl_reason.data.batching import ExampleStream, encode_example
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.sampling.sampler import Sampler, SamplingConfig
from jaxrl_reason.tokenizers import CharTokenizer
from jaxrl_reason.training.checkpoints import Checkpointer
from jaxrl_reason.training.loop import fit
from jaxrl_reason.training.metrics import MetricWriter, read_metrics
from jaxrl_reason.training.optim import make_optimizer
from jaxrl_reason.training.trainer import Trainer

TOK = CharTokenizer()
CFG = ModelConfig(vocab_size=TOK.vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                  head_dim=8, d_ff=64, max_len=32)


def records(workdir) -> list[dict]:
    """metrics.jsonl without the wall-clock time."""
    return [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(str(workdir))]


def latest_step(directory) -> int | None:
    ckpt = Checkpointer(str(directory))
    step = ckpt.latest_step()
    ckpt.close()
    return step


def assert_same_tree(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class Crash(Exception):
    pass


class CrashAfter:
    """A data stream that dies after `n` batches, like a job killed mid-run."""

    def __init__(self, stream: ExampleStream, n: int):
        self.stream, self.left = stream, n

    def __next__(self):
        if self.left == 0:
            raise Crash
        self.left -= 1
        return next(self.stream)

    def get_state(self) -> dict:
        return self.stream.get_state()


def test_fit_resumed_after_a_crash_matches_an_uninterrupted_run(devices, tmp_path):
    """Checkpoints every 4 steps; the crash comes after step 6, so steps 5-6 are redone and
    their metrics.jsonl lines rewritten. Runs 8-way data parallel."""
    steps, task = 12, AdditionTask(max_digits=2, scratchpad="none")
    examples = [encode_example(TOK, task.prompt(p), task.target(p))
                for p in itertools.islice(task.problems("train", 0), 100)]
    trainer = Trainer(CFG, make_optimizer(warmup_steps=2), parallel.make_mesh(data=8))

    def start(workdir, crash_after=None):
        ckpt = Checkpointer(str(workdir / "checkpoints"))
        data = ExampleStream(examples, batch_size=16, max_len=32, pad_id=TOK.pad_id, seed=0)
        state = trainer.init(0)
        restored = ckpt.restore(trainer.abstract_state)
        if restored is not None:
            state, extra = restored
            data.set_state(extra["data"])
        writer = MetricWriter(str(workdir), resume_step=ckpt.latest_step())
        stream = data if crash_after is None else CrashAfter(data, crash_after)
        try:
            state = fit(trainer, state, stream, steps, ckpt=ckpt, writer=writer, ckpt_every=4,
                        log_every=1)
        finally:
            ckpt.close()
            writer.close()
        return state

    whole = jax.device_get(start(tmp_path / "whole")["params"])
    with pytest.raises(Crash):
        start(tmp_path / "resumed", crash_after=6)
    assert latest_step(tmp_path / "resumed/checkpoints") == 4
    assert [r["step"] for r in records(tmp_path / "resumed")] == list(range(1, 7))
    resumed = jax.device_get(start(tmp_path / "resumed")["params"])
    assert records(tmp_path / "resumed") == records(tmp_path / "whole")
    assert [r["step"] for r in records(tmp_path / "whole")] == list(range(1, steps + 1))
    assert_same_tree(resumed, whole)


def test_metric_writer_drops_lines_past_the_restored_step(tmp_path):
    writer = MetricWriter(str(tmp_path))
    for step in (1, 2, 3):
        writer.write(step, {"loss": float(step)})
    writer.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')  # a line cut by a kill mid-write
    MetricWriter(str(tmp_path), resume_step=2).close()
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [1, 2]
    MetricWriter(str(tmp_path), resume_step=None).close()  # no checkpoint: start afresh
    assert read_metrics(str(tmp_path)) == []


# ---- the real job, killed with SIGKILL -------------------------------------------------------

STEPS = 800  # enough for clearly non-zero accuracy (~0.25), so `evaluate` is checked for real
JOB = (f"sft.steps = {STEPS}", "sft.batch_size = 64", "sft.max_len = 32",
       "sft.num_examples = 4000", "sft.ckpt_every = 200", "sft.log_every = 100",
       "sft.eval_every = 0", "sft.eval_problems = 64", "sft.max_new_tokens = 8",
       "AdditionTask.max_digits = 2", "AdditionTask.scratchpad = 'none'",
       "AdditionTask.reverse = True", "make_optimizer.learning_rate = 1e-2",
       "ModelConfig.d_model = 32", "ModelConfig.n_layers = 2", "ModelConfig.n_heads = 4",
       "ModelConfig.n_kv_heads = 2", "ModelConfig.head_dim = 8", "ModelConfig.d_ff = 64",
       "ModelConfig.max_len = 64")


def final_state(workdir):
    """The step-STEPS train state of a job's workdir, restored onto one device."""
    cfg = dataclasses.replace(CFG, max_len=64)
    trainer = Trainer(cfg, make_optimizer(), parallel.make_mesh(devices=jax.devices()[:1]))
    ckpt = Checkpointer(str(workdir / "checkpoints"))
    state, _ = ckpt.restore(trainer.abstract_state, step=STEPS)
    ckpt.close()
    return state


def test_sft_job_killed_with_sigkill_resumes_to_the_same_result(tmp_path):
    """The uninterrupted reference run goes alongside the one that gets killed."""
    whole_cmd = job_command("jaxrl_reason.sft", tmp_path / "whole", *JOB)
    whole = subprocess.Popen(whole_cmd, cwd=REPO, stdin=subprocess.DEVNULL, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    workdir = tmp_path / "killed"
    cmd = job_command("jaxrl_reason.sft", workdir, *JOB)
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpts, deadline = workdir / "checkpoints", time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if ckpts.is_dir() and any(d.isdigit() for d in os.listdir(ckpts)):  # a finished save
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the job ended before it could be killed"
    killed_at = latest_step(ckpts)
    assert killed_at is not None and killed_at < STEPS
    # config.gin holds every binding from the start, so a killed run can be sampled/evaluated
    assert "ModelConfig.d_model = 32" in (workdir / "config.gin").read_text()
    whole_out, whole_err = whole.communicate(timeout=300)
    assert whole.returncode == 0, whole_err[-3000:]

    resumed = run_job(cmd, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert records(workdir) == records(tmp_path / "whole")
    assert json.loads(resumed.stdout.splitlines()[-1]) == json.loads(whole_out.splitlines()[-1])
    assert_same_tree(final_state(workdir), final_state(tmp_path / "whole"))

    # evaluating the run reads its config.gin, leaves it as it was, and scores the run's own
    # final weights: the same figure as those weights restored here and sampled directly
    config = (workdir / "config.gin").read_text()
    ev = run_job(job_command("jaxrl_reason.evaluate", workdir, "evaluate.difficulties = (1, 2)",
                             "evaluate.per_difficulty = 32", gin_file=None))  # 128 > max_len
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert (workdir / "config.gin").read_text() == config
    got = json.loads(ev.stdout.splitlines()[-1])
    task = AdditionTask(max_digits=2, scratchpad="none", reverse=True)
    problems = [p for d in (1, 2) for p in task.problems_of_length(d, 32, 12345, "test")]
    cfg = dataclasses.replace(CFG, max_len=64)
    sampler = Sampler(cfg, [TOK.eos_id], banned_ids=(TOK.pad_id, TOK.bos_id))
    want = evaluation.accuracy_by_difficulty(evaluation.rollouts(
        sampler, final_state(workdir)["params"], task, TOK, problems,
        SamplingConfig(max_new_tokens=8, temperature=0.0)))
    assert want["acc"] > 0.1  # trained: fresh weights would score 0
    assert {k: got[k] for k in want} == want and got["step"] == STEPS
