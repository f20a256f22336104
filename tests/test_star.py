"""STaR: filtering by the checker, rationalization with the hint removed, restart from the base
model, and resume after an interruption -- on a tiny budget."""

import json

import gin
import jax
import numpy as np
import pytest

from jaxrl_reason.algorithms import common, star
from jaxrl_reason.data.addition import AdditionTask
from jaxrl_reason.sampling.sampler import Samples, SamplingConfig
from jaxrl_reason.tokenizers import CharTokenizer

TINY = """
ModelConfig.d_model = 32
ModelConfig.n_layers = 1
ModelConfig.n_heads = 2
ModelConfig.n_kv_heads = 1
ModelConfig.head_dim = 16
ModelConfig.d_ff = 64
make_optimizer.schedule = "constant"
make_optimizer.warmup_steps = 1
compilation_cache.directory = None
"""


class ScriptedSampler:
    """Answers from the prompt text: a correct rationale when the prompt carries a hint or the
    sum is even, a wrong one otherwise -- so the checker's verdicts are known in advance."""

    def __init__(self, tok, task):
        self.tok, self.task = tok, task

    def generate(self, params, prompts, cfg, seed=0):
        texts = []
        for ids in prompts:
            prompt = self.tok.decode(ids[1:])
            question, _, hint = prompt.strip().partition(" H")
            a, b = map(int, question.split("+"))
            problem = self.task.problem(a, b)
            good = bool(hint) or (a + b) % 2 == 0
            texts += [self.task.target(problem) if good else "A:0\n"] * cfg.n
        width = max(len(t) for t in texts) + 1
        tokens = np.zeros((len(texts), width), np.int32)
        for i, t in enumerate(texts):
            tokens[i, : len(t) + 1] = [*self.tok.encode(t), self.tok.eos_id]
        lengths = np.array([len(t) + 1 for t in texts])
        return Samples(
            tokens,
            np.zeros(tokens.shape, np.float32),
            lengths,
            np.repeat(np.arange(len(prompts)), cfg.n),
        )


@pytest.mark.parametrize("rationalize", [True, False])
def test_collect_keeps_checked_answers_and_strips_the_hint(rationalize):
    task, tok = AdditionTask(1, 3), CharTokenizer()
    setup = common.Setup(tok, None, None, ScriptedSampler(tok, task))
    problems = [task.problem(a, b) for a, b in [(12, 30), (5, 8), (7, 9), (100, 201), (3, 3)]]
    got = star.collect(setup, None, task, problems, SamplingConfig(n=2), rationalize, seed=0)
    even = [p for p in problems if int(p.answer) % 2 == 0]
    assert got.kept == len(even) == 3
    assert got.rationalized == (2 if rationalize else 0)
    assert len(got.pairs) == got.kept + got.rationalized
    for prompt, completion in got.pairs:
        assert " H" not in prompt and prompt.endswith("\n")
        question = prompt.strip()
        assert task.check(task.problem(*map(int, question.split("+"))), completion).correct


def test_step_schedule_matches_the_paper():
    assert [star.steps_for_iteration(n, 300, 20, 1.0) for n in (1, 2, 3)] == [300, 320, 340]
    assert [star.steps_for_iteration(n, 40, 0, 1.2) for n in (1, 2, 3)] == [40, 48, 58]


@pytest.fixture(autouse=True)
def scripted_sampling(monkeypatch):
    """Real model, trainer and checkpoints; rollouts come from the scripted sampler, so a tiny
    untrained model still yields a known mix of right and wrong rationales."""
    real_build = common.build

    def build(steps):
        s = real_build(steps)
        s.sampler = ScriptedSampler(s.tok, AdditionTask(1, 2))
        return s

    monkeypatch.setattr(common, "build", build)


def _final_params(workdir):
    ckpt = star.Checkpointer(str(workdir / "checkpoints"))
    step = ckpt.latest_step()
    out = ckpt._mgr.restore(step)  # untyped restore: raw arrays, for comparison only
    ckpt.close()
    return step, out


def _run(workdir, **overrides):
    gin.clear_config()
    gin.parse_config(TINY)
    kwargs = dict(
        task=AdditionTask(1, 2),
        seed_task=AdditionTask(1, 1),
        num_seed_examples=16,
        base_steps=4,
        iterations=2,
        num_problems=16,
        first_steps=3,
        steps_add=1,
        batch_size=8,
        max_len=48,
        max_new_tokens=24,
        eval_per_difficulty=4,
        difficulties=(1, 2),
        temperature=1.0,
        ckpt_every=2,
    )
    kwargs.update(overrides)
    return star.star(str(workdir), **kwargs)


def test_star_restarts_from_base_and_writes_its_outputs(tmp_path, monkeypatch):
    starts = []
    real_fit = star.fit

    def spy_fit(trainer, state, data, num_steps, **kw):
        starts.append((kw["desc"], int(state["step"]), jax.device_get(state["params"])))
        return real_fit(trainer, state, data, num_steps, **kw)

    monkeypatch.setattr(star, "fit", spy_fit)
    history = _run(tmp_path)
    assert [r["iteration"] for r in history] == [0, 1, 2]
    base = starts[0]
    after_base = jax.device_get(
        star.Checkpointer(str(tmp_path / "base")).restore(
            jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), base[2])
        )[0]
    )
    for desc, step, params in starts[1:]:  # every iteration starts at step 0 from the base
        assert step == 0, desc
        for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(after_base), strict=True):
            np.testing.assert_array_equal(x, y)
    for name in (
        "metrics.jsonl",
        "train_metrics.jsonl",
        "accuracy.png",
        "iteration_001/kept.jsonl",
        "iteration_002/samples.txt",
    ):
        assert (tmp_path / name).exists(), name
    rows = [json.loads(x) for x in (tmp_path / "iteration_001/kept.jsonl").read_text().splitlines()]
    assert all(" H" not in r["prompt"] for r in rows)


def test_continue_mode_starts_from_the_last_iterate(tmp_path, monkeypatch):
    starts = []
    real_fit = star.fit

    def spy_fit(trainer, state, data, num_steps, **kw):
        starts.append(jax.device_get(state["params"]))
        out = real_fit(trainer, state, data, num_steps, **kw)
        starts.append(jax.device_get(out["params"]))
        return out

    monkeypatch.setattr(star, "fit", spy_fit)
    _run(tmp_path, restart_from_base=False)
    end_of_1, start_of_2 = starts[3], starts[4]
    for x, y in zip(jax.tree.leaves(end_of_1), jax.tree.leaves(start_of_2), strict=True):
        np.testing.assert_array_equal(x, y)


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("restart_from_base", [True, False])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch, restart_from_base):
    full = _run(tmp_path / "full", restart_from_base=restart_from_base)
    real_fit = star.fit
    calls = {"n": 0}

    def dying_fit(trainer, state, data, num_steps, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # die inside iteration 2, after its step-2 checkpoint
            real_fit(trainer, state, data, 2, **{**kw, "ckpt_every": 2})
            kw["ckpt"].wait()
            raise Interrupted()
        return real_fit(trainer, state, data, num_steps, **kw)

    monkeypatch.setattr(star, "fit", dying_fit)
    with pytest.raises(Interrupted):
        _run(tmp_path / "cut", restart_from_base=restart_from_base)
    monkeypatch.setattr(star, "fit", real_fit)
    resumed = _run(tmp_path / "cut", restart_from_base=restart_from_base)
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "time")} for r in full]
    assert [{k: v for k, v in r.items() if k not in ("seconds", "time")} for r in resumed] == strip
    assert full[-1]["kept"] > 0
    step_a, a = _final_params(tmp_path / "full")
    step_b, b = _final_params(tmp_path / "cut")
    assert step_a == step_b
    for x, y in zip(
        jax.tree.leaves(a["state"]["params"]), jax.tree.leaves(b["state"]["params"]), strict=True
    ):
        np.testing.assert_array_equal(x, y)
