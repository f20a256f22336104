"""Prints completions from a checkpoint.

    python -m jaxrl_reason.sample --workdir=DIR [--prompt='12+34\n']

With --prompt, samples that text; otherwise samples problems of the configured task and shows
the checker's verdict next to each completion.
"""

import itertools

import gin
from absl import flags

from jaxrl_reason import (
    cli,
    evaluate,
    registry,  # noqa: F401  (registers every configurable with gin)
)
from jaxrl_reason.algorithms import common, evaluation
from jaxrl_reason.data.batching import decode_completions, encode_prompt
from jaxrl_reason.data.tasks import Task
from jaxrl_reason.sampling.sampler import SamplingConfig

flags.DEFINE_multi_string(
    "prompt", [], "Prompt text(s); '\\n' is unescaped. Default: task problems."
)


@gin.configurable(denylist=["workdir"])
def sample(
    workdir: str,
    task: Task | None = None,
    num_problems: int = 8,
    seed: int = 0,
    temperature: float = 0.0,
    max_new_tokens: int = 128,
    model: int = 0,
) -> None:
    """Restores params from workdir/checkpoints (model `model` of an ensemble run) and prints
    completions."""
    sampling = SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens)
    s = common.build()
    params, _ = evaluate.restore_params(s, workdir, flags.FLAGS.step, model)
    if flags.FLAGS.prompt:
        prompts = [p.replace("\\n", "\n") for p in flags.FLAGS.prompt]
        s.sampler.load(params)
        out = s.sampler.generate([encode_prompt(s.tok, p) for p in prompts], sampling, seed)
        for i, text in zip(out.prompt_index, decode_completions(s.tok, out), strict=True):
            print(f"--- prompt: {prompts[i]!r}\n{text}")
        return
    task = task or evaluate._run_task()
    problems = list(itertools.islice(task.problems("test", seed), num_problems))
    for r in evaluation.rollouts(s.sampler, params, task, s.tok, problems, sampling, seed):
        verdict = "CORRECT" if r.check.correct else f"WRONG (gold {r.problem.answer})"
        print(f"--- {r.prompt!r} -> {verdict} steps={r.check.steps}\n{r.completion}")


if __name__ == "__main__":
    cli.run(sample, use_workdir_config=True)
