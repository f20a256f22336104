"""Sampler: what the KV-cache decode loop emits is what the model's full forward pass says,
for ragged prompts, every sampling mode, stop tokens and both paddings."""

import jax
import numpy as np
import pytest
from conftest import TINY, forward, init_params

from jaxrl_reason.sampling.sampler import Sampler, SamplingConfig

PROMPTS = [[1, 5, 9], [1, 7, 22, 13, 9, 5, 3], [1], [1, 12, 25, 6, 10]]  # ragged, bucketed to 16
MAX_NEW = 8
GREEDY = SamplingConfig(max_new_tokens=MAX_NEW, temperature=0.0)


@pytest.fixture(scope="module")
def params():
    """Random params scaled up: at init the tied embeddings make greedy repeat the last prompt
    token, and a sampler that mixed up positions or rows would still pass on such output."""
    return jax.tree.map(lambda x: 2.0 * x, init_params(TINY))


@pytest.fixture(scope="module")
def sampler():
    return Sampler(TINY, stop_tokens=[])


@pytest.fixture(scope="module")
def greedy(sampler, params):
    return sampler.generate(params, PROMPTS, GREEDY)


def full_logprobs(params, prompts, samples, temperature=1.0):
    """Per-row log-softmax(logits / T) over generated positions from one uncached forward of
    prompt + completion, right-padded (causality keeps padding after a row invisible)."""
    seqs = [list(prompts[i]) + list(samples.tokens[r, : samples.lengths[r]])
            for r, i in enumerate(samples.prompt_index)]
    width = max(map(len, seqs))
    batch = np.zeros((len(seqs), width), np.int32)
    for r, s in enumerate(seqs):
        batch[r, : len(s)] = s
    z = np.asarray(forward(params, batch)[0], np.float64) / temperature
    z -= z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    out = []
    for r, i in enumerate(samples.prompt_index):
        p, n = len(prompts[i]), samples.lengths[r]
        out.append(logp[r, p - 1 : p - 1 + n])  # the distribution each generated token came from
    return out


def assert_consistent_with_forward(params, prompts, samples, temperature=1.0):
    """Every returned logprob equals the full forward's log-prob of that token."""
    for r, lp in enumerate(full_logprobs(params, prompts, samples, temperature)):
        n = samples.lengths[r]
        toks = samples.tokens[r, :n]
        np.testing.assert_allclose(samples.logprobs[r, :n], lp[np.arange(n), toks],
                                   atol=1e-4, rtol=1e-5)


def test_greedy_ragged_prompts_match_full_forward(params, greedy):
    assert greedy.tokens.shape == (len(PROMPTS), MAX_NEW)
    np.testing.assert_array_equal(greedy.lengths, MAX_NEW)  # no stop tokens
    assert_consistent_with_forward(params, PROMPTS, greedy)
    for r, lp in enumerate(full_logprobs(params, PROMPTS, greedy)):
        # greedy picked a maximal token (up to float noise, should two logits nearly tie)
        chosen = lp[np.arange(MAX_NEW), greedy.tokens[r]]
        np.testing.assert_allclose(chosen, lp.max(-1), atol=1e-4)
    assert len({tuple(t) for t in greedy.tokens}) == len(PROMPTS)  # output follows the prompt


def test_top_k_1_and_tiny_top_p_are_greedy(sampler, params, greedy):
    for cfg in (SamplingConfig(max_new_tokens=MAX_NEW, temperature=1.0, top_k=1),
                SamplingConfig(max_new_tokens=MAX_NEW, temperature=0.7, top_p=1e-6)):
        out = sampler.generate(params, PROMPTS, cfg, seed=3)
        np.testing.assert_array_equal(out.tokens, greedy.tokens)
        # logprobs are those of the tempered distribution before truncation
        assert_consistent_with_forward(params, PROMPTS, out, cfg.temperature)


def test_sampling_n_per_prompt_top_k_and_seeds(sampler, params):
    prompts = PROMPTS[:2]
    cfg = SamplingConfig(max_new_tokens=MAX_NEW, temperature=1.5, top_k=3, n=4)
    out = sampler.generate(params, prompts, cfg, seed=0)
    assert out.tokens.shape == (8, MAX_NEW)
    np.testing.assert_array_equal(out.prompt_index, [0, 0, 0, 0, 1, 1, 1, 1])
    assert_consistent_with_forward(params, prompts, out, cfg.temperature)
    for r, lp in enumerate(full_logprobs(params, prompts, out)):
        top3 = np.argsort(-lp, axis=-1)[:, :3]
        assert all(t in top3[j] for j, t in enumerate(out.tokens[r]))
    assert len({tuple(t) for t in out.tokens[:4]}) > 1  # the n samples of a prompt differ
    again = sampler.generate(params, prompts, cfg, seed=0)
    np.testing.assert_array_equal(again.tokens, out.tokens)
    other = sampler.generate(params, prompts, cfg, seed=1)
    assert not np.array_equal(other.tokens, out.tokens)


def test_stop_tokens_end_rows_and_zero_the_rest(params, greedy):
    """Stopping on a token greedy emits mid-row cuts each row right after its first
    occurrence; everything before it is unchanged and everything after is 0."""
    row = greedy.tokens[1]
    stop = next(int(t) for j, t in enumerate(row) if j >= 2 and t not in row[:j])
    assert (greedy.tokens == stop).any(axis=1).sum() < len(PROMPTS)  # some rows never stop
    out = Sampler(TINY, stop_tokens=[stop]).generate(params, PROMPTS, GREEDY)
    for r, toks in enumerate(greedy.tokens):
        hits = np.flatnonzero(toks == stop)
        n = hits[0] + 1 if len(hits) else MAX_NEW
        assert out.lengths[r] == n
        np.testing.assert_array_equal(out.tokens[r, :n], toks[:n])
        np.testing.assert_allclose(out.logprobs[r, :n], greedy.logprobs[r, :n], atol=1e-6)
        assert not out.tokens[r, n:].any() and not out.logprobs[r, n:].any()
    assert out.lengths[1] < MAX_NEW


def test_decode_loop_exits_once_every_row_has_stopped(params, greedy):
    """When every row's first token is a stop token the while loop runs no step at all, so
    the cache comes back holding the prompt only; the rows that merely fill the batch bucket
    must not hold it up. (White-box, through the jitted pieces: early exit is otherwise
    invisible.)"""
    sampler = Sampler(TINY, stop_tokens=sorted({int(t) for t in greedy.tokens[:, 0]}))
    out = sampler.generate(params, PROMPTS, GREEDY)
    np.testing.assert_array_equal(out.lengths, 1)
    assert not out.tokens[:, 1:].any()
    tokens, valid = np.zeros((8, 16), np.int32), np.zeros((8, 16), bool)  # as generate pads:
    for i, p in enumerate(PROMPTS):  # 4 left-padded prompts, then 4 empty filler rows
        tokens[i, 16 - len(p):], valid[i, 16 - len(p):] = p, True
    static = dict(max_new=MAX_NEW, top_k=0, top_p=1.0, greedy=True)
    key, temperature = jax.random.key(0), np.float32(1.0)
    with jax.set_mesh(sampler.mesh):
        cache, tok, lp, pos = sampler._prefill(params, tokens, valid, key, temperature, **static)
        *_, cache = sampler._decode(params, cache, tok, lp, pos, key, temperature, **static)
    assert int(cache["index"]) == 16  # the prompt's slots: no decode step ran


def test_right_padded_input_equals_left_padded(sampler, params, greedy):
    width = max(map(len, PROMPTS))
    lengths = np.asarray([len(p) for p in PROMPTS])
    left = np.zeros((len(PROMPTS), width), np.int32)
    right = np.zeros_like(left)
    for i, p in enumerate(PROMPTS):
        left[i, width - len(p):] = p
        right[i, : len(p)] = p
    for tokens, side in ((left, "left"), (right, "right")):
        out = sampler.generate_padded(params, tokens, lengths, GREEDY, padding_side=side)
        np.testing.assert_array_equal(out.tokens, greedy.tokens)
        np.testing.assert_allclose(out.logprobs, greedy.logprobs, atol=1e-6)
    with pytest.raises(ValueError, match="padding_side"):
        sampler.generate_padded(params, left, lengths, GREEDY, padding_side="middle")


def test_bad_requests_are_rejected(sampler, params):
    with pytest.raises(ValueError, match="empty prompt"):
        sampler.generate(params, [[1, 2], []], GREEDY)
    with pytest.raises(ValueError, match="max_len"):
        sampler.generate(params, PROMPTS, SamplingConfig(max_new_tokens=TINY.max_len))
