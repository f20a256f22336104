"""Advantage estimators, registered by name (ALGORITHMS.md section 6). Pure numpy, host side.

Every estimator reads the real rows of one `rl.batch.RLBatch` (its `mask`, `group`, `outcome`,
step rewards, optional `token_rewards` and critic `values`) and returns
`Advantages(advantages, returns)`, both [N, T] aligned with the batch's tokens (entry t
concerns token t as a target; 0 outside `mask`). Rewards arrive as EVENTS, never as text: each
row's outcome score sits at its last completion token, step rewards at their steps' last
tokens, and an optional dense per-token reward (the KL penalty, when it is a reward)
everywhere. Outcome estimators score a row by the sum of its events, as verl does.

Choices where the peers differ (documented in docs/rl.md):
- group std with ddof=1 and eps 1e-6 added to the std (verl, tunix; TRL adds 1e-4), or TRL's
  batch std (`grpo_advantage.scale = 'batch'`, still over the group's mean);
- batch whitening (reinforce_pp, reinforce_pp_baseline, gae; trr_pp per group) uses the
  unbiased masked variance and 1e-8 inside the square root (verl's `masked_whiten`);
- a group of one completion has no baseline: group estimators refuse it (`group_size >= 2`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import gin
import numpy as np

from jaxrl_reason.errors import ConfigError, UserError
from jaxrl_reason.named import Named
from jaxrl_reason.rl.batch import RLBatch


@dataclasses.dataclass
class Advantages:
    advantages: np.ndarray  # [N, T]
    returns: np.ndarray | None = None  # [N, T] value targets (gae)


Estimator = Callable[[RLBatch], Advantages]
ESTIMATORS: Named[Estimator] = Named("advantage estimator")
# Estimators that compare completions of one prompt: they need groups of two or more.
GROUPED: set[str] = set()


def register(name: str, grouped: bool = False) -> Callable[[Estimator], Estimator]:
    """Adds an estimator under `name` (`rl_learner.advantage = name` picks it); `grouped` ones
    compare the completions of one prompt, so the learner refuses groups of one for them."""
    if grouped:
        GROUPED.add(name)
    return ESTIMATORS.register(name)

GRPO_SCALES = ("group", "batch", "none")  # grpo_advantage.scale


def group_stats(values: np.ndarray, group: np.ndarray, ddof: int = 1
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, std, size) of each row's group, per row."""
    mean, std, size = np.zeros(len(values)), np.zeros(len(values)), np.zeros(len(values))
    for g in np.unique(group):
        rows = group == g
        n = int(rows.sum())
        if n <= ddof:
            raise UserError(f"a group of {n} completion(s) has no baseline: set the group "
                            "size (rl_learner.group_size) to 2 or more")
        mean[rows], std[rows], size[rows] = values[rows].mean(), values[rows].std(ddof=ddof), n
    return mean, std, size


def masked_whiten(x: np.ndarray, mask: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) over the masked entries (unbiased variance), 0 elsewhere."""
    m = mask > 0
    n = m.sum()
    if n < 2:
        return np.zeros_like(x, np.float64)
    mean = x[m].mean()
    var = x[m].var(ddof=1)
    return np.where(m, (x - mean) / np.sqrt(var + eps), 0.0)


def _per_token(per_row: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return per_row[:, None] * (mask > 0)


@register("grpo", grouped=True)
@gin.configurable("grpo_advantage")
def grpo(x: RLBatch, eps: float = 1e-6, std_ddof: int = 1, scale: str = "group"
         ) -> Advantages:
    """DeepSeekMath: A_i = (r_i - mean_group) / (std + eps), on every token of row i. `scale`
    picks the std: "group" (the group's, the default), "batch" (of every row's reward in the
    step: TRL's scale_rewards='batch', with eps = 1e-4 to match it) or "none" (no division:
    r_i - mean_group, Dr. GRPO's advantage)."""
    if scale not in GRPO_SCALES:
        raise ConfigError(f"grpo_advantage.scale={scale!r} must be one of {GRPO_SCALES}")
    r = x.scores()
    mean, std, _ = group_stats(r, x.group, std_ddof)
    if scale == "none":
        return Advantages(_per_token(r - mean, x.mask))
    if scale == "batch":
        std = np.full(len(r), r.std(ddof=std_ddof) if len(r) > std_ddof else 0.0)
    return Advantages(_per_token((r - mean) / (std + eps), x.mask))


@register("dr_grpo", grouped=True)
def dr_grpo(x: RLBatch) -> Advantages:
    """Dr. GRPO: A_i = r_i - mean_group (no std division). Pair it with the constant length
    normalizer, loss aggregation "seq-mean-token-sum-norm"."""
    r = x.scores()
    mean, _, _ = group_stats(r, x.group, ddof=0)
    return Advantages(_per_token(r - mean, x.mask))


@register("rloo", grouped=True)
def rloo(x: RLBatch) -> Advantages:
    """REINFORCE leave-one-out: A_i = r_i - mean of the OTHER rows of the group
    = G/(G-1) (r_i - mean_group)."""
    r = x.scores()
    mean, _, size = group_stats(r, x.group, ddof=1)  # ddof=1: refuses groups of one
    return Advantages(_per_token(size / (size - 1) * (r - mean), x.mask))


@register("reinforce_pp")
@gin.configurable("reinforce_pp_advantage")
def reinforce_pp(x: RLBatch, gamma: float = 1.0) -> Advantages:
    """REINFORCE++: token t's return sum_{s>=t} gamma^(s-t) r_s (events as token rewards),
    whitened over the whole batch."""
    returns = discounted_returns(x, gamma)
    return Advantages(masked_whiten(returns, x.mask), returns)


def discounted_returns(x: RLBatch, gamma: float) -> np.ndarray:
    """[N, T] token t's return sum_{s>=t} gamma^(s-t) r_s over the row's reward events."""
    rewards, mask = x.dense(), x.mask > 0
    returns = np.zeros_like(rewards)
    running = np.zeros(len(rewards))
    for t in reversed(range(rewards.shape[1])):
        running = np.where(mask[:, t], rewards[:, t] + gamma * running, 0.0)
        returns[:, t] = running
    return returns


@register("trr_pp")
@gin.configurable("trr_pp_advantage")
def trr_pp(x: RLBatch, gamma: float = 1.0) -> Advantages:
    """Absolute Zero's Task-Relative REINFORCE++: REINFORCE++ returns whitened separately
    within each `group` (token-weighted, as the authors' verl fork does), so a sub-batch
    whose rewards sit on another scale (a proposer's learnability against a solver's 0/1)
    neither shifts nor shrinks the others' advantages. The AZR job gives each of its six
    (task, role) sub-batches one group id; under the rl job, with group = prompt, it is a
    token-weighted per-prompt whitening. Not `grouped`: a group may hold a single row."""
    returns = discounted_returns(x, gamma)
    adv = np.zeros_like(returns)
    for g in np.unique(x.group):
        rows = (x.group == g)[:, None] & (x.mask > 0)
        adv += masked_whiten(returns, rows)
    return Advantages(adv, returns)


@register("reinforce_pp_baseline", grouped=True)
def reinforce_pp_baseline(x: RLBatch) -> Advantages:
    """REINFORCE++ with a group baseline: r_i - mean_group on every token, then whitened over
    the batch (with GDPO's normalize-each rewards this is GDPO's batch normalization)."""
    r = x.scores()
    mean, _, _ = group_stats(r, x.group, ddof=1)
    return Advantages(masked_whiten(_per_token(r - mean, x.mask), x.mask))


@register("process", grouped=True)
@gin.configurable("process_advantage")
def process(x: RLBatch, eps: float = 1e-6, std_ddof: int = 1, step_weight: float = 1.0
            ) -> Advantages:
    """Process supervision (DeepSeekMath 4.1.3, Lightman et al.) with an outcome reward: the
    outcomes of a group are normalized over its rows, its step rewards over all its steps,
    each with its OWN mean and std; token t's advantage is its row's normalized outcome plus
    `step_weight` x the sum of its row's normalized step rewards at positions >= t.

    Normalizing outcomes and steps separately is what keeps a correct answer from lowering
    the advantage of the tokens that produce it: a right answer is never below its group's
    mean outcome, whereas one pool of steps and outcomes (most steps right, most answers
    wrong) puts even right answers below the pooled mean, so finishing looks worse than
    stopping (a truncated row then trains nothing under `mask_truncated`)."""
    if x.token_rewards is not None:
        raise UserError("the process estimator normalizes step rewards; a per-token reward "
                        "(rl_learner.kl_in_reward) does not apply to it: use the KL as a loss")
    mean, std, _ = group_stats(x.outcome, x.group, std_ddof)
    outcome = (x.outcome - mean) / (std + eps)
    adv = np.zeros(x.mask.shape)
    for g in np.unique(x.group):
        rows = np.flatnonzero(x.group == g)
        pool = np.concatenate([np.asarray(x.step_values[i], np.float64) for i in rows])
        step_mean = pool.mean() if len(pool) else 0.0
        step_std = pool.std(ddof=std_ddof) if len(pool) > std_ddof else 0.0
        for i in rows:
            z = np.zeros(x.mask.shape[1])
            np.add.at(z, np.asarray(x.step_positions[i], int),
                      (np.asarray(x.step_values[i], np.float64) - step_mean) / (step_std + eps))
            adv[i] = outcome[i] + step_weight * np.cumsum(z[::-1])[::-1]  # steps at >= t
    return Advantages(adv * (x.mask > 0))


@register("gae")
@gin.configurable("gae_advantage")
def gae(x: RLBatch, gamma: float = 1.0, lam: float = 0.95, whiten: bool = True
        ) -> Advantages:
    """PPO's generalized advantage estimate with the value head as critic:
    delta_t = r_t + gamma V_{t+1} - V_t over completion tokens (V after the last token = 0),
    A_t = sum_k (gamma lam)^k delta_{t+k}; returns = A + V (the value targets, unwhitened)."""
    if x.values is None:
        raise UserError("the gae estimator needs the value head: set ModelConfig.value_head = "
                        "True")
    rewards, mask, values = x.dense(), x.mask > 0, np.asarray(x.values, np.float64)
    adv = np.zeros_like(rewards)
    next_value, running = np.zeros(len(rewards)), np.zeros(len(rewards))
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = np.where(mask[:, t], delta + gamma * lam * running, running)
        next_value = np.where(mask[:, t], values[:, t], next_value)
        adv[:, t] = np.where(mask[:, t], running, 0.0)
    returns = (adv + values) * mask
    return Advantages(masked_whiten(adv, x.mask) if whiten else adv, returns)


def estimate(name: str, x: RLBatch) -> Advantages:
    return ESTIMATORS.pick(name)(x)
