"""A local Hugging Face model directory as a job's starting point (gin: `build.pretrained`).

    build.pretrained = @HFCheckpoint()
    HFCheckpoint.path = '/path/to/Qwen2.5-0.5B-Instruct'

gives the job the checkpoint's tokenizer, its architecture (numerics such as dtype and
scan_layers stay with ModelConfig's bindings) and its weights, read shard by shard onto the
trainer's mesh. ModelConfig's bound architecture fields (a preset's, configs/model_*.gin) are
checked against the checkpoint, so a preset pointed at another model's directory fails in one
line; `check_bindings=False` lets the checkpoint override them instead (e.g. under a task
config that sizes a model from scratch).
"""

from __future__ import annotations

import json
import os

import gin

from jaxrl_reason.errors import UserError
from jaxrl_reason.models.hf import config as hf_config
from jaxrl_reason.models.hf import weights
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.tokenizers import HFTokenizer


@gin.configurable
class HFCheckpoint:
    """`path`: the downloaded model directory (config.json + safetensors + tokenizer files).
    `max_len`: the context our model allows (default: the checkpoint's max positions).
    `check_bindings`: bound ModelConfig architecture fields must match the checkpoint."""

    def __init__(self, path: str = gin.REQUIRED, max_len: int | None = None,
                 check_bindings: bool = True):
        config = os.path.join(path, "config.json")
        if not os.path.isfile(config):
            raise UserError(f"HFCheckpoint.path={path!r} has no config.json; point it at a "
                            "downloaded Hugging Face model directory")
        with open(config) as f:
            self.hf = json.load(f)
        self.path = path
        self.model_type = hf_config.family(self.hf)
        self.max_len = max_len or hf_config.max_positions(self.hf)
        self.check_bindings = check_bindings

    def tokenizer(self) -> HFTokenizer:
        return HFTokenizer(self.path)

    def model_config(self) -> ModelConfig:
        """ModelConfig with the checkpoint's architecture, the rest from gin."""
        fields = hf_config.model_fields(self.hf)
        if self.check_bindings:
            self._check_bound(fields)
        return ModelConfig(**fields, max_len=self.max_len)

    def _check_bound(self, fields: dict) -> None:
        """One line naming the first bound ModelConfig field the checkpoint disagrees with."""
        for name, value in fields.items():
            try:
                bound = gin.query_parameter(f"ModelConfig.{name}")
            except ValueError:
                continue
            if bound != value and not (isinstance(value, tuple) and tuple(bound) == value):
                raise UserError(
                    f"HFCheckpoint.path={self.path!r} holds a model with {name}={value!r}, but "
                    f"ModelConfig.{name}={bound!r} is bound; use that model's preset, or "
                    "HFCheckpoint.check_bindings=False to let the checkpoint's architecture win")

    def load_params(self, cfg: ModelConfig, shardings):
        """The checkpoint's weights as our params of `cfg`, laid out by `shardings`."""
        return weights.load(self.path, cfg, self.model_type, shardings)
