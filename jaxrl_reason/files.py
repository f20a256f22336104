"""Files a job keeps in its workdir: local or remote paths, atomic writes, one writer.

Paths go through `etils.epath`, so a workdir may be `gs://bucket/run` (with `gcsfs` installed)
as well as a local folder. Every shared file (config.gin, metrics, plots, kept sets) is written
whole to a temporary sibling and renamed, so a kill never leaves half a file; and only process 0
writes: on the other processes of a multi-host job these helpers do nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import jax
from etils import epath

PathLike = str | os.PathLike


def path(p: PathLike) -> epath.Path:
    """An epath.Path; local paths are made absolute, remote ones (gs://...) kept as they are."""
    out = epath.Path(p)
    return out if "://" in str(p) else out.resolve()


def is_writer() -> bool:
    """Whether this process writes the job's shared files (process 0 only)."""
    return jax.process_index() == 0


def write_atomic(p: PathLike, data: str | bytes) -> None:
    """Writes `data` to `p` through a temporary sibling and a rename (process 0 only)."""
    if not is_writer():
        return
    target = path(p)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp"
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    tmp.replace(target)


def write_json(p: PathLike, obj: Any) -> None:
    write_atomic(p, json.dumps(obj))


def write_jsonl(p: PathLike, rows: Iterable[Any]) -> None:
    write_atomic(p, "".join(json.dumps(r) + "\n" for r in rows))


def read_json(p: PathLike) -> Any:
    return json.loads(path(p).read_text())


def read_jsonl(p: PathLike) -> list[Any]:
    """The JSON lines of `p` ([] if absent), skipping a last line cut by a kill mid-write."""
    target = path(p)
    if not target.exists():
        return []
    out = []
    for line in target.read_text().splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
