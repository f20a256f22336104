"""The reference policy over a run: ProRL's hard resets and a soft (Polyak) sync.

`ResetSchedule` decides when to reset: when the validation metric has not improved for
`patience` evaluations (ProRL's trigger), and/or every `every` steps. Its state is a small
JSON dict saved with the checkpoint, so a resumed run resets exactly when an uninterrupted one
does. `hard_reset` copies the policy into the reference (`Trainer.reset_reference`) and, by
default, restarts the optimizer moments (the paper resets both); `soft_sync` moves the
reference a fraction of the way to the policy.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxrl_reason.errors import require
from jaxrl_reason.training.trainer import State, Trainer


@dataclasses.dataclass
class ResetSchedule:
    """patience 0 and every 0 = never. `best` / `stale` track the validation metric."""

    patience: int = 0
    every: int = 0
    best: float = float("-inf")
    stale: int = 0
    history: list[int] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        require(self.patience >= 0, "rl_learner.reset_patience", self.patience, "must be >= 0")
        require(self.every >= 0, "rl_learner.reset_every", self.every, "must be >= 0")

    def observe(self, metric: float) -> None:
        """Records one evaluation of the validation metric (higher is better)."""
        if metric > self.best:
            self.best, self.stale = metric, 0
        else:
            self.stale += 1

    def due(self, step: int) -> bool:
        """Whether to reset after `step`: a stall of `patience` evaluations, or the schedule."""
        stalled = self.patience > 0 and self.stale >= self.patience
        return stalled or (self.every > 0 and step % self.every == 0)

    def record(self, step: int) -> None:
        """A reset happened after `step`: the stall count starts again (the best is kept)."""
        self.history.append(step)
        self.stale = 0

    def get_state(self) -> dict:
        best = None if self.best == float("-inf") else self.best
        return {"best": best, "stale": self.stale, "history": list(self.history)}

    def set_state(self, state: dict) -> None:
        self.best = float("-inf") if state["best"] is None else float(state["best"])
        self.stale, self.history = int(state["stale"]), [int(s) for s in state["history"]]


def hard_reset(trainer: Trainer, state: State, reset_optimizer: bool = True) -> State:
    """ProRL: reference <- policy; optimizer moments and count restarted when asked."""
    state = trainer.reset_reference(state)
    return trainer.reset_optimizer(state) if reset_optimizer else state


def _mix(params, ref, rate):
    return jax.tree.map(lambda p, r: (rate * p.astype(jnp.float32)
                                      + (1 - rate) * r.astype(jnp.float32)).astype(r.dtype),
                        params, ref)


def soft_sync(trainer: Trainer, state: State, rate: float) -> State:
    """ref <- rate * policy + (1 - rate) * ref (in fp32, stored in the reference's dtype)."""
    require(trainer.reference, "Trainer.reference", trainer.reference,
            "must be True to sync a reference")
    require(0 < rate <= 1, "rl_learner.soft_sync_rate", rate, "must be in (0, 1]")
    with jax.set_mesh(trainer.mesh):
        ref = jax.jit(_mix, out_shardings=trainer.state_shardings["ref_params"])(
            state["params"], state["ref_params"], jnp.float32(rate))
    return {**state, "ref_params": ref}
