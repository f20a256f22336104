"""The search job's two figures: accuracy against N, and against generated tokens."""

from __future__ import annotations

from jaxrl_reason.plots import plt, save

_FLAT = ("pass@1_greedy",)  # methods measured at one budget: drawn as horizontal lines


def scaling_plot(summary: dict, path: str) -> None:
    """Held-out accuracy against N (log2-x), one line per method; greedy pass@1 of the policy
    and of the large policy as dashed horizontal lines."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, curve in summary["methods"].items():
        if method in _FLAT or len(curve["n"]) == 1:
            ax.axhline(curve["accuracy"][0], ls=":", color="gray", lw=1)
            ax.annotate(method, (1, curve["accuracy"][0]), fontsize=7, color="gray",
                        va="bottom")
            continue
        ax.plot(curve["n"], curve["accuracy"], marker="o", ms=3, label=method)
    ref = summary.get("reference", {})
    for key, label in (("large_pass@1_greedy", "large policy, greedy"),
                       ("large_pass@1", "large policy, pass@1")):
        if key in ref:
            ax.axhline(ref[key], ls="--", color="black", lw=1)
            ax.annotate(f"{label} ({ref.get('large_params', 0) / 1e3:.0f}k params)",
                        (1, ref[key]), fontsize=7, va="bottom")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (samples, or beam rows, per problem)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(f"{summary['num_problems']} held-out problems, policy "
                 f"{ref.get('policy_params', 0) / 1e3:.0f}k params, seed {summary['seed']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save(fig, path)


def tokens_plot(summary: dict, path: str,
                prefixes: tuple[str, ...] = ("beam", "lookahead", "best_of_n", "weighted",
                                             "majority")) -> None:
    """Held-out accuracy against generated tokens per problem (log-x): search at equal
    compute."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, curve in summary["methods"].items():
        if method.split(":")[0] in prefixes and len(curve["n"]) > 1:
            ax.plot(curve["tokens"], curve["accuracy"], marker="o", ms=3, label=method,
                    ls="-" if method.startswith(("beam", "lookahead")) else "--")
    ax.set_xscale("log")
    ax.set_xlabel("generated tokens per problem")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("search at equal generated tokens")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save(fig, path)
