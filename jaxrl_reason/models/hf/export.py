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
    """Writes `params` of `cfg` to the local directory `out_dir` as an HF checkpoint (in `dtype`,
    default the param dtype; sharded with an index past `max_shard_bytes`). Every process takes
    part (the tensors are gathered one at a time), process 0 writes. Returns out_dir."""
    from safetensors.numpy import save_file

    dtype = dtype or cfg.param_dtype
    hf, model_type = _config(cfg, like, dtype)
    writer = files.is_writer()
    if writer:
        os.makedirs(out_dir, exist_ok=True)
    # Shards are written as they fill (the host holds one shard, not the model) under
    # provisional names, renamed once their count is known.
    written: list[tuple[str, list[str], int]] = []
    shard: dict[str, np.ndarray] = {}
    value_head = None

    def flush():
        if shard and writer:
            name = os.path.join(out_dir, f".shard-{len(written):05d}.tmp")
            save_file(shard, name, metadata={"format": "pt"})
        written.append((f".shard-{len(written):05d}.tmp", list(shard),
                        sum(a.nbytes for a in shard.values())))
        shard.clear()

    for name, array in weights.host_tensors(params, cfg, model_type, dtype):
        if name == "value_head":
            value_head = array
            continue
        if shard and sum(a.nbytes for a in shard.values()) + array.nbytes > max_shard_bytes:
            flush()
        shard[name] = array
    flush()
    if not writer:
        return out_dir
    names = ([f"model-{i + 1:05d}-of-{len(written):05d}.safetensors" for i in range(len(written))]
             if len(written) > 1 else ["model.safetensors"])
    for (tmp, _, _), name in zip(written, names, strict=True):
        os.replace(os.path.join(out_dir, tmp), os.path.join(out_dir, name))
    if len(written) > 1:
        index = {"metadata": {"total_size": sum(size for _, _, size in written)},
                 "weight_map": {t: n for (_, tensors, _), n in zip(written, names, strict=True)
                                for t in tensors}}
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
