"""Decoder-only transformer (RoPE, RMSNorm, SwiGLU, GQA) with an optional per-token value head.

One module plays both roles of the design: the POLICY (logits) and the VERIFIER (a scalar
prediction at every token, for outcome and process reward models). Parameters carry logical
axis names; `jaxrl_reason.parallel` maps them onto the mesh.

The KV cache is a plain pytree passed in and returned, laid out [batch, kv_heads, time, head_dim]
and sized to prompt + generation, so decoding is a pure function that jit can donate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gin
import jax
import jax.numpy as jnp
from flax import nnx

from jaxrl_reason.parallel import constrain

Cache = dict[str, Any]


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Model shape and numerics. `dtype` is the compute dtype, `param_dtype` the storage dtype."""

    vocab_size: int = 128
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int = 32
    d_ff: int = 512
    max_len: int = 512
    rope_theta: float = 10_000.0
    position_encoding: str = "rope"  # "rope" or "none" (NoPE: order from the causal mask alone)
    tie_embeddings: bool = True
    value_head: bool = False
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: bool = False
    norm_eps: float = 1e-6

    def __post_init__(self):
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"ModelConfig.n_heads={self.n_heads} must be a multiple of "
                f"n_kv_heads={self.n_kv_heads}"
            )
        if self.position_encoding not in ("rope", "none"):
            raise ValueError(
                f"ModelConfig.position_encoding must be 'rope' or 'none', "
                f"got {self.position_encoding!r}"
            )

    def num_params(self) -> int:
        attn = self.d_model * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads)
        block = attn + 3 * self.d_model * self.d_ff + 2 * self.d_model
        head = 0 if self.tie_embeddings else self.d_model * self.vocab_size
        head += self.d_model if self.value_head else 0
        return self.vocab_size * self.d_model + self.n_layers * block + self.d_model + head


def _param(rngs: nnx.Rngs, shape, axes, cfg: ModelConfig, scale: float) -> nnx.Param:
    value = nnx.initializers.normal(scale)(rngs.params(), shape, jnp.dtype(cfg.param_dtype))
    return nnx.Param(value, logical_axes=axes)


class RMSNorm(nnx.Module):
    def __init__(self, cfg: ModelConfig):
        self.eps = cfg.norm_eps
        self.scale = nnx.Param(jnp.ones((cfg.d_model,), cfg.param_dtype), logical_axes=("embed",))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * self.scale[...].astype(jnp.float32)).astype(x.dtype)


def rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary embedding of x [B, S, H, D] at integer positions [B, S] (rotate-half form)."""
    half = x.shape[-1] // 2
    freqs = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions[..., None].astype(jnp.float32) * freqs  # [B, S, half]
    sin, cos = jnp.sin(angles)[:, :, None, :], jnp.cos(angles)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        s = cfg.d_model**-0.5
        self.wq = _param(
            rngs, (cfg.d_model, cfg.n_heads, cfg.head_dim), ("embed", "heads", "kv"), cfg, s
        )
        kv_shape = (cfg.d_model, cfg.n_kv_heads, cfg.head_dim)
        self.wk = _param(rngs, kv_shape, ("embed", "kv_heads", "kv"), cfg, s)
        self.wv = _param(rngs, kv_shape, ("embed", "kv_heads", "kv"), cfg, s)
        o_scale = (cfg.n_heads * cfg.head_dim) ** -0.5 / (2 * cfg.n_layers) ** 0.5
        self.wo = _param(
            rngs, (cfg.n_heads, cfg.head_dim, cfg.d_model), ("heads", "kv", "embed"), cfg, o_scale
        )

    def __call__(self, x, positions, mask, kv_cache, index):
        """x [B,S,E]; mask [B,S,T] over the T key slots; kv_cache (k, v) [B,K,T,D] or None."""
        cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        q = jnp.einsum("bse,ehd->bshd", x, self.wq[...].astype(dt))
        k = jnp.einsum("bse,ekd->bskd", x, self.wk[...].astype(dt))
        v = jnp.einsum("bse,ekd->bskd", x, self.wv[...].astype(dt))
        if cfg.position_encoding == "rope":
            q, k = rope(q, positions, cfg.rope_theta), rope(k, positions, cfg.rope_theta)
        k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, K, S, D]
        if kv_cache is not None:
            ck, cv = kv_cache
            k = jax.lax.dynamic_update_slice(ck, k.astype(ck.dtype), (0, 0, index, 0))
            v = jax.lax.dynamic_update_slice(cv, v.astype(cv.dtype), (0, 0, index, 0))
            kv_cache = (k, v)
        b, s, h, d = q.shape
        q = q.reshape(b, s, cfg.n_kv_heads, h // cfg.n_kv_heads, d)
        scores = jnp.einsum("bskgd,bktd->bkgst", q, k.astype(dt)).astype(jnp.float32) * d**-0.5
        scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(dt)
        out = jnp.einsum("bkgst,bktd->bskgd", probs, v.astype(dt)).reshape(b, s, h, d)
        return jnp.einsum("bshd,hde->bse", out, self.wo[...].astype(dt)), kv_cache


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.dtype = jnp.dtype(cfg.dtype)
        s = cfg.d_model**-0.5
        self.w_gate = _param(rngs, (cfg.d_model, cfg.d_ff), ("embed", "mlp"), cfg, s)
        self.w_up = _param(rngs, (cfg.d_model, cfg.d_ff), ("embed", "mlp"), cfg, s)
        self.w_down = _param(
            rngs,
            (cfg.d_ff, cfg.d_model),
            ("mlp", "embed"),
            cfg,
            cfg.d_ff**-0.5 / (2 * cfg.n_layers) ** 0.5,
        )

    def __call__(self, x):
        dt = self.dtype
        h = jax.nn.silu(x @ self.w_gate[...].astype(dt)) * (x @ self.w_up[...].astype(dt))
        h = constrain(h, ("batch", "length", "mlp"))
        return h @ self.w_down[...].astype(dt)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg)
        self.attn = Attention(cfg, rngs)
        self.mlp_norm = RMSNorm(cfg)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x, positions, mask, kv_cache, index):
        a, kv_cache = self.attn(self.attn_norm(x), positions, mask, kv_cache, index)
        x = x + a
        x = x + self.mlp(self.mlp_norm(x))
        return constrain(x, ("batch", "length", "embed")), kv_cache


class Transformer(nnx.Module):
    """Returns (logits [B,S,V] fp32, values [B,S] fp32 or None, updated cache or None)."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = _param(
            rngs, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"), cfg, cfg.d_model**-0.5
        )
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.final_norm = RMSNorm(cfg)
        self.lm_head = (
            None
            if cfg.tie_embeddings
            else _param(
                rngs, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), cfg, cfg.d_model**-0.5
            )
        )
        self.value_head = (
            _param(rngs, (cfg.d_model, 1), ("embed", None), cfg, cfg.d_model**-0.5)
            if cfg.value_head
            else None
        )

    def __call__(
        self,
        tokens: jax.Array,
        positions: jax.Array | None = None,
        input_mask: jax.Array | None = None,
        cache: Cache | None = None,
    ) -> tuple[jax.Array, jax.Array | None, Cache | None]:
        """tokens [B,S]. Without a cache: causal self-attention over the S tokens, with
        `input_mask` [B,S] marking real (non-pad) tokens. With a cache: the S tokens are written
        at slot cache["index"] and attend to every valid earlier slot."""
        cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        b, s = tokens.shape
        if input_mask is None:
            input_mask = jnp.ones((b, s), bool)
        if positions is None:
            positions = jnp.maximum(jnp.cumsum(input_mask, axis=1) - 1, 0)
        if cache is None:
            index = 0
            mask = input_mask[:, None, :] & jnp.tril(jnp.ones((s, s), bool))[None]
            layer_caches = [None] * cfg.n_layers
        else:
            index = cache["index"]
            valid = jax.lax.dynamic_update_slice(cache["valid"], input_mask, (0, index))
            slots = jnp.arange(valid.shape[1])
            causal = slots[None, :] <= index + jnp.arange(s)[:, None]  # [S, T]
            mask = valid[:, None, :] & causal[None]
            layer_caches = list(zip(cache["k"], cache["v"], strict=True))

        x = self.embed[...].astype(dt)[tokens] * cfg.d_model**0.5
        x = constrain(x, ("batch", "length", "embed"))
        new_k, new_v = [], []
        for block, kv in zip(self.blocks, layer_caches, strict=True):
            if cfg.remat and cache is None:
                x, kv = nnx.remat(lambda blk, *a: blk(*a), static_argnums=(5,))(
                    block, x, positions, mask, kv, index
                )
            else:
                x, kv = block(x, positions, mask, kv, index)
            if kv is not None:
                new_k.append(kv[0])
                new_v.append(kv[1])
        h = self.final_norm(x)
        w_out = self.embed[...].T if self.lm_head is None else self.lm_head[...]
        logits = (h @ w_out.astype(dt)).astype(jnp.float32)
        logits = constrain(logits, ("batch", "length", "vocab"))
        values = None
        if self.value_head is not None:
            values = (h @ self.value_head[...].astype(dt))[..., 0].astype(jnp.float32)
        new_cache = None
        if cache is not None:
            new_cache = {"k": new_k, "v": new_v, "index": index + s, "valid": valid}
        return logits, values, new_cache


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype: str | None = None) -> Cache:
    """An empty cache of `length` slots. The cache stores k/v in the compute dtype by default."""
    shape = (batch, cfg.n_kv_heads, length, cfg.head_dim)
    dt = jnp.dtype(dtype or cfg.dtype)
    return {
        "k": [jnp.zeros(shape, dt) for _ in range(cfg.n_layers)],
        "v": [jnp.zeros(shape, dt) for _ in range(cfg.n_layers)],
        "index": jnp.zeros((), jnp.int32),
        "valid": jnp.zeros((batch, length), bool),
    }


def create_model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """Builds the model eagerly (unsharded). For sharded creation see training.state."""
    return Transformer(cfg, nnx.Rngs(params=seed))
