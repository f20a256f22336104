"""RL from a supervised policy: GRPO / Dr. GRPO / RLOO / REINFORCE++ / PPO with process rewards
(docs/rl.md).

Each step: sample G completions for each of B training prompts (the sampler, sharded),
score them with the configured rewards, keep informative groups (dynamic sampling, optional),
then `rl.learner.Learner.step`: pi_old / reference / value passes, advantages, mu passes of
clipped updates over mini-batches. Every `eval_every` steps: greedy accuracy and sampled
pass@1 on the validation split, which also drives ProRL's reference resets; the test split is
read at step 0 and after the last step only, for the reported figures.

Checkpoints (every `ckpt_every` steps) hold the policy, the reference, the optimizer, and as
JSON the step, the position in the problem stream and the reset schedule (history included).
Every random draw is keyed by (seed, step, stream), so a run killed at any point and started
again on its workdir ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator

import gin
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxrl_reason import cli, common, files, rng
from jaxrl_reason.data.batching import encode_prompt
from jaxrl_reason.data.tasks import Problem, Task
from jaxrl_reason.errors import require, typed
from jaxrl_reason.rl import dynamic, plots, reference, validation
from jaxrl_reason.rl import rewards as rewards_lib
from jaxrl_reason.rl.learner import Learner, LearnerConfig
from jaxrl_reason.rl.objective import RLLoss
from jaxrl_reason.rollouts import Rollouts, from_samples
from jaxrl_reason.training.checkpoints import Checkpointer, read_params
from jaxrl_reason.training.metrics import MetricWriter
from jaxrl_reason.training.trainer import State

# Per-step metrics that measure wall time: they differ between identical runs.
TIMING_PREFIXES = ("time", "rollout_tokens_per_s", "sample_share")


class ProblemStream:
    """The training problems in order; its state is how many were drawn."""

    def __init__(self, task: Task, seed: int, used: int = 0):
        self.task, self.seed, self.used = task, seed, used
        self._it: Iterator[Problem] = itertools.islice(task.problems("train", seed), used, None)

    def take(self, n: int) -> list[Problem]:
        out = list(itertools.islice(self._it, n))
        self.used += len(out)
        return out


def start_state(s: common.Setup, policy_dir: str | None, policy_step: int | None,
                seed: int) -> State:
    """The SFT policy with a reference equal to it and fresh optimizer moments; without
    `policy_dir`, the imported Hugging Face checkpoint (`build.pretrained`). A value head the
    checkpoint lacks starts at ZERO on both paths, so PPO's first advantages are the rewards'
    own, not whitened noise of a random critic."""
    if policy_dir is None:
        require(s.pretrained is not None, "rl.policy_dir", policy_dir,
                "must name the SFT workdir to start from (or bind build.pretrained)")
        return s.init(seed)
    ckpts = files.path(policy_dir) / "checkpoints"
    require(ckpts.is_dir() and any(d.name.isdigit() for d in ckpts.iterdir()), "rl.policy_dir",
            policy_dir, "holds no checkpoint: train the SFT policy there first (for the "
            "default: python -m jaxrl_reason.sft --gin_file=configs/rl_addition_sft.gin "
            "--workdir=runs/sft_add)")
    fill = (jax.tree.map(jnp.zeros_like, s.trainer.init_params(seed))
            if s.model_cfg.value_head else None)
    params, _ = read_params(os.path.join(policy_dir, "checkpoints"),
                            s.trainer.abstract_state["params"], policy_step, fill)
    return s.trainer.reset_optimizer({"params": params}, params)


@gin.configurable(denylist=["workdir"])
@typed
def rl(
    workdir: str,
    task: Task = gin.REQUIRED,
    policy_dir: str | None = None,
    policy_step: int | None = None,
    steps: int = 100,
    seed: int = 0,
    eval_every: int = 10,
    eval_problems: int = 200,
    eval_samples: int = 8,
    eval_seed: int = 1,
    eval_max_new_tokens: int | None = None,
    pass_k_every: int = 0,
    pass_k_problems: int = 32,
    pass_ks: tuple[int, ...] = (1, 4, 16, 64),
    reset_metric: str = "acc",
    test_problems: int = 200,
    test_samples: int = 16,
    test_ks: tuple[int, ...] = (1, 4, 16),
    ckpt_every: int = 10,
) -> dict[str, float]:
    """Runs (or resumes) `steps` RL steps from the SFT run in `policy_dir` (None: from the
    imported `build.pretrained` checkpoint); returns the test report of the final policy.
    The model and tokenizer are the SFT run's (its config.gin), except what this config binds.

    Every `eval_every` steps the VALIDATION split (disjoint from train and test) gives greedy
    accuracy `acc` and sampled `pass@1` from `eval_samples` completions of each of
    `eval_problems` problems; every `pass_k_every` steps (0 = at every evaluation) pass@k from
    max(pass_ks) samples of `pass_k_problems` of them. These drive every decision of the run
    (ProRL's resets read `reset_metric`). The TEST split is read twice, at step 0 and after the
    last step, only to report: `test/acc`, `test/pass@k` (k in `test_ks`, from `test_samples`
    completions per problem at the rollout temperature), each with its standard error."""
    for name, value in (("steps", steps), ("eval_every", eval_every),
                        ("eval_problems", eval_problems), ("eval_samples", eval_samples),
                        ("test_problems", test_problems), ("test_samples", test_samples),
                        ("ckpt_every", ckpt_every)):
        require(value >= 1, f"rl.{name}", value, "must be >= 1")
    require(bool(test_ks) and 1 <= min(test_ks) and max(test_ks) <= test_samples,
            "rl.test_ks", test_ks, f"must be ks in [1, rl.test_samples={test_samples}]")
    require(pass_k_every >= 0, "rl.pass_k_every", pass_k_every, "must be >= 0")
    require(bool(pass_ks) and min(pass_ks) >= 1, "rl.pass_ks", pass_ks, "must be ks >= 1")
    if policy_dir is not None and common.inherit_model(policy_dir):
        cli.write_operative_config(workdir, gin.config_str())  # the shape, for a killed run
    s = common.build(loss=RLLoss())
    cfg = LearnerConfig()
    learner = Learner(cfg, s.trainer, s.tok.pad_id)
    rewards = rewards_lib.build(cfg.rewards)
    delimiters = tuple(s.tok.encode(cfg.step_delimiter))
    valid = list(itertools.islice(task.problems("valid", eval_seed), eval_problems))
    test = list(itertools.islice(task.problems("test", eval_seed), test_problems))
    require(len(valid) >= 1, "rl.eval_problems", eval_problems, "found no validation problems")
    require(len(test) >= 1, "rl.test_problems", test_problems, "found no test problems")
    eval_tokens = eval_max_new_tokens or cfg.max_new_tokens
    pass_every = pass_k_every or eval_every
    metric_names = {"acc", "pass@1", *(f"pass@{k}" for k in pass_ks)}
    require(reset_metric in metric_names, "rl.reset_metric", reset_metric,
            f"must be one of {sorted(metric_names)}")
    require(reset_metric in ("acc", "pass@1") or pass_every == eval_every, "rl.reset_metric",
            reset_metric, "must be 'acc' or 'pass@1' unless pass@k runs at every evaluation")

    large_ks = tuple(k for k in pass_ks if k > 1)

    def validate(params, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        out = validation.policy_report(s.sampler, params, task, s.tok, valid, eval_tokens,
                                       cfg.temperature, eval_samples, (1,),
                                       rng.key(seed, step, "valid"))
        if large_ks and (step % pass_every == 0 or step == steps):  # pass@1 is the above's
            out.update(validation.sampled_pass_at_k(
                s.sampler, params, task, s.tok, valid[:pass_k_problems], large_ks,
                cfg.temperature, eval_tokens, rng.key(seed, step, "pass_k")))
        return {**out, "time/eval": time.perf_counter() - t0}

    def report(params) -> dict[str, float]:
        """The test split, read only for the reported figures."""
        out = validation.policy_report(s.sampler, params, task, s.tok, test, eval_tokens,
                                       cfg.temperature, test_samples, test_ks,
                                       rng.key(eval_seed, "test"))
        return {f"test/{k}": v for k, v in out.items()}

    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    schedule = reference.ResetSchedule(cfg.reset_patience, cfg.reset_every)
    restored = ckpt.restore(s.trainer.abstract_state)
    if restored is not None:
        state, extra = restored
        start, stream = extra["step"], ProblemStream(task, seed, extra["problems"])
        schedule.set_state(extra["resets"])
    else:
        state, start, stream = start_state(s, policy_dir, policy_step, seed), 0, \
            ProblemStream(task, seed)
    writer = MetricWriter(workdir, resume_step=start if restored is not None else None)
    if start == 0:
        writer.write(0, {**validate(state["params"], 0), **report(state["params"])})
    rates = s.trainer.optimizer.learning_rates(steps * learner.updates_per_step)
    bar = tqdm(total=steps, initial=start, desc="rl", unit="step", dynamic_ncols=True,
               disable=jax.process_index() != 0, mininterval=1.0)
    for step in range(start + 1, steps + 1):
        t_step = time.perf_counter()
        timers = {"time/sample": 0.0, "time/score": 0.0}
        seen: list[tuple[Rollouts, rewards_lib.Combined]] = []

        def sample(round_: int, groups: int, step=step, timers=timers, seen=seen):
            problems = stream.take(groups)
            prompts = [encode_prompt(s.tok, task.prompt(p)) for p in problems]
            t0 = time.perf_counter()
            samples = s.sampler.generate(prompts, learner.sampling,
                                         rng.key(seed, step, "sample", round_))
            t1 = time.perf_counter()
            ro = from_samples(task, s.tok, problems, prompts, samples, s.sampler.stop,
                              delimiters, cfg.max_new_tokens)
            combined = rewards_lib.combine(ro, rewards, cfg.reward_combine)
            timers["time/sample"] += t1 - t0
            timers["time/score"] += time.perf_counter() - t1
            seen.append((ro, combined))
            return ro, combined

        load_s = s.sampler.load(state["params"])
        got = dynamic.collect(sample, cfg.prompts_per_step, cfg.dynamic_sampling,
                              cfg.max_sampling_rounds)
        rec: dict[str, float] = {"time/load": load_s, **timers}
        if len(got.rollouts):
            state, learned = learner.step(state, got.rollouts, got.combined, rates, step, seed)
            rec.update(learned)
        else:
            rec["updates"] = 0
        rec.update(rollout_metrics(seen, got))
        if cfg.soft_sync_rate > 0 and step % cfg.soft_sync_every == 0:
            state = reference.soft_sync(s.trainer, state, cfg.soft_sync_rate)
        if step % eval_every == 0 or step == steps:
            rec.update(validate(state["params"], step))
            schedule.observe(rec[reset_metric])
        if step == steps:
            rec.update(report(state["params"]))
        rec["reset"] = 0
        if schedule.due(step):
            state = reference.hard_reset(s.trainer, state, cfg.reset_optimizer)
            schedule.record(step)
            rec["reset"] = 1
        rec["time/step"] = time.perf_counter() - t_step
        rec["sample_share"] = rec["time/sample"] / rec["time/step"]
        rec["rollout_tokens_per_s"] = rec["rollout_tokens"] / max(rec["time/sample"], 1e-9)
        writer.write(step, rec)
        bar.set_postfix(reward=f"{rec.get('reward_mean', 0):.3f}",
                        acc=f"{rec.get('train_accuracy', 0):.3f}")
        bar.update(1)
        if step % ckpt_every == 0 or step == steps:
            ckpt.save(step, state, {"step": step, "problems": stream.used,
                                    "resets": schedule.get_state()})
    bar.close()
    ckpt.close()
    writer.close()
    plots.training_plot(writer.records, os.path.join(workdir, "rl.png"))
    first, last = (next(r for r in writer.records[::d] if "test/acc" in r) for d in (1, -1))
    final = {k: v for k, v in last.items() if k.startswith("test/")}
    print(json.dumps({"step": steps, "start": {k: first[k] for k in final}, "end": final,
                      "resets": schedule.history}))
    return final


def rollout_metrics(seen: list[tuple[Rollouts, rewards_lib.Combined]],
                    got: dynamic.Collected) -> dict[str, float]:
    """Over every rollout sampled this step (kept or not): rewards, accuracy, throughput."""
    ro = Rollouts.concat([r for r, _ in seen])
    combined = rewards_lib.Combined.concat([c for _, c in seen])
    scores = combined.scores()
    tokens = ro.tokens()
    return {
        **rewards_lib.reward_metrics(combined),
        "reward_mean": float(scores.mean()), "reward_std": float(scores.std()),
        "train_accuracy": float(np.mean([c.correct for c in ro.checks])),
        "zero_std_groups": got.groups_uniform / max(got.groups_sampled, 1),
        "groups_kept": float(len(np.unique(got.rollouts.group))),
        "sampling_rounds": float(got.rounds),
        "rollout_tokens": float(tokens),
        "completion_tokens_mean": float(tokens) / max(len(ro.checks), 1),
    }
