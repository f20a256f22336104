"""RPT's figure: next-token accuracy per entropy split and model, and the RL stage over steps."""

from __future__ import annotations

from collections.abc import Sequence

from jaxrl_reason.plots import plt, save
from jaxrl_reason.rpt.task import ENTROPY_SPLITS

CURVES = (("reward/outcome_mean", "prefix-match reward"),
          ("zero_std_groups", "groups with all-equal rewards"),
          ("format_failures", "format failures"))


def report_plot(report: dict, rl_records: Sequence[dict], path: str) -> None:
    """Left: test accuracy (with standard errors) of each model on each entropy split. Middle:
    the RL stage's reward, uniform groups and format failures per step. Right: its mean
    completion length in tokens (reasoning + commit)."""
    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(15, 4))
    models = list(report["models"])
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        r = report["models"][model]
        names = [n for n in ENTROPY_SPLITS if n in r]
        xs = [list(ENTROPY_SPLITS).index(n) + i * width for n in names]
        left.bar(xs, [r[n] for n in names], width, yerr=[r[f"{n}_se"] for n in names],
                 label=model, color=f"C{i}")
    left.set_xticks([j + 0.4 - width / 2 for j in range(len(ENTROPY_SPLITS))],
                    [f"{n} (H > {t})" for n, t in ENTROPY_SPLITS.items()])
    left.set_ylabel("next-token accuracy (test positions)")
    left.legend(fontsize=8)
    rows = [r for r in rl_records if "reward_mean" in r]
    steps = [r["step"] for r in rows]
    for key, label in CURVES:
        values = [-r.get("reward/format_mean", 0.0) if key == "format_failures"
                  else r.get(key, float("nan")) for r in rows]
        mid.plot(steps, values, label=label)
    valid = [r for r in rl_records if "acc" in r]
    mid.plot([r["step"] for r in valid], [r["acc"] for r in valid], "o-", markersize=3,
             label="validation accuracy (greedy)")
    mid.set_xlabel("RL step")
    mid.legend(fontsize=8)
    right.plot(steps, [r.get("completion_tokens_mean", float("nan")) for r in rows])
    right.set_xlabel("RL step")
    right.set_ylabel("mean completion tokens")
    for ax in (left, mid, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, path)
