"""Batched, incremental sampling over a static KV cache.

    state = sampler.prefill(prompts, max_new_tokens)      # prompt pass, no logits computed
    ext, state = sampler.extend(state, cfg, max_steps, key, stop_ids=(newline,))  # one step each
    state = sampler.select(state, rows)                   # reorder / duplicate rows (beams)
    samples = sampler.generate(prompts, cfg, key)         # prefill + one extend

The cache lags the text by one token: the last prompt token (later: the last token emitted) is
PENDING and is written to the cache by the next decode step, which also draws the token after
it. So the prompt pass needs no output head, and every decode step has the same shape. Rows
advance together, one cache slot per step; a row that is paused (it emitted a step delimiter)
or done (it emitted a stop token) writes a hole that no query attends to, so rows may progress
raggedly across `extend` calls. Masks and positions are explicit per row; nothing is derived
from token values. Ids that may never be generated (pad, BOS) are masked out of the
distribution before drawing.

The sampler holds its own copy of the weights (`load`): cast to the compute dtype and laid out
for decoding (`parallel.axis_rules(decode=True)`: no all-gather of FSDP shards per token).
Batch sizes round up to powers of two and prompt lengths to `prompt_bucket`, so a run compiles
a handful of programs. With n samples per prompt each distinct prompt is prefilled once and its
cache rows broadcast.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from jaxrl_reason import parallel
from jaxrl_reason.data.batching import round_up
from jaxrl_reason.errors import check_dataclass, require
from jaxrl_reason.models.transformer import Cache, ModelConfig, Transformer
from jaxrl_reason.sampling.distribution import banned_mask, draw, sampling_logprobs


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """temperature 0 = greedy; top_k 0 = off; top_p 1.0 = off; n samples per prompt."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    n: int = 1

    def __post_init__(self):
        check_dataclass(self)
        require(self.max_new_tokens >= 1, "SamplingConfig.max_new_tokens", self.max_new_tokens,
                "must be >= 1")
        require(self.temperature >= 0, "SamplingConfig.temperature", self.temperature,
                "must be >= 0 (0 = greedy)")
        require(self.top_k >= 0, "SamplingConfig.top_k", self.top_k, "must be >= 0 (0 = off)")
        require(0 < self.top_p <= 1, "SamplingConfig.top_p", self.top_p, "must be in (0, 1]")
        require(self.n >= 1, "SamplingConfig.n", self.n, "must be >= 1")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclasses.dataclass
class Samples:
    """Generated ids [N, G] (pad after a row ends), the log-prob of each under the distribution
    it was drawn from (`sampling.distribution.sampling_logprobs`; 0 after the row ends),
    lengths [N] (counting the stop token of a finished row), `finished` [N] (the row emitted a
    stop token; False = cut at max_new_tokens), the index of each row's prompt, and the value
    head's prediction for each generated token (the state it was drawn from) or None."""

    tokens: np.ndarray
    logprobs: np.ndarray
    lengths: np.ndarray
    finished: np.ndarray
    prompt_index: np.ndarray
    values: np.ndarray | None = None


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class _Rows:
    """The device side of a decode state: the cache and, per row, the pending token, its
    position, and whether the row is done (stopped, or a filler row) and finished (stopped)."""

    cache: Cache
    pending: jax.Array
    position: jax.Array
    done: jax.Array
    finished: jax.Array


@dataclasses.dataclass
class DecodeState:
    """A batch in the middle of decoding: `rows` real rows (the rest fill the batch bucket),
    `capacity` cache slots of which `used` are written. Consumed by extend/select."""

    arrays: _Rows
    rows: int
    capacity: int
    used: int

    @property
    def room(self) -> int:
        return self.capacity - self.used


@dataclasses.dataclass
class Extension:
    """What one `extend` call generated, for the state's real rows: tokens/logprobs/values
    [R, max_steps] left-aligned (pad / 0 past `lengths`), `lengths` [R] new tokens this call,
    `finished` [R] whether the row has emitted a stop token (now or earlier)."""

    tokens: np.ndarray
    logprobs: np.ndarray
    values: np.ndarray | None
    lengths: np.ndarray
    finished: np.ndarray


class Sampler:
    """Samples completions of one model config, optionally sharded on a mesh."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        stop_tokens: Sequence[int],
        mesh: Mesh | None = None,
        pad_id: int = 0,
        banned_ids: Sequence[int] = (),
        prompt_bucket: int = 16,
        min_batch: int = 8,
    ):
        self.cfg = model_cfg
        self.stop = tuple(int(t) for t in stop_tokens)
        self.mesh = mesh if mesh is not None else parallel.make_mesh(devices=jax.devices()[:1])
        self.pad_id = pad_id
        self.banned_ids = tuple(int(i) for i in banned_ids)
        self.prompt_bucket = prompt_bucket
        self.min_batch = round_up(min_batch, parallel.batch_divisor(self.mesh))
        abstract = nnx.eval_shape(lambda: Transformer(model_cfg, nnx.Rngs(0)))
        self.graphdef, abstract_params = nnx.split(abstract, nnx.Param)
        self.params_shardings = parallel.state_shardings(
            abstract_params, self.mesh, parallel.axis_rules(decode=True))
        self.params = None
        self.load_seconds = 0.0
        self._batch = parallel.batch_sharding(self.mesh)
        self._repl = parallel.replicated(self.mesh)
        kv = parallel.logical_to_mesh_spec(
            ("batch", "kv_heads", "length", "kv"), mesh=self.mesh,
            shape=(self.min_batch, model_cfg.n_kv_heads, 1, model_cfg.head_dim))
        self._kv = NamedSharding(self.mesh, kv)
        dt = jnp.dtype(model_cfg.dtype)
        self._load = jax.jit(
            lambda p: jax.tree.map(lambda x: x.astype(dt), p), out_shardings=self.params_shardings)
        self._prefill = jax.jit(self._prefill_fn, static_argnames=("capacity",))
        self._extend = jax.jit(
            self._extend_fn, donate_argnums=(1,),
            static_argnames=("max_steps", "stop_ids", "top_k", "top_p", "greedy"))
        self._select = jax.jit(self._select_fn)

    # ---- weights ----------------------------------------------------------------------------
    def load(self, params) -> float:
        """Takes a decode-layout copy of `params` (cast to the compute dtype); returns seconds."""
        t0 = time.perf_counter()
        with jax.set_mesh(self.mesh):
            self.params = jax.block_until_ready(self._load(params))
        self.load_seconds = time.perf_counter() - t0
        return self.load_seconds

    def _weights(self):
        if self.params is None:
            raise RuntimeError("Sampler: no weights; call sampler.load(params) first")
        return self.params

    # ---- layout -----------------------------------------------------------------------------
    def batch_size(self, rows: int) -> int:
        """The bucket a batch of `rows` rows is padded to: a power of two, >= min_batch."""
        return max(self.min_batch, round_up(1 << max(rows - 1, 0).bit_length(),
                                             parallel.batch_divisor(self.mesh)))

    def prompt_slots(self, longest_prompt: int) -> int:
        """Cache slots the prompt pass fills: all but the last (pending) token, bucketed."""
        return round_up(max(longest_prompt - 1, 1), self.prompt_bucket)

    def room(self, longest_prompt: int) -> int:
        """New tokens that fit in the context after a prompt of this many tokens."""
        return self.cfg.max_len - self.prompt_slots(longest_prompt)

    def _shardings(self, like: _Rows) -> _Rows:
        cache = {"k": [self._kv] * len(like.cache["k"]), "v": [self._kv] * len(like.cache["v"]),
                 "index": self._repl, "valid": self._batch}
        return _Rows(cache, self._batch, self._batch, self._batch, self._batch)

    # ---- jitted pieces ----------------------------------------------------------------------
    def _prefill_fn(self, params, tokens, mask, positions, pending, position, done, *, capacity):
        model = nnx.merge(self.graphdef, params)
        _, kvs = model.prefill(tokens, positions, mask)  # the hidden states are unused: no head
        pad = ((0, 0), (0, 0), (0, capacity - tokens.shape[1]), (0, 0))
        dt = jnp.dtype(self.cfg.dtype)
        cache = {
            "k": [jnp.pad(k.astype(dt), pad) for k, _ in kvs],
            "v": [jnp.pad(v.astype(dt), pad) for _, v in kvs],
            "index": jnp.asarray(tokens.shape[1], jnp.int32),
            "valid": jnp.pad(mask, ((0, 0), (0, capacity - tokens.shape[1]))),
        }
        rows = _Rows(cache, pending, position, done, jnp.zeros_like(done))
        return jax.lax.with_sharding_constraint(rows, self._shardings(rows))

    def _extend_fn(self, params, rows: _Rows, key, temperature, *, max_steps, stop_ids, top_k,
                   top_p, greedy):
        model = nnx.merge(self.graphdef, params)
        b = rows.pending.shape[0]
        eos = jnp.asarray(self.stop, jnp.int32)
        pause = jnp.asarray(stop_ids, jnp.int32)
        banned = banned_mask(self.cfg.vocab_size, self.banned_ids) if self.banned_ids else None
        out = dict(tokens=jnp.full((b, max_steps), self.pad_id, jnp.int32),
                   logprobs=jnp.zeros((b, max_steps), jnp.float32),
                   values=jnp.zeros((b, max_steps), jnp.float32),
                   lengths=jnp.zeros((b,), jnp.int32))

        def cond(c):
            i, _, active, _ = c
            return (i < max_steps) & active.any()

        def body(c):
            i, r, active, out = c
            logits, values, cache = model.decode(r.pending[:, None], r.position[:, None],
                                                 r.cache, active[:, None])
            logp = sampling_logprobs(logits[:, 0], temperature, greedy=greedy, top_k=top_k,
                                     top_p=top_p, banned=banned)
            tok, lp = draw(jax.random.fold_in(key, i), logp, greedy)
            out = dict(
                tokens=out["tokens"].at[:, i].set(jnp.where(active, tok, self.pad_id)),
                logprobs=out["logprobs"].at[:, i].set(jnp.where(active, lp, 0.0)),
                values=out["values"] if values is None else
                out["values"].at[:, i].set(jnp.where(active, values[:, 0], 0.0)),
                lengths=out["lengths"] + active)
            ended = active & (jnp.isin(tok, eos) if self.stop else False)
            paused = active & (jnp.isin(tok, pause) if stop_ids else False)
            r = _Rows(cache, jnp.where(active, tok, r.pending),
                      jnp.where(active, r.position + 1, r.position), r.done | ended,
                      r.finished | ended)
            return i + 1, r, active & ~ended & ~paused, out

        init = (jnp.zeros((), jnp.int32), rows, ~rows.done, out)
        _, rows, _, out = jax.lax.while_loop(cond, body, init)
        return jax.lax.with_sharding_constraint(rows, self._shardings(rows)), out

    def _select_fn(self, rows: _Rows, index, filler):
        take = lambda x: jnp.take(x, index, axis=0)
        cache = {"k": [take(k) for k in rows.cache["k"]], "v": [take(v) for v in rows.cache["v"]],
                 "index": rows.cache["index"], "valid": take(rows.cache["valid"])}
        new = _Rows(cache, take(rows.pending), take(rows.position), take(rows.done) | filler,
                    take(rows.finished) & ~filler)
        return jax.lax.with_sharding_constraint(new, self._shardings(new))

    # ---- host API ---------------------------------------------------------------------------
    def prefill(self, prompts: Sequence[Sequence[int]], slots: int) -> DecodeState:
        """Runs the prompt pass for (unpadded) prompts, into a cache with room for `slots`
        decode steps. Every row advances one slot per step, paused or not, so step-wise
        decoding needs as many slots as steps, not as tokens per row."""
        if not prompts:
            raise ValueError("Sampler.prefill: no prompts")
        if any(len(p) == 0 for p in prompts):
            raise ValueError("Sampler.prefill: empty prompt (encode at least a BOS token)")
        longest = max(len(p) for p in prompts)
        p_slots = self.prompt_slots(longest)
        if slots > self.room(longest):
            raise ValueError(
                f"prompt ({longest} tokens, {p_slots} cache slots) + {slots} new tokens "
                f"exceeds ModelConfig.max_len={self.cfg.max_len}")
        b = self.batch_size(len(prompts))
        tokens = np.full((b, p_slots), self.pad_id, np.int32)
        mask = np.zeros((b, p_slots), bool)
        positions = np.zeros((b, p_slots), np.int32)
        pending = np.full((b,), self.pad_id, np.int32)
        position = np.zeros((b,), np.int32)
        done = np.ones((b,), bool)
        for i, prompt in enumerate(prompts):
            n = len(prompt) - 1  # right-padded: what cuDNN's padded attention expects
            tokens[i, :n], mask[i, :n], positions[i, :n] = prompt[:-1], True, np.arange(n)
            pending[i], position[i], done[i] = prompt[-1], n, False
        host = (tokens, mask, positions, pending, position, done)
        with jax.set_mesh(self.mesh):
            arrays = self._prefill(self._weights(), *parallel.put_global(host, self.mesh),
                                   capacity=p_slots + slots)
        return DecodeState(arrays, len(prompts), p_slots + slots, p_slots)

    def extend(
        self,
        state: DecodeState,
        cfg: SamplingConfig,
        max_steps: int,
        key: jax.Array | int,
        stop_ids: Sequence[int] = (),
    ) -> tuple[Extension, DecodeState]:
        """Generates up to `max_steps` tokens per row. A row stops early when it emits one of
        the sampler's stop tokens (it is then done for good) or one of `stop_ids` (a step
        delimiter: the next call continues it). Updates and returns `state`."""
        if max_steps < 1 or max_steps > state.room:
            raise ValueError(f"Sampler.extend: max_steps={max_steps} must be in "
                             f"[1, {state.room}] (the cache slots left)")
        key = jax.random.key(key) if isinstance(key, int) else key
        with jax.set_mesh(self.mesh):
            state.arrays, out = self._extend(
                self._weights(), state.arrays, key, jnp.float32(cfg.temperature),
                max_steps=max_steps, stop_ids=tuple(int(s) for s in stop_ids), top_k=cfg.top_k,
                top_p=cfg.top_p, greedy=cfg.greedy)
        out, finished, index = parallel.to_host(
            (out, state.arrays.finished, state.arrays.cache["index"]))
        state.used = int(index)
        r = state.rows
        values = out["values"][:r] if self.cfg.value_head else None
        return Extension(out["tokens"][:r], out["logprobs"][:r], values, out["lengths"][:r],
                         finished[:r]), state

    def select(self, state: DecodeState, rows: Sequence[int]) -> DecodeState:
        """A state whose row i is row rows[i] of `state` (cache, pending token, flags): for
        beam search, keep / reorder / duplicate rows."""
        rows = [int(r) for r in rows]
        if not rows or min(rows) < 0 or max(rows) >= state.rows:
            raise ValueError(f"Sampler.select: rows must index the {state.rows} rows, got {rows}")
        b = self.batch_size(len(rows))
        index = np.zeros((b,), np.int32)
        index[: len(rows)] = rows
        filler = np.arange(b) >= len(rows)
        with jax.set_mesh(self.mesh):
            arrays = self._select(state.arrays, *parallel.put_global((index, filler), self.mesh))
        return DecodeState(arrays, len(rows), state.capacity, state.used)

    def generate(self, prompts: Sequence[Sequence[int]], cfg: SamplingConfig,
                 key: jax.Array | int = 0) -> Samples:
        """cfg.n completions of each (unpadded) prompt from the loaded weights; rows are
        prompt-major. Distinct prompts are prefilled once."""
        if not prompts:
            raise ValueError("Sampler.generate: no prompts")
        distinct: dict[tuple[int, ...], int] = {}
        for p in prompts:
            distinct.setdefault(tuple(int(t) for t in p), len(distinct))
        state = self.prefill(list(distinct), cfg.max_new_tokens)
        rows = [distinct[tuple(int(t) for t in p)] for p in prompts for _ in range(cfg.n)]
        if rows != list(range(state.rows)):
            state = self.select(state, rows)
        ext, _ = self.extend(state, cfg, cfg.max_new_tokens, key)
        return Samples(ext.tokens, ext.logprobs, ext.lengths, ext.finished,
                       np.repeat(np.arange(len(prompts)), cfg.n), ext.values)
