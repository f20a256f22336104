"""Our parameters back to a Hugging Face directory that `transformers` (and our importer) load.

The value head is no HF tensor: it goes to `value_head.safetensors` beside the model, which
transformers ignores and our importer reads back. Exporting a model that was imported keeps
that checkpoint's config, generation config and tokenizer files (`like=`); otherwise config.json
is written from the ModelConfig, whose architecture must be exactly one family's.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np

from jaxrl_reason import files
from jaxrl_reason.errors import UserError
from jaxrl_reason.models.hf import config as hf_config
from jaxrl_reason.models.hf import weights
from jaxrl_reason.models.transformer import ModelConfig

# Files of a source checkpoint that carry over unchanged: generation settings and tokenizer.
CARRIED = ("generation_config.json", "tokenizer.json", "tokenizer_config.json",
           "special_tokens_map.json", "tokenizer.model", "chat_template.jinja",
           "chat_template.json", "vocab.json", "merges.txt", "added_tokens.json")


def _config(cfg: ModelConfig, like: str | None, dtype: str) -> tuple[dict, str]:
    if like is None:
        model_type = hf_config.infer_family(cfg)
        hf = hf_config.to_hf(cfg, model_type)
    else:
        with open(os.path.join(like, "config.json")) as f:
            hf = json.load(f)
        model_type = hf_config.family(hf)
        theirs = hf_config.model_fields(hf)
        wrong = [f for f in hf_config.ARCH_FIELDS if theirs[f] != getattr(cfg, f)]
        if wrong:
            raise UserError(f"export like={like!r}: its config.json differs from the model in "
                            f"{', '.join(wrong)}; export without `like`")
    hf.pop("dtype", None)
    hf["torch_dtype"] = dtype
    return hf, model_type


def export(params, cfg: ModelConfig, out_dir: str, like: str | None = None,
           dtype: str | None = None, max_shard_bytes: int = 4 << 30) -> str:
    """Writes `params` of `cfg` to `out_dir` as an HF checkpoint (in `dtype`, default the
    param dtype; sharded with an index past `max_shard_bytes`). Every process takes part (the
    tensors are gathered), process 0 writes. Returns out_dir."""
    from safetensors.numpy import save_file

    dtype = dtype or cfg.param_dtype
    hf, model_type = _config(cfg, like, dtype)
    writer = files.is_writer()
    if writer:
        os.makedirs(out_dir, exist_ok=True)
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    value_head = None
    for name, array in weights.host_tensors(params, cfg, model_type, dtype):
        if name == "value_head":
            value_head = array
            continue
        if size and size + array.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = array
        size += array.nbytes
    if not writer:
        return out_dir
    names = ([f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
             if len(shards) > 1 else ["model.safetensors"])
    for shard, name in zip(shards, names, strict=True):
        save_file(shard, os.path.join(out_dir, name), metadata={"format": "pt"})
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(a.nbytes for s in shards for a in s.values())},
                 "weight_map": {t: n for s, n in zip(shards, names, strict=True) for t in s}}
        files.write_json(os.path.join(out_dir, "model.safetensors.index.json"), index)
    if value_head is not None:
        save_file({"value_head": value_head}, os.path.join(out_dir, weights.VALUE_HEAD_FILE))
    files.write_atomic(os.path.join(out_dir, "config.json"), json.dumps(hf, indent=2))
    if like is not None:
        for name in CARRIED:
            if os.path.exists(os.path.join(like, name)):
                shutil.copyfile(os.path.join(like, name), os.path.join(out_dir, name))
    jax.effects_barrier()
    return out_dir
