"""azr.png: a self-play run's health and its held-out figure against step, one color per task
type: proposer validity (with the share of proposals rejected per reason), distinct programs
per buffer, learnability and training solve rate, and the greedy solve rate on the
hand-written seeds' test split."""

from __future__ import annotations

from collections.abc import Sequence

from jaxrl_reason.azr.roles import REJECTIONS
from jaxrl_reason.data.programs import TASK_TYPES
from jaxrl_reason.plots import plt, save

PANELS = (
    ("propose/valid/{t}", None, "valid proposals (share);\nrejected per reason (dotted)"),
    ("buffer/{t}/distinct", None, "distinct programs in the buffer"),
    ("propose/learnability/{t}", "solve/acc/{t}",
     "learnability of valid proposals (solid),\nsolver accuracy in training (dashed)"),
    ("test/solve/{t}", None, "held-out solve rate (greedy, test split)"),
)


def training_plot(records: Sequence[dict], path: str) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (solid, dashed, _) in zip(axes.ravel(), PANELS, strict=True):
        for c, t in enumerate(TASK_TYPES):
            for key, style in ((solid, "-"), (dashed, "--")):
                if key is None:
                    continue
                rows = [r for r in records if key.format(t=t) in r]
                ax.plot([r["step"] for r in rows], [r[key.format(t=t)] for r in rows], style,
                        marker="." if len(rows) < 30 else None, color=f"C{c}",
                        label=t if style == "-" else None)
    steps = [r for r in records if "propose/valid" in r]
    for c, reason in enumerate(REJECTIONS):  # the reasons that occur, over all task types
        key = f"propose/rejected/{reason}"
        if any(r[key] for r in steps):
            axes[0, 0].plot([r["step"] for r in steps], [r[key] for r in steps], ":",
                            color=f"C{c + 3}", label=reason)
    for ax, (_, _, label) in zip(axes.ravel(), PANELS, strict=True):
        ax.set_xlabel("step")
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)
