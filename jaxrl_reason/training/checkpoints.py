"""Orbax checkpoints: train state + JSON side data (data-iterator state, algorithm progress).

Saves are asynchronous and atomic (orbax writes to a temporary directory and renames it),
so a kill at any moment leaves the last complete checkpoint intact. Restoring takes an
abstract state whose leaves carry shardings, so a checkpoint restores onto any mesh. A
checkpoint whose parameters do not fit the model config is one clear error, not orbax's.
`restore_params` reads the parameters alone (no optimizer moments), and can fill leaves the
checkpoint lacks (an SFT checkpoint into a model with a new value head).
"""

from __future__ import annotations

from typing import Any

import gin
import jax
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from jaxrl_reason import files
from jaxrl_reason.errors import UserError


def _key(path) -> str:
    """A leaf's name in a pytree path: dict keys, attribute names and sequence indices."""
    parts = (getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)
    return ".".join(map(str, parts))


def _flat(tree) -> dict[str, Any]:
    return {_key(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


@gin.configurable(denylist=["directory"])
class Checkpointer:
    """A CheckpointManager over items `state` (pytree) and `extra` (JSON dict)."""

    def __init__(self, directory: files.PathLike, max_to_keep: int = 3, async_save: bool = True):
        self.directory = files.path(directory)
        self._mgr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
            ),
            item_handlers={"state": ocp.PyTreeCheckpointHandler(),
                           "extra": ocp.JsonCheckpointHandler()},
        )

    def latest_step(self) -> int | None:
        return self._mgr.latest_step()

    def save(self, step: int, state: Any, extra: dict | None = None, force: bool = False) -> None:
        self._mgr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.PyTreeSave(state), extra=ocp.args.JsonSave(extra or {})
            ),
            force=force,
        )

    def _check_shapes(self, step: int, abstract: Any, prefix: str = "") -> set[str]:
        """The leaf names of `abstract` the checkpoint holds; an error if any holds another
        shape. `prefix` is the subtree's path in the saved state (e.g. "params.")."""
        stored = _flat(self._mgr.item_metadata(step)["state"].tree)
        present = set()
        wanted = sorted(_flat(abstract).items(), key=lambda kv: not kv[0].startswith("params."))
        for name, want in wanted:  # parameters first: the most telling mismatch
            got = stored.get(prefix + name)
            if got is None:
                continue
            if tuple(got.shape) != tuple(want.shape):
                raise UserError(
                    f"checkpoint {self.directory}/{step} holds {prefix + name} of shape "
                    f"{tuple(got.shape)}, but the model config expects {tuple(want.shape)}: "
                    f"restore it with the config it was trained with (its run's config.gin)")
            present.add(name)
        return present

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict] | None:
        """Restores `step` (default: latest) into the layout of `abstract_state`; None if empty."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        present = self._check_shapes(step, abstract_state)
        missing = sorted(set(_flat(abstract_state)) - present)
        if missing:
            raise UserError(f"checkpoint {self.directory}/{step} lacks {missing[:4]}: it was "
                            f"saved by another model or job")
        logging.info("Restoring checkpoint %s/%d", self.directory, step)
        out = self._mgr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(
                    item=abstract_state,
                    restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state)),
                extra=ocp.args.JsonRestore()),
        )
        return out.state, dict(out.extra or {})

    def restore_params(self, abstract_params: nnx.State, step: int | None = None,
                       fill: nnx.State | None = None) -> tuple[nnx.State, int]:
        """(params, step) of `step` (default: latest), without the optimizer state. Leaves the
        checkpoint lacks come from `fill` (e.g. fresh init params); without `fill` they are an
        error."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise UserError(f"no checkpoint under {self.directory}")
        present = self._check_shapes(step, abstract_params, prefix="params.")
        flat = nnx.to_flat_state(abstract_params)
        missing = [".".join(map(str, p)) for p, _ in flat if _key_of(p) not in present]
        if missing and fill is None:
            raise UserError(f"checkpoint {self.directory}/{step} lacks parameters {missing[:4]}")
        item = nnx.from_flat_state([(p, v) for p, v in flat if _key_of(p) in present])
        out = self._mgr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item={"params": item}, partial_restore=True,
            restore_args={"params": ocp.checkpoint_utils.construct_restore_args(item)})))
        params = out.state["params"]
        if missing:
            logging.warning("checkpoint %s/%d lacks %s: initialized fresh", self.directory, step,
                            missing)
            merged = dict(nnx.to_flat_state(fill))
            merged.update(dict(nnx.to_flat_state(params)))
            params = nnx.from_flat_state(list(merged.items()))
        return params, step

    def wait(self) -> None:
        self._mgr.wait_until_finished()

    def close(self) -> None:
        self._mgr.wait_until_finished()
        self._mgr.close()


def read_params(directory: files.PathLike, abstract_params: nnx.State, step: int | None = None,
                fill: nnx.State | None = None) -> tuple[nnx.State, int]:
    """`Checkpointer.restore_params` of a finished run's checkpoint directory, opened and closed
    around the one read (starting RL, a verifier or an evaluation from another run)."""
    ckpt = Checkpointer(directory)
    try:
        return ckpt.restore_params(abstract_params, step, fill)
    finally:
        ckpt.close()

def _key_of(path: tuple) -> str:
    """A flat-state path as `_key` names the leaf ('.value' is the Variable's array)."""
    return ".".join(map(str, path)) + ".value"
