"""A run that dies and is started again on the same workdir ends exactly where an
uninterrupted run ends: same metrics.jsonl, same final params, bit for bit."""

import dataclasses
import itertools
import json
import subprocess

import jax
import numpy as np
import pytest
from conftest import REPO, checkpoint_saved, forward, job_command, kill_when, run_job
from helpers.events import read_scalars

from jaxrl_reason import parallel, rollouts
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


def final_state(workdir, step=STEPS):
    """The train state of a job's workdir at `step`, restored onto one device."""
    cfg = dataclasses.replace(CFG, max_len=64)
    trainer = Trainer(cfg, make_optimizer(), parallel.make_mesh(devices=jax.devices()[:1]))
    ckpt = Checkpointer(str(workdir / "checkpoints"))
    state, _ = ckpt.restore(trainer.abstract_state, step=step)
    ckpt.close()
    return state


TASK = AdditionTask(max_digits=2, scratchpad="none", reverse=True)
GREEDY = SamplingConfig(max_new_tokens=8, temperature=0.0)


def greedy_rollouts(params, problems):
    sampler = Sampler(dataclasses.replace(CFG, max_len=64), [TOK.eos_id],
                      banned_ids=(TOK.pad_id, TOK.bos_id))
    return rollouts.sample_and_check(sampler, params, TASK, TOK, problems, GREEDY)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """An SFT job killed with SIGKILL after its first checkpoint and re-run, next to an
    uninterrupted run of the same command: (killed workdir, whole workdir, each's last line)."""
    tmp_path = tmp_path_factory.mktemp("sft")
    whole_cmd = job_command("jaxrl_reason.sft", tmp_path / "whole", *JOB)
    whole = subprocess.Popen(whole_cmd, cwd=REPO, stdin=subprocess.DEVNULL, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    workdir = tmp_path / "killed"
    cmd = job_command("jaxrl_reason.sft", workdir, *JOB)
    ckpts = workdir / "checkpoints"
    kill_when(cmd, checkpoint_saved(ckpts), "killed after its first checkpoint")
    killed_at = latest_step(ckpts)
    assert killed_at is not None and killed_at < STEPS
    # config.gin holds every binding from the start, so a killed run can be sampled/evaluated
    assert "ModelConfig.d_model = 32" in (workdir / "config.gin").read_text()
    whole_out, whole_err = whole.communicate(timeout=300)
    assert whole.returncode == 0, whole_err[-3000:]
    resumed = run_job(cmd, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return workdir, tmp_path / "whole", resumed.stdout, whole_out


def test_sft_job_killed_with_sigkill_resumes_to_the_same_result(sft_run):
    workdir, whole, out, whole_out = sft_run
    assert records(workdir) == records(whole)
    assert json.loads(out.splitlines()[-1]) == json.loads(whole_out.splitlines()[-1])
    assert_same_tree(final_state(workdir), final_state(whole))
    losses = read_scalars(workdir / "tensorboard" / "metrics")["loss"]  # the resumed events too
    assert [s for s, _ in losses][-1] == STEPS
    assert dict(losses)[STEPS] == pytest.approx(records(workdir)[-1]["loss"], rel=1e-6)


@pytest.mark.parametrize("step", [None, 600])
def test_evaluate_scores_the_runs_own_weights(sft_run, step):
    """`evaluate` reads the run's config.gin, leaves it as it was, and scores the checkpoint
    asked for (--step, default the latest): the figure of those weights restored here and
    sampled directly, clearly above what fresh weights score."""
    workdir = sft_run[0]
    config = (workdir / "config.gin").read_text()
    flags = [] if step is None else [f"--step={step}"]
    ev = run_job(job_command("jaxrl_reason.evaluate", workdir, "evaluate.difficulties = (1, 2)",
                             "evaluate.per_difficulty = 32", gin_file=None) + flags)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert (workdir / "config.gin").read_text() == config
    got = json.loads(ev.stdout.splitlines()[-1])
    problems = [p for d in (1, 2) for p in TASK.problems_of_length(d, 32, 12345, "test")]
    want = rollouts.accuracy_by_difficulty(
        greedy_rollouts(final_state(workdir, step or STEPS)["params"], problems))
    assert want["acc"] > 0.1  # trained: fresh weights would score 0
    assert {k: got[k] for k in want} == want and got["step"] == (step or STEPS)


def test_sample_prints_the_runs_completions_with_verdicts(sft_run):
    workdir = sft_run[0]
    out = run_job(job_command("jaxrl_reason.sample", workdir, "sample.num_problems = 6",
                              "sample.max_new_tokens = 8", gin_file=None))
    assert out.returncode == 0, out.stderr[-3000:]
    problems = list(itertools.islice(TASK.problems("test", 0), 6))
    want = greedy_rollouts(final_state(workdir)["params"], problems)
    blocks = out.stdout.split("--- ")[1:]
    assert len(blocks) == 6
    for block, r in zip(blocks, want, strict=True):
        head, completion = block.split("\n", 1)
        verdict = "CORRECT" if r.check.correct else f"WRONG (gold {r.problem.answer})"
        assert head.startswith(f"{r.prompt!r} -> {verdict}")
        assert completion.strip() == r.completion.strip()
    prompt = want[0].prompt
    out = run_job(job_command("jaxrl_reason.sample", workdir, "sample.max_new_tokens = 8",
                              gin_file=None) + [f"--prompt={prompt.strip()}\\n"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n", 1)[1].strip() == want[0].completion.strip()


def test_sample_formats_a_typed_question_through_the_runs_task(sft_run):
    """--question='a+b' as a person writes it comes out as the run's reversed prompt."""
    workdir = sft_run[0]
    want = greedy_rollouts(final_state(workdir)["params"],
                           list(itertools.islice(TASK.problems("test", 0), 1)))[0]
    question = f"{want.problem.meta['a']}+{want.problem.meta['b']}"
    out = run_job(job_command("jaxrl_reason.sample", workdir, "sample.max_new_tokens = 8",
                              gin_file=None) + [f"--question={question}"])
    assert out.returncode == 0, out.stderr[-3000:]
    head, completion = out.stdout.split("--- ", 1)[1].split("\n", 1)
    assert head == f"{question!r} as prompt {want.prompt!r}"
    assert completion.strip() == want.completion.strip()


def test_load_gives_the_runs_model_ready_to_generate_and_score(sft_run):
    """`jaxrl_reason.load(workdir)`: the run's task formats a question, greedy `generate` is
    the job's greedy rollout, and `logprobs` are the log-softmax of the model's own logits."""
    import jaxrl_reason

    workdir = sft_run[0]
    params = final_state(workdir)["params"]
    want = greedy_rollouts(params, list(itertools.islice(TASK.problems("test", 0), 2)))
    model = jaxrl_reason.load(str(workdir))
    questions = [f"{r.problem.meta['a']}+{r.problem.meta['b']}" for r in want]
    prompts = [model.format(q) for q in questions]
    assert prompts == [r.prompt for r in want]
    got = model.generate(prompts, max_new_tokens=8)
    assert [g.strip() for g in got] == [r.completion.strip() for r in want]
    lps = model.logprobs(prompts[:1], [want[0].completion])
    ids = [TOK.bos_id, *TOK.encode(prompts[0]), *TOK.encode(want[0].completion)]
    logits = np.asarray(forward(params, np.asarray([ids]), CFG)[0][0], np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    p = 1 + len(TOK.encode(prompts[0]))
    expect = [logp[t - 1, ids[t]] for t in range(p, len(ids))]
    np.testing.assert_allclose(lps[0], expect, atol=1e-4)
