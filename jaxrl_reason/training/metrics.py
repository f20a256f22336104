"""Metric writers: metrics.jsonl (for scripts and plots) and TensorBoard events (no TensorFlow).

On resume, lines past the restored step are dropped, so a resumed run's metrics.jsonl equals
an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
from tensorboardX import SummaryWriter


def _scalar(v: Any) -> Any:
    if isinstance(v, jax.Array | np.ndarray | np.generic):
        v = np.asarray(v)
        return v.item() if v.size == 1 else v.tolist()
    return v


class MetricWriter:
    """Appends {"step": s, **metrics} lines; mirrors numeric scalars to TensorBoard."""

    def __init__(
        self,
        workdir: str,
        resume_step: int | None = None,
        key: str = "step",
        filename: str = "metrics.jsonl",
    ):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, filename)
        self.key = key
        self._truncate_after(resume_step)
        self._tb = None
        if jax.process_index() == 0:
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard", filename.split(".")[0]))

    def _truncate_after(self, step: int | None) -> None:
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            lines = [ln for ln in f if ln.strip()]
        keep = []
        for ln in lines:
            try:
                rec = json.loads(ln)
            except json.JSONDecodeError:  # a line cut by a kill mid-write
                continue
            if step is not None and rec.get(self.key, 0) <= step:
                keep.append(ln)
        with open(self.path + ".tmp", "w") as f:
            f.writelines(keep)
        os.replace(self.path + ".tmp", self.path)

    def write(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        rec = {
            self.key: int(step),
            **{k: _scalar(v) for k, v in metrics.items()},
            "time": time.time(),
        }
        if jax.process_index() == 0:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            for k, v in rec.items():
                if isinstance(v, int | float) and k not in (self.key, "time"):
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()
        return rec

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str, filename: str = "metrics.jsonl") -> list[dict[str, Any]]:
    path = os.path.join(workdir, filename)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(ln) for ln in f if ln.strip()]
