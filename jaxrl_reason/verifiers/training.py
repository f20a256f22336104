"""Training one verifier: its own model (value head on), trainer, shardings and workdir.

The verifier starts from the policy's weights (its checkpoint restored with a fresh value head
filled in) or from scratch, and fits value targets (`verifiers.targets`) with a verifier loss
(`verifiers.losses`). Its directory holds checkpoints/, metrics.jsonl and, once training is
done, verifier.json (what `scoring.load_verifier` reads): a killed run resumes from the last
checkpoint, a finished one is loaded instead of trained.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import numpy as np
from jax.sharding import Mesh

from jaxrl_reason import files
from jaxrl_reason.errors import require
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.training.checkpoints import Checkpointer
from jaxrl_reason.training.loop import fit
from jaxrl_reason.training.metrics import MetricWriter
from jaxrl_reason.training.optim import make_optimizer
from jaxrl_reason.training.trainer import Trainer
from jaxrl_reason.verifiers import losses
from jaxrl_reason.verifiers.active import convincing_wrong_first
from jaxrl_reason.verifiers.scoring import META_FILE, Verifier, VerifierMeta, load_verifier
from jaxrl_reason.verifiers.solutions import Solution
from jaxrl_reason.verifiers.targets import TargetStream, targets_for


@dataclasses.dataclass(frozen=True)
class VerifierSpec:
    kind: str  # "orm" or "prm"
    labels: str  # "outcome" (ORM) or "exact" / "mc_hard" / "mc_soft" (PRM)
    active: bool = False  # trained by active learning on part of the solutions


SPECS = {
    "orm": VerifierSpec("orm", "outcome"),
    "prm": VerifierSpec("prm", "exact"),
    "prm_mc": VerifierSpec("prm", "mc_hard"),
    "prm_mc_soft": VerifierSpec("prm", "mc_soft"),
    "prm_active": VerifierSpec("prm", "exact", active=True),
}


def verifier_model(policy_cfg: ModelConfig, init: str, overrides: dict) -> ModelConfig:
    """The verifier's config: the policy's with a value head, and for `init="scratch"` the
    fields of `overrides` (`train_verifier.verifier_model`); a verifier that starts from the
    policy's weights has the policy's shape."""
    require(init == "scratch" or not overrides, "train_verifier.verifier_model", overrides,
            "must be empty with init='policy' (the verifier starts from the policy's weights)")
    return dataclasses.replace(policy_cfg, value_head=True, **overrides)


def make_trainer(cfg: ModelConfig, mesh: Mesh, loss: str, lm_weight: float,
                 optimizer: dict) -> Trainer:
    """The verifier's trainer: `loss` by name with its LM weight, and make_optimizer with the
    arguments of `optimizer` (`train_verifier.verifier_optimizer`) over the policy's."""
    loss_fn = functools.partial(losses.verifier_loss, kind=losses.KINDS[loss],
                                lm_weight=lm_weight)
    return Trainer(cfg, make_optimizer(**optimizer), mesh, loss=loss_fn)


def is_trained(directory: str) -> bool:
    return (files.path(directory) / META_FILE).exists()


def train(
    directory: str,
    trainer: Trainer,
    meta: VerifierMeta,
    solutions: Sequence[Solution],
    init_params: Callable[[], object],
    steps: int,
    batch_size: int,
    max_len: int,
    seed: int,
    rounds: int = 0,
    budget: float = 1.0,
    wrong_fraction: float = 0.8,
    ckpt_every: int = 100,
    log_every: int = 50,
) -> Verifier:
    """Fits (or resumes, or loads when done) one verifier in `directory` on the targets of
    `solutions` (`meta.kind`, `meta.labels`). `init_params()` gives its starting parameters,
    called only when there is no checkpoint yet.

    Active learning with `rounds` > 0: a `budget` fraction of the solutions is labeled, in
    1 + rounds equal parts; part 0 at random, each later part chosen by the verifier trained so
    far (`active.convincing_wrong_first`); each round fine-tunes on every part chosen so far
    for steps // (1 + rounds) steps, with its own warmup and decay. rounds = 0, budget = 1:
    plain training on everything."""
    require(steps >= 1, "train_verifier.steps", steps, "must be >= 1")
    require(0 < budget <= 1, "train_verifier.active_budget", budget, "must be in (0, 1]")
    if is_trained(directory):
        return load_verifier(directory, mesh=trainer.mesh)
    phase_steps = max(1, steps // (rounds + 1))
    per_round = max(1, int(len(solutions) * budget / (rounds + 1)))
    picks_path = files.path(directory) / "active_rounds.json"
    picks: list[list[int]] = files.read_json(picks_path) if picks_path.exists() else []
    ckpt = Checkpointer(files.path(directory) / "checkpoints")
    restored = ckpt.restore(trainer.abstract_state)
    first, data_state = 0, None
    if restored is None:
        params = init_params()
        state = trainer.reset_optimizer({"params": params}, params=params)
    else:
        state, extra = restored
        first, data_state = extra.get("round", 0), extra["data"]
        if int(state["step"]) >= phase_steps:  # that round was finished
            first, data_state = first + 1, None
            if first <= rounds:
                state = trainer.reset_optimizer(state)
    writer = MetricWriter(directory, resume_step=ckpt.latest_step())
    name = files.path(directory).name
    for r in range(first, rounds + 1):
        if len(picks) <= r:
            picks.append(_pick(trainer, meta, state, solutions, picks, per_round,
                               wrong_fraction, seed + r))
            files.write_json(picks_path, picks)
        chosen = [solutions[i] for part in picks[: r + 1] for i in part]
        data = TargetStream(targets_for(chosen, meta.kind, meta.labels, meta.every_step),
                            batch_size, max_len,
                            meta.pad_id, seed + r)
        if data_state is not None:
            data.set_state(data_state)
            data_state = None
        state = fit(trainer, state, data, phase_steps, ckpt=ckpt, writer=writer,
                    step_offset=r * phase_steps, extra={"round": r}, ckpt_every=ckpt_every,
                    log_every=log_every, desc=name if not rounds else f"{name} round {r}")
        ckpt.wait()
        if r < rounds:
            state = trainer.reset_optimizer(state)
    ckpt.close()
    writer.close()
    meta.write(directory)
    return Verifier(meta, state["params"], trainer.mesh)


def _pick(trainer, meta, state, solutions, picks, count, wrong_fraction, seed) -> list[int]:
    """The next round's solutions: at random first, then convincing wrong answers first."""
    taken = {i for part in picks for i in part}
    rest = [i for i in range(len(solutions)) if i not in taken]
    if not picks:
        order = np.random.default_rng(seed).permutation(len(rest))
        return [rest[j] for j in order[:count]]
    scores = Verifier(meta, state["params"], trainer.mesh).outcome_scores(
        [solutions[i].example for i in rest])
    chosen = convincing_wrong_first(scores, [solutions[i].correct for i in rest], count,
                                    wrong_fraction)
    return [rest[j] for j in chosen]
