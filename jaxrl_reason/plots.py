"""Accuracy-per-difficulty plots and text tables for algorithms that run in rounds."""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from jaxrl_reason import files  # noqa: E402


def _difficulties(history: list[dict]) -> list[str]:
    keys = {k for r in history for k in r if k.startswith("acc/")}
    return sorted(keys, key=lambda k: int(k.split("/")[1]))


def accuracy_plot(history: list[dict], path: str, x: str = "iteration", title: str = "") -> None:
    """One line per difficulty: exact-match accuracy against `x`. Written atomically, by
    process 0 only."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in _difficulties(history):
        ax.plot(
            [r[x] for r in history],
            [r.get(k, float("nan")) for r in history],
            marker="o",
            label=f"{k.split('/')[1]} digits",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(x)
    ax.set_ylabel("exact match")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or os.path.basename(os.path.dirname(os.path.abspath(path))))
    fig.tight_layout()
    save(fig, path)


def save(fig, path: str) -> None:
    """Writes a figure as PNG through `files.write_atomic`, and closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    files.write_atomic(path, buf.getvalue())


def table(
    history: list[dict],
    x: str = "iteration",
    extra: tuple[str, ...] = ("kept", "rationalized", "steps", "seconds"),
) -> str:
    """A fixed-width table: one row per round, accuracy per difficulty and bookkeeping columns."""
    diffs = _difficulties(history)
    cols = [x, *diffs, "acc", *[c for c in extra if any(c in r for r in history)]]
    lines = ["  ".join(f"{c:>9}" for c in cols)]
    for r in history:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:>9.3f}" if isinstance(v, float) else f"{v!s:>9}")
        lines.append("  ".join(cells))
    return "\n".join(lines)
