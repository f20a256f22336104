"""Metric writers: metrics.jsonl (for scripts and plots) and TensorBoard events (no TensorFlow).

On resume, lines past the restored step are dropped, so a resumed run's metrics.jsonl equals
an uninterrupted run's. Only process 0 writes; every process returns the same records.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import jax
import numpy as np

from jaxrl_reason import files


def _summary_writer(logdir: str):
    """tensorboardX's SummaryWriter. tensorboardX imports torch whenever it is installed (~9 s,
    only to accept torch tensors we never pass), so torch is hidden while it loads, unless
    something imported torch already."""
    hidden = "torch" not in sys.modules
    if hidden:
        sys.modules["torch"] = None  # makes `import torch` raise ImportError, which it handles
    try:
        from tensorboardX import SummaryWriter
    finally:
        if hidden:
            del sys.modules["torch"]
    return SummaryWriter(logdir)


def _scalar(v: Any) -> Any:
    if isinstance(v, jax.Array | np.ndarray | np.generic):
        v = np.asarray(v)
        return v.item() if v.size == 1 else v.tolist()
    return v


class MetricWriter:
    """Appends {key: s, **metrics} lines; mirrors numeric scalars to TensorBoard.

    `resume_step` is the step the job resumed from: lines past it are dropped (None: no
    checkpoint, start afresh). A local file is appended to; a remote one (gs://) is rewritten
    whole on each write, since object stores cannot append."""

    def __init__(
        self,
        workdir: files.PathLike,
        resume_step: int | None = None,
        key: str = "step",
        filename: str = "metrics.jsonl",
    ):
        self.path = files.path(workdir) / filename
        self.key = key
        self.remote = "://" in str(self.path)
        self.records = [r for r in files.read_jsonl(self.path)
                        if resume_step is not None and r.get(key, 0) <= resume_step]
        files.write_jsonl(self.path, self.records)
        self._tb = None
        if files.is_writer():
            self._tb = _summary_writer(str(files.path(workdir) / "tensorboard" /
                                           filename.split(".")[0]))

    def write(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        rec = {self.key: int(step), **{k: _scalar(v) for k, v in metrics.items()},
               "time": time.time()}
        self.records.append(rec)
        if files.is_writer():
            if self.remote:
                files.write_jsonl(self.path, self.records)
            else:
                with open(self.path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            for k, v in rec.items():
                if isinstance(v, int | float) and not isinstance(v, bool) \
                        and k not in (self.key, "time"):
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()
        return rec

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: files.PathLike, filename: str = "metrics.jsonl") -> list[dict[str, Any]]:
    """The records of workdir/filename, skipping a last line cut by a kill mid-write."""
    return files.read_jsonl(files.path(workdir) / filename)
