"""Prints completions from a checkpoint.

    python -m jaxrl_reason.sample --workdir=DIR [--question='4821+977'] [--prompt='...']

--question is a problem as a person writes it: the run's task puts it in its prompt format
(reversed digits, a chat template, ...). --prompt is sent exactly as given. With neither, it
samples problems of the run's task and shows the checker's verdict next to each completion.
"""

import itertools

import gin
from absl import flags

from jaxrl_reason import (
    cli,
    common,
    registry,  # noqa: F401  (registers every configurable with gin)
    rollouts,
)
from jaxrl_reason.data.batching import encode_prompt
from jaxrl_reason.data.tasks import QuestionTask, Task
from jaxrl_reason.errors import UserError
from jaxrl_reason.sampling.sampler import SamplingConfig

flags.DEFINE_multi_string(
    "prompt", [], "Prompt text(s), sent as given; '\\n' is unescaped. Default: task problems."
)
flags.DEFINE_multi_string(
    "question", [], "Question(s) as a person writes them (e.g. '4821+977'), put in the prompt "
    "format of the run's task.")


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
    params, _ = common.restore_params(s, workdir, flags.FLAGS.step, model)
    task = task or common.run_task(workdir)
    if flags.FLAGS.question:
        if not isinstance(task, QuestionTask):
            raise UserError(f"--question: the task {task.name!r} cannot read a typed question; "
                            "pass --prompt with the exact prompt text it was trained on")
        problems = [task.from_question(q) for q in flags.FLAGS.question]
        for r in rollouts.sample_and_check(s.sampler, params, task, s.tok, problems, sampling,
                                           seed):
            print(f"--- {r.problem.question!r} as prompt {r.prompt!r}\n{r.completion}")
        return
    if flags.FLAGS.prompt:
        prompts = [p.replace("\\n", "\n") for p in flags.FLAGS.prompt]
        if isinstance(task, QuestionTask) and not any(p.endswith("\n") for p in prompts):
            print("note: --prompt is sent as given; --question='...' formats a question the "
                  f"way the run's task does, e.g. {task.prompt(next(task.problems('test', 0)))!r}")
        s.sampler.load(params)
        out = s.sampler.generate([encode_prompt(s.tok, p) for p in prompts], sampling, seed)
        for i, text in zip(out.prompt_index, rollouts.decode_completions(s.tok, out), strict=True):
            print(f"--- prompt: {prompts[i]!r}\n{text}")
        return
    problems = list(itertools.islice(task.problems("test", seed), num_problems))
    for r in rollouts.sample_and_check(s.sampler, params, task, s.tok, problems, sampling, seed):
        verdict = "CORRECT" if r.check.correct else f"WRONG (gold {r.problem.answer})"
        print(f"--- {r.prompt!r} -> {verdict} steps={r.check.steps}\n{r.completion}")


if __name__ == "__main__":
    cli.run(sample, use_workdir_config=True)
