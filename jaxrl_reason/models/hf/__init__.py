"""Hugging Face checkpoints in and out: config mapping, sharded safetensors loading, export.

`HFCheckpoint` (gin: `build.pretrained`) is what jobs use; `load` / `export` are the library
calls; `config.model_fields` maps a config.json onto ModelConfig.
"""

from jaxrl_reason.models.hf.checkpoint import HFCheckpoint
from jaxrl_reason.models.hf.config import FAMILIES, infer_family, model_fields, to_hf
from jaxrl_reason.models.hf.export import export
from jaxrl_reason.models.hf.weights import load

__all__ = ["FAMILIES", "HFCheckpoint", "export", "infer_family", "load", "model_fields", "to_hf"]
