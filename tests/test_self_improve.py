"""Self-improvement: the label filters, the newest-round mixture, and the round loop end to end
(outputs, baseline switch, resume after an interruption) on a tiny budget."""

import json

import gin
import jax
import numpy as np
import pytest

from jaxrl_reason import common, evaluate, rng
from jaxrl_reason.data.addition import AdditionTask
from jaxrl_reason.data.batching import encode_example
from jaxrl_reason.errors import UserError
from jaxrl_reason.sampling.sampler import Samples, SamplingConfig
from jaxrl_reason.self_improve import loop as si
from jaxrl_reason.tokenizers import CharTokenizer

TINY = """
ModelConfig.d_model = 32
ModelConfig.n_layers = 1
ModelConfig.n_heads = 2
ModelConfig.n_kv_heads = 1
ModelConfig.head_dim = 16
ModelConfig.d_ff = 64
ModelConfig.max_len = 64
ModelConfig.position_encoding = "none"
make_optimizer.schedule = "constant"
make_optimizer.warmup_steps = 1
compilation_cache.directory = None
"""


# ---- filters on hand-made label sets -------------------------------------------------------
def test_majority_vote_needs_threshold_identical_outputs():
    outputs = [["A:1\n", "A:1\n", "A:2\n"], ["A:3\n", None, "A:4\n"], [None, None, None],
               ["A:5\n", "A:6\n", "A:6\n"]]
    assert si.majority_vote(outputs, threshold=2) == ["A:1\n", None, None, "A:6\n"]
    assert si.majority_vote(outputs, threshold=3) == [None, None, None, None]
    # threshold 1 keeps any output; a tie goes to the output seen first
    assert si.majority_vote(outputs, threshold=1) == ["A:1\n", "A:3\n", None, "A:6\n"]


def test_length_filter_drops_labels_shorter_than_the_longest():
    lengths = [5, 4, 3, None, 5]
    assert si.length_filter(lengths) == [True, False, False, False, True]
    assert si.length_filter(lengths, slack=1) == [True, True, False, False, True]
    assert si.length_filter([None, None]) == [False, False]


class CannedSampler:
    """Returns fixed completions per prompt, one list per model call (called once per model)."""

    def __init__(self, tok, per_call):
        self.tok, self.per_call, self.calls = tok, per_call, 0

    def load(self, params):
        pass

    def generate(self, prompts, cfg, key=0):
        table = self.per_call[self.calls]
        self.calls += 1
        texts = [t for ids in prompts for t in table[self.tok.decode(ids[1:])][: cfg.n]]
        width = cfg.max_new_tokens
        tokens = np.zeros((len(texts), width), np.int32)
        lengths, finished = [], []
        for i, t in enumerate(texts):
            ids = self.tok.encode(t)
            finished.append(len(ids) < width)
            if finished[-1]:  # the stop token follows
                ids = [*ids, self.tok.eos_id]
            ids = ids[:width]
            tokens[i, : len(ids)] = ids
            lengths.append(len(ids))
        return Samples(tokens, np.zeros(tokens.shape, np.float32), np.array(lengths),
                       np.array(finished), np.repeat(np.arange(len(prompts)), cfg.n))


def test_self_label_votes_across_models_then_filters_by_length():
    task, tok = AdditionTask(1, 4, scratchpad="none", reverse=True), CharTokenizer()
    problems = [task.problem(a, b) for a, b in [(999, 1), (123, 456), (500, 500), (321, 111)]]
    prompts = [task.prompt(p) for p in problems]  # sums: 1000, 579, 1000, 432
    model_a = {prompts[0]: ["A:0001\n"], prompts[1]: ["A:975\n"], prompts[2]: ["A:001\n"],
               prompts[3]: ["A:234\n"]}
    model_b = {prompts[0]: ["A:0001\n"], prompts[1]: ["A:975\n"], prompts[2]: ["A:001\n"],
               prompts[3]: ["A:2345555555555555\n"]}  # never stops: not a candidate
    model_c = {prompts[0]: ["A:0001\n"], prompts[1]: ["A:97\n"], prompts[2]: ["A:0001\n"],
               prompts[3]: ["A:234\n"]}
    s = common.Setup(tok, None, None, CannedSampler(tok, [model_a, model_b, model_c]))
    cfg = SamplingConfig(max_new_tokens=12, temperature=0.0)
    key = rng.key(0, 1, "label", 0)
    kept, stats = si.self_label(s, [None] * 3, task, problems, cfg, key, vote_threshold=2,
                                filter_length=True, length_slack=0)
    # votes: "0001" (3/3), "975" (2/3), "001" (2/3, wrong), "234" (2/3, the unfinished one
    # is no vote); the longest voted answer has 4 digits, so slack 0 keeps only 4-digit ones
    assert kept == [encode_example(tok, prompts[0], "A:0001\n")]
    assert stats == {"labeled": 4, "voted": 4, "kept": 1, "right": 1, "first_right": 3,
                     "precision": 1.0, "precision_unfiltered": 0.75}
    s.sampler.calls = 0
    kept, stats = si.self_label(s, [None] * 3, task, problems, cfg, key, vote_threshold=2,
                                filter_length=True, length_slack=1)
    assert [tok.decode(e.completion) for e in kept] == ["A:0001\n", "A:975\n", "A:001\n",
                                                       "A:234\n"]
    assert stats["precision"] == 0.75  # the checker's verdict is reported, never used
    s.sampler.calls = 0
    kept, stats = si.self_label(s, [None] * 3, task, problems, cfg, key, vote_threshold=3,
                                filter_length=False, length_slack=0)
    assert kept == [encode_example(tok, prompts[0], "A:0001\n")] and stats["voted"] == 1


# ---- the mixture stream --------------------------------------------------------------------
TOK = CharTokenizer()


def _tagged(tag, n):
    return [encode_example(TOK, f"{tag}{i}+0\n", f"A:{i}\n") for i in range(n)]


def _prompt(example):
    return TOK.decode(example.prompt[1:])


def test_mixture_draws_newest_half_the_time_and_older_uniformly():
    older_a, older_b, newest = _tagged("1", 100), _tagged("2", 50), _tagged("3", 30)
    stream = si.MixtureStream([older_a, older_b, newest], 64, 32, 0, seed=0, newest_prob=0.5)
    rows = [_prompt(e) for i in range(200) for e in stream.rows(i)]
    share = {t: sum(p.startswith(t) for p in rows) / len(rows) for t in "123"}
    assert abs(share["3"] - 0.5) < 0.02
    assert abs(share["1"] / (share["1"] + share["2"]) - 100 / 150) < 0.03  # uniform per example
    assert {p for p in rows if p.startswith("3")} == {_prompt(e) for e in newest}
    only = si.MixtureStream([older_a], 64, 32, 0, seed=0)
    assert all(_prompt(e).startswith("1") for e in only.rows(0))
    no_new = si.MixtureStream([older_a, []], 64, 32, 0, seed=0)
    assert all(_prompt(e).startswith("1") for e in no_new.rows(0))


def test_mixture_resumes_exactly_and_depends_on_the_seed():
    sources = [_tagged("1", 40), _tagged("2", 10)]
    a = si.MixtureStream(sources, 8, 32, 0, seed=3)
    for _ in range(5):
        next(a)
    state = a.get_state()
    tail = [next(a) for _ in range(3)]
    b = si.MixtureStream(sources, 8, 32, 0, seed=3)
    b.set_state(json.loads(json.dumps(state)))  # states go through the checkpoint's JSON
    for x, y in zip(tail, [next(b) for _ in range(3)], strict=True):
        np.testing.assert_array_equal(x["tokens"], y["tokens"])
        np.testing.assert_array_equal(x["loss_mask"], y["loss_mask"])
    other = si.MixtureStream(sources, 8, 32, 0, seed=4)
    assert other.rows(0) != si.MixtureStream(sources, 8, 32, 0, seed=3).rows(0)
    assert tail[0]["tokens"].shape[1] % 8 == 0


# ---- the loop ------------------------------------------------------------------------------
def _run(workdir, **overrides):
    gin.clear_config()
    gin.parse_config(TINY)
    kwargs = dict(task=AdditionTask(1, 2, scratchpad="none", reverse=True), rounds=1,
                  steps_round0=4, steps_per_round=4, num_gold=64, label_inputs=16,
                  num_models=2, samples_per_model=2, temperature=1.0, vote_threshold=2,
                  batch_size=8, max_len=32, max_new_tokens=8, eval_per_length=8,
                  ckpt_every=2, log_every=2)
    kwargs.update(overrides)
    return si.self_improve(str(workdir), **kwargs)


def _final_params(workdir, model=0):
    ckpt = si.Checkpointer(str(workdir / "checkpoints" / f"model_{model}"))
    step = ckpt.latest_step()
    out = ckpt._mgr.restore(step)  # untyped restore: raw arrays, for comparison only
    ckpt.close()
    return step, out["state"]["params"]


def _strip(history):
    return [{k: v for k, v in r.items() if k not in ("seconds", "time")} for r in history]


class Interrupted(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    full = _run(tmp_path / "full")
    assert [r["round"] for r in full] == [0, 1]
    assert [r["steps"] for r in full] == [4, 8]
    assert set(full[1]) >= {"acc/1", "acc/2", "acc/3", "acc/4", "kept", "precision", "seconds"}
    assert full[1]["labeled"] == 16 and 0 <= full[1]["kept"] <= 16
    for name in ("metrics.jsonl", "train_metrics.jsonl", "accuracy.png",
                 "labels/round_001.json", "checkpoints/model_1"):
        assert (tmp_path / "full" / name).exists(), name

    real_fit = si.fit
    calls = {"n": 0}

    def dying_fit(trainer, state, data, num_steps, **kw):
        calls["n"] += 1
        if calls["n"] == 4:  # model 1 in round 1: die after its mid-round checkpoint (step 6)
            real_fit(trainer, state, data, num_steps - 2, **kw)
            kw["ckpt"].wait()
            raise Interrupted()
        return real_fit(trainer, state, data, num_steps, **kw)

    monkeypatch.setattr(si, "fit", dying_fit)
    with pytest.raises(Interrupted):
        _run(tmp_path / "cut")
    starts = []

    def spy_fit(trainer, state, data, num_steps, **kw):
        starts.append((kw["desc"], int(state["step"]), data.get_state()["index"]))
        return real_fit(trainer, state, data, num_steps, **kw)

    monkeypatch.setattr(si, "fit", spy_fit)
    resumed = _run(tmp_path / "cut")
    # round 0 is not redone; model 1 picks up at its step-6 checkpoint and stream position
    assert starts == [("round 1 model 0", 4, 4), ("round 1 model 1", 2, 2)]  # steps within round 1
    assert _strip(resumed) == _strip(full)
    assert (json.loads((tmp_path / "cut/labels/round_001.json").read_text())
            == json.loads((tmp_path / "full/labels/round_001.json").read_text()))
    for m in (0, 1):
        step_a, a = _final_params(tmp_path / "full", m)
        step_b, b = _final_params(tmp_path / "cut", m)
        assert step_a == step_b == 8
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_round_labels_inputs_one_digit_longer(tmp_path, monkeypatch, share):
    seen = []
    real = si.self_label

    def spy(s, params_list, task, problems, *args, **kw):
        seen.extend((len(str(p.meta["a"])), len(str(p.meta["b"]))) for p in problems)
        return real(s, params_list, task, problems, *args, **kw)

    monkeypatch.setattr(si, "self_label", spy)
    _run(tmp_path, equal_length_share=share, num_models=1, samples_per_model=1,
         vote_threshold=1)
    assert len(seen) == 16 and all(max(pair) == 3 for pair in seen)  # L = 2, round 1
    n_equal = round(16 * share)
    assert all(pair == (3, 3) for pair in seen[:n_equal])
    # the mixed rest draws the shorter operand from 1..3: never all two 3-digit operands
    assert share == 1.0 or any(pair != (3, 3) for pair in seen[n_equal:])


def test_labeling_continues_with_fresh_inputs_until_the_quota_is_kept(tmp_path, monkeypatch):
    calls = []

    def fake(s, params_list, task, problems, cfg, key, **kw):
        calls.append([p.question for p in problems])
        examples = [encode_example(TOK, p.question, "A:0") for p in problems[:5]]
        return examples, si._precisions({"labeled": len(problems), "voted": 6, "kept": 5,
                                         "right": 4, "first_right": 1})

    monkeypatch.setattr(si, "self_label", fake)
    task = AdditionTask(1, 2, scratchpad="none", reverse=True)
    inputs = lambda p: si.mixed_length_problems(task, 8, 100 + p, "train", 3, exact=True)  # noqa: E731
    kept, stats = si.collect_labels(None, [], task, inputs, None, 0, 1, wanted=12, max_passes=5)
    assert len(calls) == 3 and len(kept) == 15  # 5 + 5 < 12 <= 15
    assert (stats["labeled"], stats["kept"], stats["passes"]) == (24, 15, 3)
    assert stats["precision"] == 0.8
    assert len({tuple(c) for c in calls}) == 3  # every pass labels fresh inputs
    calls.clear()
    si.collect_labels(None, [], task, inputs, None, 0, 1, wanted=10**6, max_passes=2)
    assert len(calls) == 2  # the cap ends a round that cannot reach its quota
    calls.clear()
    _run(tmp_path, labels_per_round=12, max_label_passes=5)  # the job passes fresh inputs too
    assert len(calls) == 3 and len({tuple(c) for c in calls}) == 3


def test_baseline_trains_the_same_steps_on_gold_only(tmp_path):
    history = _run(tmp_path, self_label_rounds=False, num_models=1, samples_per_model=1,
                   vote_threshold=1)
    assert [r["steps"] for r in history] == [4, 8]
    assert history[1]["kept"] == 0
    assert not (tmp_path / "labels").exists()
    # `evaluate` finds the run's per-model checkpoints and scores its final one
    out = evaluate.evaluate(str(tmp_path), task=AdditionTask(1, 2, scratchpad="none", reverse=True),
                            difficulties=(1, 2), per_difficulty=8, seed=0, max_new_tokens=8)
    assert out["step"] == 8 and out["n"] == 16
    assert out["acc/1"] == history[1]["acc/1"] and out["acc/2"] == history[1]["acc/2"]
    with pytest.raises(UserError, match="model_1"):
        evaluate.evaluate(str(tmp_path), task=AdditionTask(1, 2), model=1)


@pytest.mark.parametrize("bad, match", [
    (dict(num_models=1, samples_per_model=2, vote_threshold=3), "vote_threshold"),
    (dict(max_label_passes=0), "max_label_passes=0"),
    (dict(label_inputs=0), "label_inputs=0"),
    (dict(equal_length_share=1.5), "equal_length_share=1.5"),
])
def test_impossible_labeling_settings_are_user_errors(tmp_path, bad, match):
    with pytest.raises(UserError, match=match):
        _run(tmp_path, **bad)


class OracleSampler:
    """Answers every addition prompt with its gold target (the task's own format), so a round's
    self-labels are known and all right; the loop's training batches can then be checked."""

    def __init__(self, tok, task):
        self.tok, self.task = tok, task

    def load(self, params):
        pass

    def generate(self, prompts, cfg, key=0):
        texts = []
        for ids in prompts:
            a, b = (int(x[::-1]) for x in self.tok.decode(ids[1:]).strip().split("+"))
            texts += [self.task.target(self.task.problem(a, b))] * cfg.n
        width = cfg.max_new_tokens
        tokens = np.zeros((len(texts), width), np.int32)
        rows = [[*self.tok.encode(t), self.tok.eos_id] for t in texts]
        for i, ids in enumerate(rows):
            tokens[i, : min(len(ids), width)] = ids[:width]
        return Samples(tokens, np.zeros(tokens.shape, np.float32),
                       np.array([min(len(r), width) for r in rows]),
                       np.array([len(r) <= width for r in rows]),
                       np.repeat(np.arange(len(prompts)), cfg.n))


def test_a_round_trains_on_its_own_kept_labels(tmp_path, monkeypatch):
    """Round 1's kept self-labels (3-digit additions: gold holds only 1-2 digits) make up
    about half of every round-1 training batch, id for id; a loop that trained on gold alone
    would show none of them."""
    task = AdditionTask(1, 2, scratchpad="none", reverse=True)
    real_build = common.build

    def build():
        s = real_build()
        s.sampler = OracleSampler(s.tok, task)
        return s

    monkeypatch.setattr(common, "build", build)
    batches = {}
    real_fit = si.fit

    def spy_fit(trainer, state, data, num_steps, **kw):
        taken = batches.setdefault(kw["desc"], [])

        class Recording:
            def __next__(self):
                taken.append(next(data))
                return taken[-1]

            def get_state(self):
                return data.get_state()

        return real_fit(trainer, state, Recording(), num_steps, **kw)

    monkeypatch.setattr(si, "fit", spy_fit)
    _run(tmp_path, task=task, num_models=1, samples_per_model=1, vote_threshold=1)
    labels, stats = si._load_labels(str(tmp_path / "labels/round_001.json"))
    assert stats["kept"] == len(labels) == 16 and stats["precision"] == 1.0
    assert all(max(map(len, TOK.decode(e.prompt[1:]).strip().split("+"))) == 3 for e in labels)
    label_rows = {tuple(e.prompt) + tuple(e.completion) for e in labels}

    def share(desc):
        rows = [tuple(row[mask.astype(bool)]) for b in batches[desc]
                for row, mask in zip(b["tokens"], b["input_mask"], strict=True)]
        return sum(r in label_rows for r in rows) / len(rows)

    assert share("round 0 model 0") == 0
    assert 0.25 < share("round 1 model 0") < 0.75  # newest_prob = 0.5


def test_evaluate_and_sample_pick_the_model_asked_for(tmp_path, monkeypatch):
    """On a run of two models, `evaluate.model` scores the weights of that model's last
    checkpoint (the sampler is loaded with exactly them), and the two models differ."""
    _run(tmp_path, rounds=0, num_models=2, samples_per_model=1, vote_threshold=1)
    loaded = []
    real_build = common.build

    def build():
        s = real_build()
        real_load = s.sampler.load
        s.sampler.load = lambda params: (loaded.append(jax.device_get(params)),
                                         real_load(params))[1]
        return s

    monkeypatch.setattr(common, "build", build)
    task = AdditionTask(1, 2, scratchpad="none", reverse=True)
    finals = [_final_params(tmp_path, m)[1] for m in (0, 1)]
    for m in (0, 1):
        evaluate.evaluate(str(tmp_path), task=task, difficulties=(1,), per_difficulty=2,
                          max_new_tokens=4, model=m)
        for x, y in zip(jax.tree.leaves(loaded[-1]), jax.tree.leaves(finals[m]), strict=True):
            np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(
        jax.tree.leaves(finals[0]), jax.tree.leaves(finals[1]), strict=True))
