"""The verifier job: policy -> sampled solutions -> labels -> ORM and PRMs (ALGORITHMS.md 3-5).

Stages, each resumable after a kill (a finished stage leaves its file; the long ones resume
mid-way from their checkpoint, chunk or round):
  1. policy: SFT on the task's gold rationales (`sft.*` bindings) in workdir/policy, unless
     `policy_workdir` names a trained one; with `large_model` (the ModelConfig fields that
     differ from the policy's, e.g. ~4x the parameters), also a policy of that shape (same
     data and steps) in workdir/policy_large, for the test-time-compute-against-model-size
     comparison;
  2. solutions: `samples_per_problem` samples (T = `temperature`) of `num_problems` training
     problems, labeled by the checker: outcome and exact step labels (solutions/);
  3. Monte-Carlo step labels (Math-Shepherd) from the policy as completer, when a verifier uses
     them, and their agreement with the exact labels (label_agreement.json);
  4. one verifier per name in `verifiers` (verifiers.training.SPECS: orm, prm, prm_mc,
     prm_mc_soft, prm_active), each in workdir/verifiers/<name>, from the policy's weights or
     from scratch; prm_active labels only `active_budget` of the solutions, chosen over
     1 + `active_rounds` rounds by active learning (verifiers.active).
Held-out evaluation and search: `python -m jaxrl_reason.search --workdir=<same dir>`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
from collections.abc import Callable, Sequence
from typing import Literal

import gin
import jax

from jaxrl_reason import common, files, rng, rollouts
from jaxrl_reason.data.tasks import Problem, Task
from jaxrl_reason.errors import UserError, require, typed
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.sft import loop as sft
from jaxrl_reason.training.checkpoints import read_params
from jaxrl_reason.verifiers import labels, montecarlo, training
from jaxrl_reason.verifiers.scoring import VerifierMeta
from jaxrl_reason.verifiers.solutions import Solution, from_rollouts, step_delimiters


@dataclasses.dataclass
class Policy:
    setup: common.Setup
    params: object
    directory: str


def large_model_config(overrides: dict) -> Callable[..., ModelConfig]:
    """The large twin's config: the policy's ModelConfig with `overrides`
    (`train_verifier.large_model`), validated as any ModelConfig."""
    require(isinstance(overrides, dict) and bool(overrides), "train_verifier.large_model",
            overrides, "must be a dict of ModelConfig fields, e.g. {'d_model': 128}")
    return lambda vocab_size: dataclasses.replace(ModelConfig(vocab_size=vocab_size),
                                                  **overrides)


def policy(workdir: str, policy_workdir: str | None = None, large: dict | None = None,
           train: bool = True) -> Policy:
    """The job's policy, built from the gin config and trained by the sft job in
    workdir/policy if it is not yet (or read from `policy_workdir`, whose config.gin gives the
    model and tokenizer this config does not bind); with `large` (ModelConfig overrides), its
    large twin in workdir/policy_large, whose shape is read back from its model.json."""
    directory = os.path.join(workdir, "policy_large") if large is not None else (
        policy_workdir or os.path.join(workdir, "policy"))
    record = files.path(directory) / "model.json"
    if record.exists() and large is not None:
        model = functools.partial(ModelConfig, **{
            k: v for k, v in files.read_json(record)["model"].items() if k != "vocab_size"})
    else:
        model = large_model_config(large) if large is not None else None
    if policy_workdir and large is None:
        common.inherit_model(policy_workdir)
    setup = common.build(model=model) if model else common.build()
    if not record.exists():
        if policy_workdir and large is None:
            if not (files.path(directory) / "checkpoints").exists():
                raise UserError(f"train_verifier.policy_workdir={policy_workdir!r} holds "
                                f"no checkpoints/ (train it with python -m jaxrl_reason.sft)")
        elif train:
            result = sft.sft(directory, model=model)
            files.write_json(record, {"model": dataclasses.asdict(setup.model_cfg),
                                      "params": setup.model_cfg.num_params(), **result})
        else:
            raise UserError(f"no trained policy in {directory}: run "
                            f"python -m jaxrl_reason.train_verifier on {workdir} first")
    params, _ = read_params(files.path(directory) / "checkpoints",
                            setup.trainer.abstract_state["params"])
    return Policy(setup, params, directory)


def sample_solutions(
    directory: str,
    pol: Policy,
    task: Task,
    problems: Sequence[Problem],
    cfg: SamplingConfig,
    key: jax.Array,
    chunk_rows: int = 1024,
) -> list[Solution]:
    """cfg.n checked, labeled samples per problem (problem-major), sampled in chunks that are
    saved as directory/chunk_NNNN.jsonl: a killed run resamples only the chunk it was in.
    Chunk c draws with fold_in(key, c)."""
    per_chunk = max(1, chunk_rows // cfg.n)
    delimiters = step_delimiters(pol.setup.tok)
    out: list[Solution] = []
    starts = range(0, len(problems), per_chunk)
    bar = common.progress(len(starts), files.path(directory).name)
    for c, start in enumerate(starts):
        path = files.path(directory) / f"chunk_{c:04d}.jsonl"
        if not path.exists():
            part = problems[start : start + per_chunk]
            results = rollouts.sample_and_check(pol.setup.sampler, pol.params, task, pol.setup.tok,
                                          part, cfg, jax.random.fold_in(key, c),
                                          chunk=per_chunk * cfg.n)
            index = [start + i // cfg.n for i in range(len(results))]
            files.write_jsonl(path, [s.to_json() for s in from_rollouts(
                results, index, pol.setup.tok, delimiters)])
        out += [Solution.from_json(r) for r in files.read_jsonl(path)]
        bar.update()
    bar.close()
    return out


def monte_carlo_labels(
    path: str,
    pol: Policy,
    task: Task,
    problems: Sequence[Problem],
    solutions: list[Solution],
    k: int,
    cfg: SamplingConfig,
    key: jax.Array,
) -> int:
    """Fills solutions' mc_hard / mc_soft round by round (state saved after each round to
    `path`); returns the tokens the completer generated."""
    state = montecarlo.MonteCarloState.empty(solutions)
    if files.path(path).exists():
        state = montecarlo.MonteCarloState(**files.read_json(path))
    if not state.done(solutions):
        pol.setup.sampler.load(pol.params)
    bar = common.progress(max(len(s.step_ends) for s in solutions), "monte_carlo", "step",
                   state.next_step)
    while not state.done(solutions):
        montecarlo.label_round(pol.setup.sampler, task, pol.setup.tok, problems, solutions,
                               state, k, cfg, jax.random.fold_in(key, state.next_step))
        files.write_json(path, dataclasses.asdict(state))
        bar.update()
    bar.close()
    for s, hard, soft in zip(solutions, state.hard, state.soft, strict=True):
        s.mc_hard, s.mc_soft = tuple(hard), tuple(soft)
    return state.tokens


def train_problems(task: Task, seed: int, count: int) -> list[Problem]:
    """The verifier's training problems: the train split, from a stream of its own."""
    return list(itertools.islice(task.problems("train", seed + 1), count))


@gin.configurable(denylist=["workdir"])
@typed
def train_verifier(
    workdir: str,
    task: Task = gin.REQUIRED,
    policy_workdir: str | None = None,
    large_model: dict | None = None,
    num_problems: int = 400,
    samples_per_problem: int = 16,
    temperature: float = 0.7,
    max_new_tokens: int = 96,
    mc_samples: int = 4,
    mc_temperature: float = 0.7,
    verifiers: tuple[str, ...] = ("orm", "prm", "prm_mc"),
    init: Literal["policy", "scratch"] = "policy",
    verifier_model: dict | None = None,
    verifier_optimizer: dict | None = None,
    aggregate: Literal["product", "min", "last"] = "product",
    loss: Literal["verifier_bce", "verifier_mse"] = "verifier_bce",
    lm_weight: float = 0.0,
    steps: int = 300,
    active_rounds: int = 2,
    active_budget: float = 0.5,
    batch_size: int = 32,
    max_len: int = 128,
    seed: int = 0,
    ckpt_every: int = 100,
    log_every: int = 50,
) -> dict:
    """Runs (or resumes) every stage in `workdir`; returns (and prints) the summary.

    The second models are explicit: `large_model` (ModelConfig fields that differ from the
    policy's; None: no large twin), `verifier_model` (for `init="scratch"`: fields that differ
    from the policy's), `verifier_optimizer` (make_optimizer arguments that differ from the
    policy's), `lm_weight` (the verifier's joint LM loss, verifiers.losses)."""
    for name, value in (("num_problems", num_problems), ("samples_per_problem",
                        samples_per_problem), ("mc_samples", mc_samples),
                        ("batch_size", batch_size)):
        require(value >= 1, f"train_verifier.{name}", value, "must be >= 1")
    unknown = [v for v in verifiers if v not in training.SPECS]
    require(not unknown and len(set(verifiers)) == len(verifiers), "train_verifier.verifiers",
            verifiers, f"must be distinct names from {sorted(training.SPECS)}")
    monte_carlo = [v for v in verifiers if training.SPECS[v].labels.startswith("mc")]
    require(aggregate != "last" or not monte_carlo, "train_verifier.aggregate", aggregate,
            f"cannot be 'last' with Monte-Carlo labels ({monte_carlo}): they stop at the first "
            "wrong step, so no wrong answer line is labeled; use exact labels or product/min")
    timer = common.Timer(workdir)
    with timer.stage("policy"):
        pol = policy(workdir, policy_workdir)
    if large_model is not None:
        with timer.stage("policy_large"):
            policy(workdir, large=large_model)
    problems = train_problems(task, seed, num_problems)
    with timer.stage("solutions"):
        sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                  n=samples_per_problem)
        solutions = sample_solutions(os.path.join(workdir, "solutions"), pol, task, problems,
                                     sampling, rng.key(seed, "solutions"))
    summary: dict = {"solutions": len(solutions),
                     "solution_accuracy": sum(s.correct for s in solutions) / len(solutions)}
    if any(training.SPECS[v].labels.startswith("mc") for v in verifiers):
        with timer.stage("monte_carlo"):
            cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=mc_temperature)
            summary["mc_tokens"] = monte_carlo_labels(
                os.path.join(workdir, "mc_labels.json"), pol, task, problems, solutions,
                mc_samples, cfg, rng.key(seed, "monte_carlo"))
        if all(s.exact is not None for s in solutions):
            agreement = labels.label_agreement([s.exact for s in solutions],
                                               [s.mc_hard for s in solutions],
                                               [s.mc_soft for s in solutions])
            files.write_json(os.path.join(workdir, "label_agreement.json"), agreement)
            summary["label_agreement"] = agreement
    tok = pol.setup.tok
    for name in verifiers:
        spec = training.SPECS[name]
        directory = os.path.join(workdir, "verifiers", name)
        with timer.stage(f"verifier_{name}"):
            cfg = training.verifier_model(pol.setup.model_cfg, init, verifier_model or {})
            trainer = training.make_trainer(cfg, pol.setup.trainer.mesh, loss, lm_weight,
                                            verifier_optimizer or {})
            meta = VerifierMeta(spec.kind, loss, spec.labels, dataclasses.asdict(cfg),
                                step_delimiters(tok), (tok.eos_id,), tok.pad_id, aggregate,
                                every_step=aggregate == "last")
            active = dict(rounds=active_rounds, budget=active_budget) if spec.active else {}
            training.train(directory, trainer, meta, solutions,
                           _initializer(trainer, pol.directory, init, seed), steps, batch_size,
                           max_len, seed, ckpt_every=ckpt_every, log_every=log_every, **active)
    summary["seconds"] = timer.seconds
    files.write_json(os.path.join(workdir, "summary.json"), summary)
    print(json.dumps(summary))
    return summary


def _initializer(trainer, policy_dir: str, init: str, seed: int) -> Callable[[], object]:
    """The verifier's starting params: the policy's, with fresh value-head weights filled in
    (`restore_params(fill=...)`), or all fresh."""

    def make():
        fresh = trainer.init_params(seed)
        if init == "scratch":
            return fresh
        return read_params(files.path(policy_dir) / "checkpoints",
                           trainer.abstract_state["params"], fill=fresh)[0]

    return make
