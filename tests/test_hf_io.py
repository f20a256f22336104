"""Checkpoint I/O: export round trips through transformers and our importer, sharded reading
on 8 devices equals the unsharded import (and reads only blocks), dtype conversion on the way,
the value head beside the checkpoint, and one-line errors for what cannot be imported."""

import dataclasses
import functools
import json

import jax
import numpy as np
import pytest

hf_tiny = pytest.importorskip("hf_tiny", reason="the hf extra (torch, transformers) is absent")
torch = hf_tiny.torch

from jaxrl_reason import parallel  # noqa: E402
from jaxrl_reason.errors import UserError  # noqa: E402
from jaxrl_reason.models import hf  # noqa: E402
from jaxrl_reason.models.hf import weights  # noqa: E402
from jaxrl_reason.models.hf.config import model_fields  # noqa: E402

BATCH = np.random.RandomState(1).randint(3, hf_tiny.VOCAB, (2, 24))


def one_device():
    return parallel.make_mesh(devices=jax.devices()[:1])


def load(path, cfg, mesh=None):
    mesh = mesh or one_device()
    shardings = parallel.state_shardings(weights.abstract_params(cfg), mesh)
    return hf.load(str(path), cfg, hf.HFCheckpoint(str(path)).model_type, shardings)


@functools.cache
def imported(family):
    path = hf_tiny.checkpoint(family)
    cfg = hf.HFCheckpoint(str(path)).model_config()
    return path, cfg, load(path, cfg)


def leaves(params):
    return [np.asarray(x) for x in jax.tree.leaves(params)]


def transformers_logits(path):
    model = hf_tiny.transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        return model(torch.tensor(BATCH)).logits.numpy()


@pytest.mark.parametrize("family, like, shard_bytes", [
    ("qwen2", True, 4 << 30), ("gemma3_text", True, 16 << 10), ("llama", False, 4 << 30)])
def test_export_round_trip_through_transformers_and_our_importer(family, like, shard_bytes,
                                                                tmp_path):
    """like=True keeps the source's config; like=False writes config.json from ModelConfig;
    16 KiB shards give a multi-file checkpoint with an index (what the Hub serves)."""
    path, cfg, params = imported(family)
    out = hf.export(params, cfg, str(tmp_path / "out"), like=str(path) if like else None,
                    max_shard_bytes=shard_bytes)
    shards = sorted(p.name for p in (tmp_path / "out").glob("*.safetensors"))
    if shard_bytes < 1 << 20:
        assert len(shards) > 2 and (tmp_path / "out" / "model.safetensors.index.json").exists()
    else:
        assert shards == ["model.safetensors"]
    np.testing.assert_array_equal(transformers_logits(out), transformers_logits(path))
    again = hf.HFCheckpoint(out)
    assert again.model_config() == cfg
    for a, b in zip(leaves(load(out, cfg)), leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_value_head_is_written_beside_the_checkpoint_and_read_back(tmp_path):
    path, cfg, _ = imported("qwen3")
    cfg = dataclasses.replace(cfg, value_head=True)
    params = load(path, cfg)
    assert not np.asarray(params["value_head"][...]).any()  # no checkpoint has one: zeros
    head = np.random.RandomState(0).randn(cfg.d_model, 1).astype(np.float32)
    params["value_head"] = params["value_head"].replace(jax.numpy.asarray(head))
    out = hf.export(params, cfg, str(tmp_path / "out"), like=str(path))
    assert "value_head" not in weights.SafetensorsDir(out)
    assert (tmp_path / "out" / weights.VALUE_HEAD_FILE).exists()
    np.testing.assert_array_equal(np.asarray(load(out, cfg)["value_head"][...]), head)
    np.testing.assert_array_equal(transformers_logits(out), transformers_logits(path))


def test_import_converts_to_the_parameter_dtype():
    path, cfg, params = imported("gemma2")
    bf16 = load(path, dataclasses.replace(cfg, param_dtype="bfloat16"))
    for a, b in zip(leaves(bf16), leaves(params), strict=True):
        assert a.dtype == jax.numpy.bfloat16
        np.testing.assert_array_equal(a, b.astype(jax.numpy.bfloat16))


@pytest.mark.parametrize("family, scan", [("qwen2", False), ("llama", True)])
def test_sharded_import_on_8_devices_equals_the_unsharded_one(family, scan, devices,
                                                              monkeypatch):
    """fsdp x tensor sharding (and the stacked scan_layers layout); every device reads only its
    block of each tensor, never the whole of a sharded one."""
    path, cfg, single = imported(family)
    mesh = parallel.make_mesh(data=2, fsdp=2, tensor=2, devices=devices)
    reads = []
    real_read = weights.SafetensorsDir.read

    def recording_read(self, name, index=None):
        block = real_read(self, name, index)
        reads.append((name, block.size, int(np.prod(self.shape(name)))))
        return block

    monkeypatch.setattr(weights.SafetensorsDir, "read", recording_read)
    sharded = load(path, dataclasses.replace(cfg, scan_layers=scan), mesh)
    specs = {str(x.sharding.spec) for x in jax.tree.leaves(sharded)}
    assert any("fsdp" in s and "tensor" in s for s in specs), specs
    wq = [(size, total) for name, size, total in reads
          if name.endswith("0.self_attn.q_proj.weight")]
    assert wq and all(size * 4 == total for size, total in wq)  # a quarter each: 2 x 2 split
    flat = {weights._path(k): np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(sharded)[0]}
    for key, value in jax.tree_util.tree_flatten_with_path(single)[0]:
        key = weights._path(key)
        if scan and key.startswith("blocks."):
            layer, rest = key.split(".", 2)[1:]
            got = flat[f"blocks.{rest}"][int(layer)]
        else:
            got = flat[key]
        np.testing.assert_array_equal(got, np.asarray(value), err_msg=key)


def test_unsupported_checkpoints_fail_in_one_line(tmp_path):
    base = json.load(open(hf_tiny.checkpoint("llama") / "config.json"))
    with pytest.raises(UserError, match="model_type 'gpt2' is not supported"):
        model_fields({**base, "model_type": "gpt2"})
    with pytest.raises(UserError, match="rope scaling type 'yarn'"):
        model_fields({**base, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4,
                                                  "factor": 4.0}})
    with pytest.raises(UserError, match="attention_bias"):
        model_fields({**base, "attention_bias": True})
    with pytest.raises(UserError, match="no config.json"):
        hf.HFCheckpoint(str(tmp_path))
    with pytest.raises(UserError, match="multimodal"):
        model_fields({**base, "model_type": "gemma3"})
