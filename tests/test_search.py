"""Search: answer selection (vote, best-of-N, weighted vote), the generated-token cost of every
strategy, PRM beam / lookahead search bookkeeping on a scripted sampler, and beam search on the
real sampler continuing each kept beam from its own cache rows."""

import dataclasses

import jax
import numpy as np
import pytest
from conftest import TINY, forward, init_params

from jaxrl_reason import parallel
from jaxrl_reason.sampling.distribution import banned_mask, sampling_logprobs
from jaxrl_reason.sampling.sampler import Extension, Sampler, SamplingConfig
from jaxrl_reason.search import strategies
from jaxrl_reason.search.beam import beam_search
from jaxrl_reason.search.loop import budgets
from jaxrl_reason.search.selection import best_of_n, majority_vote, weighted_vote


# ---- selection ---------------------------------------------------------------------------
def test_majority_vote_compares_numbers_by_value_and_ignores_unparsed_answers():
    assert majority_vote(["3", "4", "3.0", None, None, None]) == 0  # "3" twice beats "4"
    assert majority_vote(["4", "3", "3", "4"]) == 0  # a tie goes to the answer seen first
    assert majority_vote([None, None]) == 0


def test_weighted_vote_sums_scores_per_answer():
    assert weighted_vote(["3", "4", "4"], [0.9, 0.5, 0.3]) == 0  # 0.9 > 0.5 + 0.3
    assert weighted_vote(["3", "4", "4"], [0.5, 0.3, 0.5]) == 2  # 0.8 wins; its best sample
    assert weighted_vote([None, "4"], [0.9, 0.1]) == 1


def test_best_of_n_takes_the_highest_scored_answered_solution():
    assert best_of_n(["3", "4", "5"], [0.2, 0.7, 0.7]) == 1
    assert best_of_n(["3", None, "5"], [0.2, 0.9, 0.1]) == 0  # no answer: never picked
    assert best_of_n([None, None], [0.2, 0.9]) == 1  # unless no solution has one


def test_budgets_are_powers_of_two():
    assert budgets(64) == [1, 2, 4, 8, 16, 32, 64] and budgets(48) == [1, 2, 4, 8, 16, 32]


# ---- pool strategies: accuracy and cost ---------------------------------------------------
@dataclasses.dataclass
class PoolContext:
    _pool: strategies.Pool

    def pool(self):
        return self._pool


POOL = strategies.Pool(
    answers=[["1", "2", "2", "1"], ["5", "6", "7", "6"]],
    correct=np.array([[1, 0, 0, 1], [0, 0, 1, 0]], bool),
    tokens=np.array([[10, 20, 30, 40], [5, 5, 5, 5]]),
    scores={"v": np.array([[0.9, 0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4]])},
)


@pytest.mark.parametrize("method, n, correct, tokens", [
    # n = 2: groups (cols 0-1, 2-3); tokens = the group's sum, averaged over the 2 groups
    ("best_of_n:v", 2, [1.0, 0.0], [50, 10]),  # picks 0 and 3 | 1 and 3
    ("weighted:v", 2, [1.0, 0.0], [50, 10]),
    ("majority", 2, [0.5, 0.5], [50, 10]),  # ties -> first: "1" (right), "2" | "5", "7" (right)
    ("best_of_n:v", 4, [1.0, 0.0], [100, 20]),
    ("weighted:v", 4, [1.0, 0.0], [100, 20]),  # "1": 1.2 > "2": 0.3 | "6": 0.6 > "7": 0.3
    ("majority", 4, [1.0, 0.0], [100, 20]),  # "1" ties "2", first wins | "6" twice
    ("pass@1", 4, [0.5, 0.25], [25, 5]),  # one sample: the pool's mean, whatever n
])
def test_pool_strategies_accuracy_and_generated_tokens(method, n, correct, tokens):
    name, verifier = strategies.parse_method(method)
    got = strategies.STRATEGIES[name](PoolContext(POOL), n, verifier)
    np.testing.assert_allclose(got.correct, correct)
    np.testing.assert_allclose(got.tokens, tokens)


def test_unknown_strategy_and_missing_verifier_are_named():
    with pytest.raises(ValueError, match="unknown search strategy 'bst'"):
        strategies.parse_method("bst:prm")
    with pytest.raises(ValueError, match="'best_of_n:<verifier name>'"):
        strategies.STRATEGIES["best_of_n"](PoolContext(POOL), 2, None)
    for method in ("beam", "lookahead", "weighted:"):  # refused before anything is sampled
        with pytest.raises(ValueError, match=f"'{method.rstrip(':')}:<verifier name>'"):
            strategies.parse_method(method)


# ---- beam search on a scripted sampler ----------------------------------------------------
STOP, DELIM = 2, 9


@dataclasses.dataclass
class ScriptState:
    rows: list  # per row: its generated tokens
    room: int
    used: int = 0


class ScriptedSampler:
    """Row r of an extend call writes the step [10 + (r + call) % 5, DELIM]; a row with
    `steps` steps emits the stop token. Calls and generated tokens are recorded."""

    stop = (STOP,)

    def __init__(self, steps: int):
        self.steps, self.calls, self.generated = steps, 0, 0

    def room(self, longest):
        return 100

    def prefill(self, prompts, slots):
        return ScriptState([[] for _ in prompts], slots)

    def select(self, state, rows):
        return ScriptState([list(state.rows[r]) for r in rows], state.room, state.used)

    def extend(self, state, cfg, max_steps, key, stop_ids=()):
        assert tuple(stop_ids) == (DELIM,)
        new = []
        for r, row in enumerate(state.rows):
            if row and row[-1] == STOP:
                new.append([])
            elif row.count(DELIM) == self.steps:
                new.append([STOP])
            else:
                new.append([10 + (r + self.calls) % 5, DELIM])
            row += new[-1]
        self.calls += 1
        self.generated += sum(map(len, new))
        width = max(max(map(len, new)), 1)
        tokens = np.zeros((len(new), width), np.int32)
        for r, t in enumerate(new):
            tokens[r, : len(t)] = t
        finished = np.array([bool(row) and row[-1] == STOP for row in state.rows])
        state.used += width
        return Extension(tokens, np.zeros(tokens.shape), None, np.array(list(map(len, new))),
                         finished), dataclasses.replace(state, room=state.room - width)


def last_step_score(examples):
    """A verifier that likes large step tokens: (the last non-delimiter token - 10) / 5."""
    return np.array([([t for t in ex.completion if t != DELIM][-1] - 10) / 5 for ex in examples])


CFG = SamplingConfig(max_new_tokens=40, temperature=1.0)


def test_beam_search_keeps_the_best_beams_and_counts_every_generated_token():
    sampler = ScriptedSampler(steps=2)
    result = beam_search(sampler, last_step_score, [[1, 3], [1, 4]], n=4, width=2, cfg=CFG,
                         key=jax.random.key(0), delimiters=[DELIM], how="last")
    # per problem and depth: 4 rows x 2 tokens (two steps), then 4 stop tokens
    assert result.tokens.tolist() == [4 * 2 + 4 * 2 + 4, 4 * 2 + 4 * 2 + 4]
    assert sampler.generated == result.tokens.sum()
    # depth 0 drew first steps 10 11 12 13 (problem 0) and 14 10 11 12 (problem 1); the best
    # two were kept, two children each; depth 1 drew 11 12 13 14 and 10 11 12 13 for them,
    # and the best two of those (by their last step) finished
    pairs = [sorted((c.tokens[0], c.tokens[2]) for c in pool) for pool in result.pools]
    assert pairs == [[(12, 13), (12, 13), (12, 14), (12, 14)],
                     [(12, 12), (12, 12), (12, 13), (12, 13)]]
    for pool in result.pools:
        assert all(c.finished and c.tokens[-1] == STOP for c in pool)
        assert all(c.step_scores == [(c.tokens[0] - 10) / 5, (c.tokens[2] - 10) / 5]
                   for c in pool)


def test_lookahead_counts_its_rollouts():
    sampler = ScriptedSampler(steps=2)
    result = beam_search(sampler, last_step_score, [[1, 3]], n=4, width=2, cfg=CFG,
                         key=jax.random.key(0), delimiters=[DELIM], lookahead=1)
    # beam's 20 tokens, plus a one-step rollout from each of the 4 new unfinished steps at
    # depths 0 (a second step: 2 tokens) and 1 (the stop token: 1)
    assert result.tokens.tolist() == [20 + 4 * 2 + 4 * 1]
    assert sampler.generated == result.tokens.sum()


def test_beam_search_out_of_depth_keeps_unfinished_candidates_once():
    result = beam_search(ScriptedSampler(steps=5), last_step_score, [[1, 3]], n=4, width=2,
                         cfg=CFG, key=jax.random.key(0), delimiters=[DELIM], max_depth=2)
    assert len(result.pools[0]) == 4 and not any(c.finished for c in result.pools[0])
    assert result.tokens.tolist() == [16]


# ---- beam search on the real sampler: each beam continues from its own cache rows ---------
def test_beam_search_continues_each_kept_beam_from_its_own_cache_rows(devices):
    """The log-prob the sampler reported for every token of every final candidate equals the
    uncached model's on that candidate's own text: a kept beam whose cache rows came from
    another row would decode from the wrong history."""
    params = init_params(TINY)
    sampler = Sampler(TINY, stop_tokens=[STOP], mesh=parallel.make_mesh(), banned_ids=(0, 1))
    sampler.load(params)
    generated = []
    real_extend = sampler.extend

    def extend(*args, **kw):
        ext, state = real_extend(*args, **kw)
        generated.append(int(ext.lengths.sum()))
        return ext, state

    sampler.extend = extend
    prompts = [[1, 7, 8, 11], [1, 20, 21], [1, 30]]
    score = lambda exs: np.array([(sum(ex.completion) % 7) / 7 for ex in exs])
    cfg = SamplingConfig(max_new_tokens=24, temperature=1.0)
    result = beam_search(sampler, score, prompts, n=4, width=2, cfg=cfg, key=jax.random.key(3),
                         delimiters=[5], step_tokens=3, max_depth=4)
    assert result.tokens.sum() == sum(generated)  # every extend's tokens, pruned rows too
    candidates = [(p, c) for p, pool in enumerate(result.pools) for c in pool]
    assert len(candidates) >= 3 * 4
    seqs = np.zeros((len(candidates), 32), np.int32)  # right padding leaves the logits alone
    for i, (p, c) in enumerate(candidates):
        seqs[i, : len(prompts[p]) + len(c.tokens)] = [*prompts[p], *c.tokens]
    logits, _ = forward(params, seqs)
    logp = np.asarray(sampling_logprobs(logits, 1.0, greedy=False, top_k=0, top_p=1.0,
                                        banned=banned_mask(TINY.vocab_size, (0, 1))))
    for i, (p, c) in enumerate(candidates):
        start = len(prompts[p]) - 1  # the logits at position t predict token t + 1
        want = [logp[i, start + j, t] for j, t in enumerate(c.tokens)]
        np.testing.assert_allclose(c.logprobs, want, atol=2e-4)
