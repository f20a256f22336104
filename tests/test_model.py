"""Transformer: cached decoding equals the full forward pass, padding is invisible, and the
config's parameter count, remat and dtypes mean what they say.

Everything runs under jit with a handful of shapes: on CPU, compiling dominates test time."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY as CFG
from conftest import forward as _forward
from conftest import graphdef, init_params
from flax import nnx

from jaxrl_reason.models.transformer import ModelConfig, Transformer, init_cache

ROWS = np.asarray([[5, 9, 3, 17, 8, 2, 11, 30, 4], [7, 1, 22, 13, 9, 5, 3, 8, 36],
                   [12, 25, 6, 10, 39, 2, 7, 14, 21]], np.int32)
PROMPT_LENS = [4, 2, 5]
TOL = dict(atol=1e-5, rtol=1e-5)


def forward(tokens, cfg=CFG, **kw):
    return _forward(init_params(CFG), tokens, cfg, **kw)


def left_pad(rows, width):
    tokens = np.zeros((len(rows), width), np.int32)
    valid = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        tokens[i, width - len(r):] = r
        valid[i, width - len(r):] = True
    return jnp.asarray(tokens), jnp.asarray(valid)


def test_prefill_then_chunked_decode_equals_full_forward_for_ragged_prompts():
    """Left-padded prompts of lengths 4, 2, 5 are prefilled, then the rest of each row is fed
    through the cache as one 2-token chunk and single tokens; every logit and value matches
    the uncached forward pass of the unpadded rows."""
    want_logits, want_values, no_cache = forward(ROWS)
    assert no_cache is None
    width, total = max(PROMPT_LENS), ROWS.shape[1]
    steps = total - width
    tokens, valid = left_pad([r[:n] for r, n in zip(ROWS, PROMPT_LENS, strict=True)], width)
    cache = init_cache(CFG, len(ROWS), width + steps)
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    logits, values, cache = forward(tokens, positions=positions, input_mask=valid, cache=cache)
    got_logits, got_values = [logits[:, -1:]], [values[:, -1:]]
    lens = np.asarray(PROMPT_LENS)
    t = 0
    for chunk in (2, *[1] * (steps - 2)):
        idx = lens[:, None] + t + np.arange(chunk)[None]
        cur = np.take_along_axis(ROWS, idx, axis=1)
        logits, values, cache = forward(cur, positions=jnp.asarray(idx),
                                        input_mask=jnp.ones(cur.shape, bool), cache=cache)
        got_logits.append(logits)
        got_values.append(values)
        t += chunk
    assert int(cache["index"]) == width + steps
    got_logits, got_values = np.concatenate(got_logits, 1), np.concatenate(got_values, 1)
    for i, n in enumerate(PROMPT_LENS):
        np.testing.assert_allclose(got_logits[i], want_logits[i, n - 1:n + steps], **TOL)
        np.testing.assert_allclose(got_values[i], want_values[i, n - 1:n + steps], **TOL)


def test_left_padding_is_invisible_without_cache():
    """Rows cut to 9, 7 and 8 tokens and left-padded give the logits of their unpadded
    prefixes (causality makes a prefix's logits those of the full row)."""
    want, _, _ = forward(ROWS)
    lens = [9, 7, 8]
    tokens, valid = left_pad([r[:n] for r, n in zip(ROWS, lens, strict=True)], ROWS.shape[1])
    got, _, _ = forward(tokens, input_mask=valid)
    for i, n in enumerate(lens):
        np.testing.assert_allclose(got[i, -n:], want[i, :n], **TOL)


def test_order_matters_but_rope_only_sees_relative_positions():
    """Swapping two tokens changes the output (RoPE, and NoPE through the causal mask), while
    shifting every position by the same offset does not (RoPE is relative)."""
    swapped = ROWS.copy()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]
    mask = jnp.ones(ROWS.shape, bool)
    positions = jnp.broadcast_to(jnp.arange(ROWS.shape[1]), ROWS.shape)
    for cfg in (CFG, dataclasses.replace(CFG, position_encoding="none")):
        a = forward(ROWS, cfg, positions=positions, input_mask=mask)[0]
        b = forward(swapped, cfg, positions=positions, input_mask=mask)[0]
        assert np.abs(a[:, -1] - b[:, -1]).max(axis=-1).min() > 1e-3
    shifted = forward(ROWS, positions=positions + 7, input_mask=mask)[0]
    np.testing.assert_allclose(shifted, forward(ROWS, positions=positions, input_mask=mask)[0],
                               atol=1e-4)


def test_num_params_counts_every_parameter():
    for tie, value_head in [(True, False), (False, True)]:
        cfg = dataclasses.replace(CFG, tie_embeddings=tie, value_head=value_head)
        abstract = nnx.state(nnx.eval_shape(lambda c=cfg: Transformer(c, nnx.Rngs(0))), nnx.Param)
        assert sum(x.size for x in jax.tree.leaves(abstract)) == cfg.num_params()


def test_value_head_off_returns_none():
    cfg = dataclasses.replace(CFG, value_head=False)
    logits, values, cache = jax.eval_shape(
        lambda: Transformer(cfg, nnx.Rngs(0))(jnp.asarray(ROWS)))
    assert values is None and cache is None and logits.shape == (*ROWS.shape, CFG.vocab_size)


def test_remat_gives_the_same_loss_and_gradients():
    params = init_params(CFG)

    def loss(p, cfg):
        logits, values, _ = nnx.merge(graphdef(cfg), p)(jnp.asarray(ROWS))
        return jax.nn.logsumexp(logits, -1).mean() + values.mean()

    outs = [jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, dataclasses.replace(
        CFG, remat=remat)) for remat in (False, True)]
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-6)
    for g0, g1 in zip(jax.tree.leaves(outs[0][1]), jax.tree.leaves(outs[1][1]), strict=True):
        np.testing.assert_allclose(g0, g1, atol=1e-6, rtol=1e-5)


def test_bfloat16_compute_keeps_fp32_logits_close_to_fp32_model():
    logits, values, _ = forward(ROWS, dataclasses.replace(CFG, dtype="bfloat16"))
    assert logits.dtype == jnp.float32 and values.dtype == jnp.float32
    want = forward(ROWS)[0]
    assert np.abs(np.asarray(logits) - want).max() < 0.05 * np.abs(want).max()


def test_bad_config_is_rejected_with_the_field_named():
    with pytest.raises(ValueError, match="n_kv_heads"):
        ModelConfig(n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="position_encoding"):
        ModelConfig(position_encoding="alibi")
