"""RPT: the top-k entropy filter by hand, the committed answer's parsing and check on real
sentencepiece pieces, the corpus and its positions, and the whole job on a tiny corpus
(killed mid-way and resumed to the uninterrupted report)."""

import json
import math
import random
import subprocess

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, checkpoint_saved, deterministic_metrics, job_command, kill_when

from jaxrl_reason.errors import UserError
from jaxrl_reason.rewards.prefix_match import prefix_match
from jaxrl_reason.rpt import corpus
from jaxrl_reason.rpt.entropy import contexts_batch, topk_entropy
from jaxrl_reason.rpt.loop import make_positions, split_report, token_text, train_lm
from jaxrl_reason.rpt.task import RPTTask, difficulty, parse_commit, read_positions
from jaxrl_reason.tokenizers import SentencePieceTokenizer


def test_topk_entropy_by_hand():
    """Uniform over 4 ids: log 4 whatever k >= 4; the top-2 of (3/4, 1/4, tiny, tiny) is that
    pair renormalized: -(3/4 log 3/4 + 1/4 log 1/4) = 0.5623; a sure token scores ~0."""
    uniform = jnp.zeros(4)
    assert float(topk_entropy(uniform, k=16)) == pytest.approx(math.log(4), abs=1e-6)
    two = jnp.log(jnp.array([0.75, 0.25, 1e-3, 1e-3]))
    assert float(topk_entropy(two, k=2)) == pytest.approx(0.5623351, abs=1e-5)
    sure = jnp.array([30.0, 0.0, 0.0, 0.0])
    assert float(topk_entropy(sure, k=16)) < 1e-9
    batch = jnp.stack([uniform, two])
    np.testing.assert_allclose(topk_entropy(batch, k=4)[0], math.log(4), rtol=1e-6)


def test_contexts_batch_marks_each_rows_last_token():
    b = contexts_batch([[5, 6, 7], [9]], bos_id=1, pad_id=0)
    assert b["tokens"].tolist() == [[1, 5, 6, 7], [1, 9, 0, 0]]
    assert b["last"].tolist() == [3, 1]
    assert b["input_mask"].sum(1).tolist() == [4, 2]


def test_parse_commit_reads_the_last_box():
    assert parse_commit("after x \\boxed{ 12}") == " 12"
    assert parse_commit("\\boxed{a} then \\boxed{b}") == "b"
    assert parse_commit("no box") is None
    assert parse_commit("\\boxed{open") is None
    assert parse_commit("\\boxed{}") == ""


def test_difficulty_counts_the_papers_thresholds():
    assert [difficulty(e) for e in (0.4, 0.6, 1.2, 1.6)] == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> SentencePieceTokenizer:
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "mat", "thermal", "theory", "apples", "costs", "$"]
    texts = [" ".join(rng.choice(words) for _ in range(12)) + f" {rng.randint(0, 99)}"
             for _ in range(300)]
    return SentencePieceTokenizer.train(texts, str(tmp_path_factory.mktemp("sp") / "m.model"),
                                        vocab_size=300)


def test_task_check_rewards_a_prefix_ending_on_a_true_token(tok, tmp_path):
    """The gold target passes its own check; a right prefix ending mid-token, a wrong token, a
    missing box and an empty box do not; two right tokens do."""
    ids = tok.encode("the cat sat on the thermal theory")
    t = 2
    found = make_positions(tok, [ids], [(0, t)], context_tokens=8, truth_tokens=4)
    assert len(found) == 1
    context, record = found[0]
    assert context == ids[:t] and record["truth"][0] == tok.token_bytes(ids[t:t + 1])[0].hex()
    (tmp_path / "test.jsonl").write_text(json.dumps({**record, "entropy": 1.2}) + "\n")
    task = RPTTask(str(tmp_path))
    (p,) = list(task.problems("test", 0))
    assert p.difficulty == 2 and task.prompt(p).startswith(p.question)
    assert p.meta["tail"] == tok.decode(ids[:t])  # the context's last (here: only) tokens
    truth = p.meta["truth"]
    first, second = truth[0].decode(), truth[1].decode()
    assert task.check(p, task.target(p)).correct
    assert task.check(p, f"x \\boxed{{{first}{second}}}").correct
    assert not task.check(p, f"x \\boxed{{{first[:-1]}}}").correct
    assert not task.check(p, "x \\boxed{ dog}").correct
    assert not task.check(p, "x \\boxed{}").correct
    no_box = task.check(p, first)
    assert no_box.answer is None and not no_box.correct


def test_a_models_top_token_is_read_with_its_space(tok):
    """The base's argmax is scored as the text it adds: a word-start piece keeps its space
    (decoding it alone drops the space and would never match), control ids add nothing."""
    ids = tok.encode("the cat sat on the mat")
    word = next(i for i in ids[1:] if tok.token_bytes([i])[0].startswith(b" "))
    truth = tok.token_bytes([word, *ids[-2:]])
    assert token_text(tok, word) == truth[0].decode() and prefix_match(token_text(tok, word),
                                                                       truth)
    assert not prefix_match(tok.decode([word]), truth)
    assert token_text(tok, tok.eos_id) == ""


def test_a_finished_stage_refuses_another_step_count(tmp_path):
    (tmp_path / "done.json").write_text(json.dumps({"steps": 632, "tokens": 1.0}))
    with pytest.raises(UserError, match="trained for 632 steps, this config asks 715"):
        train_lm(str(tmp_path), None, [], 715, 8, 16, 0, None, "ntp", 0)


def test_positions_skip_a_token_that_is_part_of_a_character(tok):
    """A character no training text had is byte-fallback pieces: a position before its second
    byte can earn nothing, so it is not a position."""
    ids = tok.encode("the cat € sat")
    pieces = tok.token_bytes(ids)
    inner = [t for t, b in enumerate(pieces) if len(b) == 1 and 0x80 <= b[0] < 0xC0]
    assert inner, pieces
    found = make_positions(tok, [ids], [(0, t) for t in range(1, len(ids))], 8, 4)
    kept = {r["t"] for _, r in found}
    assert not kept & set(inner) and kept


def test_read_positions_and_split_report(tmp_path):
    rows = [{"context": "a b", "tail": "a b", "truth": [b" c".hex()], "entropy": e, "doc": 0,
             "t": 2}
            for e in (0.6, 1.1, 1.6, 1.7)]
    (tmp_path / "x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = read_positions(str(tmp_path / "x.jsonl"))
    assert [p.answer for p in problems] == [" c"] * 4
    out = split_report(problems, [True, False, True, False])
    assert (out["easy"], out["easy_n"]) == (0.5, 4)
    assert (out["medium"], out["medium_n"]) == (pytest.approx(1 / 3), 3)
    assert (out["hard"], out["hard_n"]) == (0.5, 2)
    with pytest.raises(UserError, match="no positions file"):
        read_positions(str(tmp_path / "missing.jsonl"))


def test_corpus_reading_splitting_and_windows(tmp_path):
    jl = tmp_path / "c.jsonl"
    jl.write_text('{"question": "q1", "answer": "a1"}\n\n{"text": "t2"}\n')
    assert corpus.read_documents(str(jl)) == ["q1 a1", "t2"]
    txt = tmp_path / "c.txt"
    txt.write_text("one doc\nstill one\n\nsecond\n\n\n")
    assert corpus.read_documents(str(txt)) == ["one doc\nstill one", "second"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    with pytest.raises(UserError, match="bad.jsonl:1"):
        corpus.read_documents(str(bad))
    docs = [f"document number {i}" for i in range(200)]
    split = corpus.split_documents(docs)
    assert split == corpus.split_documents(docs)
    assert sorted(sum(split.values(), [])) == sorted(docs)
    assert 5 <= len(split["test"]) <= 40 and 5 <= len(split["valid"]) <= 40
    ex = corpus.windows([[5, 6, 7, 8], [9]], length=4, bos_id=1, eos_id=2)
    assert [e.prompt for e in ex] == [(1,), (1,)]
    assert [e.completion for e in ex] == [(5, 6, 7), (8, 2, 9)]  # the last (2,) is dropped


TINY = (
    "ModelConfig.d_model = 32", "ModelConfig.n_layers = 1", "ModelConfig.n_heads = 2",
    "ModelConfig.n_kv_heads = 1", "ModelConfig.head_dim = 16", "ModelConfig.d_ff = 64",
    "rpt.proxy_model = {'d_model': 16, 'head_dim': 8, 'd_ff': 32}", "rpt.vocab_size = 320",
    "rpt.proxy_steps = 4", "rpt.base_steps = 6", "rpt.sft_steps = 4", "rpt.pretrain_batch = 8",
    "rpt.sft_batch = 8", "rpt.train_candidates = 200", "rpt.eval_candidates = 100",
    "rpt.valid_positions = 8", "rpt.test_positions = 16", "rpt.max_new_tokens = 8",
    "rpt.min_entropy = 0.1", "rl.steps = 4", "rl.eval_every = 2", "rl.ckpt_every = 2",
    "rl.eval_problems = 8", "rl.eval_samples = 2", "rl.pass_k_problems = 4",
    "rl.test_problems = 8", "rl.test_samples = 2", "rl.test_ks = (1, 2)", "rl.pass_ks = (1, 2)",
    "rl_learner.prompts_per_step = 4",
    "rl_learner.group_size = 2", "rl_learner.mini_batches = 1", "rl_learner.max_new_tokens = 8",
)


def test_rpt_job_killed_mid_run_resumes_to_the_same_report(tmp_path):
    rng = random.Random(0)
    names, things = ["Ann", "Bo", "Cy"], ["apples", "pens", "cards"]
    docs = []
    for _ in range(120):
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        n, t = rng.choice(names), rng.choice(things)
        docs.append(f"{n} has {a} {t}. {n} buys {b} more. {n} has {a} + {b} = {a + b} {t}.")
    text = tmp_path / "corpus.txt"
    text.write_text("\n\n".join(docs))
    job = (*TINY, f"rpt.corpus = '{text}'")
    whole = subprocess.Popen(job_command("jaxrl_reason.rpt", tmp_path / "whole", *job,
                                         gin_file="configs/rpt_gsm8k.gin"),
                             cwd=REPO, stdin=subprocess.DEVNULL, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cmd = job_command("jaxrl_reason.rpt", tmp_path / "killed", *job,
                      gin_file="configs/rpt_gsm8k.gin")
    kill_when(cmd, checkpoint_saved(tmp_path / "killed" / "rl" / "checkpoints"),
              "killed inside the RL stage")
    _, err = whole.communicate(timeout=400)
    assert whole.returncode == 0, err[-3000:]
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400,
                             stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reports = [json.loads((tmp_path / d / "report.json").read_text())
               for d in ("whole", "killed")]
    assert reports[0]["models"] == reports[1]["models"]
    assert reports[0]["flops"] == reports[1]["flops"]
    assert set(reports[0]["models"]) == {"base", "ntp", "sft", "rpt"}
    assert reports[0]["flops"]["ntp_steps"] >= 1
    assert (tmp_path / "whole" / "rpt.png").stat().st_size > 0
    rl_records = [deterministic_metrics(tmp_path / d / "rl") for d in ("whole", "killed")]
    assert rl_records[0] == rl_records[1]
    assert any("completion_tokens_mean" in r for r in rl_records[0])


def test_rpt_task_refuses_missing_positions(tmp_path):
    with pytest.raises(UserError, match="no positions file"):
        next(RPTTask(str(tmp_path)).problems("train", 0))
    with pytest.raises(UserError, match="split must be one of"):
        RPTTask(str(tmp_path)).split("dev")
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(UserError, match="holds no position"):
        next(RPTTask(str(tmp_path)).problems("train", 0))


def test_rl_flops_by_hand(tmp_path):
    """Two RL steps of 2 prompts x 3 samples, 5-token prompts, N = 10 parameters, mu = 1:
    step 1 samples 6 rows x 5 prompt tokens + 12 completion tokens = 42 tokens, step 2 (two
    sampling rounds) 12 x 5 + 30 = 90; each sampled token costs 2N to draw, 2N for pi_old's
    log-probs (the learner scores them at mu = 1 too) and 6N per training pass:
    (42 + 90) x 10 x 10 = 13,200; mu = 2: x 16. An evaluation-only record adds nothing."""
    from jaxrl_reason.rl.learner import LearnerConfig
    from jaxrl_reason.rpt.loop import rl_flops

    records = [{"step": 0, "acc": 0.1},
               {"step": 1, "rollout_tokens": 12, "sampling_rounds": 1},
               {"step": 2, "rollout_tokens": 30, "sampling_rounds": 2}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = LearnerConfig(prompts_per_step=2, group_size=3, num_iterations=1, mini_batches=1)
    assert rl_flops(str(tmp_path), 10, 5.0, cfg) == pytest.approx(13_200)
    cfg2 = LearnerConfig(prompts_per_step=2, group_size=3, num_iterations=2, mini_batches=1)
    assert rl_flops(str(tmp_path), 10, 5.0, cfg2) == pytest.approx((42 + 90) * 16 * 10)
