"""Decoder-only transformer (RoPE, RMSNorm, SwiGLU, GQA) with an optional per-token value head.

The published families (Llama, Mistral, Qwen2/2.5, Qwen3, Gemma 1/2/3; `models.hf` maps their
configs) differ in a few switches, each a `ModelConfig` field whose default is this codebase's
own model: q/k/v biases, q/k RMSNorm, RoPE scaling, Gemma's (1 + w) norms, embedding scaling,
GeGLU, logit soft-capping, norms after attention and MLP, and sliding-window layers.

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
    grow with depth (the layout of the parameters, and so of checkpoints, changes with it).

    Family switches (defaults = this codebase's own model): `qkv_bias` (Qwen2), `qk_norm`
    (RMSNorm of each query and key head before RoPE: Qwen3, Gemma 3), `norm_offset` (norms scale
    by offset + w: Gemma's 1), `scale_embeddings` (x sqrt(d_model): ours and Gemma's, not Llama's
    or Qwen's), `mlp_activation` (gelu_tanh = GeGLU: Gemma), `post_norms` (a norm after attention
    and after the MLP too: Gemma 2/3), `attn_scale` (None = head_dim**-0.5; Gemma 2/3:
    query_pre_attn_scalar**-0.5), `attn_softcap` / `final_softcap` (cap * tanh(x / cap) of the
    attention scores / output logits: Gemma 2), `rope_scaling` with its factors (linear: Gemma 3;
    llama3: Llama 3.1/3.2), `sliding_window` tokens (a query sees itself and the window - 1
    before it) in the layers `sliding_layers` (Mistral, Gemma 2/3, Qwen2 with
    use_sliding_window), which use `local_rope_theta` unscaled when it is set (Gemma 3)."""

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
    # The value head reads a stop-gradient copy of the trunk: a value loss then trains the head
    # alone and never moves the policy (PPO's critic on a shared trunk). Verifiers leave it off.
    value_stop_gradient: bool = False
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    param_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    remat: bool = False
    norm_eps: float = 1e-6
    attention: Literal["auto", "xla", "cudnn"] = "auto"
    scan_layers: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    norm_offset: float = 0.0
    scale_embeddings: bool = True
    mlp_activation: Literal["silu", "gelu_tanh", "gelu"] = "silu"
    post_norms: bool = False
    attn_scale: float | None = None
    attn_softcap: float | None = None
    final_softcap: float | None = None
    rope_scaling: Literal["none", "linear", "llama3"] = "none"
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_len: int = 8192
    sliding_window: int | None = None
    sliding_layers: tuple[int, ...] = ()
    local_rope_theta: float | None = None

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
        for name in ("attn_scale", "attn_softcap", "final_softcap", "local_rope_theta"):
            value = getattr(self, name)
            require(value is None or value > 0, f"ModelConfig.{name}", value,
                    "must be > 0 (or None = off)")
        require(self.rope_factor >= 1, "ModelConfig.rope_factor", self.rope_factor,
                "must be >= 1")
        require(self.rope_high_freq_factor > self.rope_low_freq_factor > 0,
                "ModelConfig.rope_high_freq_factor", self.rope_high_freq_factor,
                f"must exceed rope_low_freq_factor={self.rope_low_freq_factor} > 0")
        require(self.sliding_window is None or self.sliding_window >= 1,
                "ModelConfig.sliding_window", self.sliding_window, "must be >= 1 (or None = off)")
        require(all(0 <= i < self.n_layers for i in self.sliding_layers)
                and len(set(self.sliding_layers)) == len(self.sliding_layers),
                "ModelConfig.sliding_layers", self.sliding_layers,
                f"must be distinct layer indices in [0, {self.n_layers})")
        require((self.sliding_window is None) == (not self.sliding_layers),
                "ModelConfig.sliding_layers", self.sliding_layers,
                f"must name layers exactly when sliding_window={self.sliding_window} is set")
        require(not self.scan_layers or len(self.sliding_layers) in (0, self.n_layers),
                "ModelConfig.scan_layers", self.scan_layers,
                "needs layers of one kind: set it False for models that mix sliding-window and "
                "full layers (Gemma 2/3)")

    def is_sliding(self, layer: int) -> bool:
        return layer in self.sliding_layers

    def num_params(self) -> int:
        attn = self.d_model * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads)
        attn += self.head_dim * (self.n_heads + 2 * self.n_kv_heads) if self.qkv_bias else 0
        attn += 2 * self.head_dim if self.qk_norm else 0
        norms = (4 if self.post_norms else 2) * self.d_model
        block = attn + 3 * self.d_model * self.d_ff + norms
        head = 0 if self.tie_embeddings else self.d_model * self.vocab_size
        head += self.d_model if self.value_head else 0
        return self.vocab_size * self.d_model + self.n_layers * block + self.d_model + head


def _param(rngs: nnx.Rngs, shape, axes, cfg: ModelConfig, scale: float) -> nnx.Param:
    value = nnx.initializers.normal(scale)(rngs.params(), shape, jnp.dtype(cfg.param_dtype))
    return nnx.Param(value, logical_axes=axes)


class RMSNorm(nnx.Module):
    """Scales by `norm_offset` + w, w initialised so the product starts at 1. Normalizes over
    d_model, or over each head's `kv` dim for the q/k norms."""

    def __init__(self, cfg: ModelConfig, dim: int | None = None, axis: str = "embed"):
        self.eps = cfg.norm_eps
        self.offset = cfg.norm_offset
        shape = (cfg.d_model if dim is None else dim,)
        self.scale = nnx.Param(jnp.full(shape, 1.0 - cfg.norm_offset, cfg.param_dtype),
                               logical_axes=(axis,))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        w = self.scale[...].astype(jnp.float32)
        if self.offset:
            w = w + self.offset
        return (y * w).astype(x.dtype)


def scale_frequencies(freqs: jax.Array, cfg: ModelConfig) -> jax.Array:
    """RoPE frequencies under `cfg.rope_scaling`: linear divides every one by the factor; llama3
    (Llama 3.1/3.2) divides the low ones, keeps the high ones and blends in between."""
    if cfg.rope_scaling == "linear":
        return freqs / cfg.rope_factor
    if cfg.rope_scaling == "llama3":
        old = cfg.rope_original_max_len
        low_wavelen, high_wavelen = old / cfg.rope_low_freq_factor, old / cfg.rope_high_freq_factor
        wavelen = 2 * jnp.pi / freqs
        scaled = jnp.where(wavelen > low_wavelen, freqs / cfg.rope_factor, freqs)
        smooth = (old / wavelen - cfg.rope_low_freq_factor) / (
            cfg.rope_high_freq_factor - cfg.rope_low_freq_factor)
        blended = (1 - smooth) * scaled / cfg.rope_factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return jnp.where(medium, blended, scaled)
    return freqs


def rope(x: jax.Array, positions: jax.Array, theta: float, cfg: ModelConfig | None = None
         ) -> jax.Array:
    """Rotary embedding of x [B, S, H, D] at integer positions [B, S] (rotate-half form), with
    `cfg`'s frequency scaling when given."""
    half = x.shape[-1] // 2
    freqs = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    if cfg is not None:
        freqs = scale_frequencies(freqs, cfg)
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


def cached_attention(q, k, v, mask, cfg: ModelConfig) -> jax.Array:
    """q [B,S,N,D] over k, v [B,K,T,D] where mask [B,S,T]; scores soft-capped if configured."""
    dt = jnp.dtype(cfg.dtype)
    b, s, h, d = q.shape
    q = q.reshape(b, s, cfg.n_kv_heads, h // cfg.n_kv_heads, d)
    scale = d**-0.5 if cfg.attn_scale is None else cfg.attn_scale
    scores = jnp.einsum("bskgd,bktd->bkgst", q, k.astype(dt)).astype(jnp.float32) * scale
    if cfg.attn_softcap is not None:
        scores = cfg.attn_softcap * jnp.tanh(scores / cfg.attn_softcap)
    scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(dt)
    return jnp.einsum("bkgst,bktd->bskgd", probs, v.astype(dt)).reshape(b, s, h, d)


def self_attention(q, k, v, key_mask, cfg: ModelConfig, window: int | None = None
                   ) -> jax.Array:
    """Causal attention of q [B,S,N,D] over k, v [B,S,K,D]; key_mask [B,S] marks real tokens;
    `window` limits each query to itself and the window - 1 keys before it.

    cuDNN's kernel takes padding as per-row lengths, so it assumes right-padded rows (every
    batch builder and the sampler's prefill lay rows out that way); xla takes the mask itself.
    jax.nn.dot_product_attention has no soft-capping, so capped scores take the einsum path."""
    if cfg.attn_softcap is not None:
        idx = jnp.arange(q.shape[1])
        allowed = idx[None, :] <= idx[:, None]
        if window is not None:
            allowed &= idx[None, :] > idx[:, None] - window
        mask = key_mask[:, None, :] & allowed[None]
        return cached_attention(q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), mask, cfg)
    local = None if window is None else (window - 1, 0)
    if _use_cudnn(cfg):
        lengths = key_mask.sum(axis=1).astype(jnp.int32)
        return jax.nn.dot_product_attention(
            q, k, v, scale=cfg.attn_scale, is_causal=True, query_seq_lengths=lengths,
            key_value_seq_lengths=lengths, local_window_size=local, implementation="cudnn")
    return jax.nn.dot_product_attention(q, k, v, mask=key_mask[:, None, None, :],
                                        scale=cfg.attn_scale, is_causal=True,
                                        local_window_size=local, implementation="xla")


class Attention(nnx.Module):
    """GQA self-attention of one layer; `layer` picks its kind (full or sliding window)."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, layer: int = 0):
        self.cfg = cfg
        self.window = cfg.sliding_window if cfg.is_sliding(layer) else None
        local_rope = self.window is not None and cfg.local_rope_theta is not None
        self.theta = cfg.local_rope_theta if local_rope else cfg.rope_theta
        self.scaled_rope = not local_rope and cfg.rope_scaling != "none"
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
        if cfg.qkv_bias:
            zeros = lambda n, axis: nnx.Param(jnp.zeros((n, cfg.head_dim), cfg.param_dtype),
                                              logical_axes=(axis, "kv"))
            self.bq = zeros(cfg.n_heads, "heads")
            self.bk = zeros(cfg.n_kv_heads, "kv_heads")
            self.bv = zeros(cfg.n_kv_heads, "kv_heads")
        if cfg.qk_norm:
            self.q_norm = RMSNorm(cfg, cfg.head_dim, "kv")
            self.k_norm = RMSNorm(cfg, cfg.head_dim, "kv")

    def _qkv(self, x, positions):
        cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        q = jnp.einsum("bse,ehd->bshd", x, self.wq[...].astype(dt))
        k = jnp.einsum("bse,ekd->bskd", x, self.wk[...].astype(dt))
        v = jnp.einsum("bse,ekd->bskd", x, self.wv[...].astype(dt))
        if cfg.qkv_bias:
            q, k, v = (q + self.bq[...].astype(dt), k + self.bk[...].astype(dt),
                       v + self.bv[...].astype(dt))
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if cfg.position_encoding == "rope":
            scaling = cfg if self.scaled_rope else None
            q, k = rope(q, positions, self.theta, scaling), rope(k, positions, self.theta, scaling)
        return q, k, v

    def _out(self, out):
        return jnp.einsum("bshd,hde->bse", out, self.wo[...].astype(jnp.dtype(self.cfg.dtype)))

    def __call__(self, x, positions, key_mask):
        """Causal self-attention over x [B,S,E]; returns (out, (k, v) as [B,K,S,D])."""
        q, k, v = self._qkv(x, positions)
        out = self_attention(q, k, v, key_mask, self.cfg, self.window)
        return self._out(out), (k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3))

    def decode(self, x, positions, masks, kv_cache, index):
        """x [B,S,E] written at cache slot `index`; masks[window] [B,S,T] over the T cache
        slots for this layer's window (None = full)."""
        q, k, v = self._qkv(x, positions)
        ck, cv = kv_cache
        k = jax.lax.dynamic_update_slice(ck, k.transpose(0, 2, 1, 3).astype(ck.dtype),
                                         (0, 0, index, 0))
        v = jax.lax.dynamic_update_slice(cv, v.transpose(0, 2, 1, 3).astype(cv.dtype),
                                         (0, 0, index, 0))
        out = cached_attention(q, k, v, masks[self.window], self.cfg)
        return self._out(out), (k, v)


_ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
}


class MLP(nnx.Module):
    """Gated MLP: SwiGLU with silu, GeGLU with gelu."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.dtype = jnp.dtype(cfg.dtype)
        self.act = _ACTIVATIONS[cfg.mlp_activation]
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
        h = self.act(x @ self.w_gate[...].astype(dt)) * (x @ self.w_up[...].astype(dt))
        h = constrain(h, ("batch", "length", "mlp"))
        return h @ self.w_down[...].astype(dt)


class Block(nnx.Module):
    """Pre-norm residual block; with `post_norms` the attention and MLP outputs are normed too
    before they join the residual (Gemma 2/3)."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, layer: int = 0):
        self.attn_norm = RMSNorm(cfg)
        self.attn = Attention(cfg, rngs, layer)
        self.mlp_norm = RMSNorm(cfg)
        self.mlp = MLP(cfg, rngs)
        if cfg.post_norms:
            self.post_attn_norm = RMSNorm(cfg)
            self.post_mlp_norm = RMSNorm(cfg)
        self.post_norms = cfg.post_norms

    def _finish(self, x, a):
        if self.post_norms:
            x = x + self.post_attn_norm(a)
            x = x + self.post_mlp_norm(self.mlp(self.mlp_norm(x)))
        else:
            x = x + a
            x = x + self.mlp(self.mlp_norm(x))
        return constrain(x, ("batch", "length", "embed"))

    def __call__(self, x, positions, key_mask):
        a, kv = self.attn(self.attn_norm(x), positions, key_mask)
        return self._finish(x, a), kv

    def decode(self, x, positions, masks, kv_cache, index):
        a, kv = self.attn.decode(self.attn_norm(x), positions, masks, kv_cache, index)
        return self._finish(x, a), kv


def _stacked_blocks(cfg: ModelConfig, rngs: nnx.Rngs) -> Block:
    """One Block whose parameters carry a leading [n_layers] axis (logical name "layers"); the
    layers are all of one kind (ModelConfig checks it)."""
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
            self.blocks = nnx.List([Block(cfg, rngs, i) for i in range(cfg.n_layers)])
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
        x = self.embed[...].astype(dt)[tokens]
        if self.cfg.scale_embeddings:
            x = x * self.cfg.d_model**0.5
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
        if self.cfg.final_softcap is not None:
            logits = self.cfg.final_softcap * jnp.tanh(logits / self.cfg.final_softcap)
        return constrain(logits, ("batch", "length", "vocab")) if logits.ndim == 3 else logits

    def value(self, h: jax.Array) -> jax.Array | None:
        """The value head's prediction (fp32) at each position of h [..., E]; None without one."""
        if self.value_head is None:
            return None
        if self.cfg.value_stop_gradient:
            h = jax.lax.stop_gradient(h)
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
        Returns (logits [B,S,V], values [B,S] or None, the updated cache).

        Sliding-window layers take a cached key's position to be the number of valid slots
        before it, which is how the sampler lays rows out (positions count real tokens)."""
        s = tokens.shape[1]
        index = cache["index"]
        valid = jax.lax.dynamic_update_slice(cache["valid"], write_mask, (0, index))
        slots = jnp.arange(valid.shape[1])
        causal = slots[None, :] <= index + jnp.arange(s)[:, None]  # [S, T]
        masks = {None: valid[:, None, :] & causal[None]}
        if self.cfg.sliding_window is not None:
            key_positions = jnp.cumsum(valid, axis=1) - 1  # [B, T]
            near = key_positions[:, None, :] > positions[:, :, None] - self.cfg.sliding_window
            masks[self.cfg.sliding_window] = masks[None] & near
        x = self._embed(tokens)
        new_k, new_v = [], []
        for block, ck, cv in zip(self._layers(), cache["k"], cache["v"], strict=True):
            x, (k, v) = block.decode(x, positions, masks, (ck, cv), index)
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
