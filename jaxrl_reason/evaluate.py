"""Evaluates a checkpoint: python -m jaxrl_reason.evaluate --workdir=DIR [--gin_param=...]

Reads the run's config.gin (model, tokenizer), restores the latest or --step checkpoint, and
prints one JSON object: accuracy per difficulty on fresh test problems of the task given by
`evaluate.task` / `evaluate.difficulties` (defaults: the run's own task). A self-improvement run
keeps one checkpoint directory per model (checkpoints/model_<m>); `evaluate.model` picks one.
"""

import json

import gin
from absl import flags

from jaxrl_reason import (
    cli,
    common,
    registry,  # noqa: F401  (registers every configurable with gin)
    rollouts,
)
from jaxrl_reason.data.batching import encode_prompt
from jaxrl_reason.data.tasks import LengthTask
from jaxrl_reason.errors import UserError, typed
from jaxrl_reason.sampling.sampler import SamplingConfig


@gin.configurable(denylist=["workdir", "step"])
@typed
def evaluate(
    workdir: str,
    step: int | None = None,
    task: LengthTask | None = None,
    difficulties: tuple[int, ...] = (1, 2, 3, 4, 5),
    per_difficulty: int = 200,
    seed: int = 12345,
    split: str = "test",
    max_new_tokens: int = 128,
    model: int = 0,
) -> dict:
    """Greedy exact-match accuracy per difficulty (problems_of_length) of one checkpoint."""
    task = task or common.run_task(workdir)
    s = common.build()
    params, step = common.restore_params(s, workdir, step, model)
    problems = [
        p for d in difficulties for p in task.problems_of_length(d, per_difficulty, seed, split)
    ]
    # The model cannot write past its context: cap the budget at the room the longest prompt leaves.
    longest = max(len(encode_prompt(s.tok, task.prompt(p))) for p in problems)
    room = min(max_new_tokens, s.sampler.room(longest))
    if room < 1:
        raise UserError(f"prompts of {longest} tokens leave no room in ModelConfig.max_len")
    greedy = SamplingConfig(max_new_tokens=room, temperature=0.0)
    results = rollouts.sample_and_check(s.sampler, params, task, s.tok, problems, greedy)
    out = {
        "workdir": workdir,
        "step": step,
        "n": len(results),
        **rollouts.accuracy_by_difficulty(results),
    }
    print(json.dumps(out))
    return out


def main() -> None:
    cli.run(lambda workdir: evaluate(workdir, step=flags.FLAGS.step), use_workdir_config=True)


if __name__ == "__main__":
    main()
