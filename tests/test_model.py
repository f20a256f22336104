"""Transformer: cached decoding equals the full forward pass, padding is invisible, and the
config's parameter count, remat and dtypes mean what they say."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrl_reason.models.transformer import ModelConfig, create_model, init_cache

CFG = ModelConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                  d_ff=64, max_len=64, value_head=True)
ROWS = [[5, 9, 3, 17, 8, 2, 11, 30, 4, 6], [7, 1, 22, 13, 9, 5, 3, 8], [12, 25, 6, 10, 39, 2, 7]]
PROMPT_LENS = [4, 2, 5]


def full_forward(model, row):
    """Logits and values of one unpadded sequence, no cache."""
    logits, values, cache = model(jnp.asarray([row]))
    assert cache is None
    return np.asarray(logits[0]), np.asarray(values[0])


def left_pad(rows, width):
    tokens = np.zeros((len(rows), width), np.int32)
    valid = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        tokens[i, width - len(r):] = r
        valid[i, width - len(r):] = True
    return jnp.asarray(tokens), jnp.asarray(valid)


@pytest.mark.parametrize("position_encoding", ["rope", "none"])
def test_prefill_then_decode_equals_full_forward_for_ragged_prompts(position_encoding):
    cfg = dataclasses.replace(CFG, position_encoding=position_encoding)
    model = create_model(cfg, seed=1)
    prompts = [r[:n] for r, n in zip(ROWS, PROMPT_LENS, strict=True)]
    width = max(PROMPT_LENS)
    steps = min(len(r) for r in ROWS) - max(PROMPT_LENS)
    tokens, valid = left_pad(prompts, width)
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    cache = init_cache(cfg, len(ROWS), width + steps)
    logits, values, cache = model(tokens, positions, valid, cache)
    got_logits, got_values = [logits[:, -1]], [values[:, -1]]
    next_pos = jnp.asarray(PROMPT_LENS)
    for t in range(steps):
        cur = jnp.asarray([[r[n + t]] for r, n in zip(ROWS, PROMPT_LENS, strict=True)])
        logits, values, cache = model(cur, (next_pos + t)[:, None], jnp.ones((3, 1), bool), cache)
        got_logits.append(logits[:, 0])
        got_values.append(values[:, 0])
    assert int(cache["index"]) == width + steps
    for i, (row, n) in enumerate(zip(ROWS, PROMPT_LENS, strict=True)):
        want_logits, want_values = full_forward(model, row[: n + steps])
        np.testing.assert_allclose(np.stack([g[i] for g in got_logits]), want_logits[n - 1:],
                                   atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(np.stack([g[i] for g in got_values]), want_values[n - 1:],
                                   atol=1e-5, rtol=1e-5)


def test_chunked_prefill_equals_full_forward():
    """Writing the sequence into the cache 3 tokens at a time sees the same causal context."""
    model = create_model(CFG, seed=2)
    row = ROWS[0][:9]
    cache = init_cache(CFG, 1, 9)
    chunks = []
    for start in range(0, 9, 3):
        piece = jnp.asarray([row[start:start + 3]])
        pos = jnp.arange(start, start + 3)[None]
        logits, _, cache = model(piece, pos, jnp.ones((1, 3), bool), cache)
        chunks.append(np.asarray(logits[0]))
    np.testing.assert_allclose(np.concatenate(chunks), full_forward(model, row)[0],
                               atol=1e-5, rtol=1e-5)


def test_left_padding_is_invisible_without_cache():
    model = create_model(CFG, seed=3)
    tokens, valid = left_pad(ROWS, 12)
    logits, _, _ = model(tokens, input_mask=valid)
    for i, row in enumerate(ROWS):
        np.testing.assert_allclose(np.asarray(logits[i, 12 - len(row):]),
                                   full_forward(model, row)[0], atol=1e-5, rtol=1e-5)


def test_order_matters_but_rope_only_sees_relative_positions():
    """Swapping two tokens changes the output (RoPE, and NoPE through the causal mask), while
    shifting every position by the same offset does not (RoPE is relative)."""
    seq, swapped = [5, 9, 3, 17], [9, 5, 3, 17]
    for pe in ("rope", "none"):
        model = create_model(dataclasses.replace(CFG, position_encoding=pe), seed=4)
        assert np.abs(full_forward(model, seq)[0][-1] - full_forward(model, swapped)[0][-1]).max() > 1e-3
    model = create_model(CFG, seed=4)
    shifted, _, _ = model(jnp.asarray([seq]), positions=jnp.arange(4)[None] + 7)
    np.testing.assert_allclose(shifted[0], full_forward(model, seq)[0], atol=1e-4)


def test_num_params_counts_every_parameter():
    for tie, value_head in [(True, False), (False, True)]:
        cfg = dataclasses.replace(CFG, tie_embeddings=tie, value_head=value_head)
        params = nnx.state(create_model(cfg), nnx.Param)
        assert sum(x.size for x in jax.tree.leaves(params)) == cfg.num_params()


def test_value_head_off_returns_none():
    model = create_model(dataclasses.replace(CFG, value_head=False))
    logits, values, _ = model(jnp.asarray([ROWS[0]]))
    assert values is None and logits.shape == (1, len(ROWS[0]), CFG.vocab_size)


def test_remat_gives_the_same_loss_and_gradients():
    row = jnp.asarray([ROWS[0]])

    def loss(model):
        logits, values, _ = model(row)
        return jax.nn.logsumexp(logits, -1).mean() + values.mean()

    outs = []
    for remat in (False, True):
        model = create_model(dataclasses.replace(CFG, remat=remat), seed=5)
        value, grads = nnx.value_and_grad(loss)(model)
        outs.append((value, jax.tree.leaves(nnx.state(grads, nnx.Param))))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-6)
    for g0, g1 in zip(outs[0][1], outs[1][1], strict=True):
        np.testing.assert_allclose(g0, g1, atol=1e-6, rtol=1e-5)


def test_bfloat16_compute_keeps_fp32_logits_close_to_fp32_model():
    fp32 = create_model(CFG, seed=6)
    bf16 = create_model(dataclasses.replace(CFG, dtype="bfloat16"), seed=6)
    logits, values, _ = bf16(jnp.asarray([ROWS[1]]))
    assert logits.dtype == jnp.float32 and values.dtype == jnp.float32
    want = full_forward(fp32, ROWS[1])[0]
    assert np.abs(np.asarray(logits[0]) - want).max() < 0.05 * np.abs(want).max()


def test_bad_config_is_rejected_with_the_field_named():
    with pytest.raises(ValueError, match="n_kv_heads"):
        ModelConfig(n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="position_encoding"):
        ModelConfig(position_encoding="alibi")
