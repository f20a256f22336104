"""What every job builds the same way: tokenizer-sized model config, mesh, trainer, sampler."""

from __future__ import annotations

import dataclasses
import os

import gin
import jax

from jaxrl_reason import parallel
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.sampling.sampler import Sampler
from jaxrl_reason.tokenizers import CharTokenizer, Tokenizer
from jaxrl_reason.training.optim import make_optimizer
from jaxrl_reason.training.trainer import Trainer


@gin.configurable
def compilation_cache(directory: str | None = "~/.cache/jaxrl_reason/xla") -> None:
    """JAX's persistent compilation cache: re-runs and resumes skip recompiling."""
    if directory:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(directory))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@dataclasses.dataclass
class Setup:
    tok: Tokenizer
    model_cfg: ModelConfig
    trainer: Trainer
    sampler: Sampler

    def trainer_for(self, steps: int) -> Trainer:
        """A trainer of the same model and mesh whose schedule spans `steps` (a new phase)."""
        return Trainer(self.model_cfg, make_optimizer(steps), self.trainer.mesh)


@gin.configurable(denylist=["steps"])
def build(steps: int, tokenizer: type = CharTokenizer, model: type = ModelConfig) -> Setup:
    """Model sized to the tokenizer, trainer for `steps` optimizer steps, sampler on one mesh."""
    compilation_cache()
    tok = tokenizer()
    model_cfg = model(vocab_size=tok.vocab_size)
    mesh = parallel.make_mesh()
    trainer = Trainer(model_cfg, make_optimizer(steps), mesh)
    sampler = Sampler(model_cfg, stop_tokens=[tok.eos_id], mesh=mesh, pad_id=tok.pad_id)
    return Setup(tok, model_cfg, trainer, sampler)
