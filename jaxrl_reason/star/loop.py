"""STaR: rationale bootstrapping (Zelikman et al. 2022; ALGORITHMS.md section 1).

Base model = SFT on a small seed set of worked rationales for SHORT problems (our stand-in for
the paper's few-shot prompt). Then each outer iteration n:
  1. sample rationales for training problems that carry only gold answers;
  2. keep a sample iff the checker says its final answer is the gold one;
  3. rationalize the failures: prompt again with the gold answer as a hint, keep rationales
     that now reach it, and store them under the prompt WITHOUT the hint;
  4. fine-tune on the kept set, starting again FROM THE BASE model (or from the last iterate);
  5. with steps growing each iteration; evaluate per difficulty.
Every phase is checkpointed under one rising step counter, and each iteration's kept set is
saved, so a killed run resumes at the iteration and step it reached.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import time
from collections import Counter
from typing import Literal

import gin
import jax
from absl import logging

from jaxrl_reason import common, files, plots, rng, rollouts
from jaxrl_reason.data.batching import Example, ExampleStream, encode_example, encode_prompt
from jaxrl_reason.data.tasks import LengthTask, Problem, Task
from jaxrl_reason.errors import require, typed
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.training.checkpoints import Checkpointer
from jaxrl_reason.training.loop import fit
from jaxrl_reason.training.metrics import MetricWriter, read_metrics


def steps_for_iteration(n: int, first: int, add: int, growth: float) -> int:
    """Steps of outer iteration n >= 1: first * growth**(n-1) + add*(n-1) (paper: 40, x1.2;
    arithmetic: 300, +20)."""
    return int(round(first * growth ** (n - 1) + add * (n - 1)))


@dataclasses.dataclass
class Collected:
    examples: list[Example]  # prompt WITHOUT hint + the sampled completion ids, to fine-tune on
    texts: list[tuple[str, str]]  # the same, as text, for kept.jsonl
    kept: int  # solved without the hint (first samples or retries)
    rationalized: int
    samples: list[rollouts.Rollout]
    retried: int = 0  # of `kept`, solved only by the retry samples
    by_difficulty: dict[str, int] = dataclasses.field(default_factory=dict)  # kept/<d>, any route


def collect(
    s: common.Setup,
    params,
    task: Task,
    problems: list[Problem],
    cfg: SamplingConfig,
    rationalize: bool,
    key: jax.Array,
    retry: SamplingConfig | None = None,
) -> Collected:
    """Steps 1-3 of an iteration: sample, filter by the checker, rationalize the failures.

    A sample is kept iff it finished (emitted EOS) and the checker accepts its answer; the kept
    completion is the sampler's own ids. `retry` (the paper's "sample until correct, within a
    budget") draws `retry.n` more samples for every problem none of the first `cfg.n` solved,
    before rationalizing what is still unsolved. `key` is split into the sampling, the hinted
    and the retry stream."""
    chosen: dict[int, rollouts.Rollout] = {}

    def draw(todo: list[int], sampling: SamplingConfig, stream: int, hinted: bool = False
             ) -> tuple[list[rollouts.Rollout], int]:
        """Samples problems `todo` and keeps each one's first correct, finished completion."""
        drawn = rollouts.sample_and_check(
            s.sampler, params, task, s.tok, [problems[p] for p in todo], sampling,
            jax.random.fold_in(key, stream),
            hints=[problems[p].answer for p in todo] if hinted else None)
        before = len(chosen)
        for i, r in enumerate(drawn):
            p = todo[i // sampling.n]
            if r.finished and r.check.correct and p not in chosen:
                chosen[p] = r
        return drawn, len(chosen) - before

    def unsolved() -> list[int]:
        return [p for p in range(len(problems)) if p not in chosen]

    results, kept = draw(list(range(len(problems))), cfg, 0)
    retried = rationalized = 0
    if retry is not None and unsolved():
        retried = draw(unsolved(), retry, 2)[1]
    if rationalize and unsolved():
        rationalized = draw(unsolved(), cfg, 1, hinted=True)[1]
    order = sorted(chosen)
    # every kept completion is stored under the prompt WITHOUT the hint
    examples = [Example(tuple(encode_prompt(s.tok, task.prompt(problems[p]))),
                        chosen[p].completion_ids) for p in order]
    texts = [(task.prompt(problems[p]), chosen[p].completion) for p in order]
    by_length = Counter(problems[p].difficulty for p in order)
    return Collected(examples, texts, kept + retried, rationalized, results, retried,
                     {f"kept/{d}": by_length[d] for d in sorted({p.difficulty for p in problems})})


def _info(got: Collected) -> dict[str, int]:
    """What an iteration's collection kept, for metrics.jsonl and kept.jsonl.info."""
    return {"kept": got.kept, "rationalized": got.rationalized, "retried": got.retried,
            **got.by_difficulty}


def _save_kept(path: str, got: Collected) -> None:
    files.write_jsonl(path, [
        {"prompt": prompt, "completion": completion, "prompt_ids": list(ex.prompt),
         "completion_ids": [int(t) for t in ex.completion]}
        for (prompt, completion), ex in zip(got.texts, got.examples, strict=True)])
    files.write_json(path + ".info", _info(got))


def _load_kept(path: str) -> tuple[list[Example], dict]:
    rows = files.read_jsonl(path)
    examples = [Example(tuple(r["prompt_ids"]), tuple(r["completion_ids"])) for r in rows]
    return examples, files.read_json(path + ".info")


@gin.configurable(denylist=["workdir", "steps"])
@typed
def direct_baseline(
    workdir: str,
    steps: int,
    task: LengthTask = gin.REQUIRED,
    num_problems: int = 3000,
    batch_size: int = 64,
    max_len: int = 128,
    eval_per_difficulty: int = 100,
    difficulties: tuple[int, ...] = (1, 2, 3, 4, 5),
    seed: int = 0,
) -> list[dict]:
    """The paper's comparison: fine-tune straight on (question, gold answer) with no rationale,
    on the same problems and the same step budget as a STaR run. Bind `task` to a task whose
    targets carry no rationale (e.g. AdditionTask.scratchpad = "none")."""
    s = common.build()
    pool = list(itertools.islice(task.problems("train", seed), num_problems))
    examples = [encode_example(s.tok, task.prompt(p), task.target(p)) for p in pool]
    data = ExampleStream(examples, batch_size, max_len, s.tok.pad_id, seed)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    state = s.init(seed)
    if (restored := ckpt.restore(s.trainer.abstract_state)) is not None:
        state = restored[0]
        data.set_state(restored[1]["data"])
    train_writer = MetricWriter(workdir, ckpt.latest_step(), filename="train_metrics.jsonl")
    state = fit(
        s.trainer, state, data, steps, ckpt=ckpt, writer=train_writer, ckpt_every=200, desc="direct"
    )
    ckpt.close()
    problems = [
        p for d in difficulties for p in task.problems_of_length(d, eval_per_difficulty, seed)
    ]
    greedy = SamplingConfig(max_new_tokens=16, temperature=0.0)
    acc = rollouts.accuracy_by_difficulty(
        rollouts.sample_and_check(s.sampler, state["params"], task, s.tok, problems, greedy)
    )
    history = [MetricWriter(workdir, None, key="iteration").write(0, {**acc, "steps": steps})]
    print(plots.table(history))
    return history


@gin.configurable(denylist=["workdir"])
@typed
def star(
    workdir: str,
    task: LengthTask = gin.REQUIRED,
    seed_task: Task = gin.REQUIRED,
    num_seed_examples: int = 300,
    base_steps: int = 300,
    iterations: int = 8,
    num_problems: int = 1000,
    samples_per_problem: int = 1,
    temperature: float = 0.7,
    retry_samples: int = 0,
    retry_temperature: float | None = None,
    rationalize: bool = True,
    restart_from_base: bool = True,
    first_steps: int = 300,
    steps_add: int = 20,
    steps_growth: float = 1.0,
    batch_size: int = 64,
    max_len: int = 128,
    max_new_tokens: int = 96,
    eval_per_difficulty: int = 100,
    difficulties: tuple[int, ...] = (1, 2, 3, 4, 5),
    seed: int = 0,
    ckpt_every: int = 50,
    mode: Literal["star", "direct"] = "star",
) -> list[dict]:
    """Runs (or resumes) STaR in `workdir`; returns the per-iteration metrics.

    `retry_samples` more samples (at `retry_temperature`, default `temperature`) go to every
    problem that none of the first `samples_per_problem` solved, before rationalization.

    mode="direct" runs `direct_baseline` instead, with the same total step budget."""
    for name, value in (("iterations", iterations), ("base_steps", base_steps),
                        ("first_steps", first_steps), ("num_problems", num_problems),
                        ("samples_per_problem", samples_per_problem), ("batch_size", batch_size)):
        require(value >= 1, f"star.{name}", value, "must be >= 1")
    require(retry_samples >= 0, "star.retry_samples", retry_samples, "must be >= 0")
    t_start = time.time()
    schedule = [
        steps_for_iteration(n, first_steps, steps_add, steps_growth)
        for n in range(1, iterations + 1)
    ]
    if mode == "direct":
        return direct_baseline(workdir, steps=base_steps + sum(schedule), seed=seed)
    offsets = list(itertools.accumulate([base_steps, *schedule]))  # global step at iteration ends
    s = common.build()
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    base_ckpt = Checkpointer(os.path.join(workdir, "base"), max_to_keep=1)
    train_writer = MetricWriter(workdir, ckpt.latest_step(), filename="train_metrics.jsonl")
    sampling = SamplingConfig(
        max_new_tokens=max_new_tokens, temperature=temperature, n=samples_per_problem
    )
    retry = None if retry_samples == 0 else SamplingConfig(
        max_new_tokens=max_new_tokens, n=retry_samples,
        temperature=temperature if retry_temperature is None else retry_temperature)
    greedy = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    eval_sets = {d: task.problems_of_length(d, eval_per_difficulty, seed) for d in difficulties}
    pool = list(itertools.islice(task.problems("train", seed), num_problems))

    def evaluate(params) -> dict[str, float]:
        problems = [p for d in difficulties for p in eval_sets[d]]
        return rollouts.accuracy_by_difficulty(
            rollouts.sample_and_check(s.sampler, params, task, s.tok, problems, greedy)
        )

    # ---- base model: SFT on the seed rationales (short problems only) ---------------------
    state = s.init(seed)
    restored = ckpt.restore(s.trainer.abstract_state)
    extra = restored[1] if restored else {"iteration": 0, "data": {"index": 0}}
    if restored:
        state = restored[0]
    seeds = list(itertools.islice(seed_task.problems("train", seed), num_seed_examples))
    seed_examples = [encode_example(s.tok, seed_task.prompt(p), seed_task.target(p))
                     for p in seeds]
    # The base also learns the rationalization format: the same seeds, shown with their hint.
    seed_examples += [encode_example(s.tok, seed_task.prompt(p, hint=p.answer),
                                     seed_task.target(p)) for p in seeds]
    if extra["iteration"] == 0:
        data = ExampleStream(seed_examples, batch_size, max_len, s.tok.pad_id, seed)
        data.set_state(extra["data"])
        state = fit(
            s.trainer,
            state,
            data,
            base_steps,
            ckpt=ckpt,
            writer=train_writer,
            extra={"iteration": 0},
            desc="base",
            log_every=50,
            ckpt_every=ckpt_every,
        )
        ckpt.wait()
        extra = {"iteration": 1, "data": {"index": 0}, "fresh": True}
    if base_ckpt.latest_step() is None:
        base_ckpt.save(0, {"params": state["params"]}, force=True)
        base_ckpt.wait()
    base_params, _ = base_ckpt.restore_params(s.trainer.abstract_state["params"])

    writer = MetricWriter(workdir, extra["iteration"] - 1, key="iteration")
    history = [r for r in read_metrics(workdir) if r["iteration"] < extra["iteration"]]
    if not history:
        history.append(
            writer.write(
                0,
                {
                    **evaluate(base_params),
                    "kept": 0,
                    "rationalized": 0,
                    "steps": base_steps,
                    "seconds": time.time() - t_start,
                },
            )
        )
    # ---- outer iterations ---------------------------------------------------------------
    n = extra["iteration"]
    mid_iteration = (
        restored is not None and not extra.get("fresh") and extra.get("phase") == "train"
    )
    while n <= iterations:
        t0 = time.time()
        kept_path = os.path.join(workdir, f"iteration_{n:03d}", "kept.jsonl")
        if mid_iteration and os.path.exists(kept_path):
            examples, info = _load_kept(kept_path)
        else:
            problems = random.Random(f"star-{seed}-{n}").sample(pool, len(pool))
            got = collect(s, state["params"], task, problems, sampling, rationalize,
                          rng.key(seed, n, "collect"), retry)
            examples, info = got.examples, _info(got)
            _save_kept(kept_path, got)
            _write_samples(os.path.join(workdir, f"iteration_{n:03d}", "samples.txt"), got.samples)
            start_params = base_params if restart_from_base else state["params"]
            state = s.trainer.reset_optimizer(state, params=start_params)
        if examples:
            data = ExampleStream(examples, batch_size, max_len, s.tok.pad_id, seed + n)
            if mid_iteration:
                data.set_state(extra["data"])
            # Each iteration fine-tunes with its own warmup and decay over its own steps, as the
            # base did: restarting from the base at the base's peak rate would undo the base.
            state = fit(
                s.trainer,
                state,
                data,
                schedule[n - 1],
                ckpt=ckpt,
                writer=train_writer,
                step_offset=offsets[n - 1],
                extra={"iteration": n, "phase": "train"},
                desc=f"iteration {n}",
                log_every=50,
                ckpt_every=ckpt_every,
            )
        else:
            logging.warning(
                "STaR iteration %d: no sample was correct, nothing to train on; train "
                "the base longer (star.base_steps) or raise star.temperature",
                n,
            )
        ckpt.wait()
        rec = writer.write(
            n,
            {
                **evaluate(state["params"]),
                **info,
                "steps": schedule[n - 1],
                "seconds": time.time() - t0,
            },
        )
        history.append(rec)
        plots.accuracy_plot(history, os.path.join(workdir, "accuracy.png"), x="iteration")
        print(
            f"iteration {n}: "
            + " ".join(f"{k}={v:.3f}" for k, v in rec.items() if k.startswith("acc")),
            flush=True,
        )
        mid_iteration = False
        n += 1
    ckpt.close()
    base_ckpt.close()
    writer.close()
    train_writer.close()
    print(plots.table(history, x="iteration"))
    jax.effects_barrier()
    return history


def _write_samples(path: str, samples: list[rollouts.Rollout], limit: int = 50) -> None:
    """A few rollouts, verdict first, for a person to read."""
    files.write_atomic(path, "".join(
        f"### {'CORRECT' if r.check.correct else 'WRONG'} (gold {r.problem.answer}) "
        f"steps={r.check.steps}{'' if r.finished else ' (truncated)'}\n{r.prompt}{r.completion}\n"
        for r in samples[:limit]))
