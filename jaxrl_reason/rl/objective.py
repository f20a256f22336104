"""The RL training loss: policy gradient + KL to the reference + entropy bonus (+ the clipped
value loss of PPO), all aggregated the same way.

An `RLLoss` is the loss function itself: the RL job builds it once from its config and hands
it to the trainer, which calls it on the model's forward and an `rl.batch.RLBatch` (its
`loss_view()`): `loss_mask`, `old_logprobs` (pi_old, recomputed by the trainer), `advantages`,
the sampling `temperature`, and when used `ref_logprobs`, `returns` and `old_values` (the
critic's values of the states each token was drawn from); the batch's `max_new_tokens` (the
aggregations' L unless `RLLoss.norm_length` sets it) and `mini_batch_rows` (rows of the global
mini-batch, empty ones included).

The per-token loss is pg + kl_coef * kl - entropy_coef * entropy + value_coef * vf, and the
aggregation's weights and count apply to all of it (so the terms share the denominator the
core's train step divides by once). Metrics are (sum, count) pairs like the loss, except the
`*_max` ones (the core combines those by maximum).
"""

from __future__ import annotations

import dataclasses

import gin
import jax
import jax.numpy as jnp

from jaxrl_reason.errors import check_dataclass, require
from jaxrl_reason.rl import aggregation, kl, policy_losses
from jaxrl_reason.rl.batch import RLBatch
from jaxrl_reason.sampling.distribution import sampling_logprobs
from jaxrl_reason.training.losses import Forward, LossOut


@gin.configurable
@dataclasses.dataclass(frozen=True)
class RLLoss:
    """`norm_length`: L, the constant of the length-normalized aggregations
    (seq-mean-token-sum-norm, seq-mean-token-sum-norm-verl, dr-grpo-trl); None (the default)
    is the generation budget rl_learner.max_new_tokens, which the RL learner puts in the batch.
    `kl_coef` > 0 needs the trainer's reference (Trainer.reference = True); `value_coef` > 0
    needs the value head; `value_clip` bounds the value prediction's move from its old value
    (PPO's value clipping; None = off)."""

    policy_loss: str = "clip"
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip: float | None = None
    aggregation: str = "token-mean"
    norm_length: float | None = None
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0
    value_coef: float = 0.0
    value_clip: float | None = 0.2

    def __post_init__(self):
        check_dataclass(self)
        policy_losses.get(self.policy_loss)
        aggregation.get(self.aggregation)
        kl.get(self.kl_estimator)
        require(0 <= self.eps_low < 1, "RLLoss.eps_low", self.eps_low, "must be in [0, 1)")
        require(self.eps_high >= 0, "RLLoss.eps_high", self.eps_high, "must be >= 0")
        require(self.dual_clip is None or self.dual_clip > 1, "RLLoss.dual_clip",
                self.dual_clip, "must be > 1 or None")
        require(self.norm_length is None or self.norm_length > 0, "RLLoss.norm_length",
                self.norm_length, "must be > 0 or None (the generation budget)")
        for name in ("kl_coef", "entropy_coef", "value_coef"):
            require(getattr(self, name) >= 0, f"RLLoss.{name}", getattr(self, name),
                    "must be >= 0")
        require(self.value_clip is None or self.value_clip > 0, "RLLoss.value_clip",
                self.value_clip, "must be > 0 or None")

    @property
    def clip(self) -> policy_losses.Clip:
        return policy_losses.Clip(self.eps_low, self.eps_high, self.dual_clip)

    def __call__(self, fwd: Forward, batch: RLBatch) -> LossOut:
        """The trainer's loss function: `policy_gradient_loss` under these settings."""
        return policy_gradient_loss(fwd, batch, self)


def entropy(logp: jax.Array) -> jax.Array:
    """-sum p log p over the last axis; ids outside the distribution (-inf) add 0, with a
    finite gradient (where() alone would back-propagate 0 * nan)."""
    inside = jnp.isfinite(logp)
    safe = jnp.where(inside, logp, 0.0)
    return -jnp.where(inside, jnp.exp(safe) * safe, 0.0).sum(axis=-1)


def value_loss(pred: jax.Array, old: jax.Array, returns: jax.Array, clip: float | None
               ) -> tuple[jax.Array, jax.Array]:
    """PPO's clipped value loss per token: 0.5 max((V - R)^2, (V_clipped - R)^2) with
    V_clipped = old + clip(V - old, -c, c); and where the clipped term was the larger."""
    full = jnp.square(pred - returns)
    if clip is None:
        return 0.5 * full, jnp.zeros_like(full)
    clipped = jnp.square(old + jnp.clip(pred - old, -clip, clip) - returns)
    return 0.5 * jnp.maximum(full, clipped), (clipped > full).astype(jnp.float32)


def norm_inputs(batch: RLBatch, mask: jax.Array, cfg: RLLoss
                ) -> tuple[float | None, float]:
    """(L, rows of the global mini-batch) for the aggregation: L is `cfg.norm_length`, else the
    batch's generation budget (None without either); rows from the batch, else this batch's."""
    norm = cfg.norm_length
    if norm is None and batch.max_new_tokens:
        norm = float(batch.max_new_tokens)
    rows = float(batch.mini_batch_rows or mask.shape[0])
    return norm, rows


def policy_gradient_loss(fwd: Forward, batch: RLBatch, cfg: RLLoss) -> LossOut:
    """(sum of weighted per-token losses, the aggregation's count, metrics)."""
    mask = batch.loss_mask.astype(jnp.float32)
    logp_all = sampling_logprobs(fwd.logits[:, :-1], jnp.float32(batch.temperature),
                                 banned=fwd.banned)
    logp = jnp.take_along_axis(logp_all, fwd.tokens[:, 1:, None], axis=-1)[..., 0]
    # 0 off the mask (the targets there may be banned ids: -inf), as Trainer.logprobs does
    logp = jnp.where(mask > 0, jnp.pad(logp, ((0, 0), (1, 0))), 0.0)
    ent = jnp.pad(entropy(logp_all), ((0, 0), (1, 0)))
    old, adv = batch.old_logprobs, batch.advantages
    pg, indicators = policy_losses.get(cfg.policy_loss)(logp, old, adv, mask, cfg.clip)
    weights, count = aggregation.get(cfg.aggregation)(mask, *norm_inputs(batch, mask, cfg))
    total = pg - cfg.entropy_coef * ent
    agg = lambda x: ((x * weights).sum(), count)  # noqa: E731
    tokens = mask.sum()
    per_token = lambda x: ((x * mask).sum(), tokens)  # noqa: E731
    log_ratio = jnp.where(mask > 0, logp - old, -jnp.inf)  # for the max over trainable tokens
    metrics = {"pg_loss": agg(pg), "entropy": per_token(ent),
               "ratio_mean": per_token(jnp.exp(jnp.clip(logp - old, -20.0, 20.0))),
               "ratio_max": (jnp.exp(jnp.clip(log_ratio.max(), -20.0, 20.0)), None),
               "approx_kl_old": per_token(old - logp),
               **{k: per_token(v) for k, v in indicators.items()}}
    if batch.ref_logprobs is not None:
        k = kl.get(cfg.kl_estimator)(logp, batch.ref_logprobs)
        total = total + cfg.kl_coef * k
        metrics["kl"] = per_token(k)
    if cfg.value_coef > 0:
        require(fwd.values is not None, "RLLoss.value_coef", cfg.value_coef,
                "needs the value head (ModelConfig.value_head = True)")
        pred = jnp.pad(fwd.values[:, :-1], ((0, 0), (1, 0)))  # V of the state token t is drawn in
        vf, vclip = value_loss(pred, batch.old_values, batch.returns, cfg.value_clip)
        total = total + cfg.value_coef * vf
        metrics["value_loss"] = agg(vf)
        metrics["value_clip_frac"] = per_token(vclip)
    return (total * weights).sum(), count, metrics
