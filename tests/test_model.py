"""Transformer: cached decoding equals the full forward pass, padding is invisible, and the
config's parameter count, remat and dtypes mean what they say.

Everything runs under jit with a handful of shapes: on CPU, compiling dominates test time."""

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY as CFG
from conftest import forward as _forward
from conftest import graphdef, init_params
from flax import nnx

from jaxrl_reason.errors import ConfigError
from jaxrl_reason.models.transformer import ModelConfig, Transformer, init_cache, rope

ROWS = np.asarray([[5, 9, 3, 17, 8, 2, 11, 30, 4], [7, 1, 22, 13, 9, 5, 3, 8, 36],
                   [12, 25, 6, 10, 39, 2, 7, 14, 21]], np.int32)
PROMPT_LENS = [4, 2, 5]
TOL = dict(atol=1e-5, rtol=1e-5)


def forward(tokens, cfg=CFG, **kw):
    """(logits, values) of the uncached forward."""
    return _forward(init_params(CFG), tokens, cfg, **kw)


def left_pad(rows, width):
    tokens = np.zeros((len(rows), width), np.int32)
    valid = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        tokens[i, width - len(r):] = r
        valid[i, width - len(r):] = True
    return jnp.asarray(tokens), jnp.asarray(valid)


@functools.cache
def _prefill(cfg):
    return jax.jit(lambda p, *a: nnx.merge(graphdef(cfg), p).prefill(*a))


@functools.cache
def _decode(cfg):
    return jax.jit(lambda p, *a: nnx.merge(graphdef(cfg), p).decode(*a))


def test_prefill_then_chunked_decode_equals_full_forward_for_ragged_prompts():
    """Right-padded prompts of lengths 4, 2, 5 go through the prompt pass into a cache, then
    the rest of each row is fed as one 2-token chunk and single tokens. Rows advance together,
    so a short row's padding slots stay in its cache as holes; every logit and value still
    matches the uncached forward pass of the unpadded rows."""
    params = init_params(CFG)
    want_logits, want_values = forward(ROWS)
    width, total = max(PROMPT_LENS), ROWS.shape[1]
    lens = np.asarray(PROMPT_LENS)
    tokens = np.zeros((len(ROWS), width), np.int32)
    mask = np.arange(width)[None] < lens[:, None]
    tokens[mask] = np.concatenate([r[:n] for r, n in zip(ROWS, lens, strict=True)])
    positions = np.where(mask, np.arange(width)[None], 0)
    h, kvs = _prefill(CFG)(params, tokens, positions, mask)
    assert h.shape == (len(ROWS), width, CFG.d_model)
    steps = total - width
    slots = width + steps
    pad = ((0, 0), (0, 0), (0, slots - width), (0, 0))
    cache = {"k": [jnp.pad(k, pad) for k, _ in kvs], "v": [jnp.pad(v, pad) for _, v in kvs],
             "index": jnp.int32(width), "valid": jnp.pad(jnp.asarray(mask),
                                                         ((0, 0), (0, slots - width)))}
    got_logits, got_values = [], []
    t = 0
    for chunk in (2, *[1] * (steps - 2)):
        idx = lens[:, None] + t + np.arange(chunk)[None]
        cur = np.take_along_axis(ROWS, idx, axis=1)
        logits, values, cache = _decode(CFG)(params, cur, idx, cache, np.ones(cur.shape, bool))
        got_logits.append(logits)
        got_values.append(values)
        t += chunk
    assert int(cache["index"]) == slots
    got_logits, got_values = np.concatenate(got_logits, 1), np.concatenate(got_values, 1)
    for i, n in enumerate(PROMPT_LENS):
        np.testing.assert_allclose(got_logits[i], want_logits[i, n:n + steps], **TOL)
        np.testing.assert_allclose(got_values[i], want_values[i, n:n + steps], **TOL)


def test_decode_write_mask_leaves_holes_no_query_sees():
    """A row whose write mask is False at a step writes a hole: its later logits equal a cache
    that never saw that token."""
    params = init_params(CFG)
    row = ROWS[:1, :6]
    full = forward(np.concatenate([row[:, :3], row[:, 4:]], 1))[0]  # token 3 never seen
    cache = init_cache(CFG, 1, 8)
    outs = []
    for t in range(6):
        pos = np.asarray([[t if t < 3 else t - 1]])
        write = np.asarray([[t != 3]])
        logits, _, cache = _decode(CFG)(params, row[:, t:t + 1], pos, cache, write)
        outs.append(logits[0, 0])
    np.testing.assert_allclose(np.stack([outs[i] for i in (0, 1, 2, 4, 5)]), full[0], **TOL)


def test_left_padding_is_invisible_without_cache():
    """Rows cut to 9, 7 and 8 tokens and left-padded give the logits of their unpadded
    prefixes (causality makes a prefix's logits those of the full row)."""
    want, _ = forward(ROWS)
    lens = [9, 7, 8]
    tokens, valid = left_pad([r[:n] for r, n in zip(ROWS, lens, strict=True)], ROWS.shape[1])
    got, _ = forward(tokens, input_mask=valid)
    for i, n in enumerate(lens):
        np.testing.assert_allclose(got[i, -n:], want[i, :n], **TOL)


def test_rope_rotates_each_pair_by_position_times_frequency():
    """rope() against the complex-number definition: pair j of a head vector at position p is
    multiplied by exp(i * p * theta^(-j / half))."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 2, 8)).astype(np.float32)
    positions = np.asarray([[0, 1, 5], [2, 7, 100]])
    half = 4
    freqs = 10_000.0 ** (-np.arange(half) / half)
    z = (x[..., :half] + 1j * x[..., half:]) * np.exp(1j * positions[..., None, None] * freqs)
    want = np.concatenate([z.real, z.imag], axis=-1)
    np.testing.assert_allclose(rope(jnp.asarray(x), jnp.asarray(positions), 10_000.0), want,
                               atol=1e-5)


def test_order_matters_but_rope_only_sees_relative_positions():
    """Swapping two tokens changes the output (RoPE, and NoPE through the causal mask), while
    shifting every position by the same offset does not (RoPE is relative) and stretching the
    positions does (RoPE is used at all: an identity rope() would pass the first two)."""
    swapped = ROWS.copy()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]
    mask = jnp.ones(ROWS.shape, bool)
    positions = jnp.broadcast_to(jnp.arange(ROWS.shape[1]), ROWS.shape)
    for cfg in (CFG, dataclasses.replace(CFG, position_encoding="none")):
        a = forward(ROWS, cfg, positions=positions, input_mask=mask)[0]
        b = forward(swapped, cfg, positions=positions, input_mask=mask)[0]
        assert np.abs(a[:, -1] - b[:, -1]).max(axis=-1).min() > 1e-3
    base = forward(ROWS, positions=positions, input_mask=mask)[0]
    shifted = forward(ROWS, positions=positions + 7, input_mask=mask)[0]
    np.testing.assert_allclose(shifted, base, atol=1e-4)
    stretched = forward(ROWS, positions=positions * 3, input_mask=mask)[0]
    assert np.abs(stretched[:, 1:] - base[:, 1:]).max(axis=-1).min() > 1e-3
    nope = dataclasses.replace(CFG, position_encoding="none")
    np.testing.assert_allclose(forward(ROWS, nope, positions=positions * 3, input_mask=mask)[0],
                               forward(ROWS, nope, positions=positions, input_mask=mask)[0],
                               atol=1e-5)


def test_num_params_counts_every_parameter():
    for tie, value_head in [(True, False), (False, True)]:
        cfg = dataclasses.replace(CFG, tie_embeddings=tie, value_head=value_head)
        abstract = nnx.state(nnx.eval_shape(lambda c=cfg: Transformer(c, nnx.Rngs(0))), nnx.Param)
        assert sum(x.size for x in jax.tree.leaves(abstract)) == cfg.num_params()


def test_value_head_off_returns_none():
    cfg = dataclasses.replace(CFG, value_head=False)
    logits, values = jax.eval_shape(lambda: Transformer(cfg, nnx.Rngs(0))(jnp.asarray(ROWS)))
    assert values is None and logits.shape == (*ROWS.shape, CFG.vocab_size)


def test_remat_gives_the_same_loss_and_gradients():
    params = init_params(CFG)

    def loss(p, cfg):
        logits, values = nnx.merge(graphdef(cfg), p)(jnp.asarray(ROWS))
        return jax.nn.logsumexp(logits, -1).mean() + values.mean()

    outs = [jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, dataclasses.replace(
        CFG, remat=remat)) for remat in (False, True)]
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-6)
    for g0, g1 in zip(jax.tree.leaves(outs[0][1]), jax.tree.leaves(outs[1][1]), strict=True):
        np.testing.assert_allclose(g0, g1, atol=1e-6, rtol=1e-5)


def test_value_stop_gradient_keeps_a_value_loss_out_of_the_trunk():
    """With value_stop_gradient a value loss trains the head alone (PPO's critic on a shared
    trunk cannot move the policy); without it the trunk gets gradients too. The values are
    the same either way."""
    params = init_params(CFG)

    def value_loss(p, cfg):
        return jnp.square(nnx.merge(graphdef(cfg), p)(jnp.asarray(ROWS))[1] - 1.0).mean()

    grads = {stop: jax.jit(jax.value_and_grad(value_loss), static_argnums=1)(
        params, dataclasses.replace(CFG, value_stop_gradient=stop)) for stop in (False, True)}
    np.testing.assert_allclose(grads[True][0], grads[False][0], rtol=1e-6)
    for stop, (_, g) in grads.items():
        flat = {k: np.abs(np.asarray(v)).max() for k, v in nnx.to_flat_state(g)}
        head = [v for k, v in flat.items() if "value_head" in k]
        trunk = [v for k, v in flat.items() if "value_head" not in k]
        assert head and min(head) > 0
        assert (max(trunk) == 0) == stop


def test_bfloat16_compute_keeps_fp32_logits_close_to_fp32_model():
    logits, values = forward(ROWS, dataclasses.replace(CFG, dtype="bfloat16"))
    assert logits.dtype == jnp.float32 and values.dtype == jnp.float32
    want = forward(ROWS)[0]
    assert np.abs(np.asarray(logits) - want).max() < 0.05 * np.abs(want).max()


def test_scan_layers_gives_the_same_model_stacked():
    """Stacked parameters scanned over give the unrolled model's logits and values, cached
    decoding included."""
    scan = dataclasses.replace(CFG, scan_layers=True)
    stacked = init_params(scan)
    layers = [jax.tree.map(lambda p, i=i: p[i], stacked["blocks"]) for i in range(CFG.n_layers)]
    unstacked = nnx.State({**{k: v for k, v in stacked.items() if k != "blocks"},
                           "blocks": nnx.State(dict(enumerate(layers)))})
    want = _forward(unstacked, ROWS, CFG)
    got = _forward(stacked, ROWS, scan)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    assert jax.tree.leaves(stacked["blocks"])[0].shape[0] == CFG.n_layers
    cache = init_cache(scan, len(ROWS), 4)
    one = np.ones((len(ROWS), 1), bool)
    got_dec = _decode(scan)(stacked, ROWS[:, :1], np.zeros((len(ROWS), 1), np.int32), cache, one)
    np.testing.assert_allclose(got_dec[0][:, 0], want[0][:, 0], **TOL)


@pytest.mark.parametrize("field, value, match", [
    ("n_kv_heads", 3, "n_heads=4 must be a multiple of n_kv_heads=3"),
    ("position_encoding", "alibi", "position_encoding='alibi'"),
    ("d_model", -5, "d_model=-5 must be a positive integer"),
    ("d_model", "64", "d_model='64' must be int"),
    ("attention", "flash", "attention='flash'"),
    ("dtype", "fp8", "dtype='fp8'"),
])
def test_bad_config_is_rejected_with_the_field_named(field, value, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        ModelConfig(**{field: value})
