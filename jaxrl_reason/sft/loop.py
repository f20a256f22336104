"""Supervised fine-tuning on a task's gold (prompt, target) pairs, with greedy-decoding eval."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable

import gin

from jaxrl_reason import common, rollouts
from jaxrl_reason.data.batching import ExampleStream, encode_example
from jaxrl_reason.data.tasks import Task
from jaxrl_reason.errors import require, typed
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.training.checkpoints import Checkpointer
from jaxrl_reason.training.loop import fit
from jaxrl_reason.training.metrics import MetricWriter


@gin.configurable(denylist=["workdir", "model"])
@typed
def sft(
    workdir: str,
    task: Task = gin.REQUIRED,
    steps: int = 1000,
    batch_size: int = 64,
    max_len: int = 128,
    num_examples: int = 20_000,
    seed: int = 0,
    ckpt_every: int = 200,
    log_every: int = 50,
    eval_every: int = 200,
    eval_problems: int = 256,
    max_new_tokens: int = 96,
    model: Callable[..., ModelConfig] | None = None,
) -> dict[str, float]:
    """Trains `steps` steps on `num_examples` training problems; resumes from workdir.
    `model` makes the model config from the vocabulary size (a caller's explicit second
    model; None: the job's own, from the gin bindings)."""
    for name, value in (("steps", steps), ("batch_size", batch_size),
                        ("num_examples", num_examples), ("log_every", log_every)):
        require(value >= 1, f"sft.{name}", value, "must be >= 1")
    s = common.build(model=model) if model else common.build()
    examples = [
        encode_example(s.tok, task.prompt(p), task.target(p))
        for p in itertools.islice(task.problems("train", seed), num_examples)
    ]
    data = ExampleStream(examples, batch_size, max_len, s.tok.pad_id, seed)
    test = list(itertools.islice(task.problems("test", seed), eval_problems))
    greedy = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)

    def eval_fn(state):
        results = rollouts.sample_and_check(s.sampler, state["params"], task, s.tok, test, greedy)
        return rollouts.accuracy_by_difficulty(results)

    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    state = s.init(seed)
    restored = ckpt.restore(s.trainer.abstract_state)
    if restored is not None:
        state, extra = restored
        data.set_state(extra["data"])
    writer = MetricWriter(workdir, resume_step=ckpt.latest_step())
    state = fit(
        s.trainer,
        state,
        data,
        steps,
        ckpt=ckpt,
        writer=writer,
        ckpt_every=ckpt_every,
        log_every=log_every,
        eval_every=eval_every,
        eval_fn=eval_fn,
        desc="sft",
    )
    final = eval_fn(state)
    ckpt.close()
    writer.close()
    print(json.dumps({"step": steps, **final}))
    return final
