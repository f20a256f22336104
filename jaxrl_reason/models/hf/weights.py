"""Checkpoint tensors <-> our parameters: the name and layout map, sharded reading, writing.

Reading goes straight onto the mesh: `jax.make_array_from_callback` asks for each device's
slice, which is read from the memory-mapped safetensors file (only the rows and columns it
covers) and converted to the parameter dtype, so a process reads only what its devices hold and
the host never holds more than a slice at a time. Our layouts are reshapes and transposes of
the HF ones (q [E, N, D] is q_proj.weight [N*D, E] split and transposed), so a slice of ours is
a block of theirs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator

import jax
import numpy as np
from flax import nnx

from jaxrl_reason.errors import UserError
from jaxrl_reason.models.transformer import ModelConfig, Transformer

VALUE_HEAD_FILE = "value_head.safetensors"  # ours, beside an exported checkpoint; HF ignores it


@dataclasses.dataclass(frozen=True)
class Layout:
    """Their tensor of shape `theirs`; ours = theirs.reshape(view).transpose(perm)."""

    theirs: tuple[int, ...]
    view: tuple[int, ...] | None = None
    perm: tuple[int, ...] | None = None

    def to_theirs(self, x: np.ndarray) -> np.ndarray:
        x = x if self.perm is None else x.transpose(np.argsort(self.perm))
        return x.reshape(self.theirs)


def _layer_names(cfg: ModelConfig, model_type: str, i: int) -> dict[str, tuple[str, Layout]]:
    """Our name within block i -> (their tensor name, layout)."""
    e, n, k, d, f = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff
    pre = f"model.layers.{i}."
    gemma_sandwich = model_type in ("gemma2", "gemma3_text")
    norm = Layout((e,))
    names = {
        "attn.wq": ("self_attn.q_proj.weight", Layout((n * d, e), (n, d, e), (2, 0, 1))),
        "attn.wk": ("self_attn.k_proj.weight", Layout((k * d, e), (k, d, e), (2, 0, 1))),
        "attn.wv": ("self_attn.v_proj.weight", Layout((k * d, e), (k, d, e), (2, 0, 1))),
        "attn.wo": ("self_attn.o_proj.weight", Layout((e, n * d), (e, n, d), (1, 2, 0))),
        "attn_norm.scale": ("input_layernorm.weight", norm),
        "mlp_norm.scale": ("pre_feedforward_layernorm.weight" if gemma_sandwich
                           else "post_attention_layernorm.weight", norm),
        "mlp.w_gate": ("mlp.gate_proj.weight", Layout((f, e), None, (1, 0))),
        "mlp.w_up": ("mlp.up_proj.weight", Layout((f, e), None, (1, 0))),
        "mlp.w_down": ("mlp.down_proj.weight", Layout((e, f), None, (1, 0))),
    }
    if cfg.qkv_bias:
        names |= {"attn.bq": ("self_attn.q_proj.bias", Layout((n * d,), (n, d))),
                  "attn.bk": ("self_attn.k_proj.bias", Layout((k * d,), (k, d))),
                  "attn.bv": ("self_attn.v_proj.bias", Layout((k * d,), (k, d)))}
    if cfg.qk_norm:
        names |= {"attn.q_norm.scale": ("self_attn.q_norm.weight", Layout((d,))),
                  "attn.k_norm.scale": ("self_attn.k_norm.weight", Layout((d,)))}
    if cfg.post_norms:
        names |= {"post_attn_norm.scale": ("post_attention_layernorm.weight", norm),
                  "post_mlp_norm.scale": ("post_feedforward_layernorm.weight", norm)}
    return {ours: (pre + theirs, layout) for ours, (theirs, layout) in names.items()}


def name_map(cfg: ModelConfig, model_type: str) -> dict[str, tuple[str, Layout]]:
    """Every parameter of ours but the value head (dotted path) -> (HF tensor name, layout);
    with scan_layers, 'blocks.{i}.x' stands for layer i of the stacked 'blocks.x'."""
    v, e = cfg.vocab_size, cfg.d_model
    out = {"embed": ("model.embed_tokens.weight", Layout((v, e))),
           "final_norm.scale": ("model.norm.weight", Layout((e,)))}
    if not cfg.tie_embeddings:
        out["lm_head"] = ("lm_head.weight", Layout((v, e), None, (1, 0)))
    for i in range(cfg.n_layers):
        out |= {f"blocks.{i}.{ours}": v for ours, v in _layer_names(cfg, model_type, i).items()}
    return out


class SafetensorsDir:
    """The tensors of an HF directory (model.safetensors or a sharded index), memory-mapped."""

    def __init__(self, path: str):
        index = os.path.join(path, "model.safetensors.index.json")
        single = os.path.join(path, "model.safetensors")
        if os.path.exists(index):
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
        elif os.path.exists(single):
            weight_map = None
        else:
            raise UserError(f"{path}: no model.safetensors or model.safetensors.index.json "
                            "(only safetensors checkpoints are read)")
        from safetensors import safe_open

        files = sorted(set(weight_map.values())) if weight_map else ["model.safetensors"]
        self._handles = {f: safe_open(os.path.join(path, f), framework="numpy") for f in files}
        self.where = weight_map or {k: "model.safetensors"
                                    for k in self._handles["model.safetensors"].keys()}

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handles[self.where[name]].get_slice(name).get_shape())

    def read(self, name: str, index: tuple[slice, ...] | None = None) -> np.ndarray:
        """The tensor, or the block `index` of it (only those bytes are read)."""
        if name not in self.where:
            raise UserError(f"checkpoint lacks tensor {name!r}")
        part = self._handles[self.where[name]].get_slice(name)
        return part[index] if index else part[:]


def _read_block(src: SafetensorsDir, name: str, layout: Layout, ours: tuple[slice, ...]
                ) -> np.ndarray:
    """Our block `ours` (one slice per dim of our layout) of their tensor `name`."""
    theirs = layout.theirs
    if src.shape(name) != theirs:
        raise UserError(f"checkpoint tensor {name!r} has shape {src.shape(name)}, but "
                        f"config.json implies {theirs}")
    view = layout.view or theirs
    perm = layout.perm or tuple(range(len(view)))
    view_index = [slice(None)] * len(view)
    for j, s in enumerate(ours):
        view_index[perm[j]] = s
    # Each of their dims splits into consecutive view dims; read the first one's range whole
    # rows of the rest, then cut the rest.
    read, rest, v = [], [], 0
    for size in theirs:
        group = [v]
        while int(np.prod([view[g] for g in group])) < size:
            group.append(group[-1] + 1)
        inner = int(np.prod([view[g] for g in group[1:]]))
        first = view_index[group[0]].indices(view[group[0]])
        read.append(slice(first[0] * inner, first[1] * inner))
        rest.append((first[1] - first[0], group))
        v = group[-1] + 1
    block = src.read(name, tuple(read))
    shape = [n if g == grp[0] else view[g] for n, grp in rest for g in grp]
    cut = tuple(slice(None) if g == grp[0] else view_index[g] for _, grp in rest for g in grp)
    block = block.reshape(shape)[cut]
    return block.transpose(perm) if layout.perm else block


def _path(key_path) -> str:
    parts = []
    for k in key_path:
        name = getattr(k, "key", getattr(k, "idx", getattr(k, "name", None)))
        if name != "value":
            parts.append(str(name))
    return ".".join(parts)


def abstract_params(cfg: ModelConfig) -> nnx.State:
    return nnx.state(nnx.eval_shape(lambda: Transformer(cfg, nnx.Rngs(0))), nnx.Param)


def load(path: str, cfg: ModelConfig, model_type: str, shardings) -> nnx.State:
    """Our parameters of `cfg` from the HF dir `path`, placed with `shardings` (a State of
    NamedShardings like the params'), each device reading only its block."""
    src = SafetensorsDir(path)
    names = name_map(cfg, model_type)
    dtype = np.dtype(jax.numpy.dtype(cfg.param_dtype))
    value_head = os.path.join(path, VALUE_HEAD_FILE)

    def reader(key: str) -> Callable[[tuple[slice, ...]], np.ndarray] | None:
        if key == "value_head":
            if not os.path.exists(value_head):
                return None  # a fresh value head: zeros (no checkpoint has one)
            from safetensors import safe_open

            handle = safe_open(value_head, framework="numpy")
            return lambda idx: handle.get_slice("value_head")[idx]
        if key == "lm_head" and names["lm_head"][0] not in src:  # tied in the checkpoint
            return lambda idx: _read_block(src, "model.embed_tokens.weight",
                                           Layout((cfg.vocab_size, cfg.d_model), None, (1, 0)),
                                           idx)
        if key in names:
            name, layout = names[key]
            return lambda idx: _read_block(src, name, layout, idx)
        stacked = key.split(".", 1)[1]  # scan_layers: blocks.<x> holds every layer's <x>
        per_layer = [names[f"blocks.{i}.{stacked}"] for i in range(cfg.n_layers)]
        return lambda idx: np.stack([_read_block(src, n, lay, idx[1:])
                                     for n, lay in per_layer[idx[0]]])

    def one(key_path, abstract, sharding):
        key = _path(key_path)
        read = reader(key)
        cache: dict = {}

        def block(index):
            k = tuple((s.start, s.stop) for s in index)
            if k not in cache:  # replicated blocks are read once, not once per device
                cache[k] = (np.zeros(_block_shape(abstract.shape, index), dtype) if read is None
                            else np.asarray(read(index)).astype(dtype))
            return cache[k]

        return jax.make_array_from_callback(abstract.shape, sharding, block)

    params = abstract_params(cfg)
    return jax.tree.map_with_path(one, params, shardings)


def _block_shape(shape, index) -> tuple[int, ...]:
    return tuple(len(range(*s.indices(n))) for s, n in zip(index, shape, strict=True))


def host_tensors(params, cfg: ModelConfig, model_type: str, dtype: str | None = None
                 ) -> Iterator[tuple[str, np.ndarray]]:
    """(HF name, array in their layout) for each parameter, one at a time, gathered to the host;
    the value head, if any, as ('value_head', array)."""
    from jax.experimental import multihost_utils

    names = name_map(cfg, model_type)
    out_dtype = np.dtype(jax.numpy.dtype(dtype or cfg.param_dtype))
    flat = {_path(k): v for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}

    def host(x) -> np.ndarray:
        if jax.process_count() > 1:
            x = multihost_utils.process_allgather(x, tiled=True)
        return np.asarray(jax.device_get(x))

    for key, value in flat.items():
        if key == "value_head":
            yield "value_head", host(value).astype(out_dtype)
            continue
        if key in names:
            name, layout = names[key]
            yield name, np.ascontiguousarray(layout.to_theirs(host(value))).astype(out_dtype)
            continue
        stacked = key.split(".", 1)[1]
        array = host(value)
        for i in range(cfg.n_layers):
            name, layout = names[f"blocks.{i}.{stacked}"]
            yield name, np.ascontiguousarray(layout.to_theirs(array[i])).astype(out_dtype)

