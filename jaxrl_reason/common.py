"""What every job builds the same way: tokenizer-sized model config, mesh, trainer, sampler;
a run's parameters restored; progress bars and stage timers."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import gin
import jax
import numpy as np
from gin import config_parser
from tqdm import tqdm

from jaxrl_reason import files, parallel
from jaxrl_reason.data.batching import Example, make_batch, round_up
from jaxrl_reason.data.tasks import Task
from jaxrl_reason.errors import UserError
from jaxrl_reason.models.hf.checkpoint import HFCheckpoint
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.sampling.sampler import Sampler
from jaxrl_reason.tokenizers import CharTokenizer, Tokenizer
from jaxrl_reason.training.checkpoints import read_params
from jaxrl_reason.training.losses import LossFn, sft_loss
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

    def completion_logprobs(self, params, examples: Sequence[Example], rows: int = 256
                            ) -> list[np.ndarray]:
        """Each example's completion-token log-probs under `params` (temperature 1, as the
        sampler draws: banned ids excluded), scored in padded chunks of `rows` rows."""
        longest = max(len(e) for e in examples)
        if longest > self.model_cfg.max_len:
            raise UserError(f"a prompt + completion of {longest} tokens exceeds the model's "
                            f"context of {self.model_cfg.max_len}")
        seq_len = min(round_up(longest, 16), self.model_cfg.max_len)
        rows = round_up(min(rows, len(examples)),
                        self.trainer.grad_accum * parallel.batch_divisor(self.trainer.mesh))
        out = []
        for start in range(0, len(examples), rows):
            part = examples[start:start + rows]
            batch = make_batch(part, seq_len, self.tok.pad_id, rows)
            lp = np.asarray(self.trainer.logprobs(params, batch))
            out += [lp[i, len(e.prompt): len(e)] for i, e in enumerate(part)]
        return out

    def init(self, seed: int) -> State:
        """A fresh train state: random weights, or the pretrained checkpoint's."""
        if self.pretrained is None:
            return self.trainer.init(seed)
        params = self.pretrained.load_params(self.model_cfg, self.trainer.params_shardings)
        return self.trainer.reset_optimizer({"params": params})


@gin.configurable(denylist=["loss"])
def build(tokenizer: type = CharTokenizer, model: type = ModelConfig,
          pretrained: HFCheckpoint | None = None, loss: LossFn = sft_loss) -> Setup:
    """Model sized to the tokenizer; trainer (training `loss`) and sampler on one mesh. Neither
    ever sees the pad or BOS id as a token to generate (the sampler masks them, the trainer's
    log-probs too), unless it is a stop token. With `pretrained` (a Hugging Face model
    directory) the tokenizer, the architecture and the starting weights (`Setup.init`) are the
    checkpoint's."""
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
    trainer = Trainer(model_cfg, make_optimizer(), mesh, loss=loss, banned_ids=banned)
    sampler = Sampler(model_cfg, stop_tokens=tok.stop_ids, mesh=mesh, pad_id=tok.pad_id,
                      banned_ids=banned)
    return Setup(tok, model_cfg, trainer, sampler, pretrained)


# What makes a model and its tokenizer: a run started from another run takes these from it.
MODEL_CONFIGURABLES = ("ModelConfig", "build", "CharTokenizer", "SentencePieceTokenizer",
                       "HFTokenizer", "HFCheckpoint")


def inherit_model(run_dir: str) -> list[str]:
    """Binds the model and tokenizer of the run in `run_dir` (the unscoped MODEL_CONFIGURABLES
    bindings of its config.gin) wherever this job's config binds nothing, so a job started
    from another run's checkpoint needs no second copy of its shape. This config's own
    bindings win (a checkpoint of another shape is then refused when it is read). Returns the
    names bound; none when the run has no config.gin."""
    path = files.path(run_dir) / "config.gin"
    if not path.exists():
        return []
    parser = config_parser.ConfigParser(path.read_text(), gin.config.ParserDelegate(
        skip_unknown=True))
    bound = []
    for st in parser:
        if not (isinstance(st, config_parser.BindingStatement) and not st.scope
                and st.selector in MODEL_CONFIGURABLES):
            continue
        name = f"{st.selector}.{st.arg_name}"
        try:
            gin.query_parameter(name)
            continue  # bound here: this config's own binding wins
        except ValueError:
            pass
        try:
            with gin.unlock_config():
                gin.bind_parameter(name, st.value)
        except ValueError:
            raise UserError(f"{path} binds {name}, which this version does not know: "
                            "bind the model's shape in this job's config instead") from None
        bound.append(name)
    return bound


def restore_params(s: Setup, workdir: str, step: int | None = None,
                   model: int = 0) -> tuple[Any, int]:
    """(params, step) of the run's checkpoint at `step` (default: latest), without reading the
    optimizer moments. A self-improvement run keeps one directory per model,
    checkpoints/model_<m>; `model` picks it."""
    directory = os.path.join(workdir, "checkpoints")
    if os.path.isdir(os.path.join(directory, f"model_{model}")):
        directory = os.path.join(directory, f"model_{model}")
    elif model != 0:
        raise UserError(f"evaluate.model={model}: {workdir} keeps no checkpoints/model_{model}")
    return read_params(directory, s.trainer.abstract_state["params"], step)


def progress(total: int, desc: str, unit: str = "chunk", initial: int = 0) -> tqdm:
    """A progress bar on process 0 (the jobs' stages that are not `fit` loops)."""
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                disable=jax.process_index() != 0, mininterval=1.0)


class Timer:
    """Wall and CPU seconds (this process, all threads) per stage, accumulated over resumes in
    workdir/timings.json: CPU seconds do not depend on what else the machine runs."""

    def __init__(self, workdir: str):
        self.path = files.path(workdir) / "timings.json"
        self.seconds = files.read_json(self.path) if self.path.exists() else {}

    @contextlib.contextmanager
    def stage(self, name: str):
        wall, cpu = time.time(), time.process_time()
        yield
        for key, spent in ((name, time.time() - wall), (f"{name}_cpu", time.process_time() - cpu)):
            self.seconds[key] = round(self.seconds.get(key, 0.0) + spent, 1)
        files.write_json(self.path, self.seconds)


def run_task(workdir: str) -> Task:
    """The task a run trained on: the `<job>.task` binding of its config.gin, which the caller
    has parsed (any job: star, sft, rl, train_verifier, ...)."""
    text = (files.path(workdir) / "config.gin").read_text()
    for job in re.findall(r"^(\w+)\.task\s*=", text, flags=re.M):
        return gin.query_parameter(f"{job}.task").scoped_configurable_fn()
    raise UserError(f"{workdir}/config.gin binds no <job>.task; bind evaluate.task / "
                    "sample.task")
