"""Evaluates a checkpoint: python -m jaxrl_reason.evaluate --workdir=DIR [--gin_param=...]

Reads the run's config.gin (model, tokenizer), restores the latest or --step checkpoint, and
prints one JSON object: accuracy per difficulty on fresh test problems of the task given by
`evaluate.task` / `evaluate.difficulties` (defaults: the run's own task). A self-improvement run
keeps one checkpoint directory per model (checkpoints/model_<m>); `evaluate.model` picks one.
"""

import json
import os
from typing import Any

import gin
from absl import flags

from jaxrl_reason import (
    cli,
    registry,  # noqa: F401  (registers every configurable with gin)
)
from jaxrl_reason.algorithms import common, evaluation
from jaxrl_reason.data.batching import encode_prompt
from jaxrl_reason.data.tasks import Task
from jaxrl_reason.errors import UserError, typed
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.training.checkpoints import read_params

flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: latest).")


@gin.configurable(denylist=["workdir", "step"])
@typed
def evaluate(
    workdir: str,
    step: int | None = None,
    task: Task | None = None,
    difficulties: tuple[int, ...] = (1, 2, 3, 4, 5),
    per_difficulty: int = 200,
    seed: int = 12345,
    split: str = "test",
    max_new_tokens: int = 128,
    model: int = 0,
) -> dict:
    """Greedy exact-match accuracy per difficulty (problems_of_length) of one checkpoint."""
    task = task or _run_task()
    s = common.build()
    params, step = restore_params(s, workdir, step, model)
    problems = [
        p for d in difficulties for p in task.problems_of_length(d, per_difficulty, seed, split)
    ]
    # The model cannot write past its context: cap the budget at the room the longest prompt leaves.
    longest = max(len(encode_prompt(s.tok, task.prompt(p))) for p in problems)
    room = min(max_new_tokens, s.sampler.room(longest))
    if room < 1:
        raise UserError(f"prompts of {longest} tokens leave no room in ModelConfig.max_len")
    greedy = SamplingConfig(max_new_tokens=room, temperature=0.0)
    results = evaluation.rollouts(s.sampler, params, task, s.tok, problems, greedy)
    out = {
        "workdir": workdir,
        "step": step,
        "n": len(results),
        **evaluation.accuracy_by_difficulty(results),
    }
    print(json.dumps(out))
    return out


def restore_params(s: common.Setup, workdir: str, step: int | None = None,
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


def _run_task() -> Task:
    """The task the run trained on, from its config (star.task, self_improve.task, sft.task,
    rl.task)."""
    for job in ("star", "self_improve", "sft", "rl"):
        try:
            ref = gin.query_parameter(f"{job}.task")
        except ValueError:
            continue
        return ref.scoped_configurable_fn()
    raise UserError("no task found in the run's config; bind evaluate.task")


def main() -> None:
    cli.run(lambda workdir: evaluate(workdir, step=flags.FLAGS.step), use_workdir_config=True)


if __name__ == "__main__":
    main()
