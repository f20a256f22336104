"""Absolute Zero self-play (Zhao et al. 2025; ALGORITHMS.md section 7, docs/azr.md): one
policy proposes program tasks and solves them, every verdict by execution in the sandbox.

Each step, for each task type (deduction, abduction, induction), B proposer rollouts (K
references from the buffer) are parsed and validated by execution; each valid proposal is
scored by its learnability over n solver samples and enters its buffer; then B solver
rollouts per task type (this step's new triples first, then the buffer) are checked. One
learner step trains on the six (role, task type) sub-batches, with REINFORCE++ advantages
whitened within each (`trr_pp`). Every `eval_every` steps, and at step 0 and the last, the
greedy solve rate on the hand-written seeds' TEST split is reported; nothing in the run
reads it.

Checkpoints hold the policy, the optimizer and, as JSON, the step and the three buffers.
Every draw is keyed by (seed, step, stream), and the executor keeps nothing between runs
(each program runs in a fresh child), so a run killed anywhere and started again on its
workdir ends as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Literal

import gin
import jax
import numpy as np
from tqdm import tqdm

from jaxrl_reason import cli, common, rng
from jaxrl_reason.azr import plots, roles
from jaxrl_reason.azr.buffers import Buffer, seed_triples
from jaxrl_reason.azr.metrics import (
    MeteredExecutor,
    accuracy_by_type,
    buffer_metrics,
    proposal_metrics,
    reward_metrics,
)
from jaxrl_reason.data.batching import encode_prompt, step_ends
from jaxrl_reason.data.programs import TASK_TYPES, ProgramTask
from jaxrl_reason.data.tasks import Check, Problem
from jaxrl_reason.errors import require, typed
from jaxrl_reason.rewards.executor import Executor
from jaxrl_reason.rl import advantages as adv_lib
from jaxrl_reason.rl.learner import Learner, LearnerConfig
from jaxrl_reason.rl.loop import start_state
from jaxrl_reason.rl.objective import RLLoss
from jaxrl_reason.rl.rewards import Combined
from jaxrl_reason.rollouts import (
    Rollouts,
    decode_completions,
    from_samples,
    sample_and_check,
)
from jaxrl_reason.sampling.sampler import Samples, SamplingConfig
from jaxrl_reason.training.checkpoints import Checkpointer
from jaxrl_reason.training.metrics import MetricWriter

# Per-step metrics that measure wall time: they differ between identical runs.
TIMING_PREFIXES = ("time", "executor/runs_per_s", "executor/share")
# Learner options this loop does not drive (its rollouts are its own, it keeps no reference).
UNSUPPORTED = ("dynamic_sampling", "reset_patience", "reset_every", "soft_sync_rate")


@gin.configurable(denylist=["workdir"])
@typed
def azr(
    workdir: str,
    task: Callable[..., ProgramTask] = ProgramTask,
    policy_dir: str | None = None,
    policy_step: int | None = None,
    steps: int = 100,
    seed: int = 0,
    batch_per_task: int = 8,
    references: int = 6,
    solver_samples: int = 8,
    temperature: float = 1.0,
    learnability: Literal["paper", "authors"] = "paper",
    seeds: Literal["identity", "train", "both"] = "identity",
    induction_inputs: int = 6,
    advantage: str = "trr_pp",
    eval_every: int = 10,
    eval_seed: int = 0,
    test_problems: int | None = None,
    ckpt_every: int = 10,
) -> dict[str, float]:
    """Runs (or resumes) `steps` self-play steps from the SFT run in `policy_dir` (None: the
    imported `build.pretrained` checkpoint, else random weights); returns the final held-out
    solve rates.

    B = `batch_per_task` rollouts per (role, task type) and step (6B rows a step, one
    rollout per prompt, at `temperature` T); K = `references` triples per proposal; n =
    `solver_samples` solver samples per valid proposal for its learnability, which for a task
    solved always or never is 0 (`learnability='paper'`) or -0.5 (`'authors'`, their code).
    `seeds`: the buffers start from AZR's identity program, the hand-written seeds' train
    split, or both. An induction proposer writes `induction_inputs` inputs and a message.
    `test_problems` caps the held-out problems (None: all of them, the reported figure).
    `task` is the ProgramTask class (`@ProgramTask`, no parentheses: the job gives it its
    executor); its `compact` prompts must match the SFT run's. `rl_learner.*` sets the
    budget (max_new_tokens), mini-batches and iterations; the rows, T and the estimator
    (`advantage`, TRR++ by default) are this job's."""
    for name, value in (("steps", steps), ("batch_per_task", batch_per_task),
                        ("solver_samples", solver_samples), ("eval_every", eval_every),
                        ("ckpt_every", ckpt_every)):
        require(value >= 1, f"azr.{name}", value, "must be >= 1")
    require(references >= 0, "azr.references", references, "must be >= 0")
    require(induction_inputs >= 2, "azr.induction_inputs", induction_inputs,
            "must be >= 2 (half of the pairs are shown, half hidden)")
    require(advantage not in adv_lib.GROUPED, "azr.advantage", advantage,
            "must not compare the rollouts of one prompt: AZR draws one per prompt (trr_pp, "
            "or reinforce_pp for one whitening over the batch)")
    require(callable(task) and not isinstance(task, ProgramTask), "azr.task", task,
            "must be @ProgramTask without parentheses (the job builds it with its executor)")
    if policy_dir is not None and common.inherit_model(policy_dir):
        cli.write_operative_config(workdir, gin.config_str())  # the shape, for a killed run
    s = common.build(loss=RLLoss())
    b = batch_per_task
    cfg = dataclasses.replace(LearnerConfig(), prompts_per_step=len(roles.SUB_BATCHES) * b,
                              group_size=1, temperature=temperature, advantage=advantage)
    for name in UNSUPPORTED:
        require(not getattr(cfg, name), f"rl_learner.{name}", getattr(cfg, name),
                "is not supported by the azr job: leave it off")
    learner = Learner(cfg, s.trainer, s.tok.pad_id)
    executor = MeteredExecutor(Executor(timeout_s=task().timeout_s))
    programs = task(executor=executor)
    delimiters = tuple(s.tok.encode(cfg.step_delimiter))
    budget = cfg.max_new_tokens

    def fits(prompt: str) -> bool:
        n = len(encode_prompt(s.tok, prompt))
        return n + budget <= s.model_cfg.max_len and s.sampler.room(n) >= budget

    every_test = list(programs.problems("test", eval_seed))
    held_out = {roles.normalized(p.meta["program"]) for p in every_test}
    test = every_test[:test_problems]
    long = sum(not fits(programs.prompt(p)) for p in test)
    require(long == 0, "ModelConfig.max_len", s.model_cfg.max_len,
            f"leaves no room for rl_learner.max_new_tokens={budget} after {long} of the "
            f"{len(test)} held-out prompts")

    def held_out_report(params) -> dict[str, float]:
        """Greedy solve rate on the test split: reported, never read by the run."""
        t0 = time.perf_counter()
        done = sample_and_check(s.sampler, params, programs, s.tok, test,
                                SamplingConfig(max_new_tokens=budget, temperature=0.0))
        out = accuracy_by_type([p.meta["task_type"] for p in test],
                               [r.check.correct for r in done], "test/solve")
        return {**out, "time/eval": time.perf_counter() - t0}

    def sample(problems: Sequence[Problem], key) -> tuple[list[list[int]], Samples]:
        prompts = [encode_prompt(s.tok, programs.prompt(p)) for p in problems]
        cfg_ = SamplingConfig(max_new_tokens=budget, temperature=temperature)
        return prompts, s.sampler.generate(prompts, cfg_, key)

    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    restored = ckpt.restore(s.trainer.abstract_state)
    if restored is not None:
        state, extra = restored
        start = extra["step"]
        buffers = {t: Buffer.from_json(extra["buffers"][t]) for t in TASK_TYPES}
    else:
        state = (s.init(seed) if policy_dir is None  # random, or build.pretrained's weights
                 else start_state(s, policy_dir, policy_step, seed))
        start = 0
        buffers = {t: Buffer() for t in TASK_TYPES}
        for t in TASK_TYPES:
            buffers[t].add([x for x in seed_triples(seeds)
                            if roles.admissible(programs, t, x, fits, induction_inputs)], 0)
            require(len(buffers[t]) > 0, "azr.seeds", seeds,
                    f"leaves the {t} buffer empty: no seed's prompts fit ModelConfig.max_len")
    writer = MetricWriter(workdir, resume_step=start if restored is not None else None)
    if start == 0:
        writer.write(0, {**held_out_report(state["params"]), **buffer_metrics(buffers)})
    rates = s.trainer.optimizer.learning_rates(steps * learner.updates_per_step)
    bar = tqdm(total=steps, initial=start, desc="azr", unit="step", dynamic_ncols=True,
               disable=jax.process_index() != 0, mininterval=1.0)
    for step in range(start + 1, steps + 1):
        t_step = time.perf_counter()
        executor.reset()
        draw = lambda stream, step=step: random.Random(f"azr/{seed}/{step}/{stream}")  # noqa: E731
        rec: dict[str, float] = {"time/load": s.sampler.load(state["params"])}

        # propose: B rollouts per task type, judged by execution
        t0 = time.perf_counter()
        asked = [p for t in TASK_TYPES for p in roles.proposer_problems(
            programs, buffers, t, b, references, draw(f"propose/{t}"), fits, induction_inputs)]
        prompts, samples = sample(asked, rng.key(seed, step, "propose"))
        texts = decode_completions(s.tok, samples)
        judged = roles.judge(programs, executor, asked, texts, fits, held_out,
                             induction_inputs)
        proposed = proposer_rollouts(programs, asked, prompts, samples, texts, judged,
                                     s.sampler.stop, delimiters, budget)
        rec["time/propose"] = time.perf_counter() - t0

        # learnability: n solver samples of each valid proposal
        t0 = time.perf_counter()
        valid = [i for i, j in enumerate(judged) if j.valid]
        learn: dict[int, tuple[float, float]] = {}
        if valid:
            lrng = draw("learnability")
            tasks = [programs.make_problem(judged[i].task_type, judged[i].triple, lrng)
                     for i in valid]
            done = sample_and_check(
                s.sampler, state["params"], programs, s.tok, tasks,
                SamplingConfig(max_new_tokens=budget, temperature=temperature,
                               n=solver_samples), rng.key(seed, step, "learnability"))
            for k, i in enumerate(valid):
                solved = [r.check.correct for r in done[k * solver_samples:
                                                         (k + 1) * solver_samples]]
                learn[i] = (roles.learnability(solved, learnability), float(np.mean(solved)))
        propose_rewards = [roles.proposer_reward(j, learn[i][0] if j.valid else 0.0)
                           for i, j in enumerate(judged)]
        roles.admit(buffers, judged, step)
        rec["time/learnability"] = time.perf_counter() - t0

        # solve: B rollouts per task type from the buffers, newest first
        t0 = time.perf_counter()
        srng = draw("solve")
        posed = [programs.make_problem(t, x, srng) for t in TASK_TYPES
                 for x in buffers[t].solver_batch(b, step, srng)]
        prompts, samples = sample(posed, rng.key(seed, step, "solve"))
        solved_ro = from_samples(programs, s.tok, posed, prompts, samples, s.sampler.stop,
                                 delimiters, budget)
        solved_ro.group = np.array([roles.group_of("solve", p.meta["task_type"]) for p in posed])
        solve_rewards = [roles.solver_reward(c.answer, c.correct) for c in solved_ro.checks]
        rec["time/solve"] = time.perf_counter() - t0
        executor_s = executor.seconds

        ro = Rollouts.concat([proposed, solved_ro])
        outcome = np.array(propose_rewards + solve_rewards, np.float64)
        combined = Combined(outcome, [np.full(len(e), np.nan) for e in ro.step_ends], {})
        state, learned = learner.step(state, ro, combined, rates, step, seed)
        rec.update(learned)
        rec.update(proposal_metrics(judged, learn, [p.meta["references"] for p in asked
                                                    if p.meta["task_type"] != "induction"]))
        rec.update(buffer_metrics(buffers))
        rec.update(accuracy_by_type([p.meta["task_type"] for p in posed],
                                    [c.correct for c in solved_ro.checks], "solve/acc"))
        rec.update(reward_metrics(ro.group, outcome))
        rec["reward_mean"] = float(outcome.mean())
        rec["executor/runs"] = float(executor.runs)
        rec["executor/runs_per_s"] = executor.runs / max(executor_s, 1e-9)
        rec["time/executor"] = executor_s
        rec["time/step"] = time.perf_counter() - t_step
        rec["executor/share"] = executor_s / rec["time/step"]
        if step % eval_every == 0 or step == steps:
            rec.update(held_out_report(state["params"]))
        writer.write(step, rec)
        bar.set_postfix(valid=f"{rec['propose/valid']:.2f}", solve=f"{rec['solve/acc']:.2f}")
        bar.update(1)
        if step % ckpt_every == 0 or step == steps:
            ckpt.save(step, state, {"step": step,
                                    "buffers": {t: buffers[t].to_json() for t in TASK_TYPES}})
    bar.close()
    ckpt.close()
    writer.close()
    executor.close()
    plots.training_plot(writer.records, os.path.join(workdir, "azr.png"))
    first, last = (next(r for r in writer.records[::d] if "test/solve" in r) for d in (1, -1))
    final = {k: v for k, v in last.items() if k.startswith("test/solve")}
    print(json.dumps({"step": steps, "start": {k: first[k] for k in final}, "end": final,
                      **{k: v for k, v in last.items() if k.startswith("buffer/")}}))
    return final


def proposer_rollouts(task: ProgramTask, problems: Sequence[Problem],
                      prompts: Sequence[Sequence[int]], samples: Samples, texts: Sequence[str],
                      judged: Sequence[roles.Judged], stop_ids: Sequence[int],
                      delimiters: Sequence[int], max_new_tokens: int) -> Rollouts:
    """The proposer rows as rollouts (one per prompt), checked by `judged` rather than by
    the task (whose check of a proposal lacks the one-function, fit and held-out rules)."""
    ids = [tuple(int(t) for t in samples.tokens[r, : samples.lengths[r]])
           for r in range(len(problems))]
    return Rollouts(
        task=task, problems=list(problems), prompt_ids=[tuple(p) for p in prompts],
        completion_ids=ids, completions=list(texts),
        finished=np.asarray(samples.finished, bool),
        checks=[Check(j.proposal.program if j.well_formed else None, j.valid) for j in judged],
        step_ends=[step_ends(c, delimiters, stop_ids) for c in ids],
        group=np.array([roles.group_of("propose", j.task_type) for j in judged]),
        logprobs=[np.asarray(samples.logprobs[r, : samples.lengths[r]], np.float32)
                  for r in range(len(problems))],
        max_new_tokens=max_new_tokens)
