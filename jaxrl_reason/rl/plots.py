"""Plots of RL runs from their metrics.jsonl records: validation accuracy and reward per step."""

from __future__ import annotations

from collections.abc import Sequence

from jaxrl_reason.plots import plt, save


def _series(records: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    rows = [r for r in records if key in r]
    return [r["step"] for r in rows], [r[key] for r in rows]


def compare_plot(runs: dict[str, Sequence[dict]], path: str, title: str = "",
                 x: str = "step") -> None:
    """Left: validation greedy accuracy (solid) and sampled pass@1 (dashed, where recorded);
    right: mean training reward; one color per run. `x` "step" or "minutes" (wall time since
    the run's first record)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (label, records) in enumerate(runs.items()):
        for ax, key, style in ((left, "acc", "o-"), (left, "pass@1", "s--"),
                               (right, "reward_mean", "-")):
            steps, values = _series(records, key)
            if x == "minutes":
                t0 = records[0]["time"]
                steps = [(r["time"] - t0) / 60 for r in records if key in r]
            ax.plot(steps, values, style, markersize=3, color=f"C{i % 10}",
                    label=None if key == "pass@1" else label)
    left.set_ylabel("validation: greedy (solid), sampled pass@1 (dashed)")
    right.set_ylabel("mean training reward")
    for ax in (left, right):
        ax.set_xlabel("wall minutes" if x == "minutes" else "RL step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


def training_plot(records: Sequence[dict], path: str) -> None:
    """One run: held-out accuracy and its training reward / accuracy against step."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    steps, acc = _series(records, "acc")
    left.plot(steps, acc, "o-", label="validation accuracy (greedy)")
    for k in sorted({int(key[5:]) for r in records for key in r
                     if key.startswith("pass@") and key[5:].isdigit()}):
        s, v = _series(records, f"pass@{k}")
        left.plot(s, v, "--", marker=".", label=f"pass@{k} (T sampled)")
    resets = [r["step"] for r in records if r.get("reset")]
    for r in resets:
        left.axvline(r, color="gray", alpha=0.4, lw=1)
    left.set_ylim(-0.02, 1.02)
    left.set_ylabel("validation")
    for key, label in (("reward_mean", "mean reward"), ("train_accuracy", "rollout accuracy")):
        s, v = _series(records, key)
        right.plot(s, v, label=label)
    right.set_ylabel("training rollouts")
    for ax in (left, right):
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)
