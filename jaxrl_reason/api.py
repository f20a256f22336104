"""`jaxrl_reason.load(path)`: a run's workdir or a Hugging Face model directory, ready to use.

    import jaxrl_reason
    model = jaxrl_reason.load("runs/star")                 # or an HF directory
    print(model.generate(model.format("4821+977")))        # the run's task formats a question
    print(model.logprobs(["12+34\\n"], ["A:64\\n"]))

The model is built the way the jobs build it (one mesh over the local devices; pad and BOS never
generated unless they stop), so `generate` gives what a job's evaluation would.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import gin
import numpy as np

from jaxrl_reason import cli, common, registry, rollouts  # noqa: F401  (registry: gin names)
from jaxrl_reason.data.batching import Example, encode_prompt
from jaxrl_reason.data.tasks import Problem, QuestionTask, Task
from jaxrl_reason.errors import UserError
from jaxrl_reason.models.hf.checkpoint import HFCheckpoint
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.tokenizers import Tokenizer


@dataclasses.dataclass
class Model:
    """Parameters, config and tokenizer of one model, with the run's task when it has one."""

    setup: common.Setup
    params: Any
    task: Task | None = None

    @property
    def config(self) -> ModelConfig:
        return self.setup.model_cfg

    @property
    def tokenizer(self) -> Tokenizer:
        return self.setup.tok

    def format(self, question: str) -> str:
        """A question as a person writes it (e.g. "4821+977"), in the prompt format of the run's
        task (e.g. reversed operands and a trailing newline)."""
        return self.task.prompt(self.problem(question))

    def problem(self, question: str) -> Problem:
        if not isinstance(self.task, QuestionTask):
            raise UserError(f"the task {getattr(self.task, 'name', None)!r} cannot read a "
                            "question typed by a person; pass the prompt text it was trained on")
        return self.task.from_question(question)

    def generate(self, prompts: str | Sequence[str], max_new_tokens: int = 128,
                 temperature: float = 0.0, n: int = 1, seed: int = 0) -> list[str]:
        """n completions per prompt (prompt-major), greedy by default; prompts are used as
        given (see `format`)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids = [encode_prompt(self.tokenizer, p) for p in prompts]
        room = self.setup.sampler.room(max(len(i) for i in ids))
        if room < 1:
            raise UserError(f"a prompt of {max(len(i) for i in ids)} tokens leaves no room in "
                            f"the model's context of {self.config.max_len}")
        cfg = SamplingConfig(max_new_tokens=min(max_new_tokens, room), temperature=temperature,
                             n=n)
        self.setup.sampler.load(self.params)
        return rollouts.decode_completions(self.tokenizer,
                                           self.setup.sampler.generate(ids, cfg, seed))

    def logprobs(self, prompts: Sequence[str], completions: Sequence[str]) -> list[np.ndarray]:
        """The log-prob of each completion token given its prompt (no EOS appended)."""
        tok = self.tokenizer
        examples = [Example(tuple(encode_prompt(tok, p)), tuple(tok.encode(c)))
                    for p, c in zip(prompts, completions, strict=True)]
        return self.setup.completion_logprobs(self.params, examples)


def load(path: str, step: int | None = None, bindings: Sequence[str] = ()) -> Model:
    """The model in `path`: a run's workdir (its config.gin; checkpoint `step`, default the
    latest) or a Hugging Face model directory (config.json + safetensors + tokenizer files).
    `bindings` are gin bindings applied on top (e.g. "parallel.make_mesh.fsdp = 8"). Clears
    the gin config of the calling process."""
    gin.clear_config()
    if os.path.isfile(os.path.join(path, "config.json")):
        cli.parse_gin([], bindings)
        pretrained = HFCheckpoint(path)
        setup = common.build(pretrained=pretrained)
        params = pretrained.load_params(setup.model_cfg, setup.trainer.params_shardings)
        return Model(setup, params)
    config = os.path.join(path, "config.gin")
    if not os.path.isfile(config):
        raise UserError(f"{path!r} is neither a run's workdir (no config.gin) nor a Hugging Face "
                        "model directory (no config.json)")
    cli.parse_gin([], bindings, run_config=config)
    setup = common.build()
    params, _ = common.restore_params(setup, path, step)
    return Model(setup, params, common.run_task(path))
