"""Orbax checkpoints: train state + JSON side data (data-iterator state, algorithm progress).

Saves are asynchronous and atomic (orbax writes to a temporary directory and renames it),
so a kill at any moment leaves the last complete checkpoint intact. Restoring takes an
abstract state whose leaves carry shardings, so a checkpoint restores onto any mesh.
"""

from __future__ import annotations

import os
from typing import Any

import gin
import jax
import orbax.checkpoint as ocp
from absl import logging


@gin.configurable(denylist=["directory"])
class Checkpointer:
    """A CheckpointManager over items `state` (pytree) and `extra` (JSON dict)."""

    def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        self._mgr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
            ),
        )

    def latest_step(self) -> int | None:
        return self._mgr.latest_step()

    def save(self, step: int, state: Any, extra: dict | None = None, force: bool = False) -> None:
        self._mgr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra or {})
            ),
            force=force,
        )

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict] | None:
        """Restores `step` (default: latest) into the layout of `abstract_state`; None if empty."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        logging.info("Restoring checkpoint %s/%d", self.directory, step)
        out = self._mgr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), extra=ocp.args.JsonRestore()
            ),
        )
        return out.state, dict(out.extra or {})

    def restore_extra(self, step: int | None = None) -> dict | None:
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        out = self._mgr.restore(step, args=ocp.args.Composite(extra=ocp.args.JsonRestore()))
        return dict(out.extra or {})

    def wait(self) -> None:
        self._mgr.wait_until_finished()

    def close(self) -> None:
        self._mgr.wait_until_finished()
        self._mgr.close()


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) for a concrete pytree."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        tree,
    )
