"""STaR: filtering by the checker, rationalization with the hint removed, which model collects
and which is evaluated, restart from the base model, and resume after an interruption -- on a
tiny budget, with a scripted sampler (known verdicts) and with the real one."""

import itertools
import random

import gin
import jax
import numpy as np
import pytest

from jaxrl_reason import common, rng, rollouts
from jaxrl_reason.data.addition import AdditionTask
from jaxrl_reason.data.batching import encode_prompt
from jaxrl_reason.data.tasks import Check
from jaxrl_reason.sampling.sampler import Samples, SamplingConfig
from jaxrl_reason.star import loop as star
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


def fingerprint(params) -> float:
    return float(sum(np.asarray(x, np.float64).sum() for x in jax.tree.leaves(params)))


class ScriptedSampler:
    """Answers from the prompt text: a correct rationale when the prompt carries a hint or the
    sum is even, a wrong one otherwise -- so the checker's verdicts are known in advance.
    Records the weights it was loaded with and the key of every call."""

    def __init__(self, tok, task):
        self.tok, self.task = tok, task
        self.loaded, self.calls = None, []

    def load(self, params):
        self.loaded = None if params is None else fingerprint(params)

    def good(self, a: int, b: int, hinted: bool, cfg) -> bool:
        return hinted or (a + b) % 2 == 0

    def generate(self, prompts, cfg, key=0):
        self.calls.append((self.loaded, np.asarray(jax.random.key_data(key)).tolist(),
                           len(prompts)))
        texts = []
        for ids in prompts:
            prompt = self.tok.decode(ids[1:])
            question, _, hint = prompt.strip().partition(" H")
            a, b = map(int, question.split("+"))
            problem = self.task.problem(a, b)
            good = self.good(a, b, bool(hint), cfg)
            texts += [self.task.target(problem) if good else "A:0\n"] * cfg.n
        width = max(len(t) for t in texts) + 1
        tokens = np.zeros((len(texts), width), np.int32)
        for i, t in enumerate(texts):
            tokens[i, : len(t) + 1] = [*self.tok.encode(t), self.tok.eos_id]
        lengths = np.array([len(t) + 1 for t in texts])
        return Samples(tokens, np.zeros(tokens.shape, np.float32), lengths,
                       np.ones(len(texts), bool), np.repeat(np.arange(len(prompts)), cfg.n))


@pytest.mark.parametrize("rationalize", [True, False])
def test_collect_keeps_checked_answers_and_strips_the_hint(rationalize):
    task, tok = AdditionTask(1, 3), CharTokenizer()
    setup = common.Setup(tok, None, None, ScriptedSampler(tok, task))
    problems = [task.problem(a, b) for a, b in [(12, 30), (5, 8), (7, 9), (100, 201), (3, 3)]]
    got = star.collect(setup, None, task, problems, SamplingConfig(n=2), rationalize,
                       rng.key(0, 1, "collect"))
    even = [p for p in problems if int(p.answer) % 2 == 0]
    assert got.kept == len(even) == 3
    assert got.rationalized == (2 if rationalize else 0)
    assert len(got.examples) == got.kept + got.rationalized
    for (prompt, completion), ex in zip(got.texts, got.examples, strict=True):
        assert " H" not in prompt and prompt.endswith("\n")
        assert ex.prompt == tuple(encode_prompt(tok, prompt))  # the hint is not in the ids
        assert ex.completion[-1] == tok.eos_id and tok.decode(ex.completion) == completion
        question = prompt.strip()
        assert task.check(task.problem(*map(int, question.split("+"))), completion).correct


class HotScriptedSampler(ScriptedSampler):
    """The scripted sampler, except that at temperature >= 1 it also gets sums divisible by 3
    right: what a retry at a higher temperature finds that the first samples missed."""

    def good(self, a: int, b: int, hinted: bool, cfg) -> bool:
        return super().good(a, b, hinted, cfg) or (cfg.temperature >= 1.0 and (a + b) % 3 == 0)


def test_retry_samples_the_unsolved_problems_again_before_rationalizing():
    task, tok = AdditionTask(1, 3), CharTokenizer()
    pairs = [(12, 30), (5, 8), (7, 9), (100, 201), (3, 3), (4, 5), (10, 5)]
    problems = [task.problem(a, b) for a, b in pairs]  # sums 42 13 16 301 6 9 15
    key = rng.key(0, 1, "collect")

    def run(retry):
        sampler = HotScriptedSampler(tok, task)
        setup = common.Setup(tok, None, None, sampler)
        got = star.collect(setup, None, task, problems,
                           SamplingConfig(n=2, temperature=0.7, max_new_tokens=32), True, key,
                           retry)
        return got, sampler.calls

    plain, plain_calls = run(None)
    hot = SamplingConfig(n=3, temperature=1.0, max_new_tokens=32)
    got, calls = run(hot)
    # even sums on the first draw (42, 16, 6); 9 and 15 only on the retry; 13 and 301 by the hint
    assert (plain.kept, plain.retried, plain.rationalized) == (3, 0, 4)
    assert (got.kept, got.retried, got.rationalized) == (5, 2, 2)
    assert len(got.examples) == 7
    assert got.by_difficulty == {"kept/1": 4, "kept/2": 2, "kept/3": 1}  # every problem, some route
    # the retry samples only the 4 unsolved problems, from its own stream: the first draw and
    # the hinted draw use the keys they use without it
    assert [c[2] for c in calls] == [7, 4, 2] and [c[2] for c in plain_calls] == [7, 4]
    assert calls[0][1] == plain_calls[0][1] and calls[2][1] == plain_calls[1][1]
    assert calls[1][1] not in (plain_calls[0][1], plain_calls[1][1])
    assert all(" H" not in tok.decode(ex.prompt) for ex in got.examples)


def test_step_schedule_matches_the_paper():
    assert [star.steps_for_iteration(n, 300, 20, 1.0) for n in (1, 2, 3)] == [300, 320, 340]
    assert [star.steps_for_iteration(n, 40, 0, 1.2) for n in (1, 2, 3)] == [40, 48, 58]


@pytest.fixture
def scripted(monkeypatch):
    """Real model, trainer and checkpoints; rollouts come from the scripted sampler, so a tiny
    untrained model still yields a known mix of right and wrong rationales."""
    real_build = common.build
    made = []

    def build():
        s = real_build()
        s.sampler = ScriptedSampler(s.tok, AdditionTask(1, 2))
        made.append(s.sampler)
        return s

    monkeypatch.setattr(common, "build", build)
    return made


def _final_params(workdir):
    ckpt = star.Checkpointer(str(workdir / "checkpoints"))
    step = ckpt.latest_step()
    out = ckpt._mgr.restore(step)  # untyped restore: raw arrays, for comparison only
    ckpt.close()
    return step, out


def _run(workdir, keep_gin=False, **overrides):
    if not keep_gin:
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


def _spy_fit(monkeypatch):
    """Records (desc, step at start, params at start, params at end) of every fit call."""
    log = []
    real_fit = star.fit

    def spy(trainer, state, data, num_steps, **kw):
        start = (kw["desc"], int(state["step"]), fingerprint(state["params"]))
        out = real_fit(trainer, state, data, num_steps, **kw)
        log.append((*start, fingerprint(out["params"])))
        return out

    monkeypatch.setattr(star, "fit", spy)
    return log


@pytest.mark.parametrize("restart_from_base", [True, False])
def test_each_iteration_samples_from_the_latest_model_and_evaluates_the_trained_one(
        tmp_path, monkeypatch, scripted, restart_from_base):
    """Iteration n collects with the weights iteration n-1 ended with (the base for n = 1),
    fine-tunes from the base or from those weights, and evaluates the weights it trained;
    every collection, hinted pass and evaluation draws from its own random stream."""
    fits = _spy_fit(monkeypatch)
    history = _run(tmp_path, restart_from_base=restart_from_base)
    assert [r["iteration"] for r in history] == [0, 1, 2]
    calls = scripted[0].calls
    (_, _, _, base), (_, s1, start1, end1), (_, s2, start2, end2) = fits
    assert s1 == s2 == 0
    assert start1 == base and start2 == (base if restart_from_base else end1)
    # per iteration: collect (16 problems), hinted (the 8 odd ones), evaluate (8 problems)
    assert [(p, n) for p, _, n in calls] == [
        (base, 8),  # evaluation of the base, iteration 0
        (base, 16), (base, 8), (end1, 8),  # iteration 1: collect and rationalize, evaluate
        (end1, 16), (end1, 8), (end2, 8),  # iteration 2 collects from iteration 1's result
    ]
    keys = [tuple(k) for _, k, _ in calls]
    assert len(set(keys[1:3] + keys[4:6])) == 4  # sampling streams never repeat


def test_star_restarts_from_base_and_writes_its_outputs(tmp_path, monkeypatch, scripted):
    fits = _spy_fit(monkeypatch)
    _run(tmp_path)
    base = fits[0][3]
    assert all(start == base and step == 0 for _, step, start, _ in fits[1:])
    for name in (
        "metrics.jsonl",
        "train_metrics.jsonl",
        "accuracy.png",
        "iteration_001/kept.jsonl",
        "iteration_002/samples.txt",
        "tensorboard/train_metrics",
    ):
        assert (tmp_path / name).exists(), name
    examples, info = star._load_kept(str(tmp_path / "iteration_001/kept.jsonl"))
    assert info == {"kept": 8, "rationalized": 8, "retried": 0, "kept/1": 9, "kept/2": 7}
    assert len(examples) == 16
    tok = CharTokenizer()
    assert all(" H" not in tok.decode(e.prompt[1:]) for e in examples)


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("restart_from_base", [True, False])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch, scripted,
                                                   restart_from_base):
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


class AnyFinished(AdditionTask):
    """Addition whose checker accepts every completion: STaR then keeps whatever the real
    sampler emitted, which this test can reproduce exactly."""

    def check(self, problem, completion):
        return Check(answer=completion, correct=True, steps=None)


def test_real_sampler_collects_with_the_latest_weights_and_stores_its_own_ids(tmp_path):
    """The loop on the real sampler and a real tiny model: iteration 1 keeps exactly the ids
    the sampler draws from the base weights with iteration 1's collect stream (finished rows
    only), so neither the weights, the key nor the stored ids can be the wrong ones."""
    task = AnyFinished(1, 2)
    _run(tmp_path, task=task, iterations=1, restart_from_base=False, num_problems=32,
         temperature=1.0, rationalize=False)
    examples, info = star._load_kept(str(tmp_path / "iteration_001/kept.jsonl"))
    assert info["rationalized"] == 0 and info["kept"] == len(examples)

    gin.clear_config()
    gin.parse_config(TINY)
    s = common.build()
    ckpt = star.Checkpointer(str(tmp_path / "base"))
    base, _ = ckpt.restore_params(s.trainer.abstract_state["params"])
    ckpt.close()
    pool = list(itertools.islice(task.problems("train", 0), 32))
    problems = random.Random("star-0-1").sample(pool, len(pool))
    cfg = SamplingConfig(max_new_tokens=24, temperature=1.0, n=1)
    again = rollouts.sample_and_check(s.sampler, base, task, s.tok, problems, cfg,
                                jax.random.fold_in(rng.key(0, 1, "collect"), 0))
    want = [r.completion_ids for r in again if r.finished]
    assert 0 < len(want) < len(again)  # a real mix: some rows ran out of tokens
    assert [e.completion for e in examples] == want


def test_direct_baseline_trains_on_answers_alone_for_the_same_budget(tmp_path, monkeypatch):
    """star.mode = "direct": the paper's no-rationale baseline, fine-tuned on (question, gold
    answer) for the base steps plus every iteration's steps, then evaluated."""
    gin.parse_config("""
direct_baseline.task = @direct/AdditionTask()
direct/AdditionTask.max_digits = 2
direct/AdditionTask.scratchpad = "none"
""")
    seen = []
    real_fit = star.fit

    def spy(trainer, state, data, num_steps, **kw):
        seen.append((num_steps, data._lengths.max(), data.examples[:4]))
        return real_fit(trainer, state, data, num_steps, **kw)

    monkeypatch.setattr(star, "fit", spy)
    history = _run(tmp_path, mode="direct", keep_gin=True)
    (steps, longest, examples), = seen
    assert steps == 4 + 3 + 4  # base + iterations 1 and 2 of the schedule
    tok = CharTokenizer()
    assert all(tok.decode(e.completion).startswith("A:") for e in examples)  # no rationale
    assert longest <= 14  # "BOS12+34\n" + "A:46\n EOS"; one scratch line would add 9
    assert len(history) == 1 and history[0]["steps"] == steps and "acc/2" in history[0]
