"""One RL step after sampling: the typed batch (`rl.batch.RLBatch`), pi_old / reference /
value passes, the advantages, and `num_iterations` passes of clipped policy-gradient updates
over mini-batches.

pi_old is recomputed by the trainer (`Trainer.logprobs` at the sampling temperature) from the
exact sampled ids; the sampler's own log-probs are kept only to report their gap. Rows come in
a fixed number (prompts_per_step x group_size, empty rows filling what dynamic sampling could
not), so each shape compiles once. The learner's hyperparameters are `LearnerConfig`
(`rl_learner.*` in gin, built once by the job); the loss is the trainer's `RLLoss`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal

import gin
import jax
import numpy as np

from jaxrl_reason import parallel
from jaxrl_reason.errors import check_dataclass, require
from jaxrl_reason.rl import advantages as adv_lib
from jaxrl_reason.rl import kl as kl_lib
from jaxrl_reason.rl.batch import RLBatch
from jaxrl_reason.rl.objective import RLLoss
from jaxrl_reason.rl.rewards import Combined
from jaxrl_reason.rollouts import Rollouts
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.training.trainer import State, Trainer


@gin.configurable("rl_learner")
@dataclasses.dataclass(frozen=True)
class LearnerConfig:
    """prompts_per_step (B) x group_size (G) rollouts per step at `temperature`; mu =
    `num_iterations` passes over `mini_batches` mini-batches each. `rewards`: {name: weight}
    (rl.rewards.REWARDS), combined by `reward_combine`. `kl_in_reward` > 0 subtracts
    kl_in_reward * KL (estimator `kl_reward_estimator`) from every token's reward; the KL loss
    term is RLLoss.kl_coef. `mask_truncated`: completions cut at max_new_tokens train nothing
    (DAPO's overlong filtering). It is off by default, and the default rewards include
    `format` (-1 for a completion that did not stop or whose answer does not parse): with the
    mask on and no penalty, not finishing costs nothing and the policy learns to stop
    answering. Dynamic sampling keeps groups whose rewards differ, up to
    `max_sampling_rounds` sampler calls per step. ProRL reference resets: after
    `reset_patience` evaluations without a better validation metric and/or every `reset_every`
    steps (0 = never); `soft_sync_rate` a every `soft_sync_every` steps: ref <- a pi + (1-a) ref.
    """

    prompts_per_step: int = 16
    group_size: int = 8
    temperature: float = 1.0
    max_new_tokens: int = 80
    num_iterations: int = 1
    mini_batches: int = 1
    advantage: str = "grpo"
    rewards: dict = dataclasses.field(default_factory=lambda: {"outcome": 1.0, "format": 1.0})
    reward_combine: Literal["sum", "normalize_each"] = "sum"
    kl_in_reward: float = 0.0
    kl_reward_estimator: str = "k1"
    mask_truncated: bool = False
    dynamic_sampling: bool = False
    max_sampling_rounds: int = 4
    reset_patience: int = 0
    reset_every: int = 0
    reset_optimizer: bool = True
    soft_sync_rate: float = 0.0
    soft_sync_every: int = 0
    step_delimiter: str = "\n"
    seq_bucket: int = 32

    def __post_init__(self):
        check_dataclass(self)
        for name in ("prompts_per_step", "num_iterations", "mini_batches", "max_new_tokens",
                     "max_sampling_rounds", "seq_bucket"):
            require(getattr(self, name) >= 1, f"rl_learner.{name}", getattr(self, name),
                    "must be >= 1")
        require(self.temperature > 0, "rl_learner.temperature", self.temperature,
                "must be > 0 (RL samples; greedy rollouts have no policy gradient)")
        require(self.advantage in adv_lib.ESTIMATORS, "rl_learner.advantage", self.advantage,
                f"must be one of {sorted(adv_lib.ESTIMATORS)}")
        need = 2 if self.advantage in adv_lib.GROUPED else 1
        require(self.group_size >= need, "rl_learner.group_size", self.group_size,
                f"must be >= {need} for the {self.advantage} estimator")
        require(isinstance(self.rewards, dict), "rl_learner.rewards", self.rewards,
                "must be a dict {reward name: weight}")
        kl_lib.get(self.kl_reward_estimator)
        require(self.kl_in_reward >= 0, "rl_learner.kl_in_reward", self.kl_in_reward,
                "must be >= 0")
        require(self.soft_sync_rate == 0 or self.soft_sync_every >= 1,
                "rl_learner.soft_sync_every", self.soft_sync_every,
                "must be >= 1 when soft_sync_rate > 0")
        require(len(self.step_delimiter) >= 1, "rl_learner.step_delimiter", self.step_delimiter,
                "must be a non-empty string")

    @property
    def rows(self) -> int:
        return self.prompts_per_step * self.group_size

    @property
    def uses_reference(self) -> bool:
        return (self.kl_in_reward > 0 or self.reset_patience > 0 or self.reset_every > 0
                or self.soft_sync_rate > 0)

    def sampling(self) -> SamplingConfig:
        """The rollouts' sampling config. pi_old and the loss's pi are the full distribution at
        `temperature`, so a truncated sampler (top-k, top-p; gin's SamplingConfig bindings
        reach this config) would silently break the ratio: it is refused."""
        cfg = SamplingConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                             n=self.group_size)
        require(cfg.top_k == 0 and cfg.top_p == 1.0, "SamplingConfig.top_k / top_p",
                (cfg.top_k, cfg.top_p), "must stay off (0, 1.0) in RL: the policy loss and "
                "pi_old use the full distribution at rl_learner.temperature")
        return cfg


def shift_values(values: np.ndarray) -> np.ndarray:
    """Value-head outputs after reading token t -> the value of the state token t is drawn
    from (after reading token t-1), aligned with tokens."""
    return np.pad(values[:, :-1], ((0, 0), (1, 0)))


class Learner:
    """The step of a trainer whose loss is an `RLLoss` (`common.build(loss=RLLoss(...))`)."""

    def __init__(self, cfg: LearnerConfig, trainer: Trainer, pad_id: int):
        self.cfg, self.trainer, self.pad_id = cfg, trainer, pad_id
        self.sampling = cfg.sampling()
        require(isinstance(trainer.loss, RLLoss), "Trainer.loss", trainer.loss,
                "must be an RLLoss for RL (common.build(loss=RLLoss()))")
        self.loss: RLLoss = trainer.loss
        needs_ref = cfg.uses_reference or self.loss.kl_coef > 0
        require(trainer.reference or not needs_ref, "Trainer.reference", trainer.reference,
                "must be True: the KL term, the KL reward, resets and syncs use the reference")
        gae = cfg.advantage == "gae"
        require(not gae or trainer.model_cfg.value_head, "ModelConfig.value_head",
                trainer.model_cfg.value_head, "must be True for the gae estimator (its critic)")
        require(not gae or self.loss.value_coef > 0, "RLLoss.value_coef", self.loss.value_coef,
                "must be > 0 for the gae estimator (else the critic never learns)")
        split = cfg.mini_batches * trainer.grad_accum * parallel.batch_divisor(trainer.mesh)
        require(cfg.rows % split == 0, "rl_learner.mini_batches", cfg.mini_batches,
                f"x Trainer.grad_accum ({trainer.grad_accum}) x the data*fsdp size "
                f"({parallel.batch_divisor(trainer.mesh)}) must divide the "
                f"{cfg.rows} rows (prompts_per_step x group_size)")

    @property
    def updates_per_step(self) -> int:
        return self.cfg.num_iterations * self.cfg.mini_batches

    def batch(self, rollouts: Rollouts, combined: Combined) -> RLBatch:
        """The rollouts and their combined rewards as the step's fixed-shape batch."""
        cfg = self.cfg
        return RLBatch.from_rollouts(
            rollouts, combined.outcome, combined.steps, self.pad_id, cfg.rows, cfg.seq_bucket,
            self.trainer.model_cfg.max_len, self.sampling.temperature, cfg.max_new_tokens,
            cfg.mini_batches)

    # ---- one step ---------------------------------------------------------------------------
    def step(self, state: State, rollouts: Rollouts, combined: Combined, rates: np.ndarray,
             step: int, seed: int) -> tuple[State, dict[str, float]]:
        """Advantages and the updates of RL step `step` (1-based); `rates` is the learning
        rate of every update of the run. Returns the new state and the step's metrics."""
        cfg, trainer = self.cfg, self.trainer
        batch = self.batch(rollouts, combined)
        n, mask = batch.real_rows, batch.completion_mask
        inputs = batch.model_inputs()
        timings = {}
        t0 = time.perf_counter()
        temperature = batch.temperature
        old = self.per_chunk(lambda b: trainer.logprobs(state["params"], b, temperature), inputs)
        ref = values = None
        if self.loss.kl_coef > 0 or cfg.kl_in_reward > 0:
            ref = self.per_chunk(
                lambda b: trainer.logprobs(state["ref_params"], b, temperature), inputs)
        if cfg.advantage == "gae":
            values = (shift_values(self.per_chunk(
                lambda b: trainer.values(state["params"], b), inputs)) * mask).astype(np.float32)
        timings["time/logprobs"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        token_rewards = None
        if cfg.kl_in_reward > 0:
            token_rewards = -cfg.kl_in_reward * np.asarray(
                kl_lib.get(cfg.kl_reward_estimator)(old, ref)) * mask
        batch = dataclasses.replace(batch, old_logprobs=old, ref_logprobs=ref,
                                    old_values=values, token_rewards=token_rewards)
        est = adv_lib.estimate(cfg.advantage, batch.rows(slice(0, n)))
        pad = lambda x: np.concatenate(  # noqa: E731
            [x, np.zeros((cfg.rows - n, x.shape[1]), x.dtype)]).astype(np.float32)
        loss_mask = mask.copy()
        if cfg.mask_truncated:
            loss_mask *= batch.finished[:, None]
        batch = dataclasses.replace(
            batch, loss_mask=loss_mask, advantages=pad(est.advantages),
            returns=None if values is None else pad(est.returns))
        timings["time/advantages"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        state, updates = self.update(state, batch.loss_view(), rates, step, seed)
        timings["time/update"] = time.perf_counter() - t0
        return state, {**timings, **updates, **batch_metrics(batch, rollouts)}

    def per_chunk(self, fn, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """fn over the rows in as many chunks as a step has micro-batches (mini_batches x
        grad_accum), so no pass holds more [rows, T, vocab] logits than an update does."""
        chunks = self.cfg.mini_batches * self.trainer.grad_accum
        size = self.cfg.rows // chunks
        return np.concatenate([
            np.asarray(jax.device_get(fn({k: v[i: i + size] for k, v in inputs.items()})))
            for i in range(0, self.cfg.rows, size)])

    def update(self, state: State, batch: RLBatch, rates: np.ndarray, step: int,
               seed: int) -> tuple[State, dict[str, float]]:
        """mu passes over a fresh permutation of the rows, cut into mini-batches; a mini-batch
        with no trainable token is skipped (its update would only move Adam's momentum)."""
        cfg = self.cfg
        rng = np.random.default_rng([seed, step])
        done = []
        first = (step - 1) * self.updates_per_step
        for it in range(cfg.num_iterations):
            perm = rng.permutation(cfg.rows)
            for m, rows in enumerate(np.split(perm, cfg.mini_batches)):
                mb = batch.rows(np.sort(rows))
                if mb.loss_mask.sum() == 0:
                    continue
                index = min(first + it * cfg.mini_batches + m, len(rates) - 1)
                state, metrics = self.trainer.train_step(state, mb, float(rates[index]))
                done.append(metrics)
        return state, average_updates(jax.device_get(done))


def average_updates(metrics: list[dict]) -> dict[str, float]:
    """Each update metric averaged over the step's updates (`*_max`: the maximum)."""
    if not metrics:
        return {"updates": 0}
    out = {"updates": len(metrics)}
    for k in metrics[0]:
        vals = [float(m[k]) for m in metrics]
        out[k if k in ("loss", "lr", "grad_norm", "count") else f"train/{k}"] = (
            max(vals) if k.endswith("_max") else float(np.mean(vals)))
    return out


def batch_metrics(batch: RLBatch, rollouts: Rollouts) -> dict[str, float]:
    """Sampler-vs-trainer log-prob gap, advantage stats, response lengths."""
    mask = batch.completion_mask > 0
    gap = np.abs(batch.sampler_logprobs - batch.old_logprobs)[mask]
    train = batch.loss_mask > 0
    adv = batch.advantages[train] if train.any() else np.zeros(1)
    lengths = np.array([len(c) for c in rollouts.completion_ids]) if len(rollouts) else \
        np.zeros(1)
    return {
        "logprob_gap_mean": float(gap.mean()) if gap.size else 0.0,
        "logprob_gap_max": float(gap.max()) if gap.size else 0.0,
        "adv_mean": float(adv.mean()), "adv_std": float(adv.std()),
        "adv_min": float(adv.min()), "adv_max": float(adv.max()),
        "response_len_mean": float(lengths.mean()), "response_len_max": float(lengths.max()),
        "truncated_frac": float(1 - rollouts.finished.mean()) if len(rollouts) else 0.0,
        "train_tokens": float(train.sum()),
    }
