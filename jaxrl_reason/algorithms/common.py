"""What every job builds the same way: tokenizer-sized model config, mesh, trainer, sampler."""

from __future__ import annotations

import dataclasses
import os

import gin
import jax

from jaxrl_reason import parallel
from jaxrl_reason.errors import UserError
from jaxrl_reason.models.hf.checkpoint import HFCheckpoint
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.sampling.sampler import Sampler
from jaxrl_reason.tokenizers import CharTokenizer, Tokenizer
from jaxrl_reason.training.optim import make_optimizer
from jaxrl_reason.training.trainer import State, Trainer


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
    pretrained: HFCheckpoint | None = None

    def init(self, seed: int) -> State:
        """A fresh train state: random weights, or the pretrained checkpoint's."""
        if self.pretrained is None:
            return self.trainer.init(seed)
        params = self.pretrained.load_params(self.model_cfg, self.trainer.params_shardings)
        return self.trainer.reset_optimizer({"params": params})


@gin.configurable
def build(tokenizer: type = CharTokenizer, model: type = ModelConfig,
          pretrained: HFCheckpoint | None = None) -> Setup:
    """Model sized to the tokenizer; trainer and sampler on one mesh. Neither ever sees the pad
    or BOS id as a token to generate (the sampler masks them, the trainer's log-probs too),
    unless it is a stop token. With `pretrained` (a Hugging Face model directory) the tokenizer,
    the architecture and the starting weights (`Setup.init`) are the checkpoint's."""
    compilation_cache()
    if pretrained is None:
        tok = tokenizer()
        model_cfg = model(vocab_size=tok.vocab_size)
    else:
        tok = pretrained.tokenizer()
        model_cfg = pretrained.model_config()
        if tok.vocab_size > model_cfg.vocab_size:
            raise UserError(f"HFCheckpoint.path={pretrained.path!r}: the tokenizer has "
                            f"{tok.vocab_size} ids but the model only {model_cfg.vocab_size}")
    mesh = parallel.make_mesh()
    banned = tuple(sorted({tok.pad_id, tok.bos_id} - set(tok.stop_ids)))
    trainer = Trainer(model_cfg, make_optimizer(), mesh, banned_ids=banned)
    sampler = Sampler(model_cfg, stop_tokens=tok.stop_ids, mesh=mesh, pad_id=tok.pad_id,
                      banned_ids=banned)
    return Setup(tok, model_cfg, trainer, sampler, pretrained)
