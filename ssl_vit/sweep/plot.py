"""The lr-sensitivity plot: final kNN top-1 vs lr (log axis), one line per arm, the mean over seeds with the
min-max range over seeds shaded, the arm's LR sensitivity in the legend (matplotlib, Agg, no pyplot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from ssl_vit.core.atomic import atomic_path


def plot_lr_sensitivity(summary: Dict[str, Any], path: Path) -> Path:
    import matplotlib  # lazy: matplotlib is heavy (~0.5 s) and only plots need it

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # lazy: matplotlib is heavy (~0.5 s) and only plots need it

    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    lr_key = summary["lr_key"]
    positive = all(c["lr"] > 0 for a in summary["arms"] for c in a["curve"])
    any_missing = any(c["knn_mean"] is None for a in summary["arms"] for c in a["curve"])
    for a in summary["arms"]:
        pts = [c for c in a["curve"] if c["knn_mean"] is not None]
        sens = a["lr_sensitivity"]
        label = a["arm"] + (f" (LR sens. {sens:.2f})" if sens is not None else "")
        if not pts:
            ax.plot([], [], label=label + ": no finished run")
            continue
        xs = [c["lr"] for c in pts]
        (line,) = ax.plot(xs, [c["knn_mean"] for c in pts], marker="o", label=label)
        if any(c["n_seeds"] > 1 for c in pts):
            ax.fill_between(
                xs, [c["knn_min"] for c in pts], [c["knn_max"] for c in pts], color=line.get_color(), alpha=0.2, lw=0
            )
        missing = [c["lr"] for c in a["curve"] if c["knn_mean"] is None]
        if missing:
            ax.plot(
                missing, [min(c["knn_mean"] for c in pts)] * len(missing), ls="none", marker="x", color=line.get_color()
            )
    if positive:
        ax.set_xscale("log")
    ax.set_xlabel(lr_key + (" (log scale)" if positive else ""))
    ax.set_ylabel("final kNN top-1 (%)")
    seeds = summary["spec"]["seeds"]
    ax.set_title(
        f"{summary['spec']['recipe']}: kNN vs {lr_key}, mean"
        + (f" and min-max over {len(seeds)} seeds" if len(seeds) > 1 else "")
        + (" (x: no final kNN)" if any_missing else ""),
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
