"""Hugging Face `config.json` <-> `ModelConfig`, for the families the transformer implements.

Only the architecture comes from the checkpoint; numerics and runtime choices (dtype,
param_dtype, remat, attention, scan_layers, value_head) stay with `ModelConfig`'s gin bindings.
Both config layouts are read: transformers 4's top-level `rope_theta` / `rope_scaling` (what
published checkpoints carry) and transformers 5's `rope_parameters`. Keys a config leaves out
take the family's transformers default.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxrl_reason.errors import UserError
from jaxrl_reason.models.transformer import ModelConfig

# model_type -> (the architecture name transformers loads, defaults of keys a config may omit)
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaForCausalLM", {"tie_word_embeddings": False, "rms_norm_eps": 1e-6,
                                   "rope_theta": 10_000.0, "max_position_embeddings": 2048}),
    "mistral": ("MistralForCausalLM", {"tie_word_embeddings": False, "rms_norm_eps": 1e-6,
                                       "rope_theta": 10_000.0, "sliding_window": 4096,
                                       "max_position_embeddings": 4096 * 32}),
    "qwen2": ("Qwen2ForCausalLM", {"tie_word_embeddings": False, "rms_norm_eps": 1e-6,
                                   "rope_theta": 10_000.0, "max_position_embeddings": 32768,
                                   "use_sliding_window": False, "sliding_window": 4096,
                                   "max_window_layers": 28}),
    "qwen3": ("Qwen3ForCausalLM", {"tie_word_embeddings": True, "rms_norm_eps": 1e-6,
                                   "rope_theta": 10_000.0, "max_position_embeddings": 32768,
                                   "use_sliding_window": False, "sliding_window": 4096,
                                   "max_window_layers": 28}),
    "gemma": ("GemmaForCausalLM", {"tie_word_embeddings": True, "rms_norm_eps": 1e-6,
                                   "rope_theta": 10_000.0, "max_position_embeddings": 8192}),
    "gemma2": ("Gemma2ForCausalLM", {"tie_word_embeddings": True, "rms_norm_eps": 1e-6,
                                     "rope_theta": 10_000.0, "max_position_embeddings": 8192,
                                     "query_pre_attn_scalar": 256, "sliding_window": 4096,
                                     "attn_logit_softcapping": 50.0,
                                     "final_logit_softcapping": 30.0}),
    "gemma3_text": ("Gemma3ForCausalLM", {"tie_word_embeddings": True, "rms_norm_eps": 1e-6,
                                          "rope_theta": 1_000_000.0, "rope_local_base_freq":
                                          10_000.0, "max_position_embeddings": 131_072,
                                          "query_pre_attn_scalar": 256, "sliding_window": 4096,
                                          "attn_logit_softcapping": None,
                                          "final_logit_softcapping": None}),
}
GEMMAS = ("gemma", "gemma2", "gemma3_text")
# ModelConfig fields that come from the checkpoint (everything else stays with gin).
ARCH_FIELDS = (
    "vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff",
    "rope_theta", "tie_embeddings", "norm_eps", "qkv_bias", "qk_norm", "norm_offset",
    "scale_embeddings", "mlp_activation", "post_norms", "attn_scale", "attn_softcap",
    "final_softcap", "rope_scaling", "rope_factor", "rope_low_freq_factor",
    "rope_high_freq_factor", "rope_original_max_len", "sliding_window", "sliding_layers",
    "local_rope_theta",
)
_ACTIVATIONS = {"silu": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu",
                "gelu_new": "gelu_tanh"}


def family(hf: dict[str, Any]) -> str:
    """The checkpoint's model_type, if the transformer implements it (one line if not)."""
    model_type = hf.get("model_type")
    if model_type == "gemma3":
        raise UserError("model_type 'gemma3' is the multimodal Gemma 3; import a text-only "
                        "checkpoint (model_type 'gemma3_text', e.g. gemma-3-1b)")
    if model_type not in FAMILIES:
        raise UserError(f"config.json model_type {model_type!r} is not supported; supported: "
                        f"{sorted(FAMILIES)}")
    return model_type


def _rope(hf: dict[str, Any], get, layer_type: str) -> tuple[float, dict[str, Any] | None]:
    """(theta, scaling dict or None) of one layer type, from either config layout."""
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and layer_type in params:  # per layer type (Gemma 3, v5)
        params = params[layer_type]
    if isinstance(params, dict) and "rope_theta" in params:
        scaling = params if params.get("rope_type", "default") != "default" else None
        return float(params["rope_theta"]), scaling
    if layer_type == "sliding_attention":
        return float(get("rope_local_base_freq")), None
    return float(get("rope_theta")), hf.get("rope_scaling")


def _scaling_fields(scaling: dict[str, Any] | None) -> dict[str, Any]:
    if not scaling:
        return {}
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear":
        return {"rope_scaling": "linear", "rope_factor": float(scaling["factor"])}
    if kind == "llama3":
        return {"rope_scaling": "llama3", "rope_factor": float(scaling["factor"]),
                "rope_low_freq_factor": float(scaling["low_freq_factor"]),
                "rope_high_freq_factor": float(scaling["high_freq_factor"]),
                "rope_original_max_len": int(scaling["original_max_position_embeddings"])}
    raise UserError(f"config.json rope scaling type {kind!r} is not supported (supported: "
                    "linear, llama3); drop it from rope_scaling to run without it")


def _layer_types(hf: dict[str, Any], get, model_type: str, n_layers: int) -> list[str]:
    if hf.get("layer_types"):
        return list(hf["layer_types"])
    window = get("sliding_window")
    if model_type in ("qwen2", "qwen3"):
        slide = get("use_sliding_window") and window is not None
        return ["sliding_attention" if slide and i >= get("max_window_layers")
                else "full_attention" for i in range(n_layers)]
    if model_type == "mistral":
        return ["sliding_attention" if window else "full_attention"] * n_layers
    if model_type == "gemma2":
        return ["sliding_attention" if (i + 1) % 2 else "full_attention"
                for i in range(n_layers)]
    if model_type == "gemma3_text":
        pattern = hf.get("sliding_window_pattern", hf.get("_sliding_window_pattern", 6))
        return ["sliding_attention" if (i + 1) % pattern else "full_attention"
                for i in range(n_layers)]
    return ["full_attention"] * n_layers


def model_fields(hf: dict[str, Any]) -> dict[str, Any]:
    """The ModelConfig architecture fields (ARCH_FIELDS) of an HF config.json dict."""
    model_type = family(hf)
    defaults = FAMILIES[model_type][1]

    def get(key):
        return hf[key] if key in hf else defaults.get(key)

    for key in ("attention_bias", "mlp_bias"):  # biases on o_proj / the MLP: not implemented
        if hf.get(key):
            raise UserError(f"config.json {key}={hf[key]!r} is not supported for {model_type}")
    n_heads = int(hf["num_attention_heads"])
    layer_types = _layer_types(hf, get, model_type, int(hf["num_hidden_layers"]))
    sliding = [i for i, t in enumerate(layer_types) if t == "sliding_attention"]
    theta, scaling = _rope(hf, get, "full_attention")
    act = hf.get("hidden_activation") or hf.get("hidden_act", "silu")
    if model_type == "gemma" and act == "gelu":  # legacy value; transformers reads it as tanh
        act = "gelu_pytorch_tanh"
    if act not in _ACTIVATIONS:
        raise UserError(f"config.json activation {act!r} is not supported; supported: "
                        f"{sorted(_ACTIVATIONS)}")
    fields: dict[str, Any] = dict(
        vocab_size=int(hf["vocab_size"]),
        d_model=int(hf["hidden_size"]),
        n_layers=len(layer_types),
        n_heads=n_heads,
        n_kv_heads=int(hf.get("num_key_value_heads") or n_heads),
        head_dim=int(hf.get("head_dim") or hf["hidden_size"] // n_heads),
        d_ff=int(hf["intermediate_size"]),
        rope_theta=theta,
        tie_embeddings=bool(get("tie_word_embeddings")),
        norm_eps=float(get("rms_norm_eps")),
        qkv_bias=model_type == "qwen2",
        qk_norm=model_type in ("qwen3", "gemma3_text"),
        norm_offset=1.0 if model_type in GEMMAS else 0.0,
        scale_embeddings=model_type in GEMMAS,
        mlp_activation=_ACTIVATIONS[act],
        post_norms=model_type in ("gemma2", "gemma3_text"),
        sliding_window=int(get("sliding_window")) if sliding else None,
        sliding_layers=tuple(sliding),
        **_scaling_fields(scaling),
    )
    if model_type in ("gemma2", "gemma3_text"):
        fields["attn_scale"] = float(get("query_pre_attn_scalar")) ** -0.5
        for ours, theirs in (("attn_softcap", "attn_logit_softcapping"),
                             ("final_softcap", "final_logit_softcapping")):
            cap = get(theirs)
            fields[ours] = None if cap is None else float(cap)
    if model_type == "gemma3_text" and sliding:
        local_theta, local_scaling = _rope(hf, get, "sliding_attention")
        if local_scaling:
            raise UserError("config.json: RoPE scaling on Gemma 3's sliding layers is not "
                            "supported")
        fields["local_rope_theta"] = local_theta
    ours = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    return {f: fields.get(f, ours[f]) for f in ARCH_FIELDS}


def max_positions(hf: dict[str, Any]) -> int:
    return int(hf.get("max_position_embeddings") or FAMILIES[family(hf)][1]
               ["max_position_embeddings"])


def arch_of(cfg: ModelConfig) -> dict[str, Any]:
    return {f: getattr(cfg, f) for f in ARCH_FIELDS}


def infer_family(cfg: ModelConfig) -> str:
    """The HF family whose architecture is exactly `cfg`'s (one line naming the misfit if none)."""
    for model_type in FAMILIES:
        want = model_fields(to_hf(cfg, model_type, check=False))
        if all(want[f] == getattr(cfg, f) for f in ARCH_FIELDS):
            return model_type
    ours = {f: getattr(cfg, f) for f in ("position_encoding", "scale_embeddings",
                                         "norm_offset", "mlp_activation", "qkv_bias",
                                         "qk_norm", "post_norms")}
    raise UserError(f"no Hugging Face family has this architecture ({ours}); export a model "
                    "imported from a checkpoint, or one configured like a family "
                    "(e.g. Llama: scale_embeddings=False)")


def to_hf(cfg: ModelConfig, model_type: str, check: bool = True) -> dict[str, Any]:
    """config.json of `cfg` as an HF `model_type` (transformers 4 layout, which 4 and 5 read)."""
    if cfg.position_encoding != "rope":
        raise UserError("ModelConfig.position_encoding='none' (NoPE) has no Hugging Face family")
    arch, defaults = FAMILIES[model_type]
    hf: dict[str, Any] = {
        "architectures": [arch], "model_type": model_type, "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim, "intermediate_size": cfg.d_ff,
        "rms_norm_eps": cfg.norm_eps, "tie_word_embeddings": cfg.tie_embeddings,
        "rope_theta": cfg.rope_theta, "max_position_embeddings": cfg.max_len,
        "torch_dtype": cfg.param_dtype,
        ("hidden_activation" if model_type in ("gemma2", "gemma3_text") else "hidden_act"):
            {v: k for k, v in _ACTIVATIONS.items() if k != "gelu_new"}[cfg.mlp_activation],
    }
    if cfg.rope_scaling == "linear":
        hf["rope_scaling"] = {"rope_type": "linear", "factor": cfg.rope_factor}
    elif cfg.rope_scaling == "llama3":
        hf["rope_scaling"] = {"rope_type": "llama3", "factor": cfg.rope_factor,
                              "low_freq_factor": cfg.rope_low_freq_factor,
                              "high_freq_factor": cfg.rope_high_freq_factor,
                              "original_max_position_embeddings": cfg.rope_original_max_len}
    types = ["sliding_attention" if cfg.is_sliding(i) else "full_attention"
             for i in range(cfg.n_layers)]
    hf["layer_types"] = types
    hf["sliding_window"] = cfg.sliding_window
    if model_type in ("qwen2", "qwen3"):
        hf["use_sliding_window"] = cfg.sliding_window is not None
        first = min(cfg.sliding_layers, default=cfg.n_layers)
        hf["max_window_layers"] = first
    if cfg.attn_scale is not None:
        scalar = cfg.attn_scale**-2
        hf["query_pre_attn_scalar"] = round(scalar) if abs(scalar - round(scalar)) < 1e-6 \
            else scalar
    if model_type in ("gemma2", "gemma3_text"):
        hf["attn_logit_softcapping"] = cfg.attn_softcap
        hf["final_logit_softcapping"] = cfg.final_softcap
    if model_type == "gemma3_text":
        hf["rope_local_base_freq"] = cfg.local_rope_theta or defaults["rope_local_base_freq"]
    if check:
        got = model_fields(hf)
        wrong = [f for f in ARCH_FIELDS if got[f] != getattr(cfg, f)]
        if wrong:
            raise UserError(f"ModelConfig {', '.join(f'{f}={getattr(cfg, f)!r}' for f in wrong)} "
                            f"cannot be written as {model_type}")
    return hf
