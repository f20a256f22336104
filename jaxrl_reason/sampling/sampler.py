"""Batched sampling: a jitted prefill, then a jitted decode loop over a static KV cache.

Prompts of different lengths are left-aligned into one [B, P] batch (left padding, so every
row writes the same cache slot at each decode step); the cache is sized P + max_new_tokens
and donated from prefill to decode. The decode loop is a `lax.while_loop` that exits as soon
as every row has emitted a stop token. Shapes are bucketed (batch and prompt length rounded
up) so a long run compiles a handful of programs, not one per call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from jaxrl_reason import parallel
from jaxrl_reason.models.transformer import ModelConfig, Transformer, init_cache


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """temperature 0 = greedy; top_k 0 = off; top_p 1.0 = off; n samples per prompt."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    n: int = 1


@dataclasses.dataclass
class Samples:
    """Generated ids [N, G] (0 after the stop token), their logprobs under the sampling
    distribution before top-k/top-p truncation (0 after the stop), lengths [N] counting the
    stop token, and for each row the index of its prompt."""

    tokens: np.ndarray
    logprobs: np.ndarray
    lengths: np.ndarray
    prompt_index: np.ndarray


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def choose_tokens(logits, key, temperature, *, top_k: int, top_p: float, greedy: bool):
    """Picks one token per row from logits [B, V]; returns (tokens, logprobs)."""
    logits = logits.astype(jnp.float32)
    if greedy:
        tok = jnp.argmax(logits, axis=-1)
        logp = jax.nn.log_softmax(logits, axis=-1)
    else:
        scaled = logits / temperature
        logp = jax.nn.log_softmax(scaled, axis=-1)
        if top_k:
            kth = jax.lax.top_k(scaled, top_k)[0][:, -1:]
            scaled = jnp.where(scaled < kth, -jnp.inf, scaled)
        if top_p < 1.0:
            order = jnp.argsort(-scaled, axis=-1)
            sorted_logits = jnp.take_along_axis(scaled, order, axis=-1)
            probs = jax.nn.softmax(sorted_logits, axis=-1)
            drop_sorted = jnp.cumsum(probs, axis=-1) - probs > top_p  # always keeps the top token
            drop = (
                jnp.zeros_like(drop_sorted)
                .at[jnp.arange(scaled.shape[0])[:, None], order]
                .set(drop_sorted)
            )
            scaled = jnp.where(drop, -jnp.inf, scaled)
        tok = jax.random.categorical(key, scaled, axis=-1)
    return tok.astype(jnp.int32), jnp.take_along_axis(logp, tok[:, None], axis=-1)[:, 0]


class Sampler:
    """Samples completions from params of one model config, optionally sharded on a mesh."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        stop_tokens: Sequence[int],
        mesh: Mesh | None = None,
        pad_id: int = 0,
        prompt_bucket: int = 16,
        batch_bucket: int = 8,
    ):
        self.cfg = model_cfg
        self.stop = tuple(int(t) for t in stop_tokens)
        self.mesh = mesh if mesh is not None else parallel.make_mesh(devices=jax.devices()[:1])
        self.pad_id = pad_id
        self.prompt_bucket = prompt_bucket
        self.batch_bucket = _round_up(
            batch_bucket, self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        )
        abstract = nnx.eval_shape(lambda: Transformer(model_cfg, nnx.Rngs(0)))
        self.graphdef, abstract_params = nnx.split(abstract, nnx.Param)
        self.params_shardings = parallel.state_shardings(abstract_params, self.mesh)
        self._data = parallel.batch_sharding(self.mesh)
        self._prefill = jax.jit(
            self._prefill_fn, static_argnames=("max_new", "top_k", "top_p", "greedy")
        )
        self._decode = jax.jit(
            self._decode_fn,
            static_argnames=("max_new", "top_k", "top_p", "greedy"),
            donate_argnums=(1,),
        )

    # ---- jitted pieces -------------------------------------------------------------------
    def _prefill_fn(
        self, params, prompt, valid, key, temperature, *, max_new, top_k, top_p, greedy
    ):
        model = nnx.merge(self.graphdef, params)
        b, p = prompt.shape
        cache = init_cache(self.cfg, b, p + max_new)
        cache["k"] = [
            parallel.constrain(x, ("batch", "kv_heads", "length", "kv")) for x in cache["k"]
        ]
        cache["v"] = [
            parallel.constrain(x, ("batch", "kv_heads", "length", "kv")) for x in cache["v"]
        ]
        positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
        logits, _, cache = model(prompt, positions, valid, cache)
        tok, lp = choose_tokens(
            logits[:, -1], key, temperature, top_k=top_k, top_p=top_p, greedy=greedy
        )
        return cache, tok, lp, valid.sum(axis=1).astype(jnp.int32)

    def _decode_fn(
        self,
        params,
        cache,
        first_tok,
        first_lp,
        next_pos,
        key,
        temperature,
        *,
        max_new,
        top_k,
        top_p,
        greedy,
    ):
        model = nnx.merge(self.graphdef, params)
        b = first_tok.shape[0]
        stop = jnp.asarray(self.stop, jnp.int32)
        toks = jnp.zeros((b, max_new), jnp.int32).at[:, 0].set(first_tok)
        lps = jnp.zeros((b, max_new), jnp.float32).at[:, 0].set(first_lp)
        done = jnp.isin(first_tok, stop) | (next_pos == 0)  # bucket filler rows have no prompt

        def cond(c):
            i, _, _, done, _, _, _ = c
            return (i + 1 < max_new) & ~jnp.all(done)

        def body(c):
            i, cache, cur, done, toks, lps, key = c
            key, sub = jax.random.split(key)
            logits, _, cache = model(
                cur[:, None], (next_pos + i)[:, None], jnp.ones((b, 1), bool), cache
            )
            tok, lp = choose_tokens(
                logits[:, -1], sub, temperature, top_k=top_k, top_p=top_p, greedy=greedy
            )
            tok = jnp.where(done, self.pad_id, tok)
            lp = jnp.where(done, 0.0, lp)
            toks = toks.at[:, i + 1].set(tok)
            lps = lps.at[:, i + 1].set(lp)
            return i + 1, cache, tok, done | jnp.isin(tok, stop), toks, lps, key

        init = (jnp.zeros((), jnp.int32), cache, first_tok, done, toks, lps, key)
        _, cache, _, _, toks, lps, _ = jax.lax.while_loop(cond, body, init)
        is_stop = jnp.isin(toks, stop)
        first_stop = jnp.where(is_stop.any(1), jnp.argmax(is_stop, axis=1) + 1, max_new)
        return toks, lps, first_stop, cache  # returning the cache lets XLA reuse its buffers

    # ---- host API ------------------------------------------------------------------------
    def room(self, longest_prompt: int) -> int:
        """New tokens that fit in the context after a prompt of this many tokens (padded to the
        prompt bucket, as `generate` pads it)."""
        return self.cfg.max_len - _round_up(longest_prompt, self.prompt_bucket)

    def generate(
        self,
        params,
        prompts: Sequence[Sequence[int]],
        cfg: SamplingConfig,
        seed: int | jax.Array = 0,
    ) -> Samples:
        """Samples cfg.n completions for each (unpadded) prompt; rows are prompt-major."""
        rows = [list(p) for p in prompts for _ in range(cfg.n)]
        if not rows:
            raise ValueError("Sampler.generate: no prompts")
        if any(len(r) == 0 for r in rows):
            raise ValueError("Sampler.generate: empty prompt (encode at least a BOS token)")
        n_rows = len(rows)
        b = _round_up(n_rows, self.batch_bucket)
        p = _round_up(max(len(r) for r in rows), self.prompt_bucket)
        if cfg.max_new_tokens > self.room(p):
            raise ValueError(
                f"prompt ({p}) + max_new_tokens ({cfg.max_new_tokens}) exceeds "
                f"ModelConfig.max_len={self.cfg.max_len}"
            )
        tokens = np.full((b, p), self.pad_id, np.int32)
        valid = np.zeros((b, p), bool)
        for i, r in enumerate(rows):
            tokens[i, p - len(r) :] = r
            valid[i, p - len(r) :] = True
        key = seed if isinstance(seed, jax.Array) else jax.random.key(seed)
        k1, k2 = jax.random.split(key)
        greedy = cfg.temperature <= 0
        static = dict(max_new=cfg.max_new_tokens, top_k=cfg.top_k, top_p=cfg.top_p, greedy=greedy)
        temperature = jnp.float32(max(cfg.temperature, 1e-6))
        tokens, valid = jax.device_put((tokens, valid), self._data)
        with jax.set_mesh(self.mesh):
            cache, tok, lp, next_pos = self._prefill(
                params, tokens, valid, k1, temperature, **static
            )
            toks, lps, lengths, _ = self._decode(
                params, cache, tok, lp, next_pos, k2, temperature, **static
            )
        toks, lps, lengths = jax.device_get((toks, lps, lengths))
        return Samples(
            tokens=np.asarray(toks)[:n_rows],
            logprobs=np.asarray(lps)[:n_rows],
            lengths=np.asarray(lengths)[:n_rows],
            prompt_index=np.repeat(np.arange(len(prompts)), cfg.n),
        )

    def generate_padded(
        self,
        params,
        tokens: np.ndarray,
        lengths: np.ndarray,
        cfg: SamplingConfig,
        padding_side: str = "left",
        seed: int | jax.Array = 0,
    ) -> Samples:
        """Same as `generate` for an already padded [B, P] batch with true `lengths`."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        p = tokens.shape[1]
        prompts = [
            row[p - n :] if padding_side == "left" else row[:n]
            for row, n in zip(np.asarray(tokens), np.asarray(lengths), strict=True)
        ]
        return self.generate(params, prompts, cfg, seed)
