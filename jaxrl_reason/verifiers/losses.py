"""Verifier losses by name (`train_verifier.loss = "verifier_bce"`), handed to the trainer.

The value head's output v at the tokens of `value_mask` regresses `value_targets` in [0, 1]:
- "verifier_bce": binary cross-entropy on the logit v (soft Monte-Carlo targets allowed);
  P(correct) = sigmoid(v);
- "verifier_mse": squared error of v itself (Cobbe et al.); P(correct) = clip(v, 0, 1).
Optionally joint with the LM loss on the completion tokens (Cobbe et al. keep the LM
objective): loss = (sum of value losses + lm_weight * sum of token NLLs) / number of value
targets. For an ORM (a target at every completion token) that is exactly
mean value loss + lm_weight * mean NLL.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl_reason.errors import require
from jaxrl_reason.training.losses import Forward, LossOut, sft_loss

LINKS = {"verifier_bce": "sigmoid", "verifier_mse": "clip"}


def probabilities(values: jax.Array | np.ndarray, link: Literal["sigmoid", "clip"]):
    """P(correct) from raw value-head outputs under the loss's link."""
    xp = jnp if isinstance(values, jax.Array) else np
    if link == "sigmoid":
        return 1 / (1 + xp.exp(-values))
    return xp.clip(values, 0.0, 1.0)


def verifier_loss(fwd: Forward, batch: dict[str, jax.Array], kind: Literal["bce", "mse"],
                  lm_weight: float = 0.0) -> LossOut:
    """Sums over the value targets (see the module docstring); metrics: value_loss,
    value_accuracy ((P >= 0.5) == (target >= 0.5)) and lm_nll."""
    require(lm_weight >= 0, "train_verifier.lm_weight", lm_weight, "must be >= 0")
    if fwd.values is None:
        raise ValueError("verifier losses need a value head (ModelConfig.value_head = True)")
    v = fwd.values.astype(jnp.float32)
    y = batch["value_targets"].astype(jnp.float32)
    m = batch["value_mask"].astype(jnp.float32)
    if kind == "bce":
        per, p = optax.sigmoid_binary_cross_entropy(v, y), jax.nn.sigmoid(v)
    else:
        per, p = jnp.square(v - y), v
    value_sum, count = (per * m).sum(), m.sum()
    right = ((p >= 0.5) == (y >= 0.5)).astype(jnp.float32)
    metrics = {"value_loss": (value_sum, count), "value_accuracy": ((right * m).sum(), count)}
    total = value_sum
    if lm_weight > 0:
        nll, tokens, _ = sft_loss(fwd, batch)
        total = total + lm_weight * nll
        metrics["lm_nll"] = (nll, tokens)
    return total, count, metrics


KINDS = {"verifier_bce": "bce", "verifier_mse": "mse"}
