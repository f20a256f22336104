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
import json
import os
import random
import time

import gin
import jax
from absl import logging

from jaxrl_reason.algorithms import common, evaluation, plots
from jaxrl_reason.data.batching import ExampleStream
from jaxrl_reason.data.tasks import Problem, Task
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
    pairs: list[tuple[str, str]]  # (prompt WITHOUT hint, completion) to fine-tune on
    kept: int
    rationalized: int
    samples: list[evaluation.Rollout]


def collect(
    s: common.Setup,
    params,
    task: Task,
    problems: list[Problem],
    cfg: SamplingConfig,
    rationalize: bool,
    seed: int,
) -> Collected:
    """Steps 1-3 of an iteration: sample, filter by the checker, rationalize the failures."""
    results = evaluation.rollouts(s.sampler, params, task, s.tok, problems, cfg, seed)
    pairs: dict[int, tuple[str, str]] = {}
    for i, r in enumerate(results):
        p = i // cfg.n
        if r.check.correct and p not in pairs:
            pairs[p] = (r.prompt, r.completion)
    kept = len(pairs)
    failed = [p for p in range(len(problems)) if p not in pairs]
    rationalized = 0
    if rationalize and failed:
        hinted = evaluation.rollouts(
            s.sampler,
            params,
            task,
            s.tok,
            [problems[p] for p in failed],
            cfg,
            seed + 1,
            hints=[problems[p].answer for p in failed],
        )
        for i, r in enumerate(hinted):
            p = failed[i // cfg.n]
            if r.check.correct and p not in pairs:
                pairs[p] = (task.prompt(problems[p]), r.completion)  # the hint is dropped here
                rationalized += 1
    return Collected([pairs[p] for p in sorted(pairs)], kept, rationalized, results)


def _save_pairs(path: str, pairs: list[tuple[str, str]]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        for prompt, completion in pairs:
            f.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")
    os.replace(path + ".tmp", path)


def _load_pairs(path: str) -> list[tuple[str, str]]:
    with open(path) as f:
        return [(r["prompt"], r["completion"]) for r in map(json.loads, f)]


@gin.configurable(denylist=["workdir", "steps"])
def direct_baseline(
    workdir: str,
    steps: int,
    task: Task = gin.REQUIRED,
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
    s = common.build(steps)
    pool = list(itertools.islice(task.problems("train", seed), num_problems))
    data = ExampleStream(
        s.tok, [(task.prompt(p), task.target(p)) for p in pool], batch_size, max_len, seed
    )
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    state = s.trainer.init(seed)
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
    acc = evaluation.accuracy_by_difficulty(
        evaluation.rollouts(s.sampler, state["params"], task, s.tok, problems, greedy)
    )
    history = [MetricWriter(workdir, None, key="iteration").write(0, {**acc, "steps": steps})]
    print(plots.table(history))
    return history


@gin.configurable(denylist=["workdir"])
def star(
    workdir: str,
    task: Task = gin.REQUIRED,
    seed_task: Task = gin.REQUIRED,
    num_seed_examples: int = 300,
    base_steps: int = 300,
    iterations: int = 8,
    num_problems: int = 1000,
    samples_per_problem: int = 1,
    temperature: float = 0.7,
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
    mode: str = "star",
) -> list[dict]:
    """Runs (or resumes) STaR in `workdir`; returns the per-iteration metrics.

    mode="direct" runs `direct_baseline` instead, with the same total step budget."""
    t_start = time.time()
    schedule = [
        steps_for_iteration(n, first_steps, steps_add, steps_growth)
        for n in range(1, iterations + 1)
    ]
    if mode == "direct":
        return direct_baseline(workdir, steps=base_steps + sum(schedule), seed=seed)
    if mode != "star":
        raise ValueError(f"star.mode must be 'star' or 'direct', got {mode!r}")
    offsets = list(itertools.accumulate([base_steps, *schedule]))  # global step at iteration ends
    s = common.build(base_steps)
    # Each iteration fine-tunes with its own warmup and decay over its own steps, as the base
    # did: restarting from the base at a base-sized schedule's peak rate would undo the base.
    trainers = {n: s.trainer_for(steps) for n, steps in enumerate(schedule, start=1)}
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    base_ckpt = Checkpointer(os.path.join(workdir, "base"), max_to_keep=1)
    train_writer = MetricWriter(workdir, ckpt.latest_step(), filename="train_metrics.jsonl")
    sampling = SamplingConfig(
        max_new_tokens=max_new_tokens, temperature=temperature, n=samples_per_problem
    )
    greedy = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    eval_sets = {d: task.problems_of_length(d, eval_per_difficulty, seed) for d in difficulties}
    pool = list(itertools.islice(task.problems("train", seed), num_problems))

    def evaluate(params) -> dict[str, float]:
        problems = [p for d in difficulties for p in eval_sets[d]]
        return evaluation.accuracy_by_difficulty(
            evaluation.rollouts(s.sampler, params, task, s.tok, problems, greedy)
        )

    # ---- base model: SFT on the seed rationales (short problems only) ---------------------
    state = s.trainer.init(seed)
    restored = ckpt.restore(s.trainer.abstract_state)
    extra = restored[1] if restored else {"iteration": 0, "data": {"index": 0}}
    if restored:
        state = restored[0]
    seed_pairs = [
        (seed_task.prompt(p), seed_task.target(p))
        for p in itertools.islice(seed_task.problems("train", seed), num_seed_examples)
    ]
    # The base also learns the rationalization format: the same seeds, shown with their hint.
    seed_pairs += [
        (seed_task.prompt(p, hint=p.answer), seed_task.target(p))
        for p in itertools.islice(seed_task.problems("train", seed), num_seed_examples)
    ]
    if extra["iteration"] == 0:
        data = ExampleStream(s.tok, seed_pairs, batch_size, max_len, seed)
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
        base_ckpt.save(0, state["params"], force=True)
        base_ckpt.wait()
    base_params = base_ckpt.restore(s.trainer.abstract_state["params"])[0]

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
            pairs, info = _load_pairs(kept_path), json.load(open(kept_path + ".info"))
        else:
            problems = random.Random(f"star-{seed}-{n}").sample(pool, len(pool))
            got = collect(
                s, state["params"], task, problems, sampling, rationalize, seed * 1000 + n
            )
            pairs, info = got.pairs, {"kept": got.kept, "rationalized": got.rationalized}
            _save_pairs(kept_path, pairs)
            json.dump(info, open(kept_path + ".info", "w"))
            _write_samples(os.path.join(workdir, f"iteration_{n:03d}", "samples.txt"), got.samples)
            start_params = base_params if restart_from_base else state["params"]
            state = trainers[n].reset_optimizer(state, params=start_params)
        if pairs:
            data = ExampleStream(s.tok, pairs, batch_size, max_len, seed + n)
            if mid_iteration:
                data.set_state(extra["data"])
            state = fit(
                trainers[n],
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


def _write_samples(path: str, samples: list[evaluation.Rollout], limit: int = 50) -> None:
    """A few rollouts, verdict first, for a person to read."""
    with open(path, "w") as f:
        for r in samples[:limit]:
            f.write(
                f"### {'CORRECT' if r.check.correct else 'WRONG'} (gold {r.problem.answer}) "
                f"steps={r.check.steps}\n{r.prompt}{r.completion}\n"
            )
