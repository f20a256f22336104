"""configs/model_*.gin bind exactly what the published checkpoints' config.json files map to,
and a preset pointed at another model's directory fails in one line."""

import json

import gin
import jax
import pytest
from conftest import REPO
from flax import nnx

from jaxrl_reason import registry  # noqa: F401  (registers every configurable)
from jaxrl_reason.errors import ConfigError, UserError
from jaxrl_reason.models.hf import HFCheckpoint
from jaxrl_reason.models.hf.config import arch_of, model_fields
from jaxrl_reason.models.transformer import ModelConfig, Transformer

# The published config.json files (transformers 4 layout), as the Hub serves them.
QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
         "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
         "sliding_window": 32768, "tie_word_embeddings": True, "use_sliding_window": False,
         "vocab_size": 151936, "bos_token_id": 151643, "eos_token_id": 151645,
         "torch_dtype": "bfloat16"}
PUBLISHED = {
    "model_qwen2p5_0p5b_instruct.gin": {
        **QWEN2, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "max_window_layers": 21},
    "model_qwen2p5_1p5b_instruct.gin": {
        **QWEN2, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
        "num_attention_heads": 12, "num_key_value_heads": 2, "max_window_layers": 21},
    "model_llama3p2_1b.gin": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
        "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 64, "hidden_act": "silu", "mlp_bias": False,
        "attention_bias": False, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0, "tie_word_embeddings": True, "vocab_size": 128256,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"}},
    "model_qwen3_0p6b.gin": {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024,
        "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
        "num_key_value_heads": 8, "head_dim": 128, "attention_bias": False,
        "hidden_act": "silu", "max_position_embeddings": 40960, "rms_norm_eps": 1e-06,
        "rope_theta": 1000000, "tie_word_embeddings": True, "use_sliding_window": False,
        "sliding_window": None, "max_window_layers": 28, "vocab_size": 151936},
}


def parse(name: str, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    gin.parse_config_file(f"configs/{name}")


def test_every_model_preset_has_a_published_config():
    assert sorted(PUBLISHED) == sorted(p.name for p in (REPO / "configs").glob("model_*.gin"))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_model_preset_binds_the_published_architecture(name, monkeypatch):
    parse(name, monkeypatch)
    assert arch_of(ModelConfig()) == model_fields(PUBLISHED[name])


def test_preset_pointed_at_another_models_directory_fails_in_one_line(tmp_path, monkeypatch):
    for name in ("model_qwen2p5_1p5b_instruct.gin", "model_qwen2p5_0p5b_instruct.gin"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(PUBLISHED[name]))
    parse("model_qwen2p5_0p5b_instruct.gin", monkeypatch)
    right = HFCheckpoint(str(tmp_path / "model_qwen2p5_0p5b_instruct.gin")).model_config()
    assert right.d_model == 896 and right.scan_layers and right.max_len == 32768
    wrong = HFCheckpoint(str(tmp_path / "model_qwen2p5_1p5b_instruct.gin"))
    with pytest.raises(UserError, match="d_model=1536, but ModelConfig.d_model=896 is bound"):
        wrong.model_config()
    gin.bind_parameter("HFCheckpoint.check_bindings", False)  # the checkpoint wins instead
    unchecked = HFCheckpoint(str(tmp_path / "model_qwen2p5_1p5b_instruct.gin")).model_config()
    assert unchecked.d_model == 1536


@pytest.mark.parametrize("fields, match", [
    (dict(sliding_window=4), "must name layers exactly when sliding_window=4"),
    (dict(sliding_layers=(1,)), "must name layers exactly when sliding_window=None"),
    (dict(sliding_window=4, sliding_layers=(0, 9)), r"distinct layer indices in \[0, 4\)"),
    (dict(sliding_window=4, sliding_layers=(1,), scan_layers=True), "needs layers of one kind"),
    (dict(attn_softcap=-1.0), "attn_softcap=-1.0 must be > 0"),
    (dict(rope_scaling="yarn"), "rope_scaling='yarn' must be one of"),
    (dict(rope_low_freq_factor=4.0), "must exceed rope_low_freq_factor=4.0"),
])
def test_family_switches_are_validated_in_one_line(fields, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig(n_layers=4, **fields)
    assert ModelConfig(n_layers=4, sliding_window=4, sliding_layers=(0, 1, 2, 3),
                       scan_layers=True).is_sliding(3)


def test_num_params_counts_the_family_switches_parameters():
    for fields in (dict(qkv_bias=True), dict(qk_norm=True, post_norms=True, tie_embeddings=False),
                   dict(model_fields(PUBLISHED["model_qwen3_0p6b.gin"]), value_head=True)):
        cfg = ModelConfig(**fields)
        abstract = nnx.state(nnx.eval_shape(lambda cfg=cfg: Transformer(cfg, nnx.Rngs(0))),
                             nnx.Param)
        assert sum(x.size for x in jax.tree.leaves(abstract)) == cfg.num_params()
