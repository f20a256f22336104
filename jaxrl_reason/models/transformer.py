"""Decoder-only transformer (RoPE, RMSNorm, SwiGLU, GQA) with an optional per-token value head.

One module plays both roles of the design: the POLICY (logits) and the VERIFIER (a scalar
prediction at every token, for outcome and process reward models). Parameters carry logical
axis names; `jaxrl_reason.parallel` maps them onto the mesh.

Three entry points, so each caller computes only what it uses:
- `model(tokens, positions, input_mask)`: a full causal forward -> (logits, values);
- `model.prefill(...)`: the same forward without the output head, returning each layer's keys
  and values for a KV cache (the sampler's prompt pass computes no logits at all);
- `model.decode(tokens, positions, cache, write_mask)`: a few new tokens against a cache.
The KV cache is a plain pytree laid out [batch, kv_heads, time, head_dim] and passed in and out,
so decoding is a pure function that jit can donate. Masks and positions are always explicit:
nothing is derived from token values, so any id (pad included) is an ordinary token.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import gin
import jax
import jax.numpy as jnp
from flax import nnx

from jaxrl_reason.errors import check_dataclass, require
from jaxrl_reason.parallel import constrain

Cache = dict[str, Any]


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Model shape and numerics. `dtype` is the compute dtype, `param_dtype` the storage dtype.

    `attention`: "xla" (jax.nn.dot_product_attention's portable path), "cudnn" (its fused flash
    kernel: GPU, half precision, right-padded rows), or "auto" (cudnn where it applies, else xla).
    `scan_layers` stacks the blocks' parameters and scans over them, so compile time does not
    grow with depth (the layout of the parameters, and so of checkpoints, changes with it)."""

    vocab_size: int = 128
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int = 32
    d_ff: int = 512
    max_len: int = 512
    rope_theta: float = 10_000.0
    position_encoding: Literal["rope", "none"] = "rope"  # none = NoPE: order from the causal mask
    tie_embeddings: bool = True
    value_head: bool = False
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    param_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    remat: bool = False
    norm_eps: float = 1e-6
    attention: Literal["auto", "xla", "cudnn"] = "auto"
    scan_layers: bool = False

    def __post_init__(self):
        check_dataclass(self)
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim",
                     "d_ff", "max_len"):
            value = getattr(self, name)
            require(value > 0, f"ModelConfig.{name}", value, "must be a positive integer")
        require(self.n_heads % self.n_kv_heads == 0, "ModelConfig.n_heads", self.n_heads,
                f"must be a multiple of n_kv_heads={self.n_kv_heads}")
        require(self.head_dim % 2 == 0 or self.position_encoding == "none",
                "ModelConfig.head_dim", self.head_dim, "must be even for RoPE")
        require(self.rope_theta > 0, "ModelConfig.rope_theta", self.rope_theta, "must be > 0")
        require(self.norm_eps > 0, "ModelConfig.norm_eps", self.norm_eps, "must be > 0")

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


def _use_cudnn(cfg: ModelConfig) -> bool:
    if cfg.attention == "cudnn":
        return True
    return (cfg.attention == "auto" and jax.default_backend() == "gpu"
            and cfg.dtype in ("bfloat16", "float16") and cfg.head_dim % 8 == 0
            and cfg.head_dim <= 128)


def self_attention(q, k, v, key_mask, cfg: ModelConfig) -> jax.Array:
    """Causal attention of q [B,S,N,D] over k, v [B,S,K,D]; key_mask [B,S] marks real tokens.

    cuDNN's kernel takes padding as per-row lengths, so it assumes right-padded rows (every
    batch builder and the sampler's prefill lay rows out that way); xla takes the mask itself."""
    if _use_cudnn(cfg):
        lengths = key_mask.sum(axis=1).astype(jnp.int32)
        return jax.nn.dot_product_attention(
            q, k, v, is_causal=True, query_seq_lengths=lengths, key_value_seq_lengths=lengths,
            implementation="cudnn")
    return jax.nn.dot_product_attention(q, k, v, mask=key_mask[:, None, None, :],
                                        is_causal=True, implementation="xla")


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

    def _qkv(self, x, positions):
        cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        q = jnp.einsum("bse,ehd->bshd", x, self.wq[...].astype(dt))
        k = jnp.einsum("bse,ekd->bskd", x, self.wk[...].astype(dt))
        v = jnp.einsum("bse,ekd->bskd", x, self.wv[...].astype(dt))
        if cfg.position_encoding == "rope":
            q, k = rope(q, positions, cfg.rope_theta), rope(k, positions, cfg.rope_theta)
        return q, k, v

    def _out(self, out):
        return jnp.einsum("bshd,hde->bse", out, self.wo[...].astype(jnp.dtype(self.cfg.dtype)))

    def __call__(self, x, positions, key_mask):
        """Causal self-attention over x [B,S,E]; returns (out, (k, v) as [B,K,S,D])."""
        q, k, v = self._qkv(x, positions)
        out = self_attention(q, k, v, key_mask, self.cfg)
        return self._out(out), (k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3))

    def decode(self, x, positions, mask, kv_cache, index):
        """x [B,S,E] written at cache slot `index`; mask [B,S,T] over the T cache slots."""
        cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        q, k, v = self._qkv(x, positions)
        ck, cv = kv_cache
        k = jax.lax.dynamic_update_slice(ck, k.transpose(0, 2, 1, 3).astype(ck.dtype),
                                         (0, 0, index, 0))
        v = jax.lax.dynamic_update_slice(cv, v.transpose(0, 2, 1, 3).astype(cv.dtype),
                                         (0, 0, index, 0))
        b, s, h, d = q.shape
        q = q.reshape(b, s, cfg.n_kv_heads, h // cfg.n_kv_heads, d)
        scores = jnp.einsum("bskgd,bktd->bkgst", q, k.astype(dt)).astype(jnp.float32) * d**-0.5
        scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(dt)
        out = jnp.einsum("bkgst,bktd->bskgd", probs, v.astype(dt)).reshape(b, s, h, d)
        return self._out(out), (k, v)


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

    def _finish(self, x, a):
        x = x + a
        x = x + self.mlp(self.mlp_norm(x))
        return constrain(x, ("batch", "length", "embed"))

    def __call__(self, x, positions, key_mask):
        a, kv = self.attn(self.attn_norm(x), positions, key_mask)
        return self._finish(x, a), kv

    def decode(self, x, positions, mask, kv_cache, index):
        a, kv = self.attn.decode(self.attn_norm(x), positions, mask, kv_cache, index)
        return self._finish(x, a), kv


def _stacked_blocks(cfg: ModelConfig, rngs: nnx.Rngs) -> Block:
    """One Block whose parameters carry a leading [n_layers] axis (logical name "layers")."""
    graphdef = nnx.split(nnx.eval_shape(lambda: Block(cfg, nnx.Rngs(0))))[0]
    keys = jax.random.split(rngs.params(), cfg.n_layers)
    states = jax.vmap(lambda key: nnx.split(Block(cfg, nnx.Rngs(params=key)))[1])(keys)
    states = jax.tree.map(
        lambda v: v.replace(logical_axes=("layers", *v.get_metadata()["logical_axes"])),
        states, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return nnx.merge(graphdef, states)


class Transformer(nnx.Module):
    """The decoder; see the module docstring for its three entry points."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = _param(
            rngs, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"), cfg, cfg.d_model**-0.5
        )
        if cfg.scan_layers:
            self.blocks = _stacked_blocks(cfg, rngs)
        else:
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

    # ---- pieces -----------------------------------------------------------------------------
    def _embed(self, tokens):
        dt = jnp.dtype(self.cfg.dtype)
        x = self.embed[...].astype(dt)[tokens] * self.cfg.d_model**0.5
        return constrain(x, ("batch", "length", "embed"))

    def _layers(self) -> list[Block]:
        """Per-layer blocks (static slices of the stacked parameters with `scan_layers`)."""
        if not self.cfg.scan_layers:
            return list(self.blocks)
        graphdef, stacked = nnx.split(self.blocks)
        return [nnx.merge(graphdef, jax.tree.map(lambda p, i=i: p[i], stacked))
                for i in range(self.cfg.n_layers)]

    def head(self, h: jax.Array) -> jax.Array:
        """Logits (fp32) of final hidden states h [..., E]."""
        dt = jnp.dtype(self.cfg.dtype)
        w_out = self.embed[...].T if self.lm_head is None else self.lm_head[...]
        logits = (h @ w_out.astype(dt)).astype(jnp.float32)
        return constrain(logits, ("batch", "length", "vocab")) if logits.ndim == 3 else logits

    def value(self, h: jax.Array) -> jax.Array | None:
        """The value head's prediction (fp32) at each position of h [..., E]; None without one."""
        if self.value_head is None:
            return None
        return (h @ self.value_head[...].astype(h.dtype))[..., 0].astype(jnp.float32)

    # ---- entry points -------------------------------------------------------------------------
    def prefill(self, tokens: jax.Array, positions: jax.Array, input_mask: jax.Array,
                ) -> tuple[jax.Array, list[tuple[jax.Array, jax.Array]]]:
        """Causal forward of tokens [B,S] -> (final hidden states [B,S,E], per-layer (k, v) as
        [B,K,S,D]). `input_mask` [B,S] marks real tokens (keys); positions [B,S] are explicit."""
        x = self._embed(tokens)
        if self.cfg.scan_layers:
            graphdef, stacked = nnx.split(self.blocks)

            def body(x, layer_state):
                return nnx.merge(graphdef, layer_state)(x, positions, input_mask)

            if self.cfg.remat:
                body = jax.checkpoint(body)
            x, (ks, vs) = jax.lax.scan(body, x, stacked)
            kvs = [(ks[i], vs[i]) for i in range(self.cfg.n_layers)]
        else:
            kvs = []
            for block in self.blocks:
                if self.cfg.remat:
                    x, kv = nnx.remat(lambda blk, *a: blk(*a))(block, x, positions, input_mask)
                else:
                    x, kv = block(x, positions, input_mask)
                kvs.append(kv)
        return self.final_norm(x), kvs

    def __call__(
        self,
        tokens: jax.Array,
        positions: jax.Array | None = None,
        input_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        """(logits [B,S,V] fp32, values [B,S] fp32 or None) of a causal forward over tokens.

        Without `input_mask` every token is real; without `positions` they are the count of
        real tokens before each one (right or left padding both give 0, 1, 2, ...)."""
        b, s = tokens.shape
        if input_mask is None:
            input_mask = jnp.ones((b, s), bool)
        if positions is None:
            positions = jnp.maximum(jnp.cumsum(input_mask, axis=1) - 1, 0)
        h, _ = self.prefill(tokens, positions, input_mask)
        return self.head(h), self.value(h)

    def decode(
        self, tokens: jax.Array, positions: jax.Array, cache: Cache, write_mask: jax.Array
    ) -> tuple[jax.Array, jax.Array | None, Cache]:
        """Writes tokens [B,S] at cache slot cache["index"] (rows where write_mask [B,S] is
        False leave a hole that no query sees) and attends to every valid earlier slot.
        Returns (logits [B,S,V], values [B,S] or None, the updated cache)."""
        s = tokens.shape[1]
        index = cache["index"]
        valid = jax.lax.dynamic_update_slice(cache["valid"], write_mask, (0, index))
        slots = jnp.arange(valid.shape[1])
        causal = slots[None, :] <= index + jnp.arange(s)[:, None]  # [S, T]
        mask = valid[:, None, :] & causal[None]
        x = self._embed(tokens)
        new_k, new_v = [], []
        for block, ck, cv in zip(self._layers(), cache["k"], cache["v"], strict=True):
            x, (k, v) = block.decode(x, positions, mask, (ck, cv), index)
            new_k.append(k)
            new_v.append(v)
        h = self.final_norm(x)
        new_cache = {"k": new_k, "v": new_v, "index": index + s, "valid": valid}
        return self.head(h), self.value(h), new_cache


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
