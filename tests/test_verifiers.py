"""Verifiers: labels (outcome, exact, Monte-Carlo on a toy completer), supervision that stops
at the first wrong step, value targets at the right tokens, the losses against hand-computed
values, scores read at the step ends, and a verifier that learns a toy signal and reloads."""

import dataclasses
import functools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY, forward, init_params

from jaxrl_reason import files, parallel
from jaxrl_reason.data.batching import Example, encode_prompt
from jaxrl_reason.data.chain import ChainTask
from jaxrl_reason.errors import ConfigError
from jaxrl_reason.rollouts import Rollout
from jaxrl_reason.sampling.sampler import Samples, SamplingConfig
from jaxrl_reason.tokenizers import CharTokenizer
from jaxrl_reason.training.losses import Forward, sft_loss
from jaxrl_reason.training.optim import make_optimizer
from jaxrl_reason.training.trainer import Trainer
from jaxrl_reason.verifiers import labels, montecarlo, training
from jaxrl_reason.verifiers import loop as verifier_job
from jaxrl_reason.verifiers.active import convincing_wrong_first
from jaxrl_reason.verifiers.losses import verifier_loss
from jaxrl_reason.verifiers.scoring import Verifier, VerifierMeta, aggregate, load_verifier
from jaxrl_reason.verifiers.solutions import Solution, from_rollouts, step_delimiters
from jaxrl_reason.verifiers.targets import orm_target, prm_target, target_batch, targets_for

TOK = CharTokenizer()
TASK = ChainTask()
PROBLEM = TASK.problem(7, (("+", 5), ("*", 3), ("-", 4)))  # 12, 36, 32
NL = TOK.encode("\n")[0]


def solution(text: str, problem=PROBLEM, index: int = 0) -> Solution:
    """The checked, labeled record of a finished completion `text` of `problem`."""
    prompt = encode_prompt(TOK, TASK.prompt(problem))
    completion = (*TOK.encode(text), TOK.eos_id)
    rollout = Rollout(problem, TASK.prompt(problem), text, TASK.check(problem, text),
                      tuple(prompt), completion, True)
    return from_rollouts([rollout], [index], TOK, step_delimiters(TOK))[0]


# ---- labels ------------------------------------------------------------------------------
@pytest.mark.parametrize("labels_, mask", [
    ([1, 1, 0, 1, 0], [1, 1, 1, 0, 0]),  # the first wrong step is supervised, later ones not
    ([1, 1, 1], [1, 1, 1]),
    ([0, 1], [1, 0]),
    ([0.25, 0.0, 0.5], [1, 1, 0]),  # soft: 0 means no continuation reached the answer
    ([], []),
])
def test_supervision_stops_at_the_first_wrong_step(labels_, mask):
    assert labels.supervised_steps(labels_).tolist() == [bool(m) for m in mask]


def test_exact_labels_per_step_end_from_a_rollout():
    right = solution("<<7+5=12>>\n<<12*3=36>>\n<<36-4=32>>\n#### 32\n")
    assert right.correct and right.exact == (True, True, True, True)
    text = "<<7+5=12>>\n<<12*3=35>>\n<<36-4=32>>\n#### 32\n"  # a slip, then the true value
    s = solution(text)
    assert s.step_ends == tuple(i for i, c in enumerate(text) if c == "\n")
    assert s.exact == (True, False, True, True) and s.correct
    wrong = solution("<<7+5=12>>\n<<12*3=35>>\n<<35-4=31>>\n#### 31\n")
    assert wrong.exact == (True, False, False, False) and not wrong.correct
    # an empty line is a (wrong) step of its own, so the lines after it are judged one
    # operation later (verdict k is line k's, as the RL step reward reads it); then a line
    # past the problem's steps, and no answer line
    assert solution("<<7+5=12>>\n\n<<12*3=36>>\n<<36-4=32>>\n<<32+1=33>>\n").exact == (
        True, False, False, False, False)
    assert solution("<<7+5=12>>\n<<12*3=36>>\n<<36-4=32>>\n<<32+1=33>>\n").exact == (
        True, True, True, False)
    # a completion that stops at once (an undertrained policy): no step ends, no step labels
    empty = solution("")
    assert empty.step_ends == () and empty.exact == () and not empty.correct


def test_answer_line_labels_need_a_step_checker():
    check = dataclasses.replace(TASK.check(PROBLEM, "#### 3"), steps=None)
    with pytest.raises(ValueError, match="Monte-Carlo"):
        labels.answer_line_labels(["#### 3\n"], check)


def test_monte_carlo_labels_hard_is_any_soft_is_fraction():
    hard, soft = labels.monte_carlo_labels([[0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    assert hard.tolist() == [1, 0, 1] and soft.tolist() == [0.25, 0, 1]


def test_label_agreement_against_hand_counts():
    exact = [[True, False, False], [True, True]]
    hard = [[1.0, 0.0, math.nan], [1.0, 0.0]]  # NaN: not labeled (past a wrong step)
    soft = [[0.75, 0.0, math.nan], [0.25, 0.0]]
    got = labels.label_agreement(exact, hard, soft)
    assert got["steps"] == 4 and got["exact_wrong_fraction"] == 0.25
    assert got["hard_accuracy"] == 0.75  # the last step: exact right, hard wrong
    assert got["hard_wrong_recall"] == 1.0 and got["hard_wrong_precision"] == 0.5
    assert got["soft_accuracy"] == 0.5  # 0.75 -> right (ok), 0 ok, 0.25 -> wrong (no), 0 (no)
    assert got["soft_mae"] == pytest.approx((0.25 + 0 + 0.75 + 1) / 4)


def test_step_accuracy_counts_steps_up_to_the_first_wrong_one():
    scores = [[0.9, 0.2, 0.9], [0.6, 0.4]]
    exact = [[True, False, True], [True, True]]  # the third step of the first is unsupervised
    got = labels.step_accuracy(scores, exact)
    assert got == {"steps": 4, "accuracy": 0.75, "wrong_step_accuracy": 1.0,
                   "right_step_accuracy": pytest.approx(2 / 3)}


# ---- Monte-Carlo labels from a toy completer ----------------------------------------------
class ToyCompleter:
    """A sampler stand-in: from a prefix with w wrong lines and c lines, the first c of K
    continuations reach the gold answer when w == 0, none otherwise."""

    stop = (TOK.eos_id,)

    def __init__(self):
        self.prefixes = []

    def room(self, longest: int) -> int:
        return 200

    def generate(self, prompts, cfg: SamplingConfig, key) -> Samples:
        rows = []
        for prompt in prompts:
            question, prefix = TOK.decode(prompt[1:]).split("\n", 1)
            self.prefixes.append(prefix)
            assert prefix.endswith("\n")  # the prefix ends at a step end
            lines = prefix.count("\n")
            wrong = not all(labels.answer_line_labels(
                prefix.split("\n")[:-1], TASK.check(PROBLEM, prefix)))
            hits = 0 if wrong else lines
            rows += [f"#### {PROBLEM.answer if k < hits else 0}\n" for k in range(cfg.n)]
        width = max(len(r) for r in rows) + 1
        tokens = np.zeros((len(rows), width), np.int32)
        for r, text in enumerate(rows):
            tokens[r, : len(text) + 1] = [*TOK.encode(text), TOK.eos_id]
        lengths = np.array([len(r) + 1 for r in rows])
        return Samples(tokens, np.zeros(tokens.shape), lengths, np.ones(len(rows), bool),
                       np.repeat(np.arange(len(prompts)), cfg.n))


def test_monte_carlo_labels_from_each_step_prefix_stop_at_the_first_wrong_step():
    right = solution("<<7+5=12>>\n<<12*3=36>>\n<<36-4=32>>\n#### 32\n")
    slip = solution("<<7+5=12>>\n<<12*3=35>>\n<<36-4=32>>\n#### 32\n")
    sols = [right, slip]
    state = montecarlo.MonteCarloState.empty(sols)
    toy = ToyCompleter()
    while not state.done(sols):
        montecarlo.label_round(toy, TASK, TOK, [PROBLEM], sols, state, 4,
                               SamplingConfig(max_new_tokens=20), jax.random.key(0))
    # right: prefixes of 1, 2, 3 right lines -> 1/4, 2/4, 3/4; the answer step: its outcome
    assert state.soft[0] == [0.25, 0.5, 0.75, 1.0] and state.hard[0] == [1, 1, 1, 1]
    # slip: line 2 is wrong -> no continuation hits, and labeling stops there
    assert state.soft[1][:2] == [0.25, 0.0] and state.hard[1][:2] == [1.0, 0.0]
    assert all(math.isnan(x) for x in state.hard[1][2:] + state.soft[1][2:])
    assert len(toy.prefixes) == 3 + 2  # no sampling for the answer step or past a 0
    # 7 continuations "#### 32\n" + stop (9 tokens), 13 "#### 0\n" + stop (8 tokens)
    assert state.tokens == 7 * 9 + 13 * 8
    # every later step is labeled without the stop (an unsupervised label is still a label)
    free = montecarlo.MonteCarloState.empty([slip])
    while not free.done([slip]):
        montecarlo.label_round(toy, TASK, TOK, [PROBLEM], [slip], free, 4,
                               SamplingConfig(max_new_tokens=20), jax.random.key(0),
                               stop_at_wrong=False)
    assert free.hard[0] == [1.0, 0.0, 0.0, 1.0]


# ---- targets -----------------------------------------------------------------------------
def test_prm_targets_sit_at_step_ends_and_stop_at_the_first_wrong_step():
    s = solution("<<7+5=12>>\n<<12*3=35>>\n<<36-4=32>>\n#### 32\n")
    t = prm_target(s, s.labels("exact"))
    assert t.index == s.step_ends[:2] and t.value == (1.0, 0.0)
    soft = prm_target(s, [0.5, 0.25, math.nan, 1.0])  # NaN: unlabeled ends supervision
    assert soft.index == s.step_ends[:2] and soft.value == (0.5, 0.25)
    assert prm_target(s, [math.nan] * 4) is None
    batch = target_batch([t, orm_target(s)], 64, TOK.pad_id)
    p = len(s.prompt)
    assert np.flatnonzero(batch["value_mask"][0]).tolist() == [p + e for e in s.step_ends[:2]]
    assert batch["value_targets"][0, p + s.step_ends[0]] == 1.0
    assert batch["value_targets"][0, p + s.step_ends[1]] == 0.0
    # ORM: the outcome at every completion token (the stop token too), no question token
    orm_mask = batch["value_mask"][1]
    assert np.array_equal(orm_mask, batch["loss_mask"][1]) and orm_mask[:p].sum() == 0
    assert (batch["value_targets"][1][orm_mask > 0] == 1.0).all()
    assert len(targets_for([s], "prm", "exact")) == 1


def test_a_prm_scored_by_its_last_step_is_supervised_on_every_step(tmp_path):
    """aggregate="last" reads the answer line's score: supervision that stops at the first
    wrong step would (almost) never label a wrong answer line, so every exact label trains;
    Monte-Carlo labels, which stop there, are refused with it, and so is a search reading the
    last step of a PRM trained the other way."""
    s = solution("<<7+5=12>>\n<<12*3=35>>\n<<35-4=31>>\n#### 31\n")  # wrong from step 2
    assert prm_target(s, s.labels("exact")).value == (1.0, 0.0)
    every = targets_for([s], "prm", "exact", every_step=True)[0]
    assert every.index == s.step_ends and every.value == (1.0, 0.0, 0.0, 0.0)
    with pytest.raises(ConfigError, match="train_verifier.aggregate='last'"):
        verifier_job.train_verifier(str(tmp_path), task=TASK, verifiers=("orm", "prm_mc"),
                                    aggregate="last")


# ---- losses ------------------------------------------------------------------------------
def _fwd(values):
    tokens = jnp.array([[1, 3, 4]])
    logits = jnp.log(jnp.array([[[0.1, 0.2, 0.3, 0.3, 0.1]] * 3]))
    return Forward(tokens, logits, jnp.array(values, jnp.float32)), {
        "value_targets": jnp.array([[0.0, 1.0, 0.0]]), "value_mask": jnp.array([[0, 1, 1]]),
        "loss_mask": jnp.array([[0, 1, 1]])}


def test_verifier_losses_match_hand_computed_values():
    fwd, batch = _fwd([[0.0, 2.0, -1.0]])
    total, count, m = verifier_loss(fwd, batch, "bce")
    assert float(count) == 2
    assert float(total) == pytest.approx(math.log1p(math.exp(-2)) + math.log1p(math.exp(-1)),
                                         rel=1e-5)
    assert float(m["value_accuracy"][0]) == 2  # sigmoid(2) > 0.5 = 1, sigmoid(-1) < 0.5 = 0
    total, _, _ = verifier_loss(fwd, batch, "mse")
    assert float(total) == pytest.approx((2 - 1) ** 2 + (-1 - 0) ** 2)
    joint, _, m = verifier_loss(fwd, batch, "mse", lm_weight=0.5)
    nll = -(math.log(0.3) + math.log(0.1))  # tokens 3 and 4 under the fixed distribution
    assert float(joint) == pytest.approx(2 + 0.5 * nll, rel=1e-5)
    assert float(m["lm_nll"][0]) == pytest.approx(float(sft_loss(fwd, batch)[0]), rel=1e-6)


# ---- scoring -----------------------------------------------------------------------------
def test_aggregates():
    assert aggregate([0.5, 0.8, 0.9], "product") == pytest.approx(0.36)
    assert aggregate([0.5, 0.8, 0.9], "min") == 0.5
    assert aggregate([0.5, 0.8, 0.9], "last") == 0.9
    assert aggregate([], "product") == 0.0
    with pytest.raises(ValueError, match="how='mean'"):
        aggregate([0.5], "mean")


def _meta(kind: str) -> VerifierMeta:
    return VerifierMeta(kind, "verifier_bce", "exact", dataclasses.asdict(TINY), (5,), (2,), 0)


def test_scores_are_read_at_the_step_ends_of_each_example(devices):
    params = init_params(TINY)
    mesh = parallel.make_mesh()
    rng = np.random.default_rng(0)
    examples = [Example((1, *rng.integers(6, 40, 3)), (*rng.integers(6, 40, n), 5, 7, 5, 2))
                for n in (2, 9, 30)]  # different lengths: sorted and bucketed internally
    prm = Verifier(_meta("prm"), params, mesh, batch_rows=2)
    ends = [prm.steps_of(ex) for ex in examples]
    assert ends[0] == [2, 4]  # the two delimiters; the stop token ends no step
    got = prm.step_scores(examples, ends)
    for ex, e, g in zip(examples, ends, got, strict=True):
        _, values = forward(params, np.array([[*ex.prompt, *ex.completion]]))
        want = jax.nn.sigmoid(values[0, len(ex.prompt) + np.array(e)])
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prm.outcome_scores(examples), [np.prod(g) for g in got],
                               rtol=1e-6)
    orm = Verifier(_meta("orm"), params, mesh)
    last = [orm.token_scores([ex])[0][-1] for ex in examples]
    np.testing.assert_allclose(orm.outcome_scores(examples), last, rtol=1e-6)


def test_a_verifier_learns_a_toy_signal_and_reloads(tmp_path, devices):
    """Label = whether token 15 appears in the completion: only attention to every completion
    token can read it off at the last one."""
    mesh = parallel.make_mesh()
    rng = np.random.default_rng(0)

    def toy(n):
        out = []
        for _ in range(n):
            completion = rng.integers(10, 21, 6)
            ok = bool((completion == 15).any())
            out.append(Solution(0, (1, 3), (*completion.tolist(), 2), True, None, ok, (6,)))
        return out

    train, test = toy(512), toy(128)
    trainer = Trainer(TINY, make_optimizer(learning_rate=3e-3, warmup_steps=10), mesh,
                      loss=functools.partial(verifier_loss, kind="bce"))
    meta = _meta("orm")
    directory = str(tmp_path / "orm")
    trained = training.train(directory, trainer, meta, train, lambda: trainer.init_params(0),
                             steps=150, batch_size=32, max_len=16, seed=0, ckpt_every=0)
    scores = trained.outcome_scores([s.example for s in test])
    accuracy = np.mean((scores >= 0.5) == np.array([s.correct for s in test]))
    assert accuracy >= 0.9, accuracy
    reloaded = load_verifier(directory, mesh=mesh)  # verifier.json + the checkpoint
    np.testing.assert_allclose(reloaded.outcome_scores([s.example for s in test]), scores,
                               rtol=1e-5)
    assert training.is_trained(directory)
    # active learning: half the labels, in two rounds; round 1 takes the solutions the round-0
    # verifier scores highest among the wrong ones (80%), then the best-scored others
    active = str(tmp_path / "active")
    training.train(active, trainer, meta, train, lambda: trainer.init_params(0), steps=60,
                   batch_size=32, max_len=16, seed=0, rounds=1, budget=0.5, ckpt_every=0)
    first, second = files.read_json(f"{active}/active_rounds.json")
    assert len(first) == len(second) == 128 and not set(first) & set(second)
    wrong = [i for i in second if not train[i].correct]
    assert len(wrong) == round(0.8 * 128)
    assert [train[i].correct for i in second[: len(wrong)]] == [False] * len(wrong)


def test_the_verifier_model_is_the_policys_with_explicit_overrides():
    """train_verifier.verifier_model: fields over the policy's config for a verifier trained
    from scratch; one that starts from the policy's weights keeps its shape."""
    scratch = training.verifier_model(TINY, "scratch", {"d_model": 32, "n_layers": 1})
    assert (scratch.d_model, scratch.n_layers, scratch.value_head) == (32, 1, True)
    assert scratch.vocab_size == TINY.vocab_size and scratch.d_ff == TINY.d_ff
    assert training.verifier_model(TINY, "policy", {}) == dataclasses.replace(TINY,
                                                                            value_head=True)
    with pytest.raises(ConfigError, match="train_verifier.verifier_model"):
        training.verifier_model(TINY, "policy", {"d_model": 32})


def test_convincing_wrong_answers_first():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    correct = [True, False, True, False, False, True]
    assert convincing_wrong_first(scores, correct, 3, wrong_fraction=2 / 3) == [1, 3, 0]
    assert convincing_wrong_first(scores, correct, 5, wrong_fraction=0.8) == [1, 3, 4, 0, 2]
    assert convincing_wrong_first([0.1, 0.2], [True, True], 1) == [1]  # no wrong ones left


# ---- stages resume after a kill ------------------------------------------------------------
class Killed(Exception):
    pass


def test_sampled_solutions_resume_chunk_by_chunk(tmp_path, monkeypatch):
    calls = []

    def rollouts(sampler, params, task, tok, problems, cfg, key, chunk):
        calls.append(problems[0].question)
        if sampler == "dies on the second chunk" and len(calls) == 2:
            raise Killed
        return [Rollout(p, task.prompt(p), p.rationale, task.check(p, p.rationale),
                        tuple(encode_prompt(tok, task.prompt(p))),
                        (*tok.encode(task.target(p)), tok.eos_id), True)
                for p in problems for _ in range(cfg.n)]

    monkeypatch.setattr(verifier_job.rollouts, "sample_and_check", rollouts)
    problems = TASK.problems_of_length(3, 5, seed=0)
    cfg = SamplingConfig(n=2)

    def run(sampler, directory):
        pol = verifier_job.Policy(types.SimpleNamespace(tok=TOK, sampler=sampler), None, "")
        return verifier_job.sample_solutions(str(directory), pol, TASK, problems, cfg,
                                             jax.random.key(0), chunk_rows=4)

    whole = run("fine", tmp_path / "whole")
    calls.clear()
    with pytest.raises(Killed):
        run("dies on the second chunk", tmp_path / "killed")
    resumed = run("fine", tmp_path / "killed")
    assert calls == [problems[i].question for i in (0, 2, 2, 4)]  # chunk 0 is not redone
    assert [s.to_json() for s in resumed] == [s.to_json() for s in whole]
    assert len(whole) == 10 and [s.problem for s in whole] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_monte_carlo_labels_resume_after_the_last_finished_round(tmp_path):
    sols = [solution("<<7+5=12>>\n<<12*3=36>>\n<<36-4=32>>\n#### 32\n")]

    class Dies(ToyCompleter):
        def load(self, params):
            pass

        def generate(self, prompts, cfg, key):
            if len(self.prefixes) == 2:
                raise Killed
            return super().generate(prompts, cfg, key)

    def run(sampler):
        pol = verifier_job.Policy(types.SimpleNamespace(tok=TOK, sampler=sampler), None, "")
        return verifier_job.monte_carlo_labels(str(tmp_path / "mc.json"), pol, TASK, [PROBLEM],
                                               sols, 4, SamplingConfig(max_new_tokens=20),
                                               jax.random.key(0))

    dies = Dies()
    with pytest.raises(Killed):
        run(dies)
    again = Dies()
    again.prefixes = ["pretend"]  # lets it sample once more before it would die
    run(again)
    assert again.prefixes[1:] == ["<<7+5=12>>\n<<12*3=36>>\n<<36-4=32>>\n"]  # step 3 only
    assert sols[0].mc_soft == (0.25, 0.5, 0.75, 1.0)
