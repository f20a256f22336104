"""Sampler: what the KV-cache decode loop emits is what the model's full forward pass says, for
ragged prompts and every sampling mode; the distribution it draws from (temperature, banned ids,
top-k, top-p) is the one its log-probs report, both checked against numpy's definition of it;
incremental decoding (extend / select) is the same computation as one `generate` call."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY, forward, init_params

from jaxrl_reason.sampling.distribution import (
    draw,
    first_argmax,
    gumbel,
    sampling_logprobs,
    top_k_mask,
    top_p_mask,
)
from jaxrl_reason.sampling.sampler import Sampler, SamplingConfig

PROMPTS = [[1, 5, 9], [1, 7, 22, 13, 9, 5, 3], [1], [1, 12, 25, 6, 10]]  # ragged
MAX_NEW = 8
GREEDY = SamplingConfig(max_new_tokens=MAX_NEW, temperature=0.0)
BANNED = (0, 1)  # pad, BOS


@pytest.fixture(scope="module")
def params():
    """Random params scaled up: at init the tied embeddings make greedy repeat the last prompt
    token, and a sampler that mixed up positions or rows would still pass on such output."""
    return jax.tree.map(lambda x: 2.0 * x, init_params(TINY))


def make_sampler(params, stop=(), **kw):
    sampler = Sampler(TINY, stop_tokens=stop, banned_ids=BANNED, **kw)
    sampler.load(params)
    return sampler


@pytest.fixture(scope="module")
def sampler(params):
    return make_sampler(params)


@pytest.fixture(scope="module")
def greedy(sampler):
    return sampler.generate(PROMPTS, GREEDY)


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        out = z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))
    return np.where(np.isneginf(z), -np.inf, out)


def np_sampling_logprobs(logits: np.ndarray, cfg: SamplingConfig,
                         banned: tuple[int, ...] = BANNED) -> np.ndarray:
    """The distribution the sampler should draw from, in float64 numpy and written from its
    definition, not from the code under test: banned ids out; greedy: log-softmax of the
    logits; else log-softmax of logits / T, cut to the top_k largest (ties to the lower id),
    then to the smallest most-probable set reaching top_p, renormalized."""
    z = np.asarray(logits, np.float64).copy()
    z[..., list(banned)] = -np.inf
    if cfg.greedy:
        return np_log_softmax(z)
    z = z / cfg.temperature
    if cfg.top_k:
        keep = np.zeros(z.shape, bool)
        top = np.argsort(-z, axis=-1, kind="stable")[..., : cfg.top_k]
        np.put_along_axis(keep, top, True, -1)
        z = np.where(keep, z, -np.inf)
    logp = np_log_softmax(z)
    if cfg.top_p < 1.0:
        p = np.exp(logp)
        order = np.argsort(-p, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(p, order, -1)
        keep = np.zeros(z.shape, bool)
        np.put_along_axis(keep, order, np.cumsum(sorted_p, -1) - sorted_p < cfg.top_p, -1)
        logp = np_log_softmax(np.where(keep, z, -np.inf))
    return logp


@pytest.mark.parametrize("cfg", [
    SamplingConfig(max_new_tokens=1, temperature=0.7),
    SamplingConfig(max_new_tokens=1, temperature=1.6, top_k=5),
    SamplingConfig(max_new_tokens=1, temperature=0.5, top_p=0.8),
    SamplingConfig(max_new_tokens=1, temperature=1.3, top_k=12, top_p=0.7),
    SamplingConfig(max_new_tokens=1, temperature=0.0),
], ids=["plain", "top_k", "top_p", "top_k_top_p", "greedy"])
def test_sampling_logprobs_is_numpys_distribution(cfg):
    """`sampling_logprobs` against the numpy definition on random logits: the temperature
    divides the logits once, top-k and top-p keep what numpy keeps."""
    logits = np.random.default_rng(0).normal(scale=3.0, size=(16, TINY.vocab_size))
    banned = jnp.zeros((TINY.vocab_size,), bool).at[jnp.asarray(BANNED)].set(True)
    got = np.asarray(sampling_logprobs(jnp.asarray(logits, jnp.float32), cfg.temperature,
                                       greedy=cfg.greedy, top_k=cfg.top_k, top_p=cfg.top_p,
                                       banned=banned))
    want = np_sampling_logprobs(logits, cfg)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    inside = np.isfinite(want)
    np.testing.assert_allclose(got[inside], want[inside], atol=1e-5, rtol=1e-5)
    if cfg.top_k or cfg.top_p < 1:
        assert (~inside).sum(-1).min() > len(BANNED)  # something was cut


def full_logprobs(params, prompts, samples, cfg: SamplingConfig):
    """Per row, the distribution each generated token was drawn from, from one uncached
    forward of prompt + completion (the numpy definition after the model, not the sampler's
    own `sampling_logprobs`)."""
    seqs = [list(prompts[i]) + list(samples.tokens[r, : samples.lengths[r]])
            for r, i in enumerate(samples.prompt_index)]
    width = max(map(len, seqs))
    batch = np.zeros((len(seqs), width), np.int32)
    for r, s in enumerate(seqs):
        batch[r, : len(s)] = s
    logp = np_sampling_logprobs(np.asarray(forward(params, batch)[0]), cfg)
    out = []
    for r, i in enumerate(samples.prompt_index):
        p, n = len(prompts[i]), samples.lengths[r]
        out.append(logp[r, p - 1 : p - 1 + n])
    return out


def assert_consistent_with_forward(params, prompts, samples, cfg):
    """Every emitted token is inside the distribution and its log-prob is the forward's."""
    for r, lp in enumerate(full_logprobs(params, prompts, samples, cfg)):
        n = samples.lengths[r]
        toks = samples.tokens[r, :n]
        chosen = lp[np.arange(n), toks]
        assert np.isfinite(chosen).all(), (r, toks)
        np.testing.assert_allclose(samples.logprobs[r, :n], chosen, atol=1e-4, rtol=1e-5)


def test_greedy_ragged_prompts_match_full_forward(params, greedy):
    assert greedy.tokens.shape == (len(PROMPTS), MAX_NEW)
    np.testing.assert_array_equal(greedy.lengths, MAX_NEW)  # no stop tokens
    assert not greedy.finished.any()  # cut at max_new_tokens: truncated, not finished
    assert_consistent_with_forward(params, PROMPTS, greedy, GREEDY)
    for r, lp in enumerate(full_logprobs(params, PROMPTS, greedy, GREEDY)):
        chosen = lp[np.arange(MAX_NEW), greedy.tokens[r]]
        np.testing.assert_allclose(chosen, lp.max(-1), atol=1e-4)  # a maximal token
    assert len({tuple(t) for t in greedy.tokens}) == len(PROMPTS)  # output follows the prompt


def test_top_k_keeps_exactly_k_even_with_ties():
    logits = jnp.asarray([[1.0, 3.0, 3.0, 3.0, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    mask = np.asarray(top_k_mask(logits, 2))
    np.testing.assert_array_equal(mask.sum(-1), [2, 2])
    np.testing.assert_array_equal(mask[1], [True, True, False, False, False])
    assert mask[0, [1, 2, 3]].sum() == 2 and not mask[0, [0, 4]].any()


def test_top_p_is_the_smallest_set_reaching_p():
    """Against numpy's sort-and-accumulate definition on random distributions; at 0.9 the
    set holds several tokens, so a top-p that kept only the argmax would fail."""
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(64, 40)).astype(np.float32)
    logp = jax.nn.log_softmax(jnp.asarray(logits), axis=-1)
    for top_p in (0.3, 0.9, 0.99):
        got = np.asarray(top_p_mask(logp, top_p))
        probs = np.exp(np.asarray(logp, np.float64))
        order = np.argsort(-probs, axis=-1)
        before = np.cumsum(np.take_along_axis(probs, order, -1), -1) - np.take_along_axis(
            probs, order, -1)
        want = np.zeros_like(got)
        np.put_along_axis(want, order, before < top_p, -1)
        np.testing.assert_array_equal(got, want)
        assert top_p < 0.9 or got.sum(-1).min() > 1


def test_draw_is_jax_categorical_token_for_token():
    """The draw's own argmax (a max and a min over indices, faster on CPU) picks what
    jnp.argmax picks, ties, NaN and -inf rows included, so sampled tokens are
    jax.random.categorical's for the same key, jitted or not."""
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3.0, size=(64, 300)).astype(np.float32)
    x[0], x[1, 7], x[2, ::3], x[3], x[4, 5:9] = -np.inf, np.nan, np.nan, 1.0, np.inf
    x[5] = np.round(x[5])  # many ties
    np.testing.assert_array_equal(jax.jit(first_argmax)(x), jnp.argmax(x, axis=-1))
    logp = jax.nn.log_softmax(jnp.asarray(x[6:]), axis=-1)
    for seed in range(8):
        key = jax.random.key(seed)
        want = jax.random.categorical(key, logp, axis=-1)
        np.testing.assert_array_equal(jax.jit(draw, static_argnums=2)(key, logp, False)[0], want)
        np.testing.assert_array_equal(draw(key, logp, False)[0], want)


@pytest.mark.parametrize("shape", [(64, 300), (7, 130), (3, 2, 8191)])
def test_gumbel_is_jax_random_gumbel_bit_for_bit(shape):
    """The draw's noise (the Threefry hash unrolled, faster on CPU) is jax.random.gumbel's,
    bit for bit, and a key it cannot reproduce (a raw uint32 key) falls back to it."""
    for seed in (0, 1, 12345):
        key = jax.random.key(seed)
        np.testing.assert_array_equal(gumbel(key, shape), jax.random.gumbel(key, shape))
    raw = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(gumbel(raw, shape), jax.random.gumbel(raw, shape))


@pytest.mark.parametrize("cfg", [
    SamplingConfig(max_new_tokens=MAX_NEW, temperature=0.7, top_p=0.9),
    SamplingConfig(max_new_tokens=MAX_NEW, temperature=1.3, top_k=3),
    SamplingConfig(max_new_tokens=MAX_NEW, temperature=0.7),
], ids=["top_p", "top_k", "plain"])
def test_sampled_tokens_come_from_the_reported_distribution(sampler, params, cfg):
    out = sampler.generate(PROMPTS, dataclasses.replace(cfg, n=4), key=3)
    assert_consistent_with_forward(params, PROMPTS, out, cfg)
    assert len({tuple(t) for t in out.tokens[:4]}) > 1  # the n samples of a prompt differ


def test_sampling_n_per_prompt_seeds_and_one_prefill_per_distinct_prompt(params):
    sampler = make_sampler(params, min_batch=1)
    shapes = []
    real = sampler._prefill
    sampler._prefill = lambda p, tokens, *a, **kw: (shapes.append(tokens.shape), real(
        p, tokens, *a, **kw))[1]
    prompts = PROMPTS[:2]
    cfg = SamplingConfig(max_new_tokens=MAX_NEW, temperature=1.5, top_k=3, n=4)
    out = sampler.generate(prompts, cfg, key=0)
    assert shapes == [(2, 16)]  # 2 distinct prompts prefilled, 8 rows decoded
    assert out.tokens.shape == (8, MAX_NEW)
    np.testing.assert_array_equal(out.prompt_index, [0, 0, 0, 0, 1, 1, 1, 1])
    assert_consistent_with_forward(params, prompts, out, cfg)
    again = sampler.generate(prompts, cfg, key=0)
    np.testing.assert_array_equal(again.tokens, out.tokens)
    other = sampler.generate(prompts, cfg, key=1)
    assert not np.array_equal(other.tokens, out.tokens)


def test_banned_ids_are_never_generated_even_where_the_model_prefers_them():
    """A model whose every argmax is the pad id: every embedding row shares a large common
    direction c, which then dominates the residual stream, and the pad row has three times
    as much of it (tied output head). Greedy and sampled rows never emit pad or BOS, and the
    log-probs say so."""
    c = np.random.default_rng(1).normal(size=TINY.d_model).astype(np.float32)
    c /= np.linalg.norm(c)
    shift = np.tile(5 * c, (TINY.vocab_size, 1))
    shift[0] *= 3
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x + shift if "embed" in jax.tree_util.keystr(path) else x,
        init_params(TINY))
    logits = np.asarray(forward(params, np.asarray(PROMPTS[3:] + [[1, 7, 22, 13, 9]]))[0])
    assert (logits.argmax(-1) == 0).all()
    sampler = make_sampler(params)
    for cfg in (GREEDY, SamplingConfig(max_new_tokens=MAX_NEW, temperature=1.0, n=4)):
        out = sampler.generate(PROMPTS, cfg, key=0)
        real = np.arange(MAX_NEW)[None] < out.lengths[:, None]
        assert not np.isin(out.tokens[real], BANNED).any()
        assert_consistent_with_forward(params, PROMPTS, out, cfg)


def first_new_token(row, start=2):
    return next(int(t) for j, t in enumerate(row) if j >= start and t not in row[:j])


def test_stop_tokens_end_rows_mark_them_finished_and_pad_the_rest(params, greedy):
    """Stopping on a token greedy emits mid-row cuts each row right after its first
    occurrence; everything before it is unchanged and everything after is padding."""
    stop = first_new_token(greedy.tokens[1])
    assert (greedy.tokens == stop).any(axis=1).sum() < len(PROMPTS)  # some rows never stop
    out = make_sampler(params, stop=[stop]).generate(PROMPTS, GREEDY)
    for r, toks in enumerate(greedy.tokens):
        hits = np.flatnonzero(toks == stop)
        n = hits[0] + 1 if len(hits) else MAX_NEW
        assert out.lengths[r] == n and out.finished[r] == bool(len(hits))
        np.testing.assert_array_equal(out.tokens[r, :n], toks[:n])
        np.testing.assert_allclose(out.logprobs[r, :n], greedy.logprobs[r, :n], atol=1e-6)
        assert not out.tokens[r, n:].any() and not out.logprobs[r, n:].any()
    assert out.lengths[1] < MAX_NEW and out.finished[1]


def test_a_row_that_stops_on_its_last_slot_is_finished_not_truncated(params, greedy):
    r = next(r for r, t in enumerate(greedy.tokens) if t[-1] not in t[:-1])
    out = make_sampler(params, stop=[int(greedy.tokens[r, -1])]).generate([PROMPTS[r]], GREEDY)
    assert out.lengths[0] == MAX_NEW and out.finished[0]


def test_decode_loop_exits_once_every_row_has_stopped(params, greedy):
    """When every row's first token is a stop token the loop runs one step: the cache holds
    the prompt slots and one more. Filler rows of the batch bucket must not hold it up."""
    sampler = make_sampler(params, stop=sorted({int(t) for t in greedy.tokens[:, 0]}))
    state = sampler.prefill(PROMPTS, MAX_NEW)
    assert state.arrays.pending.shape[0] == 8 and state.rows == 4  # 4 filler rows
    ext, state = sampler.extend(state, GREEDY, MAX_NEW, key=0)
    np.testing.assert_array_equal(ext.lengths, 1)
    assert ext.finished.all() and state.used == sampler.prompt_slots(7) + 1


def test_extend_in_steps_and_select_reproduce_generate(params, greedy):
    """Greedy decoding in pieces, pausing each row at a delimiter token and resuming, emits
    generate's tokens; after `select` duplicates and reorders rows, each continues from its
    own cache (a row that attended to another row's keys would diverge)."""
    delim = first_new_token(greedy.tokens[1], start=1)
    sampler = make_sampler(params)
    state = sampler.prefill(PROMPTS, 3 * MAX_NEW)  # paused rows still take a slot per step
    pieces = [[] for _ in PROMPTS]
    calls = 0
    while any(len(p) < MAX_NEW for p in pieces):
        left = max(MAX_NEW - len(p) for p in pieces)
        ext, state = sampler.extend(state, GREEDY, left, key=0, stop_ids=[delim])
        calls += 1
        for r in range(len(PROMPTS)):
            pieces[r] += list(ext.tokens[r, : ext.lengths[r]])
        if calls == 1:
            assert ext.lengths.min() < ext.lengths.max()  # some rows paused at the delimiter
    assert calls > 1
    for r in range(len(PROMPTS)):
        np.testing.assert_array_equal(pieces[r][:MAX_NEW], greedy.tokens[r])

    state = sampler.prefill(PROMPTS, MAX_NEW)
    ext, state = sampler.extend(state, GREEDY, 3, key=0)
    np.testing.assert_array_equal(ext.tokens, greedy.tokens[:, :3])
    picked = sampler.select(state, [2, 0, 0, 3])
    ext, _ = sampler.extend(picked, GREEDY, MAX_NEW - 3, key=0)
    np.testing.assert_array_equal(ext.tokens, greedy.tokens[[2, 0, 0, 3], 3:])


def test_batch_buckets_are_powers_of_two(sampler):
    assert [sampler.batch_size(n) for n in (1, 8, 9, 17, 33, 100)] == [8, 8, 16, 32, 64, 128]


def test_bad_requests_are_rejected(sampler):
    with pytest.raises(ValueError, match="empty prompt"):
        sampler.generate([[1, 2], []], GREEDY)
    with pytest.raises(ValueError, match="max_len"):
        sampler.generate(PROMPTS, SamplingConfig(max_new_tokens=TINY.max_len))
    state = sampler.prefill(PROMPTS, 4)
    with pytest.raises(ValueError, match="cache slots left"):
        sampler.extend(state, GREEDY, 5, key=0)
    with pytest.raises(ValueError, match="rows must index"):
        sampler.select(state, [4])
    with pytest.raises(RuntimeError, match="load"):
        Sampler(TINY, stop_tokens=[]).generate(PROMPTS, GREEDY)
