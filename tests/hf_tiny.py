"""Tiny randomly initialized checkpoints of every family, made with transformers' own config
classes and saved by transformers (the tests' reference is always transformers itself)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local directories only: never the Hub

torch = pytest.importorskip("torch", reason="the hf extra (torch, transformers) is not installed")
transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")

VOCAB = 128
COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, head_dim=8,
              max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)
# Each family with the switches that make it itself, small enough that windows, caps and RoPE
# scaling all act on 40-token sequences.
FAMILIES = {
    "llama": ("LlamaConfig", dict(
        tie_word_embeddings=False, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "llama3", "rope_theta": 10_000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 16})),
    "mistral": ("MistralConfig", dict(tie_word_embeddings=False, sliding_window=5)),
    "qwen2": ("Qwen2Config", dict(tie_word_embeddings=True, use_sliding_window=True,
                                  sliding_window=6, max_window_layers=1)),
    "qwen3": ("Qwen3Config", dict(tie_word_embeddings=True, head_dim=16)),
    "gemma": ("GemmaConfig", dict(head_dim=16)),
    "gemma2": ("Gemma2Config", dict(sliding_window=5, attn_logit_softcapping=2.0,
                                    final_logit_softcapping=3.0, query_pre_attn_scalar=12)),
    "gemma3_text": ("Gemma3TextConfig", dict(
        sliding_window=5, query_pre_attn_scalar=12, layer_types=["sliding_attention",
                                                                "full_attention"],
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0,
                                            "rope_theta": 10_000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}})),
}
_ROOT = Path(tempfile.mkdtemp(prefix="hf_tiny_"))
atexit.register(shutil.rmtree, _ROOT, True)


def randomize(model, seed: int) -> None:
    """Every parameter random (norm weights and biases too, which init leaves at 1 or 0), so a
    wrongly mapped tensor cannot hide."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("norm.weight"):
                p.copy_((0.0 if "gemma" in model.config.model_type else 1.0) + 0.2 * noise)
            elif name.endswith("embed_tokens.weight"):
                p.copy_(noise * (0.3 if "gemma" in model.config.model_type else 1.0))
            else:
                p.copy_(noise * 0.3 / max(1, p.shape[-1]) ** 0.5 * (3 if p.ndim == 1 else 1))


@functools.cache
def checkpoint(family: str) -> Path:
    """A saved HF directory of `family` (built once per test session)."""
    config_cls, extra = FAMILIES[family]
    config = getattr(transformers, config_cls)(**{**COMMON, **extra})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    randomize(model, seed=len(family))
    out = _ROOT / family
    model.save_pretrained(out)
    return out


@functools.cache
def reference(path: Path):
    """transformers' own model of a directory, in float32 and eager attention."""
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager")
    return model.eval()
